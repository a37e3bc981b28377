//! `process.*` on real `sluice-engine` processes: scale a supervised target
//! to two processes in one consumer group (instance 1 on port + 100, its
//! config derived with instance 0's embedded broker), back to one, restart,
//! stop; and the clear refusals where nothing is supervised.

use std::path::Path;
use std::time::Duration;

use serde_json::Value as J;
use sluice_automation::exec::executor::RunStatus;
use sluice_automation::runbook::load_str;
use sluice_automation::runbook::validate::{Known, validate};
use sluice_tests::engine::{answers, assigned, metric};
use sluice_tests::net::eventually;
use sluice_tests::sluice::{self, assert_succeeded, output};
use sluice_tests::world::{World, WorldOpts};

fn runbook(yaml: &str) -> std::sync::Arc<sluice_automation::runbook::Runbook> {
    std::sync::Arc::new(load_str(Path::new("inline.yaml"), yaml).expect("inline runbook"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_steps_scale_restart_and_stop_real_engines_in_one_group() {
    let w = World::new(WorldOpts::default()).await;
    let rb = runbook(
        r#"
name: process-steps
steps:
  - id: up
    process.start: {target: primary}
  - id: two
    process.scale: {target: primary, replicas: 9, max: 2}
  - id: status
    process.status: {target: primary}
"#,
    );
    let out = sluice::run(&w.services, &rb, &[]).await;
    assert_succeeded(&out);
    assert_eq!(
        output(&out, "up")["started"],
        false,
        "primary was already running"
    );
    let two = output(&out, "two");
    assert_eq!(two["requested"], 9);
    assert_eq!(two["replicas"], 2);
    assert_eq!(two["clamped"], true);
    let status = output(&out, "status");
    assert_eq!(status["running"], 2);
    assert_eq!(status["healthy"], 2);
    let second = status["instances"][1]["url"].as_str().unwrap().to_string();
    let port0: u16 = w.primary.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(second, format!("http://127.0.0.1:{}", port0 + 100));

    // Instance 1 joined instance 0's broker and group: the 3 partitions are shared.
    let generated = w.path().join(".sluice/instances/primary-1.yaml");
    let cfg: J = serde_json::from_str(&std::fs::read_to_string(&generated).unwrap()).unwrap();
    assert_eq!(cfg["kafka"]["brokers"], w.bootstrap.as_str());
    assert_eq!(cfg["kafka"]["demo"]["enabled"], false);
    let (a, b) = eventually(
        "both instances to hold partitions",
        Duration::from_secs(60),
        || {
            let (p, s) = (w.primary.clone(), second.clone());
            async move {
                let (a, b) = (assigned(&p).await, assigned(&s).await);
                (a > 0 && b > 0 && a + b == 3).then_some((a, b))
            }
        },
    )
    .await;
    assert_eq!(a + b, 3);
    eventually(
        "instance 1 to process records",
        Duration::from_secs(60),
        || {
            let s = second.clone();
            async move {
                metric(&s, "sluice_records_processed_total", "")
                    .await
                    .filter(|n| *n > 0.0)
            }
        },
    )
    .await;

    let old_pid = w.pid("primary").expect("primary pid");
    let rb = runbook(
        r#"
name: process-steps-down
steps:
  - id: one
    process.scale: {target: primary, by: -1}
  - id: restart
    process.restart: {target: primary}
  - id: status
    process.status: {target: primary}
"#,
    );
    let out = sluice::run(&w.services, &rb, &[]).await;
    assert_succeeded(&out);
    let one = output(&out, "one");
    assert_eq!(one["replicas"], 1);
    assert_eq!(one["stopped"][0]["index"], 1);
    assert!(
        one["stopped"][0]["drain"]["drained"] == true,
        "scale-in drains first: {one}"
    );
    assert!(!answers(&second).await, "instance 1 still answers");
    let restarted = &output(&out, "restart")["instances"][0];
    assert_eq!(restarted["previous_pid"], old_pid);
    let new_pid = w.pid("primary").expect("primary pid");
    assert_ne!(new_pid, old_pid);
    assert_eq!(output(&out, "status")["running"], 1);
    eventually(
        "instance 0 to take all partitions",
        Duration::from_secs(60),
        || {
            let p = w.primary.clone();
            async move { (assigned(&p).await == 3).then_some(()) }
        },
    )
    .await;

    let rb =
        runbook("name: process-stop\nsteps:\n  - id: stop\n    process.stop: {target: primary}\n");
    let out = sluice::run(&w.services, &rb, &[]).await;
    assert_succeeded(&out);
    assert_eq!(output(&out, "stop")["count"], 1);
    assert!(
        !answers(&w.primary).await,
        "primary still answers after process.stop"
    );
}

#[tokio::test]
async fn process_steps_refuse_unsupervised_targets_and_missing_supervisors() {
    let config = sluice::config(
        "targets:\n  plain:\n    url: http://127.0.0.1:9\n  managed:\n    url: http://127.0.0.1:9\n    process: {command: [/nonexistent/sluice-engine]}\n",
    );
    let yaml = "name: p\nsteps:\n  - id: a\n    process.start: {target: plain}\n  - id: b\n    process.scale: {target: managed, replicas: 2, min: 3, max: 2}\n  - id: c\n    process.stop: {target: nowhere}\n";
    let rb = load_str(Path::new("p.yaml"), yaml);
    // min > max is refused when the runbook loads.
    let diags = rb.expect_err("min above max");
    assert!(
        diags
            .iter()
            .any(|d| d.to_string().contains("`min` (3) is above `max` (2)")),
        "{diags:?}"
    );
    let yaml = "name: p\nsteps:\n  - id: a\n    process.start: {target: plain}\n  - id: c\n    process.stop: {target: nowhere}\n";
    let rb = load_str(Path::new("p.yaml"), yaml).expect("loads");
    let problems: Vec<String> = validate(
        &rb,
        Known {
            config: Some(&config),
            runbooks: None,
            alerts: None,
        },
    )
    .iter()
    .map(|p| p.message.clone())
    .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("target `plain` has no `process`, `ssh`, `systemd`, `compose` or `kubernetes` section: nothing manages it")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unknown target `nowhere`")),
        "{problems:?}"
    );

    // Without a supervisor (a one-shot `sluice run`) the step says so.
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_automation::store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("runs.db").display()
    ))
    .await
    .unwrap();
    let services = std::sync::Arc::new(
        sluice_automation::exec::context::Services::new(config, Some(store)).unwrap(),
    );
    let rb = runbook("name: q\nsteps:\n  - id: a\n    process.start: {target: managed}\n");
    let out = sluice::run(&services, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("need a process supervisor"),
        "{:?}",
        out.error
    );
    // With one, a program that cannot start is a clear failure.
    let out = {
        let cfg = sluice::config(
            "targets:\n  managed:\n    url: http://127.0.0.1:9\n    process: {command: [/nonexistent/sluice-engine]}\n",
        );
        let s = sluice::services(cfg, dir.path(), None).await;
        sluice::run(&s, &rb, &[]).await
    };
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("/nonexistent/sluice-engine"),
        "{:?}",
        out.error
    );
}
