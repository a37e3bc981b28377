//! The engine end to end through a real Kafka-protocol broker (Tansu on
//! loopback, in-memory storage): records/s of a backlog and per-record
//! latency at fixed input rates, for a filter + projection query running
//! beside a 1-minute tumbling GROUP BY over 10,000 keys.
//!
//! ```text
//! cargo bench -p sluice-tests --bench tansu_end_to_end
//! ```
//!
//! Env: `RECORDS` (backlog size, 200000), `RATES` (latency phases,
//! records/s, "1000,5000"), `SECONDS` (per latency phase, 15).
//! Everything (broker, engine, this producer and reader) shares the machine,
//! so the figures are for the whole loop on it, not for the engine alone.
//! Latency is taken per output record: arrival at this reader minus the
//! `sent_us` stamped into the input just before producing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_tests::engine_process::{EngineProcess, wait_for};
use sluice_tests::tansu::Tansu;

const KEYS: u64 = 10_000;
const PARTITIONS: i32 = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The pseudo-random bits of record `i`.
fn mix(i: u64) -> u64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x2545_f491_4f6c_dd1d;
    x ^ (x >> 29)
}

/// Whether record `i` passes the filter (`price >= 10`, 90% of them).
fn passes(i: u64) -> bool {
    !mix(i).is_multiple_of(10)
}

/// A ~200-byte order.
fn order(i: u64) -> (String, String) {
    let x = mix(i);
    let customer = x % KEYS;
    let price = if passes(i) { 10 + (x >> 20) % 190 } else { 5 };
    let statuses = ["shipped", "pending", "delivered", "returned"];
    let payload = format!(
        r#"{{"order_id":{i},"customer_id":"cust-{customer:05}","product":"widget-{:03}","quantity":{},"price":{price}.{:02},"status":"{}","region":"eu-west-1","ts":{},"sent_us":{}}}"#,
        (x >> 8) % 500,
        1 + (x >> 16) % 9,
        (x >> 40) % 100,
        statuses[((x >> 50) % 4) as usize],
        1_700_000_000_000u64 + i * 3,
        now_us(),
    );
    (format!("cust-{customer:05}"), payload)
}

async fn produce_range(p: &FutureProducer, from: u64, to: u64) -> anyhow::Result<()> {
    let mut inflight = Vec::with_capacity((to - from) as usize);
    for i in from..to {
        let (k, v) = order(i);
        loop {
            match p.send_result(FutureRecord::to("orders").key(&k).payload(&v)) {
                Ok(f) => {
                    inflight.push(f);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    for f in inflight {
        f.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Reads `large_orders` from the beginning on a thread: counts messages and
/// records the latency of each (µs) since `latency_from` outputs.
struct Reader {
    count: Arc<AtomicU64>,
    /// Arrival of the first and of the latest message.
    span: Arc<std::sync::Mutex<Option<(Instant, Instant)>>>,
    latencies: Arc<std::sync::Mutex<Vec<u64>>>,
    record_latency: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(brokers: &str) -> anyhow::Result<Self> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "bench-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset("large_orders", p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        let count = Arc::new(AtomicU64::new(0));
        let span = Arc::new(std::sync::Mutex::new(None));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record_latency = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let join = {
            let (count, span, latencies, record_latency, stop) = (
                count.clone(),
                span.clone(),
                latencies.clone(),
                record_latency.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                        let arrived = now_us();
                        let at = Instant::now();
                        {
                            let mut s = span.lock().unwrap();
                            *s = Some((s.map_or(at, |(first, _)| first), at));
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        if record_latency.load(Ordering::Relaxed)
                            && let Some(sent) = sent_us(m.payload().unwrap_or_default())
                        {
                            latencies.lock().unwrap().push(arrived.saturating_sub(sent));
                        }
                    }
                }
            })
        };
        Ok(Self {
            count,
            span,
            latencies,
            record_latency,
            stop,
            join: Some(join),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn sent_us(payload: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v["sent_us"].as_u64()
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn engine_config(brokers: &str) -> String {
    format!(
        r#"
kafka:
  brokers: {brokers}
  group_id: bench
  consumer:
    session.timeout.ms: 6000
    max.poll.interval.ms: 10000
    fetch.wait.max.ms: 10
watermarks:
  max_out_of_orderness_ms: 1000
queries:
  - name: large_orders
    sql: |
      SELECT order_id, customer_id, price * quantity AS total, UPPER(status) AS status, sent_us
      FROM orders WHERE price >= 10
    source_topic: orders
    sink_topic: large_orders
    key_column: customer_id
  - name: revenue_per_minute
    sql: |
      SELECT customer_id, window_start, COUNT(*) AS orders, SUM(price * quantity) AS revenue
      FROM orders GROUP BY customer_id, TUMBLE(ts, INTERVAL '1' MINUTE)
    source_topic: orders
    sink_topic: revenue_per_minute
admin:
  listen: 127.0.0.1:0
"#
    )
}

async fn run() -> anyhow::Result<()> {
    let records: u64 = env_or("RECORDS", 200_000);
    let seconds: u64 = env_or("SECONDS", 15);
    let rates: Vec<u64> = std::env::var("RATES")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let tansu = Tansu::start()?;
    let bs = tansu.bootstrap();
    tansu
        .create_topics(
            &["orders", "large_orders", "revenue_per_minute"],
            PARTITIONS,
        )
        .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .create()?;

    // Phase 1: a backlog of `records`, then the engine drains it.
    let t = Instant::now();
    for start in (0..records).step_by(50_000) {
        produce_range(&producer, start, (start + 50_000).min(records)).await?;
    }
    let produce_secs = t.elapsed().as_secs_f64();
    let expected: u64 = (0..records).filter(|i| passes(*i)).count() as u64;
    let reader = Reader::start(&bs)?;
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sluice-engine-under-test"));
    let engine = EngineProcess::start(bin, &engine_config(&bs), &[]).await?;
    let started = Instant::now();
    engine.wait_ready(Duration::from_secs(60)).await?;
    wait_for(Duration::from_secs(600), "the backlog's results", || {
        let n = reader.count.load(Ordering::Relaxed);
        async move { Ok((n >= expected).then_some(())) }
    })
    .await
    .with_context(|| {
        format!(
            "{} of {expected} results",
            reader.count.load(Ordering::Relaxed)
        )
    })?;
    let (first, last) = reader.span.lock().unwrap().expect("results arrived");
    let total_secs = last.duration_since(started).as_secs_f64();
    let steady_secs = last.duration_since(first).as_secs_f64().max(1e-3);
    let processed = engine
        .metric("sluice_records_processed_total{source=\"kafka\"}")
        .await?
        .unwrap_or(0.0);

    println!("## sluice-engine through Tansu (loopback, in-memory storage, 3 partitions)");
    println!();
    println!(
        "backlog: {records} records produced in {produce_secs:.1} s ({:.0} rec/s into Tansu)",
        records as f64 / produce_secs
    );
    println!(
        "drain: {expected} filter results (and window state for {KEYS} keys) in {steady_secs:.2} s after the first result = {:.0} input rec/s; {total_secs:.2} s from engine start incl. group join; engine counted {processed} inputs",
        records as f64 / steady_secs
    );

    // Phase 2: latency at fixed rates (the engine is caught up).
    println!();
    println!("| input rate (rec/s) | outputs measured | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut next = records;
    for rate in rates {
        reader.latencies.lock().unwrap().clear();
        reader.record_latency.store(true, Ordering::Relaxed);
        let tick = Duration::from_millis(10);
        let per_tick = (rate / 100).max(1);
        let mut interval = tokio::time::interval(tick);
        let phase_end = Instant::now() + Duration::from_secs(seconds);
        let mut sends = Vec::new();
        while Instant::now() < phase_end {
            interval.tick().await;
            let p = producer.clone();
            let from = next;
            next += per_tick;
            sends.push(tokio::spawn(async move {
                produce_range(&p, from, from + per_tick).await
            }));
        }
        for s in sends {
            s.await??;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        reader.record_latency.store(false, Ordering::Relaxed);
        let mut lat = reader.latencies.lock().unwrap().clone();
        lat.sort_unstable();
        println!(
            "| {rate} | {} | {:.1} | {:.1} | {:.1} |",
            lat.len(),
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0)
        );
    }
    let hist = engine
        .get("/metrics")
        .await?
        .text
        .lines()
        .filter(|l| l.starts_with("sluice_record_latency_seconds_count"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    println!();
    println!("engine: {}", hist.join(" "));
    drop(reader);
    drop(engine);
    drop(tansu);
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("tansu_end_to_end: {e:#}");
        std::process::exit(1);
    }
}
