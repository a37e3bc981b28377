//! `sluice-engine` for tests: the real binary with a generated config on free
//! loopback ports, fault injection enabled.
//!
//! [`Broker`] is an engine process that only hosts the embedded Kafka broker
//! (librdkafka's mock cluster) and the demo generator, with no queries: the
//! engines under test connect to it, so stopping, scaling or failing over an
//! engine leaves the topics, the data and the consumer group's offsets alone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value as J, json};
use tokio::process::{Child, Command};

use crate::net::{self, eventually, get_json};

/// The `sluice-engine` binary: `$SLUICE_ENGINE_BIN`, else next to the test binary's target dir.
pub fn engine_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_ENGINE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    // target/debug/deps/e2e-… → target/debug/sluice-engine
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("sluice-engine");
    assert!(
        bin.is_file(),
        "{} not built; run `cargo build --bins` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// What varies between the engines of the tests.
#[derive(Debug, Clone)]
pub struct EngineOpts {
    pub listen: String,
    /// `embedded`, or a broker's bootstrap address.
    pub brokers: String,
    pub group_id: String,
    pub demo: bool,
    pub demo_rate: u32,
    pub max_total_memory: u64,
    pub breaker_timeout_seconds: u64,
    /// Include the windowed query (its open windows hold commits back up to a minute).
    pub windowed: bool,
}

impl EngineOpts {
    pub fn new(port: u16, brokers: &str) -> Self {
        EngineOpts {
            listen: format!("127.0.0.1:{port}"),
            brokers: brokers.to_string(),
            group_id: "sluice-engine".into(),
            demo: brokers == "embedded",
            demo_rate: 200,
            max_total_memory: 64 << 20,
            breaker_timeout_seconds: 3600,
            windowed: true,
        }
    }
}

/// The test engine's config: the example's two queries (a filter and a
/// one-minute tumbling window), small limits, consumers that join promptly.
pub fn engine_yaml(o: &EngineOpts) -> String {
    let mut doc = json!({
        "kafka": {
            "brokers": o.brokers,
            "group_id": o.group_id,
            "embedded_partitions": 3,
            "demo": {"enabled": o.demo, "kind": "orders", "topic": "orders", "rate_per_second": o.demo_rate, "keys": 20},
            "consumer": {"auto.offset.reset": "earliest", "session.timeout.ms": "6000", "max.poll.interval.ms": "6000"},
            "producer": {"linger.ms": "5"}
        },
        "watermarks": {"max_out_of_orderness_ms": 2000, "late_data": "drop"},
        "queries": [
            {"name": "large_orders", "source_topic": "orders", "sink_topic": "large_orders", "key_column": "customer_id",
             "sql": "SELECT order_id, customer_id, price * quantity AS total FROM orders WHERE price * quantity > 500"},
            {"name": "revenue_per_minute", "source_topic": "orders", "sink_topic": "revenue_per_minute",
             "sql": "SELECT customer_id, window_start, window_end, COUNT(*) AS orders, SUM(price * quantity) AS revenue FROM orders GROUP BY customer_id, TUMBLE(ts, INTERVAL '1' MINUTE)"}
        ],
        "resource_limits": {"max_total_memory": o.max_total_memory, "max_operator_memory": o.max_total_memory / 2},
        "processing": {"parallelism": 1, "max_parallelism": 4, "commit_interval_ms": 200},
        "circuit_breaker": {"failure_threshold": 5, "timeout_seconds": o.breaker_timeout_seconds, "recovery_timeout": 30, "success_threshold": 2},
        "admin": {"listen": o.listen}
    });
    if !o.windowed {
        doc["queries"].as_array_mut().expect("queries").truncate(1);
    }
    // JSON is valid YAML.
    serde_json::to_string_pretty(&doc).expect("json")
}

/// Writes `yaml` to `dir/name.yaml` and returns the path.
pub fn write_config(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write engine config");
    path
}

/// An engine process started directly by the test (killed when dropped).
pub struct Engine {
    pub url: String,
    pub log: PathBuf,
    child: Child,
}

impl Engine {
    pub async fn start(dir: &Path, name: &str, yaml: &str) -> Engine {
        let config = write_config(dir, name, yaml);
        let listen: J = serde_json::from_str(yaml).unwrap_or(J::Null);
        let listen = listen["admin"]["listen"]
            .as_str()
            .expect("admin.listen")
            .to_string();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(engine_bin())
            .arg("--config")
            .arg(&config)
            .arg("--enable-fault-injection")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sluice-engine");
        let url = format!("http://{listen}");
        wait_healthy(&url).await;
        Engine { url, log, child }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// An engine process that hosts the embedded broker and the demo generator.
pub struct Broker {
    pub engine: Engine,
    pub bootstrap: String,
}

impl Broker {
    pub async fn start(dir: &Path, demo_rate: u32) -> Broker {
        let port = net::free_port();
        let yaml = serde_json::to_string_pretty(&json!({
            "kafka": {"brokers": "embedded", "group_id": "broker-host", "embedded_partitions": 3,
                      "demo": {"enabled": true, "kind": "orders", "topic": "orders", "rate_per_second": demo_rate, "keys": 20}},
            "admin": {"listen": format!("127.0.0.1:{port}")}
        }))
        .expect("json");
        let engine = Engine::start(dir, "broker", &yaml).await;
        let bootstrap = brokers_of(&engine.url).await;
        Broker { engine, bootstrap }
    }
}

/// The bootstrap address an engine's pipeline uses (its embedded broker's, when embedded).
pub async fn brokers_of(url: &str) -> String {
    eventually(
        "the engine's broker address",
        Duration::from_secs(30),
        || async {
            let t = get_json(&format!("{url}/admin/threads")).await;
            t.pointer("/pipeline/brokers")
                .and_then(J::as_str)
                .filter(|b| !b.is_empty())
                .map(str::to_string)
        },
    )
    .await
}

pub async fn wait_healthy(url: &str) {
    wait_ok(url, "/health").await
}

/// Waits until `/ready` answers 200.
pub async fn wait_ready(url: &str) {
    wait_ok(url, "/ready").await
}

async fn wait_ok(url: &str, path: &str) {
    let client = net::client();
    eventually(&format!("{url}{path}"), Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let r = client.get(format!("{url}{path}")).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await
}

/// True when something answers `/health` at `url`.
pub async fn answers(url: &str) -> bool {
    net::client()
        .get(format!("{url}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// One sample value from `/metrics`: the first series named `name` whose labels contain `labels`.
pub async fn metric(url: &str, name: &str, labels: &str) -> Option<f64> {
    let text = net::get_text(&format!("{url}/metrics")).await?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let series = l.rsplit_once(' ').map_or("", |(s, _)| s);
            (series == name || series.starts_with(&format!("{name}{{"))) && series.contains(labels)
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// `GET {url}{path}` as JSON.
pub async fn get_json_at(url: &str, path: &str) -> J {
    get_json(&format!("{url}{path}")).await
}

/// Sets faults through `/admin/fault-injection`.
pub async fn inject(url: &str, faults: J) -> J {
    net::post_json(&format!("{url}/admin/fault-injection"), faults).await
}

/// Waits until the engine has partitions assigned and has processed records.
pub async fn wait_processing(url: &str) -> f64 {
    eventually(
        &format!("records processed at {url}"),
        Duration::from_secs(60),
        || async {
            metric(url, "sluice_records_processed_total", "")
                .await
                .filter(|n| *n > 0.0)
        },
    )
    .await
}

/// Partitions assigned to an engine's consumers.
pub async fn assigned(url: &str) -> u64 {
    let t = get_json(&format!("{url}/admin/threads")).await;
    t.pointer("/pipeline/assigned_partitions")
        .and_then(J::as_u64)
        .unwrap_or(0)
}
