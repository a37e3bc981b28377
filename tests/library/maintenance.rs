//! Scheduled runbooks, run by hand here (the schedule → run path is
//! `sluice serve`'s): their effects on disk and in the engine — reports
//! written, archives with valid manifests, retention applied, state restored,
//! the daily email delivered.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value as J;
use sluice_tests::engine::{get_json_at, wait_processing, wait_ready};
use sluice_tests::net::eventually;
use sluice_tests::sluice::unpack as verify;
use sluice_tests::sluice::{assert_succeeded, output};
use sluice_tests::world::{World, WorldOpts};

/// Creates `dir/name` with `text`, last modified `age` ago.
fn old_file(dir: &Path, name: &str, age: Duration) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, name).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

const DAY: Duration = Duration::from_secs(86_400);

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn json_file(path: &Path) -> J {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_maintenance_saves_reports_and_prunes_old_ones() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    let reports = w.path().join("reports");
    old_file(&reports, "performance_report_20200101.json", 30 * DAY);
    old_file(&reports, "performance_report_20200108.json", 23 * DAY);
    old_file(&reports, "performance_report_20200115.json", 16 * DAY);
    let out = w
        .run(
            "weekly-maintenance",
            &[("report_dir", reports.to_str().unwrap()), ("keep", "2")],
        )
        .await;
    assert_succeeded(&out);
    assert!(output(&out, "metrics_cleanup")["body"]["older_than"] == "7d");
    let left = names(&reports);
    let today_perf = left
        .iter()
        .find(|n| {
            n.starts_with("performance_report_2") && !n.starts_with("performance_report_2020")
        })
        .unwrap_or_else(|| panic!("no new report in {left:?}"));
    let report = json_file(&reports.join(today_perf));
    assert!(report.get("summary").is_some(), "{report}");
    let analysis_name = left
        .iter()
        .find(|n| n.starts_with("resource_analysis_"))
        .expect("resource analysis saved");
    let analysis = json_file(&reports.join(analysis_name));
    assert!(analysis.is_object() && !analysis.as_object().unwrap().is_empty());
    // keep 2 of the `*_report_*.json`: the new one and the newest old one.
    assert!(
        left.contains(&"performance_report_20200115.json".to_string()),
        "{left:?}"
    );
    assert!(
        !left.contains(&"performance_report_20200101.json".to_string()),
        "{left:?}"
    );
    assert!(
        !left.contains(&"performance_report_20200108.json".to_string()),
        "{left:?}"
    );
    assert_eq!(
        output(&out, "prune")["deleted"].as_array().unwrap().len(),
        2
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_maintenance_backs_up_config_and_saves_statistics() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    let etc = w.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(&w.primary_config, etc.join("engine.yaml")).unwrap();
    let dest = w.path().join("backups");
    let reports = w.path().join("reports");
    let out = w
        .run(
            "monthly-maintenance",
            &[
                ("config_dir", etc.to_str().unwrap()),
                ("dest", dest.to_str().unwrap()),
                ("report_dir", reports.to_str().unwrap()),
            ],
        )
        .await;
    assert_succeeded(&out);
    let archive = PathBuf::from(output(&out, "config_backup")["archive"].as_str().unwrap());
    let (manifest, files) = verify(&archive).expect("archive verifies");
    assert!(
        manifest
            .entries
            .iter()
            .any(|e| e.path == "files/etc/engine.yaml"),
        "{:?}",
        manifest.entries
    );
    assert_eq!(
        manifest.engine_version.as_ref().unwrap()["name"],
        "sluice-engine"
    );
    let (_, data) = files
        .iter()
        .find(|(p, _)| p.ends_with("engine.yaml"))
        .expect("engine.yaml in the archive");
    assert_eq!(data, &std::fs::read(&w.primary_config).unwrap());
    assert!(output(&out, "baselines")["body"]["baselines"].is_object());
    let left = names(&reports);
    let cb = left
        .iter()
        .find(|n| n.starts_with("cb_stats_"))
        .expect("cb stats saved");
    assert_eq!(json_file(&reports.join(cb))["breakers"][0]["name"], "sink");
    assert!(
        left.iter()
            .any(|n| n.starts_with("resource_recommendations_"))
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_backup_then_state_restore_brings_the_windows_back() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    w.wait_open_windows().await;
    let dest = w.path().join("backups");
    // Eight old archives: with the new one, the two oldest are beyond the 7
    // kept and older than 30 days, so retention removes them.
    let stale: Vec<PathBuf> = (0..8)
        .map(|i| {
            old_file(
                &dest,
                &format!("config-2020010{i}T000000Z.tar.gz"),
                (407 - i) * DAY,
            )
        })
        .collect();
    let (out, archive, state) = w.backup(&dest).await;
    assert!(
        !stale[0].exists() && !stale[1].exists(),
        "retention kept the oldest"
    );
    assert!(
        stale[2..].iter().all(|p| p.exists()),
        "retention removed too much"
    );
    assert_eq!(
        output(&out, "backup")["removed"].as_array().unwrap().len(),
        2
    );
    let (manifest, _) = verify(&archive).expect("archive verifies");
    let paths: Vec<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
    for needed in [
        "files/etc/engine.yaml",
        "downloads/state.json",
        "downloads/metrics_30days.json",
    ] {
        assert!(paths.contains(&needed), "{needed} missing from {paths:?}");
    }
    assert!(super::window_count(&state) > 0, "no windows in the backup");

    // The engine loses its state: a new process.
    let pid = w.pid("primary");
    w.supervisor.stop("primary").await.unwrap();
    let spec = sluice_automation::process::instance::spec(
        "primary",
        &w.services.config.targets["primary"],
        0,
        None,
    )
    .unwrap();
    w.supervisor.start(spec).unwrap();
    assert_ne!(w.pid("primary"), pid);
    wait_ready(&w.primary).await;

    let out = w
        .run(
            "state-restore",
            &[
                ("backup_dir", dest.to_str().unwrap()),
                ("work_dir", w.path().join("restore").to_str().unwrap()),
            ],
        )
        .await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "pick")["stdout"], archive.to_str().unwrap());
    assert_eq!(output(&out, "import")["body"]["imported"], true);
    // The engine imported every window of the backup and holds them.
    assert_eq!(
        output(&out, "import")["body"]["windows"].as_u64().unwrap() as usize,
        super::window_count(&state)
    );
    let now = get_json_at(&w.primary, "/admin/state/export").await;
    super::assert_windows_restored(&state, &now);
    // Intake resumed: the engine reads on past the backup's positions (records
    // below them are skipped, they are in the restored windows already).
    let wanted = state["positions"].as_array().unwrap().clone();
    eventually(
        "positions past the backup's",
        Duration::from_secs(60),
        || {
            let wanted = wanted.clone();
            let url = w.primary.clone();
            async move {
                let now = get_json_at(&url, "/admin/state/export").await;
                let ok = wanted.iter().all(|p| {
                    now["positions"].as_array().into_iter().flatten().any(|q| {
                        q["partition"] == p["partition"]
                            && q["topic"] == p["topic"]
                            && q["offset"].as_i64() >= p["offset"].as_i64()
                    })
                });
                ok.then_some(())
            }
        },
    )
    .await;
    w.stop().await;
}

#[tokio::test]
async fn cleanup_applies_retention_under_each_root_only() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let reports = dir.path().join("reports");
    let logs = dir.path().join("logs");
    for i in 0..9 {
        old_file(
            &backups,
            &format!("config-2020010{i}.tar.gz"),
            (40 + i) * DAY,
        );
    }
    old_file(&backups, "config-new.tar.gz", DAY);
    old_file(&backups, "notes.txt", 400 * DAY);
    old_file(&reports, "old.json", 100 * DAY);
    old_file(&reports, "recent.json", 10 * DAY);
    old_file(&logs, "primary.log", DAY);
    old_file(&logs, "primary.log.1", 20 * DAY);
    let config = sluice_tests::sluice::config(&sluice_tests::sluice::channels(
        "http://127.0.0.1:9/slack",
        9,
    ));
    let services = sluice_tests::sluice::services(config, dir.path(), None).await;
    let rb = sluice_tests::sluice::library("cleanup", &services.config);
    let out = sluice_tests::sluice::run(
        &services,
        &rb,
        &[
            ("backup_dir", backups.to_str().unwrap()),
            ("report_dir", reports.to_str().unwrap()),
            ("log_dir", logs.to_str().unwrap()),
            ("keep_backups", "3"),
        ],
    )
    .await;
    assert_succeeded(&out);
    // The 3 newest archives stay; the older ones are past 30 days and go; other files stay.
    assert_eq!(
        names(&backups),
        vec![
            "config-20200100.tar.gz",
            "config-20200101.tar.gz",
            "config-new.tar.gz",
            "notes.txt"
        ]
    );
    assert_eq!(names(&reports), vec!["recent.json"]);
    assert_eq!(names(&logs), vec!["primary.log"]);
    assert!(output(&out, "backups")["freed_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_health_check_emails_the_report() {
    let w = World::new(WorldOpts {
        smtp: true,
        ..WorldOpts::default()
    })
    .await;
    wait_ready(&w.primary).await;
    let out = w
        .run(
            "daily-health-check",
            &[("disk_path", w.path().to_str().unwrap())],
        )
        .await;
    assert_succeeded(&out);
    assert_eq!(out.steps["ready"]["status"], "succeeded");
    let smtp = w.smtp.as_ref().unwrap();
    let mail = smtp
        .wait_for("Daily health check", Duration::from_secs(30))
        .await;
    assert!(
        mail.contains("Subject: Sluice daily health check: ready"),
        "{mail}"
    );
    assert!(mail.contains(&w.primary), "{mail}");
    assert!(
        mail.contains("consumer lag of sluice-engine on orders"),
        "{mail}"
    );
    assert!(mail.contains("\"sink\""), "breaker names missing: {mail}");
    assert!(mail.contains("ops@localhost"), "{mail}");
    w.stop().await;
}
