//! The engine's delivery guarantee through a real Kafka-protocol broker
//! (Tansu): kill -9 mid-stream, drain and restart, pipeline restarts and
//! parallelism changes never lose an input record's effect.

use std::time::Duration;

use sluice_tests::engine_process::{EngineProcess, wait_for};
use sluice_tests::kafka;

use crate::engine_support::*;

const TOPICS: &[&str] = &["input", "copied", "counts"];

async fn drain(e: &EngineProcess) -> serde_json::Value {
    e.post_ok("/admin/processing/drain", None)
        .await
        .expect("drain")
}

/// Once the engine has read all of `recs`: every id is in `copied`, a drain
/// commits every input offset, and every window has a complete result.
/// Returns the pass-through output.
async fn assert_nothing_lost(e: &EngineProcess, bs: &str, recs: &[Rec]) -> Vec<kafka::Msg> {
    let copied = kafka::read_until(bs, "copied", Duration::from_secs(120), |m| {
        ids(m).len() == recs.len()
    })
    .await
    .unwrap();
    let seen = ids(&copied);
    let missing: Vec<&str> = recs
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !seen.contains(*id))
        .collect();
    if !missing.is_empty() {
        panic!(
            "{} ids never delivered, e.g. {:?}\n{}\n{}",
            missing.len(),
            &missing[..missing.len().min(20)],
            where_is(e, bs, &missing).await,
            e.log()
        );
    }
    wait_consumed(e, recs.len() as i64).await;
    let report = drain(e).await;
    assert_eq!(
        committed_total(&report),
        recs.len() as i64,
        "after the drain every input offset is committed: {report}"
    );
    let counts = kafka::read_all(bs, "counts", Duration::from_secs(30)).unwrap();
    assert_every_window_complete(recs, &counts);
    copied
}

/// Where the missing records are: their input partitions, what the group
/// committed, what the engine has read.
async fn where_is(e: &EngineProcess, bs: &str, missing: &[&str]) -> String {
    let input = kafka::read_all(bs, "input", Duration::from_secs(30)).unwrap_or_default();
    let mut per_partition: std::collections::BTreeMap<i32, (usize, usize)> = Default::default();
    for m in &input {
        let id = m.json()["id"].as_str().unwrap_or_default().to_owned();
        let e = per_partition.entry(m.partition).or_default();
        e.0 += 1;
        if missing.contains(&id.as_str()) {
            e.1 += 1;
        }
    }
    let state = e
        .get("/admin/state/export")
        .await
        .map(|r| r.body)
        .unwrap_or_default();
    let threads = e
        .get("/admin/threads")
        .await
        .map(|r| r.body)
        .unwrap_or_default();
    format!(
        "input partition → (records, missing): {per_partition:?}\nengine positions: {}\nengine committed: {}\npipeline: {}\nworkers: {}",
        state["positions"], state["committed"], threads["pipeline"], threads["workers"]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_no_record() {
    let broker = broker(TOPICS, 3).await;
    let bs = broker.bootstrap();
    let extra = "watermarks:\n  max_out_of_orderness_ms: 0\n  partition_idle_timeout_ms: 3000\n";
    let mut e = ready_engine(&config(&bs, "kill9", extra), &[]).await;

    // 4,000 records over ~20 s of event time, produced in bursts while the engine runs.
    let recs = records(0, 4000, 7, 1_000_000, 5);
    let feed = feed(&bs, &recs, 200);
    // Kill -9 well into the stream: windows closed and delivered, offsets
    // committed past them, later windows still open, results in flight.
    let bs2 = bs.clone();
    let at_kill = wait_for(
        Duration::from_secs(90),
        "1,000 input offsets committed",
        || {
            let bs = bs2.clone();
            async move {
                let c =
                    tokio::task::spawn_blocking(move || kafka::committed(&bs, "kill9", "input"))
                        .await??;
                Ok((c.values().sum::<i64>() >= 1000).then_some(c))
            }
        },
    )
    .await
    .unwrap();
    e.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    e.start_again().expect("restart");
    feed.await.unwrap();
    assert!(
        at_kill.values().sum::<i64>() < recs.len() as i64,
        "the kill came before the end: {at_kill:?}"
    );

    // Everything consumed again from the last commit: every id, every window.
    let copied = assert_nothing_lost(&e, &bs, &recs).await;
    assert!(
        copied.len() >= recs.len(),
        "at-least-once: re-read records may repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_engine_restarts_with_no_loss() {
    let broker = broker(TOPICS, 3).await;
    let bs = broker.bootstrap();
    let extra = "watermarks:\n  max_out_of_orderness_ms: 60000\n";
    let mut e = ready_engine(&config(&bs, "drain", extra), &[]).await;
    let first = records(0, 300, 5, 5_000, 10);
    produce_input(&bs, &first).await;
    wait_for(Duration::from_secs(60), "first batch consumed", || async {
        Ok((processed(&e).await >= 300.0).then_some(()))
    })
    .await
    .unwrap();

    // The seed's emergency stop: maintenance, drain, stop.
    let m = e.post_ok("/admin/maintenance/enable", None).await.unwrap();
    assert_eq!(m["maintenance"], true);
    let report = drain(&e).await;
    assert_eq!(report["report"]["already_drained"], false, "{report}");
    let flushed = report["report"]["windows_flushed"].as_u64().unwrap();
    assert_eq!(
        flushed, 3,
        "300 records × 10 ms = 3 one-second windows: {report}"
    );
    assert_eq!(report["report"]["records_consumed"], 300);
    assert_eq!(committed_total(&report), 300, "{report}");
    // Idempotent: a second drain has nothing left to do and says so.
    let again = drain(&e).await;
    assert_eq!(again["report"]["already_drained"], true, "{again}");
    assert_eq!(again["report"]["windows_flushed"], 0);
    assert_eq!(again["report"]["results_delivered"], 0);
    assert_eq!(committed_total(&again), 300);

    // Records arriving while drained are not consumed…
    let second = records(300, 600, 5, 5_000, 10);
    produce_input(&bs, &second).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        processed(&e).await,
        300.0,
        "intake stays paused after a drain"
    );
    assert_eq!(e.terminate().unwrap(), 0, "clean exit on SIGTERM");

    // …and after the restart (the seed's emergency recovery) they are.
    e.start_again().unwrap();
    e.wait_ready(Duration::from_secs(60))
        .await
        .expect("ready after restart");
    e.post_ok("/admin/maintenance/disable", None).await.unwrap();
    wait_for(Duration::from_secs(60), "second batch consumed", || async {
        Ok((processed(&e).await >= 300.0).then_some(()))
    })
    .await
    .unwrap();
    let report = drain(&e).await;
    assert_eq!(committed_total(&report), 600, "{report}");
    let all: Vec<Rec> = first.iter().chain(&second).cloned().collect();
    let copied = kafka::read_all(&bs, "copied", Duration::from_secs(30)).unwrap();
    assert_eq!(copied.len(), 600, "each record delivered exactly once");
    assert_eq!(ids(&copied).len(), 600);
    let counts = kafka::read_all(&bs, "counts", Duration::from_secs(30)).unwrap();
    assert_counts_exact(&all, &counts);
    assert_every_window_complete(&all, &counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_restart_and_parallelism_changes_lose_nothing() {
    let broker = broker(TOPICS, 4).await;
    let bs = broker.bootstrap();
    let extra = "watermarks:\n  max_out_of_orderness_ms: 0\n  partition_idle_timeout_ms: 3000\n";
    let e = ready_engine(&config(&bs, "scale", extra), &[]).await;
    let recs = records(0, 3000, 8, 2_000_000, 5);
    let feed = feed(&bs, &recs, 150);
    let at = |n: f64| {
        let e = &e;
        async move {
            wait_for(Duration::from_secs(60), "progress", || async {
                Ok((processed(e).await >= n).then_some(()))
            })
            .await
            .unwrap()
        }
    };
    at(500.0).await;
    let r = e.post_ok("/admin/processing/restart", None).await.unwrap();
    assert_eq!(r["restarted"], true);
    assert_eq!(r["status"]["restarts"], 1);
    at(800.0).await;
    let r = e
        .patch_config(r#"{"processing": {"parallelism": 2}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["pipeline_restarted"], true);
    assert_eq!(r.body["config"]["processing"]["parallelism"], 2);
    let last = std::sync::Mutex::new(serde_json::Value::Null);
    wait_for(
        Duration::from_secs(60),
        "two workers with partitions",
        || async {
            let t = e.get("/admin/threads").await?.body;
            let workers = t["workers"].as_array().map(|w| w.len()).unwrap_or(0);
            let ok = workers == 2 && t["pipeline"]["assigned_partitions"] == 4;
            *last.lock().unwrap() = t;
            Ok(ok.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}: {}\n{}", last.lock().unwrap(), e.log()));
    // Above max_parallelism is refused and changes nothing.
    let before = e.get("/admin/config").await.unwrap().body;
    let r = e
        .patch_config(r#"{"processing": {"parallelism": 99}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("processing.parallelism"), "{}", r.text);
    assert_eq!(e.get("/admin/config").await.unwrap().body, before);
    at(2000.0).await;
    let r = e
        .patch_config(r#"{"processing": {"parallelism": 1}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    feed.await.unwrap();
    assert_nothing_lost(&e, &bs, &recs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_keeps_windows_rebuilds_them_after_the_restart() {
    let broker = broker(TOPICS, 2).await;
    let bs = broker.bootstrap();
    let extra = "watermarks:\n  max_out_of_orderness_ms: 600000\n";
    let mut e = ready_engine(&config(&bs, "keep", extra), &[]).await;
    let recs = records(0, 100, 4, 3_000, 10);
    produce_input(&bs, &recs).await;
    wait_consumed(&e, 100).await;
    let bad = e
        .post("/admin/processing/drain?windows=later", None)
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text);
    let report = e
        .post_ok("/admin/processing/drain?windows=keep", None)
        .await
        .unwrap();
    assert_eq!(report["windows"], "keep");
    assert_eq!(report["report"]["windows_flushed"], 0, "{report}");
    assert_eq!(report["report"]["windows_kept"], 1);
    assert!(
        committed_total(&report) < 100,
        "offsets stay below the kept window's records: {report}"
    );
    assert!(
        kafka::read_all(&bs, "counts", Duration::from_secs(5))
            .unwrap()
            .is_empty(),
        "no partial window results"
    );
    assert_eq!(e.terminate().unwrap(), 0);
    e.start_again().unwrap();
    e.wait_ready(Duration::from_secs(60)).await.unwrap();
    wait_consumed(&e, 100).await;
    let report = drain(&e).await;
    assert_eq!(
        report["report"]["windows_flushed"], 1,
        "rebuilt from Kafka: {report}"
    );
    let counts = kafka::read_all(&bs, "counts", Duration::from_secs(10)).unwrap();
    assert_counts_exact(&recs, &counts);
}
