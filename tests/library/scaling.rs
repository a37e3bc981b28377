//! Runbooks that move work between engine processes, on a broker that lives
//! in its own process (so engines can stop without taking the data along):
//! scale out and in within one consumer group, data-loss recovery by offset
//! reset and reprocessing, failover to a standby with state restore.

use std::time::Duration;

use serde_json::Value as J;
use sluice_tests::engine::{answers, assigned, get_json_at, metric, wait_processing};
use sluice_tests::net::eventually;
use sluice_tests::sluice::{assert_succeeded, output};
use sluice_tests::world::{World, WorldOpts};

fn sum_offsets(list: &J) -> i64 {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["topic"] == "orders")
        .filter_map(|p| p["offset"].as_i64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_then_in_moves_partitions_between_engine_processes() {
    let w = World::new(WorldOpts {
        broker: true,
        ..WorldOpts::default()
    })
    .await;
    wait_processing(&w.primary).await;
    let out = w.run("scale-out", &[("add", "1"), ("max", "3")]).await;
    assert_succeeded(&out);
    let scale = output(&out, "scale");
    assert_eq!(scale["replicas"], 2);
    let second = scale["instances"][1]["url"].as_str().unwrap().to_string();
    // The runbook checked each instance has partitions; together they hold all 3.
    assert_eq!(
        output(&out, "balanced")["iterations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A rebalance can still be settling on the broker's side: both must end
    // up holding partitions, all three between them.
    eventually(
        "both instances to share the 3 partitions",
        Duration::from_secs(60),
        || async {
            let (a, b) = (assigned(&w.primary).await, assigned(&second).await);
            (a > 0 && b > 0 && a + b == 3).then_some(())
        },
    )
    .await;

    // At max: scale-out adds nothing more.
    let out = w.run("scale-out", &[("add", "5"), ("max", "2")]).await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "scale")["clamped"], true);
    assert_eq!(
        output(&out, "scale")["started"].as_array().unwrap().len(),
        0
    );

    let out = w.run("scale-in", &[]).await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "scale")["replicas"], 1);
    assert!(!answers(&second).await, "instance 1 still runs");
    eventually(
        "instance 0 to hold every partition",
        Duration::from_secs(60),
        || async { (assigned(&w.primary).await == 3).then_some(()) },
    )
    .await;
    // Never below min: a second scale-in keeps instance 0.
    let out = w.run("scale-in", &[]).await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "scale")["replicas"], 1);
    assert!(answers(&w.primary).await);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_loss_recovery_resets_offsets_to_earliest_and_reprocesses() {
    let w = World::new(WorldOpts {
        broker: true,
        demo_rate: Some(100),
        // Commits follow deliveries at once (no minute-long windows holding them back).
        stateless: true,
        ..WorldOpts::default()
    })
    .await;
    wait_processing(&w.primary).await;
    // Let the group commit a good way into the topic.
    let committed = eventually(
        "commits past 300 records",
        Duration::from_secs(60),
        || async {
            let s = get_json_at(&w.primary, "/admin/state/export").await;
            let c = sum_offsets(&s["committed"]);
            (c > 300).then_some(c)
        },
    )
    .await;
    // The embedded broker cannot list groups: skip the live-member check.
    let out = w.run("data-loss-recovery", &[("force", "true")]).await;
    assert_succeeded(&out);
    assert!(output(&out, "lag_before")["total_lag"].as_i64().is_some());
    let reset = output(&out, "reset")["partitions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(reset.len(), 3);
    assert!(reset.iter().all(|p| p["offset"] == 0), "{reset:?}");
    assert_eq!(output(&out, "start")["started"], true);
    // The fresh process re-reads from offset 0: it processes more records than
    // have arrived since the group had committed `committed` of them, which it
    // could not do starting from the committed offsets.
    eventually(
        "reprocessing from the earliest records",
        Duration::from_secs(60),
        || async {
            let processed = metric(&w.primary, "sluice_records_processed_total", "").await?;
            let high = high_watermarks(&w.bootstrap).await;
            (processed as i64 > high - committed).then_some(())
        },
    )
    .await;
    w.stop().await;
}

/// Sum of the `orders` partitions' high watermarks.
async fn high_watermarks(bootstrap: &str) -> i64 {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "e2e-watermarks")
            .create()
            .expect("consumer");
        (0..3)
            .map(|p| {
                c.fetch_watermarks("orders", p, Duration::from_secs(10))
                    .map(|(_, h)| h)
                    .unwrap_or(0)
            })
            .sum()
    })
    .await
    .unwrap()
}

/// A primary with open windows on a separate broker, and a standby target (not running).
async fn failover_world() -> (World, String) {
    let w = World::new(WorldOpts {
        broker: true,
        standby: true,
        ..WorldOpts::default()
    })
    .await;
    let standby = w.standby.clone().expect("standby");
    wait_processing(&w.primary).await;
    w.wait_open_windows().await;
    (w, standby)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_starts_the_standby_with_the_backed_up_state() {
    let (w, standby) = failover_world().await;
    let backups = w.path().join("backups");
    let (_, archive, backed_up) = w.backup(&backups).await;
    let archive = archive.display().to_string();

    // The primary dies.
    w.supervisor.stop("primary").await.unwrap();
    assert!(!answers(&w.primary).await);
    assert!(
        !answers(&standby).await,
        "the standby runs before the failover"
    );

    let out = w
        .run(
            "failover",
            &[
                ("backup_dir", backups.to_str().unwrap()),
                ("work_dir", w.path().join("failover").to_str().unwrap()),
            ],
        )
        .await;
    assert_succeeded(&out);
    assert_eq!(out.steps["primary_state"]["status"], "failed");
    assert_eq!(output(&out, "pick")["stdout"], archive.as_str());
    assert_eq!(output(&out, "start_standby")["started"], true);
    assert_eq!(output(&out, "import")["body"]["imported"], true);
    // The standby holds the backup's windows and consumes the primary's partitions.
    let now = get_json_at(&standby, "/admin/state/export").await;
    assert_eq!(
        output(&out, "import")["body"]["windows"].as_u64().unwrap() as usize,
        super::window_count(&backed_up)
    );
    super::assert_windows_restored(&backed_up, &now);
    eventually(
        "the standby to take every partition",
        Duration::from_secs(60),
        || async { (assigned(&standby).await == 3).then_some(()) },
    )
    .await;
    // No input lost: the standby reads on from where the group left off and
    // commits past the backup (commits wait for the open one-minute windows).
    let committed_at_backup = sum_offsets(&backed_up["committed"]);
    eventually(
        "the standby's commits to pass the backup's",
        Duration::from_secs(150),
        || async {
            let s = get_json_at(&standby, "/admin/state/export").await;
            (sum_offsets(&s["committed"]) > committed_at_backup).then_some(())
        },
    )
    .await;
    assert!(w.slack.texts().iter().any(|t| t.contains("failover")));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_takes_the_live_state_when_the_primary_still_answers_and_fences_it() {
    let (w, standby) = failover_world().await;
    let work = w.path().join("failover");
    let out = w
        .run(
            "failover",
            &[
                ("backup_dir", w.path().join("no-backups").to_str().unwrap()),
                ("work_dir", work.to_str().unwrap()),
            ],
        )
        .await;
    assert_succeeded(&out);
    let live = output(&out, "primary_state")["archive"].as_str().unwrap();
    assert_eq!(
        output(&out, "pick")["stdout"],
        live,
        "the live state was used"
    );
    assert!(!answers(&w.primary).await, "the primary was not fenced");
    let exported = sluice_tests::sluice::state_in(std::path::Path::new(live));
    let now = get_json_at(&standby, "/admin/state/export").await;
    assert_eq!(
        output(&out, "import")["body"]["windows"].as_u64().unwrap() as usize,
        super::window_count(&exported)
    );
    super::assert_windows_restored(&exported, &now);
    eventually(
        "the standby to take every partition",
        Duration::from_secs(60),
        || async { (assigned(&standby).await == 3).then_some(()) },
    )
    .await;
    w.stop().await;
}
