//! The web console's assets as the router serves them, and the script kept
//! in step with the API (every path it calls is routed and documented). The
//! console driven in a real browser is in the workspace e2e tests.

use reqwest::StatusCode;
use reqwest::header;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_with_headers_that_keep_it_from_being_framed_or_injected() {
    let s = TestService::start("", &[]).await;
    let http = sluice_automation::http_client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let r = http.get(format!("{}/", s.base)).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()[header::LOCATION], "/ui/");
    for (path, ty, needle) in [
        (
            "/ui/",
            "text/html",
            "<script src=\"app.js\" defer></script>",
        ),
        ("/ui/app.js", "text/javascript", "textContent"),
        ("/ui/style.css", "text/css", ".badge"),
    ] {
        let r = http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        assert!(
            h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty),
            "{path}: {h:?}"
        );
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
    }
    // The page itself holds no data, so it needs no token; the API behind it does.
    let (st, _) = s.call("GET", "/api/v1/runs", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// Paths in the script (`"/api/v1/…"` and `` `/api/v1/…${…}…` ``), with
/// interpolations as `*` and without query strings.
fn script_paths(js: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ['"', '`'] {
        let open = format!("{quote}/api/v1/");
        let mut rest = js;
        while let Some(i) = rest.find(&open) {
            let tail = &rest[i + 1..];
            let end = tail.find(quote).expect("a closed string");
            let mut path = String::new();
            let mut lit = &tail[..end];
            while let Some(j) = lit.find("${") {
                path.push_str(&lit[..j]);
                path.push('*');
                let k = lit[j..].find('}').expect("a closed interpolation");
                lit = &lit[j + k + 1..];
            }
            path.push_str(lit);
            let path = path.split('?').next().unwrap().to_string();
            out.push(path);
            rest = &tail[end..];
        }
    }
    out
}

fn matches(route: &str, path: &str) -> bool {
    let r: Vec<&str> = route.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    r.len() == p.len()
        && r.iter()
            .zip(&p)
            .all(|(r, p)| (r.starts_with('{') && *p == "*") || r == p)
}

#[test]
fn every_api_path_the_console_calls_is_a_documented_route() {
    let js = sluice_automation::api::console::script();
    let paths = script_paths(js);
    for want in [
        "/api/v1/status",
        "/api/v1/runs/*",
        "/api/v1/runs/*/approve",
        "/api/v1/runbooks/*/runs",
        "/api/v1/decisions",
        "/api/v1/silences/*",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} in {paths:?}");
    }
    for p in &paths {
        assert!(
            sluice_automation::api::openapi::ROUTES
                .iter()
                .any(|r| matches(r.path, p)),
            "the console calls {p}, which no route serves"
        );
    }
}

/// A request as a browser with a session sends it: the cookie, and for a
/// change the CSRF token when given.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn send(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        csrf: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header(header::COOKIE, cookie);
        if let Some(t) = csrf {
            r = r.header("X-CSRF-Token", t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        r.send().await.unwrap()
    }

    /// Signs in with `token`: the answer, the cookie pair and the CSRF token.
    async fn sign_in(&self, token: &str) -> (StatusCode, String, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/session", self.base))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let set = r
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.json().await.unwrap_or_default();
        (status, set, body)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_session_is_an_httponly_cookie_and_changes_need_its_csrf_token() {
    let s = TestService::start("", &[]).await;
    let b = Browser {
        http: sluice_automation::http_client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap(),
        base: s.base.clone(),
    };
    let (st, _, _) = b.sign_in("not-a-token").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, set, body) = b.sign_in(OPERATOR).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(OPERATOR),
        "the cookie is not the token: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    assert_eq!(body["role"], "operator");
    let csrf = body["csrf_token"].as_str().unwrap().to_string();

    // Reads need only the cookie.
    let r = b.send("GET", "/api/v1/runs", &cookie, None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let who: serde_json::Value = b
        .send("GET", "/api/v1/session", &cookie, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (who["name"].as_str(), who["csrf_token"].as_str()),
        (Some("alice"), Some(csrf.as_str()))
    );

    // A change with the cookie alone (what a cross-site form could send) is refused.
    let silence =
        serde_json::json!({"matchers": ["alertname=\"X\""], "duration": "1h", "comment": "t"});
    let r = b
        .send("POST", "/api/v1/silences", &cookie, None, Some(&silence))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("X-CSRF-Token"));
    let (_, list) = s.get("/api/v1/silences").await;
    assert_eq!(
        list["silences"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
    let r = b
        .send(
            "POST",
            "/api/v1/silences",
            &cookie,
            Some(&csrf),
            Some(&silence),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let (_, list) = s.get("/api/v1/silences").await;
    assert_eq!(list["silences"][0]["created_by"], "alice", "{list}");

    // A viewer's session has the viewer's role.
    let (_, vset, vbody) = b.sign_in(VIEWER).await;
    let vcookie = vset.split(';').next().unwrap().to_string();
    let vcsrf = vbody["csrf_token"].as_str().unwrap();
    let r = b
        .send(
            "POST",
            "/api/v1/silences",
            &vcookie,
            Some(vcsrf),
            Some(&silence),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Signing out ends the session; the audit log names who signed in.
    let r = b
        .send("DELETE", "/api/v1/session", &cookie, Some(&csrf), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = b.send("GET", "/api/v1/runs", &cookie, None, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let after: serde_json::Value = b
        .send("GET", "/api/v1/session", &cookie, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&after["signed_in"], &after["sign_in_required"]),
        (&serde_json::json!(false), &serde_json::json!(true))
    );
    let (_, audit) = s.call("GET", "/api/v1/audit", Some(ADMIN), None).await;
    let text = audit.to_string();
    assert!(text.contains("POST /api/v1/session"), "{text}");
    assert!(!text.contains(OPERATOR), "no token in the audit log");
    s.stop().await;
}
