//! Shared test machinery: real loopback HTTP servers (axum on 127.0.0.1:0),
//! services with a fresh SQLite store per test, runbooks from YAML text.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sluice_automation::config::Config;
use sluice_automation::exec::context::Services;
use sluice_automation::exec::executor::{RunOutcome, RunRequest, execute};
use sluice_automation::runbook::{Runbook, load_str};
use sluice_automation::store::Store;

/// Serves `router` on a free loopback port until the test's runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A config parsed from YAML (no environment).
pub fn config(yaml: &str) -> Config {
    Config::parse(Path::new("test-sluice.yaml"), yaml, &|_| None)
        .unwrap_or_else(|d| panic!("bad test config: {d:?}"))
}

pub fn runbook(yaml: &str) -> Arc<Runbook> {
    Arc::new(load_str(Path::new("test.yaml"), yaml).unwrap_or_else(|d| {
        let msgs: Vec<String> = d.iter().map(|x| x.render(Some(yaml))).collect();
        panic!("bad test runbook:\n{}", msgs.join("\n"))
    }))
}

/// Services with a fresh SQLite store in `dir`.
pub async fn services(config: Config, dir: &Path) -> Arc<Services> {
    let url = format!("sqlite://{}", dir.join("runs.db").display());
    let store = Store::connect(&url).await.expect("sqlite store");
    let mut s = Services::new(config, Some(store)).expect("services");
    s.approval_poll = std::time::Duration::from_millis(20);
    Arc::new(s)
}

pub async fn run(
    services: &Arc<Services>,
    rb: &Arc<Runbook>,
    params: &[(&str, &str)],
) -> RunOutcome {
    let req = RunRequest {
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
        trigger: "manual".into(),
        who: "test".into(),
        ..RunRequest::default()
    };
    execute(services, rb.clone(), req)
        .await
        .expect("run starts")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The step record `path` of a run.
pub async fn step_record(
    services: &Services,
    run_id: &str,
    path: &str,
) -> sluice_automation::store::StepRecord {
    let (_, steps) = services
        .store
        .as_ref()
        .expect("store")
        .get_run(run_id)
        .await
        .expect("run recorded");
    steps
        .into_iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("no step record {path}"))
}

/// Every path under `dir` with what it is: file size and sha256, symlink
/// target, or directory — to prove an operation changed nothing. The run
/// store's own files (`runs.db*`) are left out: recording a run is expected.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    use sha2::Digest;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with("runs.db") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            let what = if meta.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&p).expect("link").display()
                )
            } else if meta.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                let data = std::fs::read(&p).expect("read");
                format!(
                    "file {} {}",
                    data.len(),
                    hex::encode(sha2::Sha256::digest(&data))
                )
            };
            out.insert(p, what);
        }
    }
    out
}

/// Runs under `dir` whose store has no run at all.
pub async fn no_runs(services: &Services) -> bool {
    services
        .store
        .as_ref()
        .expect("store")
        .list_runs(100)
        .await
        .expect("list runs")
        .is_empty()
}
