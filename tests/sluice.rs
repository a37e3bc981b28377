//! Sluice for tests: a service config pointing at the test's engines and
//! receivers, `Services` with a process supervisor and a fresh SQLite store,
//! and the shipped runbooks (`runbooks/*.yaml`) loaded and validated against
//! that config, run through the library's executor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as J;
use sluice_automation::config::Config;
use sluice_automation::exec::context::Services;
use sluice_automation::exec::executor::{RunOutcome, RunRequest, RunStatus, execute};
use sluice_automation::process::Supervisor;
use sluice_automation::runbook::validate::{Known, validate};
use sluice_automation::runbook::{Runbook, load_file};
use sluice_automation::store::Store;

use crate::net::eventually;

/// The workspace root (where `runbooks/` and `alerts/` live).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A sluice.yaml parsed from text (no environment substitution).
pub fn config(yaml: &str) -> Config {
    Config::parse(Path::new("test-sluice.yaml"), yaml, &|_| None)
        .unwrap_or_else(|d| panic!("bad test config: {d:?}\n{yaml}"))
}

/// A supervised target block for sluice.yaml: the engine binary with `config`.
pub fn supervised_target(name: &str, port: u16, config: &Path, cwd: &Path) -> String {
    format!(
        "  {name}:\n    url: http://127.0.0.1:{port}\n    process:\n      command: [{bin}, --config, {config}, --enable-fault-injection]\n      cwd: {cwd}\n",
        bin = crate::engine::engine_bin().display(),
        config = config.display(),
        cwd = cwd.display(),
    )
}

/// Channels every shipped runbook may name, pointing at the test's receivers.
pub fn channels(slack_url: &str, smtp_port: u16) -> String {
    format!(
        "channels:\n  oncall-slack:\n    slack: {{webhook_url: '{slack_url}'}}\n  ops-email:\n    email:\n      smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none}}\n      from: sluice@localhost\n      to: [ops@localhost]\n"
    )
}

/// Services with `supervisor` (none: a fresh one) and a fresh SQLite store in `dir`.
pub async fn services(
    config: Config,
    dir: &Path,
    supervisor: Option<Arc<Supervisor>>,
) -> Arc<Services> {
    let url = format!("sqlite://{}", dir.join("runs.db").display());
    let store = Store::connect(&url).await.expect("sqlite store");
    let mut s = Services::new(config, Some(store)).expect("services");
    s.approval_poll = Duration::from_millis(50);
    s.supervisor = Some(supervisor.unwrap_or_default());
    Arc::new(s)
}

/// The shipped runbook `runbooks/<name>.yaml`, validated against `config`.
pub fn library(name: &str, config: &Config) -> Arc<Runbook> {
    load(
        &repo().join("runbooks").join(format!("{name}.yaml")),
        config,
    )
}

fn load(path: &Path, config: &Config) -> Arc<Runbook> {
    let rb = load_file(path).unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
    let problems = validate(
        &rb,
        Known {
            config: Some(config),
            runbooks: None,
            alerts: None,
        },
    );
    assert!(
        problems.is_empty(),
        "{} does not validate against the test config: {problems:?}",
        path.display()
    );
    Arc::new(rb)
}

/// Runs a runbook by hand with `params`.
pub async fn run(
    services: &Arc<Services>,
    rb: &Arc<Runbook>,
    params: &[(&str, &str)],
) -> RunOutcome {
    let req = RunRequest {
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), J::String(v.to_string())))
            .collect(),
        trigger: "manual".into(),
        who: "e2e".into(),
        ..RunRequest::default()
    };
    execute(services, rb.clone(), req)
        .await
        .expect("run starts")
}

/// Asserts a run succeeded, showing the failing step and the step records otherwise.
pub fn assert_succeeded(out: &RunOutcome) {
    assert_eq!(
        out.status,
        RunStatus::Succeeded,
        "run failed: {:?}\nsteps: {:#}",
        out.error,
        out.steps
    );
}

/// `steps.<id>.output` of a finished run.
pub fn output<'a>(out: &'a RunOutcome, step: &str) -> &'a J {
    &out.steps[step]["output"]
}

/// Approves the first pending approval that shows up, as `who` (for runbooks that ask).
pub async fn approve_next(services: Arc<Services>, who: &'static str) -> String {
    let store = services.store.as_ref().expect("store");
    let run_id = eventually("a pending approval", Duration::from_secs(60), || async {
        store
            .pending_approvals()
            .await
            .ok()
            .and_then(|p| p.first().map(|a| a.run_id.clone()))
    })
    .await;
    store
        .decide(&run_id, true, who, Some("upstream is back"))
        .await
        .expect("decide");
    run_id
}

/// Verifies a backup archive (every checksum) and reads back its entries:
/// the manifest and each entry's path with its bytes.
pub fn unpack(
    archive: &Path,
) -> Result<
    (
        sluice_automation::exec::steps::backup::Manifest,
        std::collections::BTreeMap<String, Vec<u8>>,
    ),
    String,
> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (manifest, _) = sluice_automation::exec::steps::restore::restore(
        archive,
        dir.path(),
        false,
        Default::default(),
    )?;
    let mut files = std::collections::BTreeMap::new();
    for e in &manifest.entries {
        let bytes = std::fs::read(dir.path().join(&e.path)).map_err(|x| x.to_string())?;
        files.insert(e.path.clone(), bytes);
    }
    Ok((manifest, files))
}

/// The engine state (`state.json`) in a verified backup archive.
pub fn state_in(archive: &Path) -> J {
    let (_, files) = unpack(archive).expect("the archive verifies");
    files
        .iter()
        .find(|(p, _)| p.ends_with("state.json"))
        .map(|(_, d)| serde_json::from_slice(d).expect("state.json is JSON"))
        .expect("state.json in the archive")
}

/// `sluice serve` in-process on a free loopback port: `config` is written to
/// `dir/sluice.yaml`; no file watching; the system clock.
pub async fn serve(dir: &Path, config: &str) -> sluice_automation::service::Handle {
    std::fs::create_dir_all(dir).expect("service dir");
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, config).expect("write sluice.yaml");
    sluice_automation::service::Service::start(sluice_automation::service::Options {
        config_path: path,
        listen: Some("127.0.0.1:0".parse().expect("loopback")),
        store_url: None,
        clock: Arc::new(sluice_automation::schedule::scheduler::SystemClock),
        watch: false,
        supervisor: None,
    })
    .await
    .unwrap_or_else(|e| panic!("the service starts: {e:#}\n{config}"))
}
