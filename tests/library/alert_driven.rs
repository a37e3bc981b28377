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
use sluice_tests::node::{LoopFs, NodeExporter};
use sluice_tests::served::{ServeOpts, Served, Timing};
use sluice_tests::world::{World, WorldOpts};

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

/// The alert was routed to Slack, and the run's success announced there.
fn assert_told(s: &Served, alert: &str, runbook: &str) {
    let texts = s.w.slack.texts();
    let fired = format!("alertname={alert}");
    assert!(texts.iter().any(|x| x.contains(&fired)), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|x| x.contains(runbook) && x.contains("succeeded")),
        "{texts:?}"
    );
}

/// Waits until the service no longer has alert `name` pending or firing.
async fn resolves(s: &Served, name: &str) {
    eventually(&format!("{name} to resolve"), LIMIT, || async {
        s.alert_state(name).await.is_none().then_some(())
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

    let id = s.first_run("circuit-breaker-reset", "alert", LIMIT).await;
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
    assert_told(&s, "CircuitBreakerOpen", "circuit-breaker-reset");
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
    let id = s.first_run("memory-exhausted", "alert", LIMIT).await;
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
    resolves(&s, "MemoryExhausted").await;
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
    let id = s.first_run("processing-stopped", "alert", LIMIT).await;
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
    resolves(&s, "ProcessingStopped").await;
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

    let id = s.first_run("failover", "alert", LIMIT).await;
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
    assert_told(&s, "EngineDown", "failover");
    // One failover, however long the primary stays down.
    assert_eq!(s.runs("failover").await.len(), 1);
    t.report("failover");
    s.stop().await;
}

/// Demo records per second for the overload tests, and what a record costs a
/// worker once the fault is in: 1 ms, so one worker does at most 1,000/s and
/// falls behind 1,600/s. The runbooks scale by two here (their `step` / `add`
/// default set to 2, as an operator would for 3 partitions): one partition
/// per worker (or process), ~530/s each, catches up with room to spare even
/// on a debug build of the engine on a busy machine — where a 2 + 1 split
/// would leave the busier one barely faster than its input.
const OVERLOAD_RATE: u32 = 1600;
const RECORD_COST_MS: f64 = 1.0;

async fn end_to_end_ms(url: &str) -> Option<f64> {
    metric(
        url,
        "sluice_processing_latency_ms",
        "operation=\"end_to_end\"",
    )
    .await
}

async fn backlog(url: &str) -> Option<f64> {
    metric(url, "sluice_backlog_size", "topic=\"orders\"").await
}

/// The service beside `w` with shipped runbook `runbook`, its scaling
/// parameter `param` defaulting to 2 instead of 1: with 3 partitions, a 2 + 1
/// split leaves the busier worker barely faster than its input.
async fn serve_scaling_by_two(w: World, runbook: &str, param: &str) -> Served {
    let (from, to) = (
        format!("{param}: {{type: int, default: 1,"),
        format!("{param}: {{type: int, default: 2,"),
    );
    Served::serve(
        w,
        &[runbook],
        |_, _, t| {
            assert!(t.contains(&from), "{runbook} has no `{from}`");
            t.replace(&from, &to)
        },
        ServeOpts::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_outpacing_one_worker_fires_high_latency_and_more_workers_catch_up() {
    let w = World::new(WorldOpts {
        demo_rate: Some(OVERLOAD_RATE),
        ..WorldOpts::default()
    })
    .await;
    let url = w.primary.clone();
    // Records produced while the consumer joined wait over a second; the
    // rules start only once that catch-up is over, or it alone fires them.
    wait_processing(&url).await;
    eventually("records to be processed as they come", LIMIT, || async {
        end_to_end_ms(&url)
            .await
            .filter(|ms| *ms > 0.0 && *ms < 500.0)
    })
    .await;
    let s = serve_scaling_by_two(w, "high-latency", "step").await;
    let cfg = get_json_at(&url, "/admin/config").await;
    assert_eq!(cfg["processing"]["parallelism"], 1);
    let mut t = Timing::start();
    inject(&url, json!({"processing_delay_ms": RECORD_COST_MS})).await;
    let id = s.first_run("high-latency", "alert", LIMIT).await;
    t.mark("run started");
    // What fired it: records waited more than a second, and were piling up.
    let late = end_to_end_ms(&url).await.unwrap_or(0.0);
    assert!(late > 1000.0, "end-to-end latency {late} ms");
    let run = s.finished(&id, LIMIT).await;
    assert_alert_run(&run);
    let cfg = get_json_at(&url, "/admin/config").await;
    assert_eq!(cfg["processing"]["parallelism"], 3, "{run:#}");
    t.mark("workers running");
    // The fault is still in: more workers, not its removal, catch up.
    let faults = get_json_at(&url, "/admin/fault-injection").await;
    assert_eq!(faults["processing_delay_ms"], RECORD_COST_MS);
    eventually(
        "end-to-end latency under 1 s",
        Duration::from_secs(120),
        || async {
            end_to_end_ms(&url)
                .await
                .filter(|ms| *ms > 0.0 && *ms < 1000.0)
        },
    )
    .await;
    t.mark("latency below 1 s");
    resolves(&s, "HighProcessingLatency").await;
    t.mark("alert resolved");
    assert_told(&s, "HighProcessingLatency", "high-latency");
    // The series that fired: records' age, not query time.
    assert!(
        run["run"]["request"].to_string().contains("end_to_end"),
        "{run:#}"
    );
    assert_eq!(s.runs("high-latency").await.len(), 1);
    t.report("high-latency");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_outpacing_one_engine_fires_consumer_lag_and_more_processes_drain_it() {
    let w = World::new(WorldOpts {
        broker: true,
        demo_rate: Some(OVERLOAD_RATE),
        ..WorldOpts::default()
    })
    .await;
    let url = w.primary.clone();
    // As above: the startup backlog drained before the rules look.
    wait_processing(&url).await;
    eventually("the startup backlog drained", LIMIT, || async {
        backlog(&url).await.filter(|n| *n < 1_000.0)
    })
    .await;
    let s = serve_scaling_by_two(w, "scale-out", "add").await;
    let mut t = Timing::start();
    inject(&url, json!({"processing_delay_ms": RECORD_COST_MS})).await;
    let id = s
        .first_run("scale-out", "alert", Duration::from_secs(150))
        .await;
    t.mark("run started");
    let lag = backlog(&url).await.unwrap_or(0.0);
    assert!(lag > 10_000.0, "backlog {lag}");
    let run = s.finished(&id, LIMIT).await;
    assert_alert_run(&run);
    let scale = &Served::step(&run, "scale")["outputs"];
    assert_eq!(scale["replicas"], 3, "{run:#}");
    let others: Vec<String> = scale["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .skip(1)
        .filter_map(|i| i["url"].as_str().map(str::to_string))
        .collect();
    assert_eq!(others.len(), 2, "{run:#}");
    t.mark("new processes hold partitions");
    // The primary keeps one partition (and its slowness); the backlog drains.
    eventually(
        "the backlog under 10k",
        Duration::from_secs(120),
        || async {
            let mut total = backlog(&url).await?;
            for u in &others {
                total += backlog(u).await?;
            }
            (total < 10_000.0).then_some(())
        },
    )
    .await;
    t.mark("backlog below 10k");
    resolves(&s, "ConsumerLagHigh").await;
    t.mark("alert resolved");
    assert_eq!(assigned(&url).await, 1);
    for u in &others {
        assert_eq!(assigned(u).await, 1, "{u}");
        let done = metric(u, "sluice_records_processed_total", "").await;
        assert!(done.unwrap_or(0.0) > 0.0, "{u}: {done:?}");
    }
    assert_told(&s, "ConsumerLagHigh", "scale-out");
    assert_eq!(s.runs("scale-out").await.len(), 1);
    t.report("scale-out");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_fires_disk_filling_and_cleanup_frees_it() {
    const MIB: usize = 1 << 20;
    let root = tempfile::tempdir().unwrap();
    let backups = root.path().join("backups");
    let fs = LoopFs::mount(&root.path().join("fs.img"), &backups, 64).expect("test filesystem");
    let exporter = NodeExporter::start(&backups).await.expect("node_exporter");
    // Ten archives from over a month ago: about two thirds of the disk.
    for i in 0..10u64 {
        let p = backups.join(format!("config-202610{i:02}T030000.tar.gz"));
        std::fs::write(&p, vec![0x5a; 7 * MIB / 2]).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs((50 - i) * 86_400))
            .unwrap();
    }
    let (reports, logs) = (root.path().join("reports"), root.path().join("logs"));
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let s = Served::start_with(
        WorldOpts::default(),
        &["cleanup"],
        |_, _, t| {
            t.replace("/var/backups/sluice", &backups.display().to_string())
                .replace("/var/lib/sluice/reports", &reports.display().to_string())
                .replace(".sluice/instances", &logs.display().to_string())
        },
        ServeOpts {
            scrape: vec![format!("'{}/metrics'", exporter.url)],
            ..ServeOpts::default()
        },
    )
    .await;
    let (avail, size) = fs.space();
    assert!(
        avail as f64 / size as f64 > 0.25,
        "{avail} of {size} free before"
    );
    let mut t = Timing::start();
    // Then a backup job writes a new archive every half second: the disk
    // falls under 25 % free and keeps filling. It stops by itself before
    // the disk is full, and once the cleanup run has started.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dir = backups.clone();
    let writer = tokio::spawn(async move {
        let mut written = Vec::new();
        for i in 0..40 {
            if *stopped.borrow() {
                break;
            }
            let name = format!("state-20261202T1400{i:02}.tar.gz");
            std::fs::write(dir.join(&name), vec![0xa5; MIB]).unwrap();
            written.push(name);
            let (avail, _) = LoopFs::space_of(&dir);
            if avail < 4 * MIB as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        written
    });
    let id = s.first_run("cleanup", "alert", LIMIT).await;
    t.mark("run started");
    let _ = stop.send(true);
    let written = writer.await.unwrap();
    let run = s.finished(&id, LIMIT).await;
    assert_alert_run(&run);
    let (avail, size) = fs.space();
    assert!(
        avail as f64 / size as f64 > 0.5,
        "{avail} of {size} free after: {run:#}"
    );
    t.mark("disk half free");
    // Retention as the runbook says: the month-old archives went, every new one stayed.
    let mut left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar.gz"))
        .collect();
    left.sort();
    assert_eq!(left, written, "{run:#}");
    assert!(written.len() >= 7, "{written:?}");
    assert_eq!(
        Served::step(&run, "backups")["outputs"]["deleted"]
            .as_array()
            .map(Vec::len),
        Some(10),
        "{run:#}"
    );
    resolves(&s, "DiskFilling").await;
    t.mark("alert resolved");
    // Cleanup tells only of failures; the alert itself went to Slack.
    let texts = s.w.slack.texts();
    assert!(
        texts.iter().any(|x| x.contains("alertname=DiskFilling")),
        "{texts:?}"
    );
    assert_eq!(s.runs("cleanup").await.len(), 1);
    t.report("cleanup");
    s.stop().await;
    drop(exporter);
}
