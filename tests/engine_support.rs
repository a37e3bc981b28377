//! What the engine end-to-end tests share: the engine binary, a broker with
//! topics, generated order records and the window results they must produce.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sluice_tests::engine_process::EngineProcess;
use sluice_tests::kafka::Msg;
use sluice_tests::tansu::Tansu;

pub fn engine_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-engine-under-test"))
}

/// A Tansu broker with `topics` created (`input` gets `partitions`, the rest 1).
pub async fn broker(topics: &[&str], partitions: i32) -> Tansu {
    let t = Tansu::start().expect("start tansu");
    t.create_topics(&topics[..1], partitions)
        .await
        .expect("create source topic");
    if topics.len() > 1 {
        t.create_topics(&topics[1..], 1)
            .await
            .expect("create sink topics");
    }
    t
}

/// Engine config through `brokers`: a pass-through query `copy` (input →
/// `copied`, keyed by id) and a 1-second tumbling count/sum per key `per_key`
/// (input → `counts`). `extra` is appended (more top-level sections).
pub fn config(brokers: &str, group: &str, extra: &str) -> String {
    format!(
        r#"
kafka:
  brokers: {brokers}
  group_id: {group}
  consumer:
    session.timeout.ms: 6000
    max.poll.interval.ms: 10000
    heartbeat.interval.ms: 500
{debug}processing:
  batch_size: 100
  commit_interval_ms: 200
queries:
  - name: copy
    sql: SELECT id, k, amount FROM input
    source_topic: input
    sink_topic: copied
    key_column: id
  - name: per_key
    sql: |
      SELECT k, window_start, COUNT(*) AS n, SUM(amount) AS total
      FROM input GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)
    source_topic: input
    sink_topic: counts
admin:
  listen: 127.0.0.1:0
{extra}
"#,
        debug = std::env::var("SLUICE_TEST_KAFKA_DEBUG")
            .map(|d| format!("    debug: {d}\n"))
            .unwrap_or_default()
    )
}

/// One generated input record.
#[derive(Debug, Clone)]
pub struct Rec {
    pub id: String,
    pub k: String,
    pub amount: i64,
    pub ts: i64,
}

impl Rec {
    /// Keyed by `k`, so one key stays in one partition (in event-time order).
    pub fn kafka(&self) -> (String, String) {
        (
            self.k.clone(),
            format!(
                r#"{{"id":"{}","k":"{}","amount":{},"ts":{}}}"#,
                self.id, self.k, self.amount, self.ts
            ),
        )
    }
}

/// Records `from..to`: `keys` keys round robin, event time `ts0 + i * step_ms`.
pub fn records(from: usize, to: usize, keys: usize, ts0: i64, step_ms: i64) -> Vec<Rec> {
    (from..to)
        .map(|i| Rec {
            id: format!("r{i}"),
            k: format!("k{}", i % keys),
            amount: (i % 17) as i64 + 1,
            ts: ts0 + i as i64 * step_ms,
        })
        .collect()
}

pub fn kafka_records(recs: &[Rec]) -> Vec<(String, String)> {
    recs.iter().map(Rec::kafka).collect()
}

/// (k, window_start) → (count, sum) for 1-second tumbling windows.
pub fn expected_windows(recs: &[Rec]) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut m: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for r in recs {
        let e = m
            .entry((r.k.clone(), r.ts.div_euclid(1000) * 1000))
            .or_default();
        e.0 += 1;
        e.1 += r.amount;
    }
    m
}

/// (k, window_start) → every (n, total) result emitted for it.
pub fn window_results(msgs: &[Msg]) -> BTreeMap<(String, i64), Vec<(i64, i64)>> {
    let mut m: BTreeMap<(String, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for msg in msgs {
        let v = msg.json();
        let key = (
            v["k"].as_str().expect("k").to_owned(),
            v["window_start"].as_i64().expect("window_start"),
        );
        m.entry(key).or_default().push((
            v["n"].as_i64().expect("n"),
            v["total"].as_i64().expect("total"),
        ));
    }
    m
}

/// Ids seen in the pass-through output.
pub fn ids(msgs: &[Msg]) -> BTreeSet<String> {
    msgs.iter()
        .map(|m| m.json()["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Every window of the input has a result that counts all of its records
/// (at-least-once: repeats allowed, a missing or short one is a loss).
pub fn assert_every_window_complete(recs: &[Rec], counts: &[Msg]) {
    let want = expected_windows(recs);
    let got = window_results(counts);
    let mut missing = Vec::new();
    for (key, expected) in &want {
        let results = got.get(key).cloned().unwrap_or_default();
        if !results.contains(expected) {
            missing.push(format!("{key:?}: want {expected:?}, got {results:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} windows lack a complete result:\n{}",
        missing.len(),
        want.len(),
        missing
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Per key, the counts of all results add up to exactly the input records
/// (no loss and no duplicate).
pub fn assert_counts_exact(recs: &[Rec], counts: &[Msg]) {
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for r in recs {
        *want.entry(r.k.clone()).or_default() += 1;
    }
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for ((k, _), rs) in window_results(counts) {
        *got.entry(k).or_default() += rs.iter().map(|(n, _)| n).sum::<i64>();
    }
    assert_eq!(got, want, "per-key record counts across all window results");
}

/// Sum of the offsets a drain report says were committed.
pub fn committed_total(report: &serde_json::Value) -> i64 {
    report["report"]["committed"]
        .as_array()
        .expect("committed")
        .iter()
        .filter(|c| c["topic"] == "input")
        .map(|c| c["offset"].as_i64().expect("offset"))
        .sum()
}

/// Reads the engine's `sluice_records_processed_total`.
pub async fn processed(e: &EngineProcess) -> f64 {
    e.metric("sluice_records_processed_total{source=\"kafka\"}")
        .await
        .expect("metrics")
        .unwrap_or(0.0)
}

/// Waits until the engine's read positions cover `total` input records
/// (offsets start at 0 and are contiguous, so positions add up to the count).
pub async fn wait_consumed(e: &EngineProcess, total: i64) {
    sluice_tests::engine_process::wait_for(
        std::time::Duration::from_secs(120),
        "every input record read",
        || async {
            let doc = e.get("/admin/state/export").await?;
            let read: i64 = doc.body["positions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| p["topic"] == "input")
                        .filter_map(|p| p["offset"].as_i64())
                        .sum()
                })
                .unwrap_or(0);
            Ok((read >= total).then_some(()))
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", e.log()));
}

/// Starts the engine under test with `config` and waits until it is ready.
pub async fn ready_engine(config: &str, args: &[&str]) -> EngineProcess {
    let e = EngineProcess::start(engine_bin(), config, args)
        .await
        .expect("start engine");
    e.wait_ready(std::time::Duration::from_secs(60))
        .await
        .expect("engine ready");
    e
}

/// Produces `recs` to `input` in bursts of `chunk` records every 100 ms, in the background.
pub fn feed(brokers: &str, recs: &[Rec], chunk: usize) -> tokio::task::JoinHandle<()> {
    let p = sluice_tests::kafka::producer(brokers).expect("producer");
    let batches: Vec<Vec<(String, String)>> = recs.chunks(chunk).map(kafka_records).collect();
    tokio::spawn(async move {
        for b in batches {
            sluice_tests::kafka::produce(&p, "input", &b)
                .await
                .expect("produce");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
}

/// Produces `recs` to `input` and waits for the broker's acknowledgements.
pub async fn produce_input(brokers: &str, recs: &[Rec]) {
    let p = sluice_tests::kafka::producer(brokers).expect("producer");
    sluice_tests::kafka::produce(&p, "input", &kafka_records(recs))
        .await
        .expect("produce");
}
