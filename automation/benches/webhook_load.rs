//! Issue 6's load test, as a benchmark that prints numbers: a real `sluice
//! serve` process with the shipped runbooks and rules plus one alert-triggered
//! runbook (cooldown 1 h); 10,000 Alertmanager notifications per second for
//! 10 s on loopback, carrying 1,000 distinct fingerprints. Checks that exactly
//! one run per fingerprint was recorded (no loss, no duplicate), and reports
//! idle and peak RSS of the service and the request latency.
//!
//! cargo bench -p sluice-automation --bench webhook_load
//! (RATE, SECONDS and FINGERPRINTS override the defaults.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value as J, json};

/// The allocator the `sluice` binary ships with (see its `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn payload(instance: u64) -> String {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"LoadTest\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "sluice", "groupLabels": {"alertname": "LoadTest"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "LoadTest", "instance": format!("engine-{instance}"), "severity": "critical"},
            "annotations": {"summary": "load"},
            "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph"
        }]
    })
    .to_string()
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env_num("RATE", 10_000);
    let seconds = env_num("SECONDS", 10);
    let fingerprints = env_num("FINGERPRINTS", 1_000);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let rb_dir = dir.path().join("runbooks");
    std::fs::create_dir_all(&rb_dir).unwrap();
    for e in std::fs::read_dir(repo.join("runbooks")).unwrap().flatten() {
        std::fs::copy(e.path(), rb_dir.join(e.file_name())).unwrap();
    }
    std::fs::write(
        rb_dir.join("load.yaml"),
        "name: load-remediate\ntriggers:\n  - alert: LoadTest\nguards:\n  cooldown: 1h\nsteps:\n  - id: act\n    sleep: 10ms\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{}\nrunbooks: [{}]\nrules: [{}]\nservice:\n  data_dir: {}\n",
        std::fs::read_to_string(repo.join("sluice.yaml"))
            .unwrap()
            .replace("scrape: [primary]", "scrape: []"),
        rb_dir.display(),
        repo.join("alerts").display(),
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("sluice.yaml"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sluice.yaml"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-watch"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice serve (cargo builds it for benches)");
    let pid = child.id();
    let _guard = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "sluice serve did not start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid, "VmRSS:");
    let runbooks: J = http
        .get(format!("{base}/api/v1/runbooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded = runbooks["runbooks"].as_array().map_or(0, Vec::len);
    let rules = runbooks["files"]
        .as_array()
        .map_or(0, |f| f.iter().filter(|x| x["kind"] == "rules").count());
    println!(
        "idle: {loaded} runbooks, {rules} rule file(s) loaded; RSS {:.1} MiB",
        idle as f64 / 1024.0
    );

    // Load: `workers` connections, each paced to its share of the rate.
    let workers = 64u64;
    let per_worker = rate as f64 / workers as f64;
    let total = rate * seconds;
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, sent, errors) = (http.clone(), sent.clone(), errors.clone());
        let url = format!("{base}/api/v1/alerts/webhook");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity((total / workers) as usize + 1);
            let mut i = 0u64;
            loop {
                let n = w + i * workers;
                if n >= total {
                    break;
                }
                let due = started + Duration::from_secs_f64(i as f64 / per_worker);
                tokio::time::sleep_until(due.into()).await;
                let body = payload(n % fingerprints);
                let t = Instant::now();
                match http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {}
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat.push(t.elapsed().as_micros() as u64);
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            lat
        }));
    }
    let mut lat: Vec<u64> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let n = sent.load(Ordering::Relaxed);
    println!(
        "load: {n} notifications in {:.2} s = {:.0}/s ({} errors); latency ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        quantile(&lat, 0.999),
        quantile(&lat, 1.0)
    );

    // Every run finishes quickly; then count what was recorded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut runs: Vec<J> = Vec::new();
    while Instant::now() < deadline {
        let b: J = http
            .get(format!(
                "{base}/api/v1/runs?runbook=load-remediate&limit=1000"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        runs = b["runs"].as_array().cloned().unwrap_or_default();
        let active: J = http
            .get(format!("{base}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if runs.len() as u64 >= fingerprints.min(1000)
            && active["active_runs"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let started_runs =
        value("sluice_trigger_decisions_total{runbook=\"load-remediate\",decision=\"started\"}");
    let succeeded = value("sluice_runs_total{runbook=\"load-remediate\",status=\"succeeded\"}");
    let received = value("sluice_alerts_received_total{source=\"webhook\",kind=\"firing\"}");
    let mut fps: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["request"]["alert"]["labels"]["instance"].as_str())
        .collect();
    fps.sort_unstable();
    fps.dedup();
    println!(
        "runs: {} recorded, {} distinct fingerprints, {started_runs} started, {succeeded} succeeded; {received} alerts received",
        runs.len(),
        fps.len()
    );
    println!(
        "RSS: idle {:.1} MiB, peak under load {:.1} MiB",
        idle as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    let ok = started_runs as u64 == fingerprints
        && succeeded as u64 == fingerprints
        && fps.len() as u64 == fingerprints
        && received as u64 == n;
    println!(
        "{}",
        if ok {
            "OK: exactly one run per fingerprint, none lost, none duplicated"
        } else {
            "FAILED: run count does not match the fingerprints"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
