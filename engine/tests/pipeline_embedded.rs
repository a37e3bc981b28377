//! The whole data path in-process through librdkafka's mock cluster:
//! produce JSON to the source topic, read the results from the sink topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_engine::config;
use sluice_engine::engine::Engine;

const CONFIG: &str = r#"
kafka:
  brokers: embedded
  group_id: it-group
  embedded_partitions: 2
processing:
  batch_size: 50
  commit_interval_ms: 100
circuit_breaker:
  failure_threshold: 3
  timeout_seconds: 1
  success_threshold: 1
watermarks:
  max_out_of_orderness_ms: 0
queries:
  - name: big
    sql: SELECT id, amount * 2 AS doubled FROM input WHERE amount >= 10
    source_topic: input
    sink_topic: big
    key_column: id
  - name: per_window
    sql: |
      SELECT k, window_start, COUNT(*) AS n, SUM(amount) AS total
      FROM input GROUP BY k, TUMBLE(ts, INTERVAL '10' SECOND)
    source_topic: input
    sink_topic: windows
"#;

async fn produce(brokers: &str, records: &[(String, String)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (key, payload) in records {
        p.send(
            FutureRecord::to("input").key(key).payload(payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
}

/// Reads `topic` from the beginning until `want` messages or the deadline.
async fn read(
    brokers: &str,
    topic: &str,
    want: usize,
    deadline: Duration,
) -> Vec<(Option<String>, String)> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < end {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    out
}

fn engine(faults: bool) -> Arc<Engine> {
    Engine::new(config::load_str("it.yaml", CONFIG).unwrap(), None, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_and_windows_through_the_mock_cluster() {
    let e = engine(false);
    e.start_pipeline().await.unwrap();
    let brokers = e.brokers().unwrap();
    let mut recs = Vec::new();
    for i in 0..100 {
        let k = format!("k{}", i % 4);
        recs.push((
            k.clone(),
            format!(
                r#"{{"id":"id{i}","k":"{k}","amount":{},"ts":{}}}"#,
                i % 20,
                1000 + i * 100
            ),
        ));
    }
    // One record far ahead closes the windows [0,10s).
    recs.push((
        "k0".into(),
        r#"{"id":"last","k":"k0","amount":0,"ts":60000}"#.into(),
    ));
    produce(&brokers, &recs).await;

    let big = read(&brokers, "big", 50, Duration::from_secs(30)).await;
    assert_eq!(big.len(), 50, "records with amount >= 10");
    let first = big
        .iter()
        .find(|(k, _)| k.as_deref() == Some("id10"))
        .expect("id10 result keyed by id");
    assert_eq!(first.1, r#"{"id":"id10","doubled":20}"#);

    let windows = read(&brokers, "windows", 4, Duration::from_secs(30)).await;
    assert_eq!(windows.len(), 4, "{windows:?}");
    let mut total_n = 0;
    for (key, payload) in &windows {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(v["window_start"], 0);
        assert_eq!(
            key.as_deref(),
            v["k"].as_str(),
            "key defaults to the group key"
        );
        total_n += v["n"].as_i64().unwrap();
    }
    assert_eq!(
        total_n, 90,
        "ts = 1000 + 100 i: i in 0..90 fall in [0 s, 10 s)"
    );

    // Metrics reflect the work.
    let text = e.metrics.render(&[e.breaker.snapshot()]);
    assert!(
        text.contains("sluice_records_processed_total{source=\"kafka\"} 101\n"),
        "{text}"
    );
    e.stop_pipeline().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_under_sink_failures_and_nothing_is_lost() {
    let e = engine(true);
    e.start_pipeline().await.unwrap();
    let brokers = e.brokers().unwrap();
    e.faults
        .as_ref()
        .unwrap()
        .apply(&sluice_engine::fault::FaultRequest {
            sink_failures: Some(6),
            ..Default::default()
        })
        .unwrap();
    let recs: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("k{i}"),
                format!(r#"{{"id":"f{i}","k":"a","amount":50,"ts":{}}}"#, 1000 + i),
            )
        })
        .collect();
    produce(&brokers, &recs).await;
    // The breaker opens after 3 failures, half-opens after 1 s, recovers.
    let start = Instant::now();
    let mut saw_open = false;
    while start.elapsed() < Duration::from_secs(20) {
        if e.breaker.snapshot().times_opened > 0 {
            saw_open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_open, "breaker should open under injected failures");
    let out = read(&brokers, "big", 20, Duration::from_secs(30)).await;
    let mut ids: Vec<String> = out.iter().map(|(_, p)| p.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        20,
        "every record delivered once the sink recovers"
    );
    assert_eq!(
        e.breaker.state(),
        sluice_engine::circuit_breaker::BreakerState::Closed
    );
    let snap = e.breaker.snapshot();
    assert!(snap.failures_total >= 6);
    e.stop_pipeline().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_export_import_gives_identical_window_results() {
    let a = engine(false);
    a.start_pipeline().await.unwrap();
    let brokers = a.brokers().unwrap();
    let recs: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("k{}", i % 3),
                format!(
                    r#"{{"id":"s{i}","k":"k{}","amount":{i},"ts":{}}}"#,
                    i % 3,
                    1000 + i * 10
                ),
            )
        })
        .collect();
    produce(&brokers, &recs).await;
    // Wait until all 30 are in the open window, then snapshot in maintenance.
    let start = Instant::now();
    loop {
        let figures = a.query_figures();
        if figures
            .iter()
            .any(|f| f.name == "per_window" && f.records_in == 30)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "records not consumed: {figures:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.set_maintenance(true);
    let doc = {
        let guard = a.pipeline.lock().await;
        guard.as_ref().unwrap().export().await.unwrap()
    };
    let per_window = doc.queries.iter().find(|q| q.name == "per_window").unwrap();
    assert_eq!(per_window.windows.len(), 1);
    assert_eq!(per_window.windows[0].groups.len(), 3);
    let state_doc = sluice_engine::state::StateDocument {
        version: sluice_engine::state::STATE_VERSION,
        engine_version: "test".into(),
        exported_at: String::new(),
        group_id: "it-group".into(),
        queries: doc.queries.clone(),
        positions: doc.positions.clone(),
        committed: doc.committed.clone(),
    };
    // Drain A: its window results.
    let report = a
        .pipeline
        .lock()
        .await
        .as_ref()
        .unwrap()
        .drain(sluice_engine::pipeline::DrainWindows::Emit)
        .await
        .unwrap();
    assert_eq!(report.windows_flushed, 1);
    let a_results = read(&brokers, "windows", 3, Duration::from_secs(20)).await;
    assert_eq!(a_results.len(), 3);

    // A second engine state, built only from the document, drains to the same results.
    let cfg = config::load_str("it.yaml", CONFIG).unwrap();
    let plan = sluice_engine::sql::plan(&cfg.queries[1].sql.value).unwrap();
    let mut q = sluice_engine::query::Query::new("per_window", plan, Default::default());
    sluice_engine::state::import_query(&mut q, &[per_window]).unwrap();
    let mut out = sluice_engine::query::OutputBatch::default();
    q.flush(&mut out);
    let mut b_texts = out.texts();
    let mut a_texts: Vec<String> = a_results.into_iter().map(|(_, p)| p).collect();
    a_texts.sort();
    b_texts.sort();
    assert_eq!(a_texts, b_texts);
    assert!(
        sluice_engine::state::check_compatible(
            &state_doc,
            &[
                ("big".into(), cfg.queries[0].sql.value.clone()),
                ("per_window".into(), cfg.queries[1].sql.value.clone())
            ]
        )
        .is_ok()
    );
    a.stop_pipeline().await;
}
