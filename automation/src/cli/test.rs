//! `sluice test [PATH…]`: run runbook test files (default `runbooks/tests`).
//! No step acts: see [`crate::runbook::unittest`].

use std::path::PathBuf;

use anyhow::Context;

use super::ExitCode;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files or directories (default: runbooks/tests).
    pub paths: Vec<PathBuf>,
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("runbooks/tests")]
    } else {
        args.paths
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let code = rt.block_on(crate::runbook::unittest::run_paths(
        &paths,
        &mut std::io::stdout(),
    ))?;
    Ok(code)
}
