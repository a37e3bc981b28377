//! `sluice approve RUN_ID [--reject] [--comment …]`: decides the approval a
//! run is waiting for; the waiting run (in this or another process) resumes.

use anyhow::Context as _;

use super::ExitCode;
use super::run::{CommonArgs, load_config, print_diagnostics, store_url};
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    pub run_id: String,
    /// Reject instead of approving.
    #[arg(long)]
    pub reject: bool,
    /// Why (recorded with the decision).
    #[arg(long)]
    pub comment: Option<String>,
    /// Who decides (recorded; default $USER).
    #[arg(long)]
    pub who: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    let who = args
        .who
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let url = store_url(&config);
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening the run store {}", config.redactor().text(&url)))?;
        match store
            .decide(&args.run_id, !args.reject, &who, args.comment.as_deref())
            .await
        {
            Ok(paths) => {
                let verb = if args.reject { "rejected" } else { "approved" };
                println!("{verb} {} ({})", args.run_id, paths.join(", "));
                Ok(ExitCode::Success)
            }
            Err(
                e @ (StoreError::NoPendingApproval(_)
                | StoreError::NotAnApprover { .. }
                | StoreError::SelfApproval { .. }),
            ) => {
                eprintln!("sluice: {e}");
                Ok(ExitCode::Invalid)
            }
            Err(e) => Err(e.into()),
        }
    })
}
