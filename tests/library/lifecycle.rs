//! Manual runbooks that change the engine's lifecycle or configuration:
//! emergency stop and recovery, safe config deployment (applied, rolled back,
//! refused), vertical resource adjustment.

use serde_json::Value as J;
use sluice_automation::exec::executor::RunStatus;
use sluice_tests::engine::{self, answers, get_json_at, wait_processing};
use sluice_tests::sluice::{assert_succeeded, output};
use sluice_tests::world::{World, WorldOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_stop_drains_and_stops_then_recovery_brings_it_back() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    let out = w.run("emergency-stop", &[]).await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "maintenance")["body"]["maintenance"], true);
    let drain = &output(&out, "drain")["body"];
    assert_eq!(drain["drained"], true);
    let committed = drain["report"]["committed"]
        .as_array()
        .expect("committed offsets");
    assert!(!committed.is_empty(), "{drain}");
    assert_eq!(output(&out, "stop")["count"], 1);
    assert!(!answers(&w.primary).await, "the engine still answers");
    assert!(w.pid("primary").is_none());

    // Recovery with a known-safe config put in place first.
    let safe = w.path().join("safe.yaml");
    std::fs::copy(&w.primary_config, &safe).unwrap();
    let out = w
        .run(
            "emergency-recovery",
            &[
                ("safe_config", safe.to_str().unwrap()),
                ("live_config", w.primary_config.to_str().unwrap()),
            ],
        )
        .await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "start")["started"], true);
    assert!(
        output(&out, "resources")["stdout"]
            .as_str()
            .unwrap()
            .contains("Mem")
    );
    let health = get_json_at(&w.primary, "/health").await;
    assert_eq!(health["maintenance"], false);
    wait_processing(&w.primary).await;
    w.stop().await;
}

fn with_change(yaml: &str, f: impl FnOnce(&mut J)) -> String {
    let mut doc: J = serde_json::from_str(yaml).unwrap();
    f(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap()
}

fn deploy_params<'a>(w: &'a World, new: &'a str, backups: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("config", new),
        ("live", w.primary_config.to_str().unwrap()),
        ("backup_dir", backups),
        (
            "engine_bin",
            ENGINE_BIN.get_or_init(|| engine::engine_bin().display().to_string()),
        ),
    ]
}

static ENGINE_BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_deploy_applies_a_good_config() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    let live = std::fs::read_to_string(&w.primary_config).unwrap();
    let new = w.path().join("new.yaml");
    std::fs::write(
        &new,
        with_change(&live, |d| {
            d["circuit_breaker"]["failure_threshold"] = 7.into()
        }),
    )
    .unwrap();
    let backups = w.path().join("config-backups");
    let out = w
        .run(
            "config-deploy",
            &deploy_params(&w, new.to_str().unwrap(), backups.to_str().unwrap()),
        )
        .await;
    assert_succeeded(&out);
    let cfg = get_json_at(&w.primary, "/admin/config").await;
    assert_eq!(cfg["circuit_breaker"]["failure_threshold"], 7);
    assert_eq!(
        std::fs::read_to_string(&w.primary_config).unwrap(),
        std::fs::read_to_string(&new).unwrap()
    );
    // The previous file was kept.
    let kept = backups.join(format!("engine.{}.yaml", out.id));
    assert_eq!(std::fs::read_to_string(kept).unwrap(), live);
    assert_eq!(
        get_json_at(&w.primary, "/health").await["maintenance"],
        false
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_deploy_rolls_back_a_config_that_leaves_the_engine_unready() {
    let w = World::new(WorldOpts::default()).await;
    wait_processing(&w.primary).await;
    let live = std::fs::read_to_string(&w.primary_config).unwrap();
    // Valid for --config-check, but no broker listens there.
    let new = w.path().join("unreachable.yaml");
    std::fs::write(
        &new,
        with_change(&live, |d| d["kafka"]["brokers"] = "127.0.0.1:9".into()),
    )
    .unwrap();
    let backups = w.path().join("config-backups");
    let out = w
        .run(
            "config-deploy",
            &deploy_params(&w, new.to_str().unwrap(), backups.to_str().unwrap()),
        )
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error.as_deref().unwrap().starts_with("kafka_ok"),
        "{:?}",
        out.error
    );
    assert_eq!(out.steps["rollback"]["status"], "succeeded");
    assert_eq!(std::fs::read_to_string(&w.primary_config).unwrap(), live);
    let cfg = get_json_at(&w.primary, "/admin/config").await;
    assert_eq!(cfg["kafka"]["brokers"], "embedded");
    engine::wait_ready(&w.primary).await;
    assert!(
        w.slack.texts().iter().any(|t| t.contains("not deployed")),
        "{:?}",
        w.slack.texts()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_deploy_refuses_an_invalid_config_before_touching_anything() {
    let w = World::new(WorldOpts::default()).await;
    let live = std::fs::read_to_string(&w.primary_config).unwrap();
    let new = w.path().join("bad.yaml");
    std::fs::write(
        &new,
        with_change(&live, |d| {
            d["resource_limits"]["max_operator_memory"] = (1u64 << 40).into()
        }),
    )
    .unwrap();
    let backups = w.path().join("config-backups");
    let out = w
        .run(
            "config-deploy",
            &deploy_params(&w, new.to_str().unwrap(), backups.to_str().unwrap()),
        )
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error.as_deref().unwrap().starts_with("validate"),
        "{:?}",
        out.error
    );
    assert!(out.steps["pause"].is_null(), "maintenance was enabled");
    assert_eq!(std::fs::read_to_string(&w.primary_config).unwrap(), live);
    assert_eq!(
        get_json_at(&w.primary, "/health").await["maintenance"],
        false
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_adjust_scales_limits_by_the_percentage_within_bounds() {
    let w = World::new(WorldOpts {
        max_total_memory: Some(100 << 20),
        ..WorldOpts::default()
    })
    .await;
    let limits = |c: &J| {
        (
            c["resource_limits"]["max_total_memory"].as_u64().unwrap(),
            c["resource_limits"]["max_operator_memory"]
                .as_u64()
                .unwrap(),
        )
    };
    let (total, op) = limits(&get_json_at(&w.primary, "/admin/config").await);
    let out = w
        .run(
            "resource-adjust",
            &[("action", "increase"), ("percentage", "20")],
        )
        .await;
    assert_succeeded(&out);
    let after = limits(&get_json_at(&w.primary, "/admin/config").await);
    assert_eq!(after, (total * 120 / 100, op * 120 / 100));

    // Decreasing by 90 % would go below min_memory: held at the bound.
    let out = w
        .run(
            "resource-adjust",
            &[
                ("action", "decrease"),
                ("percentage", "90"),
                ("min_memory", &(64u64 << 20).to_string()),
            ],
        )
        .await;
    assert_succeeded(&out);
    let (t, o) = limits(&get_json_at(&w.primary, "/admin/config").await);
    assert_eq!(t, 64 << 20);
    assert_eq!(o, after.1 * 10 / 100);
    w.stop().await;
}
