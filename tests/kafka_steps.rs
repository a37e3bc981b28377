//! `kafka.check`, `kafka.lag` and `kafka.reset_offsets` against a real
//! Kafka-protocol broker (Tansu): topics and partitions, lag from committed
//! offsets, resets to earliest / latest / a time, and the refusal while the
//! group has live members unless forced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as J;
use sluice_automation::exec::context::Services;
use sluice_automation::exec::executor::RunStatus;
use sluice_tests::tansu::Tansu;

use crate::support::{assert_succeeded, config, run, runbook, services};

const TOPIC: &str = "orders";

fn kafka_services(broker: &Tansu) -> Arc<Services> {
    services(
        config(&format!(
            "kafka:\n  main:\n    brokers: {}\n",
            broker.bootstrap()
        )),
        None,
    )
}

/// Writes `n` records to each partition of `topic`, stamped now.
async fn produce(broker: &Tansu, topic: &str, partitions: i32, n: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    for p in 0..partitions {
        for i in 0..n {
            let payload = format!("{{\"p\":{p},\"i\":{i}}}");
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .partition(p)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
        }
    }
}

fn group_consumer(broker: &Tansu, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "6000")
        .create()
        .unwrap()
}

/// Commits `offset` for every partition of the topic as `group` (no membership needed).
fn commit(broker: &Tansu, group: &str, partitions: i32, offset: i64) {
    let c = group_consumer(broker, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(offset))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// The group's committed offset per partition, read back through the broker.
fn committed(broker: &Tansu, group: &str, partitions: i32) -> Vec<i64> {
    let c = group_consumer(broker, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(TOPIC, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(TOPIC, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            other => panic!("partition {p}: no committed offset ({other:?})"),
        })
        .collect()
}

/// A group member that keeps polling (so it stays live) until dropped.
struct LiveMember {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveMember {
    fn join(broker: &Tansu, group: &str) -> LiveMember {
        let c = group_consumer(broker, group);
        c.subscribe(&[TOPIC]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut told = false;
            while !flag.load(Ordering::SeqCst) {
                let _ = c.poll(Duration::from_millis(100));
                if !told && c.assignment().is_ok_and(|a| a.count() > 0) {
                    let _ = tx.send(());
                    told = true;
                }
            }
            c.unsubscribe();
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the member joined the group within 30 s");
        LiveMember {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LiveMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn check_reports_partitions_and_refuses_missing_topics() {
    let broker = Tansu::start().expect("tansu");
    broker.create_topics(&[TOPIC, "payments"], 3).await.unwrap();
    let sv = kafka_services(&broker);
    let rb = runbook(&format!(
        "name: k\nsteps:\n  - id: c\n    kafka.check: {{cluster: main, topics: [{TOPIC}, payments]}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_succeeded(&out, &broker.log_text());
    let o = &out.steps["c"]["output"];
    assert_eq!(o["brokers"], 1);
    assert_eq!(o["topics"][TOPIC]["partitions"], 3);
    assert_eq!(o["topics"]["payments"]["partitions"], 3);

    let rb =
        runbook("name: k\nsteps:\n  - id: c\n    kafka.check: {cluster: main, topics: [nope]}\n");
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("c: topic `nope` does not exist"));
}

#[tokio::test]
async fn check_against_an_unreachable_cluster_fails_within_its_timeout() {
    let port = sluice_tests::net::free_port();
    let sv = services(
        config(&format!("kafka:\n  main:\n    brokers: 127.0.0.1:{port}\n")),
        None,
    );
    let rb = runbook(
        "name: k\nsteps:\n  - id: c\n    kafka.check: {cluster: main, topics: [x], timeout: 1s}\n",
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert!(err.starts_with("c: kafka metadata:"), "{err}");
}

#[tokio::test]
async fn lag_is_high_watermark_minus_committed_and_max_lag_fails() {
    let broker = Tansu::start().expect("tansu");
    broker.create_topics(&[TOPIC], 2).await.unwrap();
    produce(&broker, TOPIC, 2, 10).await;
    commit(&broker, "engine", 2, 4);
    let sv = kafka_services(&broker);
    let rb = runbook(&format!(
        "name: k\nparams:\n  max: {{type: int, default: 100}}\nsteps:\n  - id: l\n    kafka.lag: {{cluster: main, group: engine, topics: [{TOPIC}], max_lag: '{{{{params.max}}}}'}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_succeeded(&out, &broker.log_text());
    let o = &out.steps["l"]["output"];
    assert_eq!(o["total_lag"], 12);
    let mut rows: Vec<(i64, i64, i64, i64)> = o["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64().unwrap();
            (n("partition"), n("committed"), n("high"), n("lag"))
        })
        .collect();
    rows.sort();
    assert_eq!(rows, [(0, 4, 10, 6), (1, 4, 10, 6)]);

    let out = run(&sv, &rb, &[("max", "11")]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.error.as_deref(),
        Some("l: group `engine` lags 12 records (max 11)")
    );

    // A group that never committed lags by everything from the start of the log.
    let rb = runbook(&format!(
        "name: k\nsteps:\n  - id: l\n    kafka.lag: {{cluster: main, group: fresh, topics: [{TOPIC}]}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["l"]["output"]["total_lag"], 20);
}

#[tokio::test]
async fn reset_offsets_to_earliest_latest_and_a_time() {
    let broker = Tansu::start().expect("tansu");
    broker.create_topics(&[TOPIC], 2).await.unwrap();
    // Three records per partition, then a moment `between`, then seven more.
    produce(&broker, TOPIC, 2, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(&broker, TOPIC, 2, 7).await;
    commit(&broker, "engine", 2, 5);
    let sv = kafka_services(&broker);
    let reset = |to: &str| {
        runbook(&format!(
            "name: k\nparams:\n  ts: {{default: '0'}}\nsteps:\n  - id: r\n    kafka.reset_offsets: {{cluster: main, group: engine, topics: [{TOPIC}], {to}}}\n"
        ))
    };
    let out = run(&sv, &reset("to: latest"), &[]).await;
    assert_succeeded(&out, &broker.log_text());
    assert_eq!(committed(&broker, "engine", 2), [10, 10]);
    assert_eq!(out.steps["r"]["output"]["forced"], false);

    let out = run(&sv, &reset("to: earliest"), &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(committed(&broker, "engine", 2), [0, 0]);

    // The first record at or after the time is the first of the second batch.
    let at = between.to_rfc3339();
    let out = run(
        &sv,
        &reset("to: timestamp, timestamp: '{{params.ts}}'"),
        &[("ts", &at)],
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(committed(&broker, "engine", 2), [3, 3]);
    let parts: Vec<J> = out.steps["r"]["output"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    assert!(parts.iter().all(|p| p["offset"] == 3), "{parts:?}");

    // Epoch milliseconds work too (the same moment, as a number).
    let ms = between.timestamp_millis().to_string();
    commit(&broker, "engine", 2, 9);
    let out = run(
        &sv,
        &reset("to: timestamp, timestamp: '{{params.ts}}'"),
        &[("ts", &ms)],
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(committed(&broker, "engine", 2), [3, 3]);

    // A time that is not one is refused before anything is committed.
    let out = run(
        &sv,
        &reset("to: timestamp, timestamp: '{{params.ts}}'"),
        &[("ts", "yesterday")],
    )
    .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().contains("invalid timestamp `yesterday`"));
    assert_eq!(committed(&broker, "engine", 2), [3, 3]);
}

#[tokio::test]
async fn reset_offsets_refuses_while_the_group_has_live_members_unless_forced() {
    let broker = Tansu::start().expect("tansu");
    broker.create_topics(&[TOPIC], 1).await.unwrap();
    produce(&broker, TOPIC, 1, 5).await;
    commit(&broker, "engine", 1, 2);
    let sv = kafka_services(&broker);
    let reset = |force: bool| {
        runbook(&format!(
            "name: k\nsteps:\n  - id: r\n    kafka.reset_offsets: {{cluster: main, group: engine, topics: [{TOPIC}], to: latest, force: {force}}}\n"
        ))
    };
    let member = LiveMember::join(&broker, "engine");
    let out = run(&sv, &reset(false), &[]).await;
    assert_eq!(
        out.status,
        RunStatus::Failed,
        "reset while a member is live"
    );
    assert_eq!(
        out.error.as_deref(),
        Some(
            "r: group `engine` has 1 live member(s); stop the consumers first (or set `force: true`)"
        )
    );
    assert_eq!(
        committed(&broker, "engine", 1),
        [2],
        "refused, yet offsets moved"
    );

    // `force` skips Sluice's check; the broker still refuses for an active group.
    let out = run(&sv, &reset(true), &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert!(
        err.starts_with("r: the broker refused to move the offsets of group `engine`"),
        "{err}"
    );
    assert_eq!(committed(&broker, "engine", 1), [2]);

    // Once the member has left, no force is needed.
    drop(member);
    let mut out = run(&sv, &reset(false), &[]).await;
    for _ in 0..50 {
        if out.status == RunStatus::Succeeded {
            break;
        }
        // The broker may take a moment to drop the member that left.
        tokio::time::sleep(Duration::from_millis(200)).await;
        out = run(&sv, &reset(false), &[]).await;
    }
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(committed(&broker, "engine", 1), [5]);
}
