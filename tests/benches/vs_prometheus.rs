//! The real Prometheus evaluating the same 1,000 alerting rules over the same
//! 100,000 series as `cargo bench -p sluice-promql --bench eval`, scraped every
//! second from a loopback exporter, so the two can be compared side by side.
//!
//! ```text
//! MINUTES=6 cargo bench -p sluice-tests --bench vs_prometheus
//! ```
//!
//! Needs Debian's `prometheus` package (`.ci/install`). Env: `SERIES` (100000),
//! `MINUTES` (6: long enough for full 5m rate windows), `PROMETHEUS` (binary).
//! The exporter advances every series by one step per scrape with the same
//! generator and seed as the eval bench, so both see the same values.
//! Prints Prometheus's own figures: rule group evaluation time, missed
//! iterations, CPU, resident memory and head series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

const SERIES_PER_METRIC: usize = 100;

/// The eval bench's generator (xorshift64, same seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

struct Exporter {
    /// Pre-rendered `name{labels} ` per series.
    prefixes: Vec<String>,
    counters: Vec<bool>,
    values: Vec<f64>,
    rng: Rng,
    types: String,
}

impl Exporter {
    fn new(series: usize) -> Self {
        let metrics = series / SERIES_PER_METRIC;
        let mut prefixes = Vec::with_capacity(series);
        let mut counters = Vec::with_capacity(series);
        let mut types = String::new();
        for m in 0..metrics {
            let counter = m.is_multiple_of(2);
            let name = if counter {
                format!("m{m}_total")
            } else {
                format!("m{m}")
            };
            let _ = writeln!(
                types,
                "# TYPE {name} {}",
                if counter { "counter" } else { "gauge" }
            );
            for inst in 0..SERIES_PER_METRIC {
                prefixes.push(format!(
                    "{name}{{instance=\"host-{inst}:9100\",job=\"job-{}\"}} ",
                    inst % 10
                ));
                counters.push(counter);
            }
        }
        let values = (0..series).map(|k| (k % 100) as f64).collect();
        Self {
            prefixes,
            counters,
            values,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            types,
        }
    }

    /// One step of every series, then the exposition text.
    fn scrape(&mut self) -> String {
        for k in 0..self.values.len() {
            let r = self.rng.next();
            if self.counters[k] {
                self.values[k] += (r % 20) as f64;
            } else {
                self.values[k] += (r % 3) as f64 - 1.0;
            }
        }
        let mut out = String::with_capacity(self.prefixes.len() * 48 + self.types.len());
        out.push_str(&self.types);
        for (p, v) in self.prefixes.iter().zip(&self.values) {
            out.push_str(p);
            let _ = writeln!(out, "{v}");
        }
        out
    }
}

/// The eval bench's 1,000 rules.
fn rules(metrics: usize) -> Vec<String> {
    (0..1000)
        .map(|i| {
            let m = (i * 7) % metrics;
            let counter = if m.is_multiple_of(2) {
                m
            } else {
                (m + 1) % metrics
            };
            let gauge = if m % 2 == 1 { m } else { (m + 1) % metrics };
            match i % 5 {
                0 | 1 => format!("m{gauge} > {}", 90 + i % 20),
                2 | 3 => format!("rate(m{counter}_total[5m]) > {}", 9 + i % 3),
                _ => format!("sum by (job) (rate(m{counter}_total[1m]))"),
            }
        })
        .collect()
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Parses Prometheus text exposition into `name{labels}` → value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sum_prefix(m: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let series = env("SERIES", 100_000);
    let minutes = env("MINUTES", 6);
    let metrics = series / SERIES_PER_METRIC;
    let prometheus = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());

    let exporter = Arc::new(Mutex::new(Exporter::new(series)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let exporter_addr: SocketAddr = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let exporter = Arc::clone(&exporter);
            async move {
                tokio::task::spawn_blocking(move || exporter.lock().expect("exporter").scrape())
                    .await
                    .unwrap_or_default()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    let rule_file = dir.path().join("rules.yml");
    let mut rules_yaml = String::from("groups:\n  - name: bench\n    interval: 1s\n    rules:\n");
    for (i, r) in rules(metrics).iter().enumerate() {
        let _ = writeln!(rules_yaml, "      - alert: R{i}\n        expr: '{r}'");
    }
    std::fs::write(&rule_file, rules_yaml)?;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: bench\n    honor_labels: true\n    static_configs:\n      - targets: ['{exporter_addr}']\n",
            rule_file.display()
        ),
    )?;
    let port = free_port();
    let web = format!("127.0.0.1:{port}");
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .arg("--storage.tsdb.retention.time=1h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {prometheus} ({e}); run .ci/install"))?;
    let _guard = KillOnDrop(child);
    // The workspace's reqwest has no bundled TLS provider; this builder installs one.
    let client = sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let metrics_url = format!("http://{web}/metrics");
    println!(
        "# Prometheus ({prometheus}) scraping {series} series every 1 s, evaluating 1000 rules every 1 s, for {minutes} min"
    );

    let start = Instant::now();
    let mut last_durations = Vec::new();
    let mut first: Option<(Instant, BTreeMap<String, f64>)> = None;
    let mut last = BTreeMap::new();
    while start.elapsed() < Duration::from_secs(minutes as u64 * 60) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Ok(resp) = client.get(&metrics_url).send().await else {
            continue;
        };
        let m = parse_metrics(&resp.text().await.unwrap_or_default());
        // Only the last minute counts: windows are full and caches warm.
        if start.elapsed() + Duration::from_secs(60) >= Duration::from_secs(minutes as u64 * 60) {
            if first.is_none() {
                first = Some((Instant::now(), m.clone()));
            }
            if let Some(d) = m
                .get("prometheus_rule_group_last_duration_seconds{rule_group=\"bench\"}")
                .or_else(|| {
                    m.iter()
                        .find(|(k, _)| k.starts_with("prometheus_rule_group_last_duration_seconds"))
                        .map(|(_, v)| v)
                })
            {
                last_durations.push(*d);
            }
        }
        last = m;
    }
    let (t_first, m_first) = first.ok_or_else(|| anyhow::anyhow!("no samples from Prometheus"))?;
    let elapsed = t_first.elapsed().as_secs_f64().max(1.0);
    last_durations.sort_by(|a, b| a.total_cmp(b));
    let median = last_durations
        .get(last_durations.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let cpu = (last
        .get("process_cpu_seconds_total")
        .copied()
        .unwrap_or(0.0)
        - m_first
            .get("process_cpu_seconds_total")
            .copied()
            .unwrap_or(0.0))
        / elapsed;
    let missed = sum_prefix(&last, "prometheus_rule_group_iterations_missed_total")
        - sum_prefix(&m_first, "prometheus_rule_group_iterations_missed_total");
    let iterations = sum_prefix(&last, "prometheus_rule_group_iterations_total")
        - sum_prefix(&m_first, "prometheus_rule_group_iterations_total");
    let rss = last
        .get("process_resident_memory_bytes")
        .copied()
        .unwrap_or(0.0);
    let head = last
        .get("prometheus_tsdb_head_series")
        .copied()
        .unwrap_or(0.0);
    let samples = last
        .get("prometheus_tsdb_head_samples_appended_total")
        .copied()
        .or_else(|| {
            Some(sum_prefix(
                &last,
                "prometheus_tsdb_head_samples_appended_total",
            ))
        })
        .unwrap_or(0.0);
    println!(
        "prometheus: eval round (rule group duration) median {:.1} ms, max {:.1} ms over the last minute",
        median * 1000.0,
        last_durations.last().copied().unwrap_or(f64::NAN) * 1000.0
    );
    println!(
        "prometheus: {iterations:.0} group iterations and {missed:.0} missed in the last minute; {cpu:.2} cores busy"
    );
    println!(
        "prometheus: RSS {:.0} MiB, {head:.0} head series ({:.0} bytes RSS per series), {samples:.0} samples appended",
        rss / 1048576.0,
        if head > 0.0 { rss / head } else { f64::NAN }
    );
    println!("compare: cargo bench -p sluice-promql --bench eval (same series, values and rules)");
    Ok(())
}
