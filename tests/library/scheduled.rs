//! Scheduled runbooks through the real service: one night of the shipped
//! schedules, with the service's clock moved to just before each fire time
//! (timers still run in real time). Sunday 1 November 2026 is a Sunday and a
//! 1st, so every shipped schedule fires that night: 02:00 config backup and
//! weekly maintenance, 03:00 monthly maintenance, 03:30 cleanup, 07:00 the
//! daily health check. Each run's effects are checked on disk and in mail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{TimeZone, Utc};
use serde_json::Value as J;
use sluice_tests::engine::wait_processing;
use sluice_tests::served::{JumpClock, ServeOpts, Served};
use sluice_tests::sluice::unpack;
use sluice_tests::world::WorldOpts;

const DAY: Duration = Duration::from_secs(86_400);
const LIMIT: Duration = Duration::from_secs(120);

fn old_file(dir: &Path, name: &str, age: Duration) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, name).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn names(dir: &Path, pattern: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(pattern))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits for the schedule's run of `runbook` to succeed; returns it.
async fn scheduled_run(s: &Served, runbook: &str) -> J {
    let id = s.first_run(runbook, "schedule", LIMIT).await;
    let run = s.finished(&id, LIMIT).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["trigger"], "schedule", "{run:#}");
    run
}

fn archive_of(run: &J, step: &str) -> String {
    Served::step(run, step)["outputs"]["archive"]
        .as_str()
        .unwrap_or_else(|| panic!("no archive in {run:#}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_night_of_schedules_backs_up_maintains_cleans_and_reports() {
    let night = |h: u32, m: u32, s: u32| Utc.with_ymd_and_hms(2026, 11, 1, h, m, s).unwrap();
    let clock = Arc::new(JumpClock::default());
    clock.set(night(1, 0, 0));
    let s = Served::start_with(
        WorldOpts {
            smtp: true,
            ..WorldOpts::default()
        },
        &[
            "config-backup",
            "weekly-maintenance",
            "monthly-maintenance",
            "cleanup",
            "daily-health-check",
        ],
        |dir, _, t| {
            let d = |rel: &str| dir.join(rel).display().to_string();
            t.replace("/var/backups/sluice", &d("backups"))
                .replace("/var/lib/sluice/reports", &d("reports"))
                .replace("/etc/sluice", &d("etc"))
                .replace(".sluice/instances", &d("logs"))
        },
        ServeOpts {
            clock: clock.clone(),
            ..ServeOpts::default()
        },
    )
    .await;
    wait_processing(&s.w.primary).await;
    let dir = s.w.path().to_path_buf();
    let (backups, reports, logs) = (dir.join("backups"), dir.join("reports"), dir.join("logs"));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy(&s.w.primary_config, dir.join("etc/engine.yaml")).unwrap();
    for i in 0..9u32 {
        old_file(
            &reports,
            &format!("performance_report_2020010{i}.json"),
            (28 - i) * DAY,
        );
        old_file(
            &backups,
            &format!("config-2020010{i}.tar.gz"),
            (48 - i) * DAY,
        );
    }
    old_file(&reports, "old_stats.json", 100 * DAY);
    old_file(&logs, "primary.log", DAY);
    old_file(&logs, "primary.log.1", 20 * DAY);
    assert!(
        s.runs("config-backup").await.is_empty(),
        "fired before its time"
    );

    // 02:00: the nightly config backup and the weekly maintenance.
    clock.set(night(1, 59, 58));
    s.reload().await;
    let backup = scheduled_run(&s, "config-backup").await;
    let archive = archive_of(&backup, "backup");
    let (manifest, files) = unpack(Path::new(&archive)).expect("the archive verifies");
    assert!(
        files.keys().any(|p| p.ends_with("engine.yaml")),
        "{:?}",
        files.keys()
    );
    assert!(
        files.keys().any(|p| p.ends_with("state.json")),
        "{:?}",
        files.keys()
    );
    assert_eq!(
        manifest.engine_version.as_ref().unwrap()["name"],
        "sluice-engine"
    );
    let weekly = scheduled_run(&s, "weekly-maintenance").await;
    assert_eq!(
        Served::step(&weekly, "prune")["outputs"]["deleted"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{weekly:#}"
    );
    let perf = names(&reports, "performance_report_");
    assert_eq!(perf.len(), 8, "{perf:?}");
    assert!(
        perf.iter()
            .any(|n| !n.starts_with("performance_report_2020")),
        "no new report: {perf:?}"
    );
    assert!(
        !perf.contains(&"performance_report_20200100.json".to_string()),
        "{perf:?}"
    );
    assert_eq!(names(&reports, "resource_analysis_").len(), 1);

    // 03:00 on the 1st: the monthly maintenance.
    clock.set(night(2, 59, 58));
    s.reload().await;
    let monthly = scheduled_run(&s, "monthly-maintenance").await;
    let monthly_archive = archive_of(&monthly, "config_backup");
    unpack(Path::new(&monthly_archive)).expect("the monthly archive verifies");
    assert_eq!(names(&reports, "cb_stats_").len(), 1);
    assert_eq!(names(&reports, "resource_recommendations_").len(), 1);

    // 03:30: retention.
    clock.set(night(3, 29, 58));
    s.reload().await;
    scheduled_run(&s, "cleanup").await;
    let left = names(&backups, ".tar.gz");
    assert_eq!(left.len(), 7, "keep 7 archives: {left:?}");
    for a in [&archive, &monthly_archive] {
        let name = Path::new(a)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            left.contains(&name),
            "tonight's {name} was deleted: {left:?}"
        );
    }
    assert!(
        !left.contains(&"config-20200100.tar.gz".to_string()),
        "{left:?}"
    );
    assert!(names(&reports, "old_stats").is_empty());
    assert_eq!(names(&logs, ".log"), vec!["primary.log"]);

    // 07:00: the daily health check mails its report.
    clock.set(night(6, 59, 58));
    s.reload().await;
    scheduled_run(&s, "daily-health-check").await;
    let smtp = s.w.smtp.as_ref().unwrap();
    let mail = smtp.wait_for("Daily health check", LIMIT).await;
    assert!(
        mail.contains("Subject: Sluice daily health check: ready"),
        "{mail}"
    );
    assert!(mail.contains("ops@localhost"), "{mail}");

    // Each schedule fired once, and none a second time.
    for rb in [
        "config-backup",
        "weekly-maintenance",
        "monthly-maintenance",
        "cleanup",
        "daily-health-check",
    ] {
        assert_eq!(s.runs(rb).await.len(), 1, "{rb}");
    }
    s.stop().await;
}
