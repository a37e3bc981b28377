//! The service among the real tools operators already run: a real
//! Alertmanager posts to the webhook receiver and a runbook runs; a real
//! Prometheus scrapes the service's `/metrics`; promtool lints them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value as J, json};

use crate::harness::*;

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(env: &str, default: &str, package: &str) -> PathBuf {
    let bin = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        bin.exists(),
        "{} not found: install the Debian package `{package}` (see .ci/install) or set {env}",
        bin.display()
    );
    bin
}

const AM_TOKEN: &str = "alertmanager-token-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn a_real_alertmanager_alert_runs_the_runbook() {
    let rb = r#"
name: engine-down
triggers:
  - alert: EngineDown
    labels: {severity: critical}
steps:
  - id: note
    exec: {argv: [echo, "{{alert.labels.instance}} is down since {{alert.since}}"]}
"#;
    let s = TestService::start(
        &format!("alerting:\n  webhook: {{token: {AM_TOKEN}}}\n"),
        &[("runbooks/engine-down.yaml", rb)],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sluice\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: sluice\n    webhook_configs:\n      - url: {base}/api/v1/alerts/webhook\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            credentials: {AM_TOKEN}\n",
            base = s.base
        ),
    )
    .unwrap();
    let port = free_port();
    let am = format!("http://127.0.0.1:{port}");
    let _am = Guard(
        Command::new(binary(
            "ALERTMANAGER",
            "/usr/bin/prometheus-alertmanager",
            "prometheus-alertmanager",
        ))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Alertmanager"),
    );
    let http = client();
    eventually(15, "Alertmanager is ready", || async {
        http.get(format!("{am}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let starts = chrono::Utc::now() - chrono::Duration::seconds(30);
    let r = http
        .post(format!("{am}/api/v2/alerts"))
        .json(&json!([{
            "labels": {"alertname": "EngineDown", "job": "sluice-engine", "instance": "engine-7:8080", "severity": "critical"},
            "annotations": {"summary": "Sluice engine is down"},
            "startsAt": starts.to_rfc3339(),
        }]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually(20, "the runbook ran", || async {
        let runs = s.runs("engine-down").await;
        runs.len() == 1 && runs[0]["status"] == "succeeded"
    })
    .await;
    let run = &s.runs("engine-down").await[0];
    assert_eq!(run["who"], "alert:EngineDown");
    let (_, full) = s
        .get(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    let out = full["steps"][0]["outputs"]["stdout"].as_str().unwrap();
    assert!(out.starts_with("engine-7:8080 is down since "), "{out}");
    // Alertmanager re-sends the group (repeat/group interval): still one run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.runs("engine-down").await.len(), 1);
    let (_, alerts) = s.get("/api/v1/alerts").await;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "EngineDown" && a["source"]["type"] == "webhook"),
        "{alerts}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_service_and_promtool_accepts_its_metrics() {
    let s = TestService::start(
        "",
        &[(
            "runbooks/echo.yaml",
            "name: echo\nsteps:\n  - exec: {argv: [echo, hi]}\n",
        )],
    )
    .await;
    let id = s.trigger("echo", json!({})).await;
    s.wait_final(&id).await;
    let (_, text) = s.call("GET", "/metrics", None, None).await;
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains("sluice_runs_total{runbook=\"echo\",status=\"succeeded\"} 1"),
        "{text}"
    );

    // promtool's linter reads the exposition from stdin.
    let mut lint = Command::new(binary("PROMTOOL", "/usr/bin/promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let target = s.base.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let prom = format!("http://127.0.0.1:{port}");
    let _prom = Guard(
        Command::new(binary("PROMETHEUS", "/usr/bin/prometheus", "prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Prometheus"),
    );
    let http = client();
    let query = |q: &'static str| {
        let http = http.clone();
        let prom = prom.clone();
        async move {
            let r = http
                .get(format!("{prom}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            let b: J = r.json().await.ok()?;
            b["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        }
    };
    eventually(30, "Prometheus scraped the service", || async {
        query("up{job=\"sluice\"}").await.as_deref() == Some("1")
    })
    .await;
    assert_eq!(
        query("sluice_runs_total{runbook=\"echo\",status=\"succeeded\"}")
            .await
            .as_deref(),
        Some("1")
    );
    s.stop().await;
}
