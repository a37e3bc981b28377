//! What the runbook tests here share: config and runbooks from YAML text,
//! services over a given store, one call to run a runbook.

use std::path::Path;
use std::sync::Arc;

use sluice_automation::config::Config;
use sluice_automation::exec::context::Services;
use sluice_automation::exec::executor::{RunOutcome, RunRequest, execute};
use sluice_automation::runbook::{Runbook, load_str};
use sluice_automation::store::Store;

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

pub fn services(config: Config, store: Option<Store>) -> Arc<Services> {
    let mut s = Services::new(config, store).expect("services");
    s.approval_poll = std::time::Duration::from_millis(20);
    Arc::new(s)
}

/// Runs `rb` by hand with string parameters.
pub async fn run(sv: &Arc<Services>, rb: &Arc<Runbook>, params: &[(&str, &str)]) -> RunOutcome {
    let req = RunRequest {
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
        trigger: "manual".into(),
        who: "test".into(),
        ..RunRequest::default()
    };
    execute(sv, rb.clone(), req).await.expect("run starts")
}

/// A fresh SQLite store in `dir`.
pub async fn sqlite_store(dir: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", dir.join("runs.db").display()))
        .await
        .expect("sqlite store")
}

/// Fails the test unless the run succeeded, showing its error and `context` (a server log).
pub fn assert_succeeded(out: &RunOutcome, context: &str) {
    assert_eq!(
        out.status,
        sluice_automation::exec::executor::RunStatus::Succeeded,
        "{:?}\n{context}",
        out.error
    );
}
