//! Alert-triggered remediation through the real service: `sluice serve`
//! scrapes the engine every second and evaluates the shipped rules
//! (durations compressed, see [`sluice_tests::served`]); a fault is
//! injected into the engine, the shipped alert fires, the service starts the
//! shipped runbook, the engine recovers (checked from its own metrics and
//! state) and the notifications arrive. Each test prints its fault →
//! detection → recovery times (`e2e-timing …`, run with `--nocapture`).

use std::time::Duration;

use serde_json::json;
use sluice_tests::engine::{answers, assigned, get_json_at, inject, metric, wait_processing};
use sluice_tests::net::{delete, eventually, post_json};
use sluice_tests::served::{Served, Timing};
use sluice_tests::world::WorldOpts;

const LIMIT: Duration = Duration::from_secs(90);

async fn breaker_state(url: &str) -> Option<f64> {
    metric(url, "sluice_circuit_breaker_state", "name=\"sink\"").await
}

async fn produced(url: &str) -> f64 {
    metric(url, "sluice_query_results_produced_total", "")
        .await
        .unwrap_or(0.0)
}

/// Waits until `url` processed more records than it had when called.
async fn records_flow(url: &str) {
    let before = metric(url, "sluice_records_processed_total", "")
        .await
        .unwrap_or(0.0);
    eventually("records to flow", LIMIT, || async {
        metric(url, "sluice_records_processed_total", "")
            .await
            .filter(|n| *n > before)
    })
    .await;
}

fn assert_alert_run(run: &serde_json::Value) {
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["trigger"], "alert", "{run:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_fires_the_alert_and_the_approved_reset_closes_it() {
    let s = Served::start(
        WorldOpts::default(),
        &["circuit-breaker-reset"],
        |_, _, t| t.replace("default: 60s", "default: 2s"),
    )
    .await;
    let url = s.w.primary.clone();
    wait_processing(&url).await;
    let mut t = Timing::start();
    // The sink fails until the breaker opens; then upstream is fixed, but the
    // breaker stays open (recovery timeout 1 h) until someone resets it.
    inject(&url, json!({"sink_failure_rate": 1.0})).await;
    eventually("the breaker to open", LIMIT, || async {
        (breaker_state(&url).await == Some(1.0)).then_some(())
    })
    .await;
    t.mark("breaker open");
    delete(&format!("{url}/admin/fault-injection")).await;

    let id = s.first_run("circuit-breaker-reset", LIMIT).await;
    t.mark("run started");
    eventually("the approval request", LIMIT, || async {
        let r = s.run(&id).await;
        (r["run"]["status"] == "waiting_approval").then_some(())
    })
    .await;
    t.mark("approval asked");
    assert_eq!(
        breaker_state(&url).await,
        Some(1.0),
        "reset before approval"
    );
    // The on-call person is asked in Slack, with how to answer.
    eventually("the approval request in Slack", LIMIT, || async {
        s.w.slack
            .texts()
            .iter()
            .any(|x| x.contains("needs approval") && x.contains(&format!("sluice approve {id}")))
            .then_some(())
    })
    .await;
    s.approve(&id, "upstream is back").await;
    let run = s.finished(&id, LIMIT).await;
    assert_alert_run(&run);
    assert_eq!(run["approvals"][0]["decided_by"], "oncall", "{run:#}");
    assert_eq!(breaker_state(&url).await, Some(0.0));
    t.mark("breaker closed");
    let before = produced(&url).await;
    eventually("results delivered again", LIMIT, || async {
        (produced(&url).await > before).then_some(())
    })
    .await;
    t.mark("deliveries resumed");
    // The alert itself was routed to Slack, and the run's success too.
    let texts = s.w.slack.texts();
    assert!(
        texts
            .iter()
            .any(|x| x.contains("[FIRING:1] alertname=CircuitBreakerOpen")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|x| x.contains("circuit-breaker-reset") && x.contains("succeeded")),
        "{texts:?}"
    );
    // Guards: one run for the one alert, however long it fired.
    assert_eq!(s.runs("circuit-breaker-reset").await.len(), 1);
    t.report("circuit-breaker-reset");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_exhaustion_fires_the_alert_and_the_runbook_brings_memory_down() {
    let s = Served::start(
        WorldOpts {
            max_total_memory: Some(64 << 20),
            ..WorldOpts::default()
        },
        &["memory-exhausted"],
        |_, _, t| t,
    )
    .await;
    let url = s.w.primary.clone();
    wait_processing(&url).await;
    let old_pid = s.w.pid("primary");
    let mut t = Timing::start();
    // 80 MiB that cleanup cannot free, against a 64 MiB limit.
    inject(&url, json!({"memory_ballast_mb": 80})).await;
    let id = s.first_run("memory-exhausted", LIMIT).await;
    t.mark("run started");
    let run = s.finished(&id, LIMIT).await;
    assert_alert_run(&run);
    assert_eq!(
        Served::step(&run, "restart")["status"],
        "succeeded",
        "{run:#}"
    );
    assert_ne!(s.w.pid("primary"), old_pid, "the engine was not restarted");
    let now = get_json_at(&url, "/admin/resources/utilization").await;
    assert!(now["memory_percent"].as_f64().unwrap() < 90.0, "{now}");
    t.mark("memory below 90 %");
    records_flow(&url).await;
    t.mark("records flow");
    eventually("the alert to resolve", LIMIT, || async {
        s.alert_state("MemoryExhausted")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    t.mark("alert resolved");
    let texts = s.w.slack.texts();
    assert!(
        texts
            .iter()
            .any(|x| x.contains("[FIRING:1] alertname=MemoryExhausted")),
        "{texts:?}"
    );
    assert_eq!(s.runs("memory-exhausted").await.len(), 1);
    t.report("memory-exhausted");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_processing_fires_the_alert_and_the_runbook_gets_records_flowing() {
    let s = Served::start(WorldOpts::default(), &["processing-stopped"], |_, _, t| t).await;
    let url = s.w.primary.clone();
    wait_processing(&url).await;
    let pid = s.w.pid("primary");
    let mut t = Timing::start();
    // Processing stops: drained, intake paused, the process still healthy.
    let drained = post_json(&format!("{url}/admin/processing/drain"), json!({})).await;
    assert_eq!(drained["drained"], true);
    let id = s.first_run("processing-stopped", LIMIT).await;
    t.mark("run started");
    let run = s.finished(&id, LIMIT).await;
    assert_alert_run(&run);
    assert_eq!(
        Served::step(&run, "flowing")["status"],
        "succeeded",
        "{run:#}"
    );
    assert_eq!(s.w.pid("primary"), pid, "a pipeline restart was enough");
    let threads = get_json_at(&url, "/admin/threads").await;
    assert_eq!(threads["pipeline"]["drained"], false);
    records_flow(&url).await;
    t.mark("records flow");
    eventually("the alert to resolve", LIMIT, || async {
        s.alert_state("ProcessingStopped")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    t.mark("alert resolved");
    assert_eq!(s.runs("processing-stopped").await.len(), 1);
    t.report("processing-stopped");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_fires_engine_down_and_the_standby_takes_over_with_its_state() {
    let s = Served::start(
        WorldOpts {
            broker: true,
            standby: true,
            ..WorldOpts::default()
        },
        &["failover", "config-backup"],
        |dir, _, t| {
            t.replace(
                "/var/backups/sluice",
                &dir.join("backups").display().to_string(),
            )
            .replace(
                "/var/lib/sluice/failover",
                &dir.join("failover").display().to_string(),
            )
        },
    )
    .await;
    let standby = s.w.standby.clone().expect("standby");
    wait_processing(&s.w.primary).await;
    s.w.wait_open_windows().await;
    // Tonight's config backup, through the API like the schedule would.
    let etc = s.w.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(&s.w.primary_config, etc.join("engine.yaml")).unwrap();
    let (status, body) = s
        .call(
            "POST",
            "/api/v1/runbooks/config-backup/runs",
            sluice_tests::served::OPERATOR,
            Some(json!({"params": {"config_dir": etc.display().to_string()}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let backup = s.finished(body["run_id"].as_str().unwrap(), LIMIT).await;
    assert_eq!(backup["run"]["status"], "succeeded", "{backup:#}");
    let archive = Served::step(&backup, "backup")["outputs"]["archive"]
        .as_str()
        .expect("archive")
        .to_string();
    let backed_up = sluice_tests::sluice::state_in(std::path::Path::new(&archive));

    // The primary dies (kill -9) and cannot come back: its config is gone,
    // so the supervisor's restarts fail too.
    let mut t = Timing::start();
    std::fs::write(&s.w.primary_config, "not: [an engine config").unwrap();
    let pid = s.w.pid("primary").expect("primary pid");
    // SAFETY: a plain kill(2) of the child process this test's supervisor started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(
        !answers(&standby).await,
        "the standby runs before the failover"
    );

    let id = s.first_run("failover", LIMIT).await;
    t.mark("run started");
    let run = s.finished(&id, Duration::from_secs(180)).await;
    assert_alert_run(&run);
    assert_eq!(
        Served::step(&run, "pick")["outputs"]["stdout"],
        archive.as_str(),
        "{run:#}"
    );
    assert_eq!(
        Served::step(&run, "import")["outputs"]["body"]["imported"],
        true
    );
    t.mark("standby ready");
    let now = get_json_at(&standby, "/admin/state/export").await;
    super::assert_windows_restored(&backed_up, &now);
    eventually("the standby to hold every partition", LIMIT, || async {
        (assigned(&standby).await == 3).then_some(())
    })
    .await;
    t.mark("standby holds every partition");
    // No input lost: the standby reads on from the group's committed offsets
    // and commits past what the backup had.
    let committed = |doc: &serde_json::Value| -> i64 {
        doc["committed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["topic"] == "orders")
            .filter_map(|p| p["offset"].as_i64())
            .sum()
    };
    let at_backup = committed(&backed_up);
    eventually(
        "the standby's commits to pass the backup's",
        Duration::from_secs(150),
        || async {
            let doc = get_json_at(&standby, "/admin/state/export").await;
            (committed(&doc) > at_backup).then_some(())
        },
    )
    .await;
    t.mark("standby committed past the backup");
    let texts = s.w.slack.texts();
    assert!(
        texts
            .iter()
            .any(|x| x.contains("[FIRING:1] alertname=EngineDown")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|x| x.contains("failover") && x.contains("succeeded")),
        "{texts:?}"
    );
    // One failover, however long the primary stays down.
    assert_eq!(s.runs("failover").await.len(), 1);
    t.report("failover");
    s.stop().await;
}
