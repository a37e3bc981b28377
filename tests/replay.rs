//! `sluice replay` reproduces what the live service does. `sluice serve`
//! (in this process) scrapes a loopback `/metrics` endpoint whose value the
//! test flips to make a rule fire, resolve and fire again; every scrape it
//! serves is also written, as the series the service stores (target labels
//! added), to a timestamped OpenMetrics file. Replaying that file with the
//! same rules and runbooks must give the same firings (alert, labels, fire
//! and resolve instants within one evaluation interval) and the same run
//! decisions (a start, then a start suppressed by the cooldown) as the
//! live service reported through its API.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use serde_json::Value as J;

const RULES: &str = r#"groups:
  - name: demo
    rules:
      - alert: DemoDown
        expr: demo_up == 0
        for: 2s
        keep_firing_for: 1s
        labels: {severity: critical}
"#;

const RUNBOOK: &str = r#"name: demo-fix
triggers:
  - alert: DemoDown
    labels: {severity: critical}
guards:
  cooldown: 1h
steps:
  - id: note
    sleep: 10ms
  - id: settle
    sleep: 10ms
"#;

/// The scrape target: the value it serves and the recording of every scrape.
struct Target {
    up: AtomicU64,
    instance: String,
    recording: Mutex<String>,
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn ms(rfc3339: &J) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap_or_else(|| panic!("{rfc3339}")))
        .unwrap()
        .timestamp_millis()
}

/// One firing seen live: labels, fired at (the evaluation), resolved at (first poll without it).
#[derive(Debug)]
struct Firing {
    labels: J,
    fired_ms: i64,
    resolved_ms: Option<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reproduces_the_live_service() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = Arc::new(Target {
        up: AtomicU64::new(1),
        instance: format!("127.0.0.1:{port}"),
        recording: Mutex::new(String::new()),
    });
    let t = target.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let t = t.clone();
            async move {
                let now = chrono::Utc::now().timestamp_millis();
                let v = t.up.load(Ordering::SeqCst);
                let secs = format!("{}.{:03}", now / 1000, now % 1000);
                let body =
                    format!("# TYPE demo_up gauge\ndemo_up{{target=\"primary\"}} {v} {secs}\n# EOF\n");
                // What the service stores: the series with its target labels.
                t.recording.lock().unwrap().push_str(&format!(
                    "# TYPE demo_up gauge\ndemo_up{{instance=\"{}\",job=\"demo\",target=\"primary\"}} {v} {secs}\n# EOF\n",
                    t.instance
                ));
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    write(&d.join("alerts/demo.yaml"), RULES);
    write(&d.join("runbooks/demo-fix.yaml"), RUNBOOK);
    let config = format!(
        r#"runbooks: [runbooks]
rules: [alerts]
store: "sqlite://{store}"
service:
  lease: 2s
  shutdown_grace: 2s
metrics:
  interval: 1s
  job: demo
  scrape: ["http://127.0.0.1:{port}/metrics"]
alerting:
  evaluation_interval: 1s
"#,
        store = d.join("service.db").display()
    );
    let cfg = d.join("sluice.yaml");
    let handle = sluice_tests::sluice::serve(d, &config).await;
    let base = format!("http://{}", handle.addr);
    let http = sluice_tests::net::client();

    // Down, up, down again, up, each held a few seconds; the alerts polled throughout.
    let script: &[(u64, u64)] = &[(4, 1), (6, 0), (5, 1), (6, 0), (5, 1)];
    let mut firings: Vec<Firing> = Vec::new();
    let began = Instant::now();
    for (secs, v) in script {
        target.up.store(*v, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(*secs);
        while Instant::now() < until {
            let body: J = http
                .get(format!("{base}/api/v1/alerts"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let now = chrono::Utc::now().timestamp_millis();
            let firing = body["alerts"].as_array().and_then(|a| {
                a.iter()
                    .find(|a| a["name"] == "DemoDown" && a["state"] == "firing")
                    .cloned()
            });
            match (firing, firings.last_mut()) {
                (Some(a), last) => {
                    let fired = ms(&a["firing_since"]);
                    if last.is_none_or(|l| l.fired_ms != fired) {
                        firings.push(Firing {
                            labels: a["labels"].clone(),
                            fired_ms: fired,
                            resolved_ms: None,
                        });
                    }
                }
                (None, Some(l)) if l.resolved_ms.is_none() => l.resolved_ms = Some(now),
                (None, _) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        began.elapsed() < Duration::from_secs(55),
        "the live part must end before the service's first re-send (60 s)"
    );
    let runs: J = http
        .get(format!("{base}/api/v1/runs?runbook=demo-fix&limit=10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    handle.shutdown().await;
    server.abort();

    // What the live service did.
    assert_eq!(firings.len(), 2, "{firings:#?}");
    assert!(
        firings.iter().all(|f| f.resolved_ms.is_some()),
        "{firings:#?}"
    );
    let runs = runs["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        runs.len(),
        1,
        "one run, the second firing was in the cooldown: {runs:#?}"
    );
    assert_eq!(runs[0]["trigger"], "alert");
    let decision = |d: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("sluice_trigger_decisions_total{")
                    && l.contains("runbook=\"demo-fix\"")
                    && l.contains(&format!("decision=\"{d}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(decision("started"), 1.0, "{metrics}");
    assert_eq!(decision("cooldown"), 1.0, "{metrics}");

    // The replay of the recording.
    let recording = d.join("recording.om");
    write(&recording, &target.recording.lock().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .arg("--rules")
        .arg(d.join("alerts"))
        .arg("--runbooks")
        .arg(d.join("runbooks"))
        .arg("--openmetrics")
        .arg(&recording)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: J = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let events = report["events"].as_array().unwrap();
    let alerts: Vec<&J> = events.iter().filter(|e| e["kind"] == "alert").collect();
    let fired: Vec<&J> = alerts
        .iter()
        .copied()
        .filter(|e| e["state"] == "firing")
        .collect();
    let resolved: Vec<&J> = alerts
        .iter()
        .copied()
        .filter(|e| e["state"] == "resolved")
        .collect();
    assert_eq!(fired.len(), 2, "{report:#}");
    assert_eq!(resolved.len(), 2, "{report:#}");
    for (live, (f, r)) in firings.iter().zip(fired.iter().zip(&resolved)) {
        assert_eq!(f["alert"], "DemoDown");
        assert_eq!(f["labels"], live.labels, "{report:#}");
        let at = f["t_ms"].as_i64().unwrap();
        assert!(
            (at - live.fired_ms).abs() <= 1000,
            "fired live at {} replayed at {at}",
            live.fired_ms
        );
        let at = r["t_ms"].as_i64().unwrap();
        let live_resolved = live.resolved_ms.unwrap();
        assert!(
            (at - live_resolved).abs() <= 1000,
            "resolved live at {live_resolved} (first poll without it) replayed at {at}"
        );
    }
    let decisions: Vec<(&str, i64)> = events
        .iter()
        .filter(|e| e["kind"] == "run")
        .map(|e| (e["decision"].as_str().unwrap(), e["t_ms"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        decisions.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        ["started", "cooldown"],
        "{report:#}"
    );
    let live_start = ms(&runs[0]["started_at"]);
    assert!(
        (decisions[0].1 - live_start).abs() <= 1000,
        "run started live at {live_start}, replayed at {}",
        decisions[0].1
    );
    let started = events.iter().find(|e| e["decision"] == "started").unwrap();
    assert_eq!(started["steps"], 2, "{started:#}");
    assert_eq!(report["summary"][0]["runs"], 1);
    assert_eq!(report["summary"][0]["suppressed"]["cooldown"], 1);

    // As a CI policy: more than 0 runs a day fails.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .arg("--openmetrics")
        .arg(&recording)
        .args(["--max-runs-per-day", "0"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("run demo-fix (alert DemoDown{"), "{text}");
    assert!(
        text.contains("suppressed: cooldown (1h, last run "),
        "{text}"
    );
}
