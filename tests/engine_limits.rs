//! What the engine does at a resource limit, on a running process against
//! a real broker: `reject_new_groups` counts the rejected records,
//! `evict_oldest` emits the oldest window early, `pause` stops intake and
//! loses nothing. Every hit is a visible violation.

use std::time::Duration;

use sluice_tests::engine_process::{EngineProcess, wait_for};
use sluice_tests::kafka;

use crate::engine_support::*;

const TOPICS: &[&str] = &["input", "copied", "counts"];

/// An engine whose `per_key` query may hold 5 groups, with `on_limit`.
async fn limited(bs: &str, group: &str, on_limit: &str, extra: &str) -> EngineProcess {
    let yaml = config(
        bs,
        group,
        &format!(
            "resource_limits:\n  max_aggregation_groups: 5\n  on_limit: {on_limit}\nwatermarks:\n  max_out_of_orderness_ms: 0\n{extra}"
        ),
    );
    ready_engine(&yaml, &[]).await
}

async fn group_violations(e: &EngineProcess) -> f64 {
    e.metric("sluice_resource_limit_violations_total{resource=\"groups\"}")
        .await
        .unwrap()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_new_groups_drops_and_counts_the_records_of_new_groups() {
    let broker = broker(TOPICS, 1).await;
    let bs = broker.bootstrap();
    let e = limited(&bs, "reject", "reject_new_groups", "").await;
    // 8 keys in one window: the first 5 get groups, 3 records are refused.
    let recs = records(0, 8, 8, 1_000, 1);
    produce_input(&bs, &recs).await;
    wait_for(Duration::from_secs(30), "3 violations", || async {
        Ok((group_violations(&e).await >= 3.0).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(group_violations(&e).await, 3.0);
    assert_eq!(
        e.metric("sluice_records_failed_total{source=\"kafka\"}")
            .await
            .unwrap(),
        Some(3.0)
    );
    let res = e.get("/admin/resources").await.unwrap().body;
    assert_eq!(res["violations"]["groups"], 3, "{res}");
    assert_eq!(res["limits"]["on_limit"], "reject_new_groups");
    let recs_ = e
        .get("/admin/resources/recommendations")
        .await
        .unwrap()
        .body;
    assert!(recs_.to_string().contains("limit violations"), "{recs_}");
    e.post_ok("/admin/processing/drain", None).await.unwrap();
    let counts = kafka::read_all(&bs, "counts", Duration::from_secs(10)).unwrap();
    assert_eq!(counts.len(), 5, "only the admitted groups have results");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_oldest_emits_the_oldest_window_early() {
    let broker = broker(TOPICS, 1).await;
    let bs = broker.bootstrap();
    // A huge out-of-orderness: nothing would close before the drain…
    let e = limited(&bs, "evict", "evict_oldest", "").await;
    let r = e
        .patch_config(r#"{"watermarks": {"max_out_of_orderness_ms": 600000}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    // …but 5 keys in window [1 s, 2 s) and then the same keys in [2 s, 3 s) need 10 groups.
    let mut recs = records(0, 5, 5, 1_000, 1);
    recs.extend(records(5, 10, 5, 2_000 - 5, 1));
    produce_input(&bs, &recs).await;
    let counts = kafka::read_until(&bs, "counts", Duration::from_secs(30), |m| m.len() >= 5)
        .await
        .unwrap();
    assert_eq!(counts.len(), 5, "the first window, evicted: {counts:?}");
    assert!(counts.iter().all(|m| m.json()["window_start"] == 1000));
    assert!(group_violations(&e).await >= 1.0);
    e.post_ok("/admin/processing/drain", None).await.unwrap();
    let counts = kafka::read_all(&bs, "counts", Duration::from_secs(10)).unwrap();
    assert_counts_exact(&recs, &counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_intake_until_there_is_room_and_loses_nothing() {
    let broker = broker(TOPICS, 1).await;
    let bs = broker.bootstrap();
    // Windows of a quiet source close after 1 s; that frees the groups.
    let e = limited(&bs, "pause", "pause", "  idle_timeout_ms: 1000\n").await;
    // 10 keys per window, 3 windows: every window overflows the 5 groups.
    let recs = records(0, 30, 10, 1_000, 100);
    produce_input(&bs, &recs).await;
    let waiting = wait_for(
        Duration::from_secs(30),
        "a record waiting for room",
        || async {
            let t = e.get("/admin/threads").await?.body;
            let w = t["pipeline"]["records_waiting_for_room"]
                .as_u64()
                .unwrap_or(0);
            Ok((w > 0).then_some(t))
        },
    )
    .await
    .unwrap();
    assert_eq!(waiting["workers"][0]["activity"], "paused", "{waiting}");
    // Eventually everything is in: every record counted exactly once.
    let counts = kafka::read_until(&bs, "counts", Duration::from_secs(60), |m| {
        window_results(m)
            .values()
            .flatten()
            .map(|(n, _)| n)
            .sum::<i64>()
            == 30
    })
    .await
    .unwrap();
    assert_counts_exact(&recs, &counts);
    assert!(group_violations(&e).await >= 1.0);
    assert_eq!(
        e.metric("sluice_records_failed_total{source=\"kafka\"}")
            .await
            .unwrap(),
        Some(0.0),
        "nothing rejected"
    );
    let copied = kafka::read_all(&bs, "copied", Duration::from_secs(10)).unwrap();
    assert_eq!(ids(&copied).len(), 30);
}
