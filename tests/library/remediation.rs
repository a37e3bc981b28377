//! Alert-triggered remediation runbooks, run by hand here (the alert →
//! trigger path is `sluice serve`'s): inject the fault, check the engine is
//! in the alert's condition, run the runbook, check the engine recovered.

use std::time::Duration;

use serde_json::json;
use sluice_automation::exec::executor::RunStatus;
use sluice_tests::engine::{get_json_at, inject, metric, wait_processing};
use sluice_tests::net::{delete, eventually, get_json, post_json};
use sluice_tests::sluice::{approve_next, assert_succeeded, output};
use sluice_tests::world::{World, WorldOpts};

async fn breaker_state(url: &str) -> Option<f64> {
    metric(url, "sluice_circuit_breaker_state", "name=\"sink\"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_reset_asks_first_then_closes_the_tripped_breaker() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    // The sink fails until the breaker opens (threshold 5); it stays open (timeout 1 h).
    inject(&w.primary, json!({"sink_failure_rate": 1.0})).await;
    eventually("the breaker to open", Duration::from_secs(60), || async {
        (breaker_state(&w.primary).await == Some(1.0)).then_some(())
    })
    .await;
    // Upstream is fixed; the breaker does not know yet.
    delete(&format!("{}/admin/fault-injection", w.primary)).await;
    assert_eq!(breaker_state(&w.primary).await, Some(1.0));

    // "Are you sure?" — no: nothing is reset.
    let services = w.services.clone();
    let rejecter = tokio::spawn(async move {
        let store = services.store.as_ref().expect("store");
        let run = eventually("a pending approval", Duration::from_secs(60), || async {
            store
                .pending_approvals()
                .await
                .ok()
                .and_then(|p| p.first().map(|a| a.run_id.clone()))
        })
        .await;
        store
            .decide(&run, false, "oncall", Some("not yet"))
            .await
            .unwrap();
    });
    let out = w.run("circuit-breaker-reset", &[("watch", "1s")]).await;
    rejecter.await.unwrap();
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.steps["reset"].is_null(), "reset ran after a rejection");
    assert_eq!(breaker_state(&w.primary).await, Some(1.0), "still open");
    assert!(
        w.slack
            .texts()
            .iter()
            .any(|t| t.contains("circuit-breaker-reset failed at approve")),
        "{:?}",
        w.slack.texts()
    );

    // Yes: reset, closed, and still closed after the watch.
    let approver = tokio::spawn(approve_next(w.services.clone(), "oncall"));
    let out = w.run("circuit-breaker-reset", &[("watch", "2s")]).await;
    let run_id = approver.await.unwrap();
    assert_succeeded(&out);
    assert_eq!(run_id, out.id);
    assert_eq!(output(&out, "approve")["decision"], "approved");
    assert_eq!(output(&out, "approve")["by"], "oncall");
    assert_eq!(
        output(&out, "reset")["body"]["reset"][0]["previous_state"],
        "open"
    );
    assert_eq!(breaker_state(&w.primary).await, Some(0.0));
    let stats = get_json(&format!(
        "{}/admin/circuit-breaker/monthly-stats",
        w.primary
    ))
    .await;
    // Newest transition first: the manual reset closed it.
    let last = &stats["breakers"][0]["last_transitions"][0];
    assert_eq!(last["to"], "closed", "{stats}");
    assert_eq!(last["reason"], "manual reset", "{stats}");
    // Deliveries flow again.
    let before = metric(&w.primary, "sluice_query_results_produced_total", "")
        .await
        .unwrap_or(0.0);
    eventually(
        "results to be delivered again",
        Duration::from_secs(60),
        || async {
            metric(&w.primary, "sluice_query_results_produced_total", "")
                .await
                .filter(|n| *n > before)
        },
    )
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_exhausted_cleans_up_then_restarts_the_engine_below_the_threshold() {
    let w = World::new(WorldOpts {
        max_total_memory: Some(64 << 20),
        ..WorldOpts::default()
    })
    .await;
    wait_processing(&w.primary).await;
    // 80 MiB held against a 64 MiB limit: 125 %, over the alert's 95 %.
    inject(&w.primary, json!({"memory_ballast_mb": 80})).await;
    let before = metric(
        &w.primary,
        "sluice_resource_utilization_percent",
        "resource=\"memory\"",
    )
    .await
    .expect("memory utilization");
    assert!(before > 95.0, "memory at {before}%");
    let old_pid = w.pid("primary");

    let out = w.run("memory-exhausted", &[]).await;
    assert_succeeded(&out);
    // Cleanup cannot free leaked memory; the restart did.
    assert!(
        output(&out, "after_cleanup")["body"]["memory_percent"]
            .as_f64()
            .unwrap()
            >= 90.0,
        "{}",
        out.steps["after_cleanup"]
    );
    assert_eq!(out.steps["restart"]["status"], "succeeded");
    assert_ne!(
        w.pid("primary"),
        old_pid,
        "the engine process was not replaced"
    );
    let after = get_json_at(&w.primary, "/admin/resources/utilization").await;
    assert!(after["memory_percent"].as_f64().unwrap() < 90.0, "{after}");
    let faults = get_json_at(&w.primary, "/admin/fault-injection").await;
    assert_eq!(faults["memory_ballast_bytes"], 0);
    wait_processing(&w.primary).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_exhausted_stops_at_cleanup_when_that_is_enough() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    let old_pid = w.pid("primary");
    let out = w.run("memory-exhausted", &[]).await;
    assert_succeeded(&out);
    assert_eq!(out.steps["restart"]["status"], "skipped");
    assert_eq!(w.pid("primary"), old_pid);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_stopped_restarts_the_pipeline_and_records_flow_again() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    // Processing stops: the pipeline is drained and intake stays paused.
    let drained = post_json(&format!("{}/admin/processing/drain", w.primary), json!({})).await;
    assert_eq!(drained["drained"], true);
    let threads = get_json_at(&w.primary, "/admin/threads").await;
    assert_eq!(threads["pipeline"]["drained"], true);
    let pid = w.pid("primary");

    let out = w.run("processing-stopped", &[]).await;
    assert_succeeded(&out);
    assert_eq!(out.steps["flowing"]["status"], "succeeded");
    assert_eq!(out.steps["full_restart"]["status"], "skipped");
    assert_eq!(w.pid("primary"), pid, "a pipeline restart was enough");
    let threads = get_json_at(&w.primary, "/admin/threads").await;
    assert_eq!(threads["pipeline"]["drained"], false);
    assert!(threads["pipeline"]["restarts"].as_u64().unwrap() >= 1);
    let perf = get_json_at(&w.primary, "/admin/queries/performance").await;
    assert!(
        perf["queries"][0]["records_in"].as_u64().unwrap() > 0,
        "{perf}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_latency_raises_parallelism_within_its_bound_and_no_further() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    inject(&w.primary, json!({"processing_delay_ms": 5})).await;
    let cfg = get_json_at(&w.primary, "/admin/config").await;
    assert_eq!(cfg["processing"]["parallelism"], 1);

    let out = w.run("high-latency", &[("max_parallelism", "2")]).await;
    assert_succeeded(&out);
    let cfg = get_json_at(&w.primary, "/admin/config").await;
    assert_eq!(cfg["processing"]["parallelism"], 2);
    let threads = get_json_at(&w.primary, "/admin/threads").await;
    assert_eq!(threads["pipeline"]["workers"], 2);

    // At the bound: nothing changes, the run fails so a person looks.
    let out = w.run("high-latency", &[("max_parallelism", "2")]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error.as_deref().unwrap_or("").contains("at_bound"),
        "{:?}",
        out.error
    );
    let cfg = get_json_at(&w.primary, "/admin/config").await;
    assert_eq!(cfg["processing"]["parallelism"], 2);
    w.stop().await;
}
