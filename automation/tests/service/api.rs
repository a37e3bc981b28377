//! The HTTP API: roles, triggering, idempotency, dry runs, parameter errors,
//! approvals, cancel, audit, OpenAPI coverage, bounded bodies.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

const ECHO: &str = r#"
name: echo
description: prints a parameter
params:
  who: {type: string, required: true, pattern: "[a-z]+"}
  times: {type: int, default: 1, min: 1, max: 3}
steps:
  - id: say
    exec: {argv: [echo, "hello {{params.who}}"]}
"#;

const GATED: &str = r#"
name: gated
steps:
  - id: ask
    approval: {message: "go?"}
  - id: after
    exec: {argv: [echo, done]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_enforced_and_every_mutation_is_audited() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO)]).await;
    // No token: reads and writes refused (tokens are configured).
    let (st, _) = s.call("GET", "/api/v1/runbooks", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A viewer reads but cannot trigger.
    assert_eq!(s.get("/api/v1/runbooks").await.0, StatusCode::OK);
    let (st, body) = s
        .call(
            "POST",
            "/api/v1/runbooks/echo/runs",
            Some(VIEWER),
            Some(json!({"params": {"who": "bob"}})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    // An operator cannot reload or flip the kill switch.
    let (st, _) = s.call("POST", "/api/v1/reload", Some(OPERATOR), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.call("POST", "/api/v1/reload", Some(ADMIN), None).await;
    assert_eq!(st, StatusCode::OK);

    let (st, audit) = s.call("GET", "/api/v1/audit", Some(ADMIN), None).await;
    assert_eq!(st, StatusCode::OK);
    let events = audit["events"].as_array().unwrap();
    let seen: Vec<(String, String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap().to_string(),
                e["what"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        seen.contains(&(
            "grafana".into(),
            "POST /api/v1/runbooks/echo/runs".into(),
            403
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("alice".into(), "POST /api/v1/reload".into(), 403)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("root".into(), "POST /api/v1/reload".into(), 200)),
        "{seen:?}"
    );
    assert!(events.iter().all(|e| {
        e["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("127.0.0.1:"))
    }));
    // Reads are not audited.
    assert!(!seen.iter().any(|(_, w, _)| w.starts_with("GET")));
    // The audit log is also on disk.
    let on_disk = std::fs::read_to_string(s.dir.path().join(".sluice/audit.jsonl")).unwrap();
    assert!(on_disk.contains("POST /api/v1/reload"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_runs_records_and_deduplicates_by_idempotency_key() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO)]).await;
    let id = s.trigger("echo", json!({"who": "bob"})).await;
    let run = s.wait_final(&id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["who"], "alice");
    assert_eq!(run["run"]["trigger"], "manual");
    assert_eq!(run["run"]["params"], json!({"who": "bob", "times": 1}));
    let step = &run["steps"][0];
    assert_eq!(step["path"], "say");
    assert_eq!(step["outputs"]["stdout"], "hello bob\n", "{step:#}");

    // The same Idempotency-Key starts one run, however often it is sent.
    let client = client();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let resp = client
            .post(format!("{}/api/v1/runbooks/echo/runs", s.base))
            .bearer_auth(OPERATOR)
            .header("Idempotency-Key", "deploy-42")
            .json(&json!({"params": {"who": "eve"}}))
            .send()
            .await
            .unwrap();
        let code = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        ids.push((code, body["run_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(ids[0].0, StatusCode::ACCEPTED);
    assert_eq!(ids[1].0, StatusCode::OK);
    assert!(ids.iter().all(|(_, id)| *id == ids[0].1), "{ids:?}");
    assert_eq!(s.runs("echo").await.len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_refused_with_field_details_and_nothing_runs() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO)]).await;
    let (st, body) = s
        .call(
            "POST",
            "/api/v1/runbooks/echo/runs",
            Some(OPERATOR),
            Some(json!({"params": {"who": "Robert'); rm -rf /", "times": 9}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fields = body["fields"].as_array().unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("who")),
        "{body}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("times")),
        "{body}"
    );
    let (st, _) = s
        .call(
            "POST",
            "/api/v1/runbooks/echo/runs",
            Some(OPERATOR),
            Some(json!({"params": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, body) = s
        .call(
            "POST",
            "/api/v1/runbooks/echo/runs",
            Some(OPERATOR),
            Some(json!({"parms": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("parms"), "{body}");
    let (st, _) = s
        .call(
            "POST",
            "/api/v1/runbooks/nope/runs",
            Some(OPERATOR),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(s.runs("echo").await.is_empty());

    // A dry run shows the rendered steps and records nothing.
    let (st, body) = s
        .call(
            "POST",
            "/api/v1/runbooks/echo/runs",
            Some(OPERATOR),
            Some(json!({"params": {"who": "bob"}, "dry_run": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["plan"][0]["what"]
            .as_str()
            .unwrap()
            .contains("hello bob"),
        "{body}"
    );
    assert!(s.runs("echo").await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_through_the_api_record_who_and_why() {
    let s = TestService::start("", &[("runbooks/gated.yaml", GATED)]).await;
    let id = s.trigger("gated", json!({})).await;
    s.wait_run(&id, |b| b["run"]["status"] == "waiting_approval")
        .await;
    // A viewer cannot decide; a missing approval is a conflict.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{id}/approve"),
            Some(VIEWER),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{id}/approve"),
            Some(OPERATOR),
            Some(json!({"comment": "checked upstream"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let run = s.wait_final(&id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let a = &run["approvals"][0];
    assert_eq!(
        (a["status"].as_str(), a["decided_by"].as_str()),
        (Some("approved"), Some("alice"))
    );
    assert_eq!(a["comment"], "checked upstream");
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{id}/reject"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let id = s.trigger("gated", json!({})).await;
    s.wait_run(&id, |b| b["run"]["status"] == "waiting_approval")
        .await;
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{id}/reject"),
            Some(OPERATOR),
            Some(json!({"comment": "not now"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let run = s.wait_final(&id).await;
    assert_eq!(run["run"]["status"], "failed");
    assert!(
        run["run"]["error"]
            .as_str()
            .unwrap()
            .contains("rejected by alice: not now"),
        "{run:#}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_names_its_approvers_and_can_refuse_self_approval() {
    const GUARDED: &str = r#"
name: guarded
steps:
  - id: ask
    approval: {message: "go?", approvers: [root], self_approval: false}
  - id: after
    exec: {argv: [echo, done]}
"#;
    let s = TestService::start("", &[("runbooks/guarded.yaml", GUARDED)]).await;
    // Started by root (the admin token), the only approver.
    let (st, body) = s
        .call(
            "POST",
            "/api/v1/runbooks/guarded/runs",
            Some(ADMIN),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().unwrap().to_string();
    s.wait_run(&id, |b| b["run"]["status"] == "waiting_approval")
        .await;
    let decide = |verb: &'static str, token: &'static str| {
        let path = format!("/api/v1/runs/{id}/{verb}");
        let s = &s;
        async move { s.call("POST", &path, Some(token), None).await }
    };
    // An operator who is not an approver; the starter approving their own run.
    let (st, body) = decide("approve", OPERATOR).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("alice may not decide"),
        "{body}"
    );
    let (st, body) = decide("approve", ADMIN).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("started this run"),
        "{body}"
    );
    let (_, run) = s.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["approvals"][0]["status"], "pending", "nothing decided");
    assert_eq!(run["approvals"][0]["approvers"], json!(["root"]));
    // Rejecting one's own run is allowed.
    let (st, body) = decide("reject", ADMIN).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let run = s.wait_final(&id).await;
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    assert_eq!(run["approvals"][0]["decided_by"], "root");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_the_running_step_and_runs_on_failure() {
    let marker_dir = tempfile::tempdir().unwrap();
    let pidfile = marker_dir.path().join("pid");
    let rolled = marker_dir.path().join("rolled-back");
    let rb = format!(
        r#"
name: slow
steps:
  - id: long
    shell: {{script: "echo $$ > {pid}; exec sleep 60"}}
on_failure:
  - id: rollback
    exec: {{argv: [touch, "{rolled}"]}}
"#,
        pid = pidfile.display(),
        rolled = rolled.display()
    );
    let s = TestService::start("", &[("runbooks/slow.yaml", &rb)]).await;
    let id = s.trigger("slow", json!({})).await;
    eventually(20, "the step wrote its pid", || async {
        pidfile.exists() && std::fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty())
    })
    .await;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (st, body) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{id}/cancel"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["cancel"]["result"], "signalled");
    let run = s.wait_final(&id).await;
    assert_eq!(run["run"]["status"], "cancelled", "{run:#}");
    assert!(
        run["run"]["error"]
            .as_str()
            .unwrap()
            .contains("cancelled by alice")
    );
    assert!(rolled.exists(), "on_failure ran");
    let long = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "long")
        .unwrap();
    assert_eq!(long["status"], "abandoned", "{long:#}");
    // The process is gone (killed with its group).
    eventually(10, "the step's process is gone", || async {
        // SAFETY: kill with signal 0 only checks whether the pid exists.
        unsafe { libc::kill(pid, 0) != 0 }
    })
    .await;
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{id}/cancel"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_every_route_and_the_router_answers_each() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO)]).await;
    let (st, doc) = s.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    for route in sluice_automation::api::openapi::ROUTES {
        let path = route
            .path
            .replace("{name}", "echo")
            .replace("{id}", "r-none");
        assert!(
            doc["paths"][route.path][route.method.to_lowercase()].is_object(),
            "{} {}",
            route.method,
            route.path
        );
        let (st, body) = s.call(route.method, &path, Some(ADMIN), None).await;
        assert!(
            st != StatusCode::METHOD_NOT_ALLOWED
                && !(st == StatusCode::NOT_FOUND && body.is_string()),
            "{} {path} is not routed: {st} {body}",
            route.method
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_bounded() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO)]).await;
    let big = "x".repeat(2 << 20);
    let resp = client()
        .post(format!("{}/api/v1/runbooks/echo/runs", s.base))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(format!("{{\"params\": {{\"who\": \"{big}\"}}}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_switch_stops_automatic_runs_but_not_people() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO), ("runbooks/hooked.yaml", "name: hooked\ntriggers: [{webhook: deploy}]\nsteps:\n  - exec: {argv: [echo, hi]}\n")]).await;
    let (st, _) = s
        .call(
            "PUT",
            "/api/v1/kill-switch",
            Some(ADMIN),
            Some(json!({"on": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let body = br#"{"ref": "main"}"#;
    let sig = sluice_automation::api::signature::sign(HOOK_SECRET, None, body);
    let resp = client()
        .post(format!("{}/api/v1/hooks/deploy", s.base))
        .header("x-sluice-signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let out: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(out["runs"][0]["decision"], "kill_switch", "{out}");
    // People can still run things by hand.
    let id = s.trigger("echo", json!({"who": "bob"})).await;
    assert_eq!(s.wait_final(&id).await["run"]["status"], "succeeded");
    let (_, metrics) = s.call("GET", "/metrics", None, None).await;
    assert!(
        metrics.as_str().unwrap().contains("sluice_kill_switch 1"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_filtered_and_paged_on_the_server() {
    let s = TestService::start("", &[("runbooks/echo.yaml", ECHO)]).await;
    let mut ids = Vec::new();
    for who in ["a", "b", "c", "d", "e"] {
        let id = s.trigger("echo", json!({"who": who})).await;
        s.wait_final(&id).await;
        ids.push(id);
    }
    // Pages of two, newest first, with no run twice or missing.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            Some(c) => format!("/api/v1/runs?runbook=echo&limit=2&cursor={}", urlencode(c)),
            None => "/api/v1/runs?runbook=echo&limit=2".to_string(),
        };
        let (st, page) = s.get(&q).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        for r in page["runs"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // Trigger and time filters.
    let (_, none) = s.get("/api/v1/runs?trigger=alert").await;
    assert_eq!(none["runs"].as_array().unwrap().len(), 0);
    let (_, manual) = s.get("/api/v1/runs?trigger=manual").await;
    assert_eq!(manual["runs"].as_array().unwrap().len(), 5);
    let (_, future) = s.get("/api/v1/runs?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["runs"].as_array().unwrap().len(), 0);
    let (_, past) = s
        .get("/api/v1/runs?until=2999-01-01T00:00:00Z&since=2000-01-01T00:00:00%2B01:00")
        .await;
    assert_eq!(past["runs"].as_array().unwrap().len(), 5);
    // Bad values are named.
    for (q, field) in [
        ("since=yesterday", "since"),
        ("fingerprint=%25%27", "fingerprint"),
        ("cursor=nonsense", "cursor"),
    ] {
        let (st, body) = s.get(&format!("/api/v1/runs?{q}")).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {body}");
        assert_eq!(body["fields"][0]["field"], field, "{body}");
    }
    s.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_notification_about_a_run_is_recorded_on_it_with_its_outcome() {
    let slack = Recorder::start().await;
    let config = format!(
        "channels:\n  ops: {{slack: {{webhook_url: \"{ok}\"}}}}\n  gone: {{slack: {{webhook_url: \"http://{addr}/gone\"}}}}\n",
        ok = slack.url(),
        addr = slack.addr
    );
    const NOISY: &str = r#"
name: noisy
notify: {on_start: [ops], on_failure: [gone, ops]}
steps:
  - id: tell
    notify: {channels: [ops], text: "working on it"}
  - id: fail
    exec: {argv: ["false"]}
"#;
    let s = TestService::start(&config, &[("runbooks/noisy.yaml", NOISY)]).await;
    let id = s.trigger("noisy", json!({})).await;
    let run = s.wait_final(&id).await;
    assert_eq!(run["run"]["status"], "failed", "{run:#}");
    // The failure notices go out after the run is final.
    eventually(10, "four deliveries on the run", || async {
        let (_, r) = s.get(&format!("/api/v1/runs/{id}")).await;
        r["deliveries"].as_array().is_some_and(|d| d.len() == 4)
    })
    .await;
    let got = s.get(&format!("/api/v1/runs/{id}")).await.1["deliveries"].clone();
    let rows: Vec<(String, String, bool)> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap().to_string(),
                d["event"].as_str().unwrap().to_string(),
                d["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    let want = |c: &str, e: &str, ok: bool| (c.to_string(), e.to_string(), ok);
    assert_eq!(
        rows,
        vec![
            want("ops", "run_started", true),
            want("ops", "info", true),
            want("gone", "run_failed", false),
            want("ops", "run_failed", true),
        ],
        "{got:#}"
    );
    let failed = &got[2];
    assert!(
        failed["error"].as_str().unwrap().contains("404"),
        "{failed:#}"
    );
    assert_eq!(failed["attempts"], 1, "a 404 is not retried");
    assert_eq!(slack.posts().len(), 3);
    s.stop().await;
}
