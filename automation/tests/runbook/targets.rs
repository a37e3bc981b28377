//! The systemd (on this machine) and compose drivers against recording
//! stand-ins for `systemctl` and `docker compose` (no systemd as PID 1 and no
//! Docker engine can run here), checked command by command against the
//! forms the tools document; health from a real loopback HTTP server.

use std::path::{Path, PathBuf};

use axum::routing::get;
use sluice_automation::exec::executor::RunStatus;

use super::harness::{config, run, runbook, serve, services, tempdir};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/testdata")
        .join(name)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn health_server() -> String {
    let addr = serve(axum::Router::new().route("/healthz", get(|| async { "ok" }))).await;
    format!("http://{addr}")
}

#[tokio::test]
async fn systemd_here_starts_restarts_and_stops_the_unit_with_documented_commands() {
    let dir = tempdir();
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("units")).unwrap();
    // The unit's process: a sleep the stand-in starts for real.
    std::fs::write(
        host.join("units/worker.service"),
        "[Service]\nExecStart=sleep 300\n",
    )
    .unwrap();
    let url = health_server().await;
    let yaml = format!(
        "targets:\n  worker:\n    url: {url}\n    health: /healthz\n    systemd:\n      unit: worker.service\n      systemctl: [env, 'SLUICE_HOST_DIR={}', '{}']\n",
        host.display(),
        testdata("fake-systemctl").display()
    );
    let sv = services(config(&yaml), dir.path()).await;
    let rb = runbook(
        r#"
name: cycle
steps:
  - id: start
    process.start: {target: worker, ready_timeout: 10s}
  - id: again
    process.start: {target: worker, ready_timeout: 10s}
  - id: restart
    process.restart: {target: worker, ready_timeout: 10s}
  - id: status
    process.status: {target: worker}
  - id: stop
    process.stop: {target: worker}
"#,
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(
        out.status,
        RunStatus::Succeeded,
        "{:?} {:#}",
        out.error,
        out.steps
    );
    let o = |id: &str| &out.steps[id]["output"];
    assert_eq!(o("start")["hosts"]["local"]["started"], true);
    assert_eq!(
        o("again")["hosts"]["local"]["started"],
        false,
        "already running"
    );
    assert_eq!(o("status")["running"], 1);
    assert_eq!(o("status")["healthy"], 1);
    assert_eq!(
        o("status")["hosts"]["local"]["detail"]["ActiveState"],
        "active"
    );
    assert_eq!(o("stop")["hosts"]["local"]["state"], "stopped");
    let calls = lines(&host.join("systemctl.log"));
    let verbs: Vec<&str> = calls
        .iter()
        .filter(|l| !l.starts_with("show "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        verbs,
        [
            "start worker.service",
            "restart worker.service",
            "stop worker.service"
        ]
    );
    assert!(calls.iter().any(|l| {
        l == "show --property=ActiveState,SubState,MainPID,NRestarts,Result,UnitFileState worker.service"
    }));
}

#[tokio::test]
async fn a_unit_that_is_not_installed_fails_the_start_with_systemctls_own_words() {
    let dir = tempdir();
    let host = dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let yaml = format!(
        "targets:\n  worker:\n    url: http://127.0.0.1:1\n    systemd:\n      unit: missing.service\n      systemctl: [env, 'SLUICE_HOST_DIR={}', '{}']\n",
        host.display(),
        testdata("fake-systemctl").display()
    );
    let sv = services(config(&yaml), dir.path()).await;
    let rb = runbook("name: s\nsteps:\n  - id: s\n    process.start: {target: worker}\n");
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.steps["s"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("Unit missing.service not found"), "{err}");
}

#[tokio::test]
async fn compose_drives_one_service_of_a_project_and_scales_it() {
    let dir = tempdir();
    let state = dir.path().join("docker");
    std::fs::create_dir_all(&state).unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, "services:\n  semstreams: {image: semstreams}\n").unwrap();
    let url = health_server().await;
    let yaml = format!(
        "targets:\n  streams:\n    url: {url}\n    health: /healthz\n    compose:\n      project: semstreams\n      service: semstreams\n      files: ['{}']\n      command: [env, 'FAKE_DOCKER_DIR={}', '{}', compose]\n",
        file.display(),
        state.display(),
        testdata("fake-docker").display()
    );
    let sv = services(config(&yaml), dir.path()).await;
    let rb = runbook(
        r#"
name: compose
steps:
  - id: start
    process.start: {target: streams, ready_timeout: 10s}
  - id: scale
    process.scale: {target: streams, replicas: 3, ready_timeout: 10s}
  - id: restart
    process.restart: {target: streams, ready_timeout: 10s}
  - id: status
    process.status: {target: streams}
  - id: stop
    process.stop: {target: streams}
"#,
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(
        out.status,
        RunStatus::Succeeded,
        "{:?} {:#}",
        out.error,
        out.steps
    );
    let o = |id: &str| &out.steps[id]["output"];
    assert_eq!(o("scale")["previous"], 1);
    assert_eq!(o("scale")["replicas"], 3);
    assert_eq!(o("status")["hosts"]["local"]["detail"]["running"], 3);
    assert_eq!(o("stop")["hosts"]["local"]["state"], "stopped");
    let f = file.display().to_string();
    let head = format!("compose -p semstreams -f {f}");
    let calls: Vec<String> = lines(&state.join("calls.log"))
        .into_iter()
        .filter(|l| !l.contains(" ps --all --format json "))
        .collect();
    assert_eq!(
        calls,
        [
            format!("{head} up -d --no-deps semstreams"),
            format!("{head} up -d --no-deps --scale semstreams=3 semstreams"),
            format!("{head} restart semstreams"),
            format!("{head} stop semstreams"),
        ]
    );
}

#[tokio::test]
async fn validation_refuses_what_a_driver_cannot_do_at_the_steps_target() {
    let yaml = "targets:\n  unit:\n    url: http://x:1\n    systemd: {unit: e.service}\n  web:\n    url: http://x:1\n";
    let cfg = config(yaml);
    let text = "name: v\nsteps:\n  - id: s\n    process.scale: {target: unit, by: 1}\n  - id: t\n    process.start: {target: web}\n  - id: u\n    ssh: {target: unit, command: [uptime]}\n";
    let (_, errs) = sluice_automation::runbook::check_str(
        Path::new("v.yaml"),
        text,
        sluice_automation::runbook::validate::Known {
            config: Some(&cfg),
            runbooks: None,
            alerts: None,
        },
    );
    let shown: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    assert!(
        shown.iter().any(|m| m
            .starts_with("v.yaml:4:29: target `unit` (systemd driver, this machine) cannot scale")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|m| m.starts_with("v.yaml:6:29:") && m.contains("nothing manages it")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|m| m.starts_with("v.yaml:8:19:") && m.contains("no `ssh` inventory")),
        "{shown:#?}"
    );
}
