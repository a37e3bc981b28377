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

/// `sluice replay` with the rules and runbooks under `d`, the source `args`
/// adds, and JSON output: the report.
fn replay_json(d: &Path, args: impl FnOnce(&mut Command)) -> J {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    c.arg("replay")
        .arg("--rules")
        .arg(d.join("alerts"))
        .arg("--runbooks")
        .arg(d.join("runbooks"));
    args(&mut c);
    let out = c.args(["--format", "json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
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
    let report = replay_json(d, |c| {
        c.arg("--config")
            .arg(&cfg)
            .arg("--openmetrics")
            .arg(&recording);
    });
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

/// A rule Prometheus 2.42 and Sluice both read (no `keep_firing_for`).
const PROM_RULES: &str = r#"groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoDown
        expr: demo_up == 0
        for: 2s
        labels: {severity: critical}
"#;

/// The real Prometheus scrapes a loopback target whose value the test flips
/// and evaluates the rule itself; `sluice replay --prometheus` then reads the
/// same range back through the query API and must report one firing with
/// the labels of Prometheus's own `ALERTS` series, firing and resolving
/// within two evaluation steps of it, and the run that would start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_real_prometheus_matches_its_alerts() {
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = Arc::new(AtomicU64::new(1));
    let u = up.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let v = u.load(Ordering::SeqCst);
            async move { format!("# TYPE demo_up gauge\ndemo_up{{target=\"primary\"}} {v}\n") }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    write(&d.join("alerts/demo.yaml"), PROM_RULES);
    write(&d.join("runbooks/demo-fix.yaml"), RUNBOOK);
    write(
        &d.join("prometheus.yml"),
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            d.join("alerts/demo.yaml").display()
        ),
    );
    let prom_port = sluice_tests::net::free_port();
    let prom = format!("http://127.0.0.1:{prom_port}");
    let _prom = Guard(
        Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start Prometheus (Debian package `prometheus`, see .ci/install)"),
    );
    let http = sluice_tests::net::client();
    let query = |q: String| {
        let http = http.clone();
        let prom = prom.clone();
        async move {
            let r = http
                .get(format!("{prom}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?;
            r.json::<J>().await.ok()
        }
    };
    sluice_tests::net::eventually(
        "Prometheus scraping the target",
        Duration::from_secs(30),
        || async {
            let b = query("up{job=\"demo\"}".into()).await?;
            (b["data"]["result"][0]["value"][1] == "1").then_some(())
        },
    )
    .await;

    // Up, down long enough to fire, up again.
    let start = chrono::Utc::now().timestamp();
    for (secs, v) in [(4u64, 1u64), (8, 0), (6, 1)] {
        up.store(v, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let end = chrono::Utc::now().timestamp();
    // Prometheus's own view: the firing ALERTS series, second by second.
    let range: J = http
        .get(format!("{prom}/api/v1/query_range"))
        .query(&[
            (
                "query",
                "ALERTS{alertname=\"DemoDown\",alertstate=\"firing\"}".to_string(),
            ),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "1".to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let series = range["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "Prometheus fired once: {range:#}");
    let points = series[0]["values"].as_array().unwrap();
    let t = |p: &J| (p[0].as_f64().unwrap() * 1000.0) as i64;
    let prom_fired = t(&points[0]);
    let prom_last = t(points.last().unwrap());
    let mut prom_labels = series[0]["metric"].clone();
    prom_labels.as_object_mut().unwrap().remove("alertstate");
    prom_labels.as_object_mut().unwrap().remove("__name__");

    let report = replay_json(d, |c| {
        c.args(["--prometheus", &prom])
            .args(["--start", &start.to_string(), "--end", &end.to_string()])
            .args(["--step", "1s"]);
    });
    let events = report["events"].as_array().unwrap();
    let alert = |state: &str| -> Vec<&J> {
        events
            .iter()
            .filter(|e| e["kind"] == "alert" && e["state"] == state)
            .collect()
    };
    let (fired, resolved) = (alert("firing"), alert("resolved"));
    assert_eq!((fired.len(), resolved.len()), (1, 1), "{report:#}");
    assert_eq!(fired[0]["labels"], prom_labels, "{report:#}");
    let at = fired[0]["t_ms"].as_i64().unwrap();
    let resolved_at = resolved[0]["t_ms"].as_i64().unwrap();
    println!(
        "e2e-timing replay-vs-prometheus: fired {} ms from Prometheus's first firing ALERTS point, resolved {} ms after its last",
        at - prom_fired,
        resolved_at - prom_last
    );
    assert!(
        (at - prom_fired).abs() <= 2000,
        "Prometheus fired at {prom_fired}, the replay at {at}: {report:#}"
    );
    let at = resolved[0]["t_ms"].as_i64().unwrap();
    assert!(
        at > prom_last && at - prom_last <= 3000,
        "Prometheus last fired at {prom_last}, the replay resolved at {at}: {report:#}"
    );
    let runs: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "run")
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["started"], "{report:#}");
}
