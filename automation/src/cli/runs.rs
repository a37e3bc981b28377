//! `sluice runs [ID]`: recent runs, or one run with its steps (inputs,
//! outputs, logs, errors — secrets already redacted when recorded).

use anyhow::Context as _;

use super::ExitCode;
use super::run::{CommonArgs, load_config, print_diagnostics, store_url};
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Show this run in detail.
    pub id: Option<String>,
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let url = store_url(&config);
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening the run store {}", config.redactor().text(&url)))?;
        match args.id {
            None => {
                let runs = store.list_runs(args.limit.max(1)).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&runs)?);
                } else {
                    for r in runs {
                        println!(
                            "{}  {:<17} {:<28} {} by {} ({})",
                            r.id, r.status, r.runbook, r.started_at, r.who, r.trigger
                        );
                    }
                }
                Ok(ExitCode::Success)
            }
            Some(id) => match store.get_run(&id).await {
                Ok((run, steps)) => {
                    if args.json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &serde_json::json!({"run": run, "steps": steps})
                            )?
                        );
                        return Ok(ExitCode::Success);
                    }
                    println!("run {}: {} ({})", run.id, run.runbook, run.status);
                    println!("  trigger: {} by {}", run.trigger, run.who);
                    println!(
                        "  started: {}  finished: {}",
                        run.started_at,
                        run.finished_at.as_deref().unwrap_or("-")
                    );
                    println!("  params: {}", run.params);
                    if let Some(e) = &run.error {
                        println!("  error: {e}");
                    }
                    for s in steps {
                        println!(
                            "  - {} [{}] {} (attempts {})",
                            s.path, s.kind, s.status, s.attempts
                        );
                        println!("      inputs: {}", s.inputs);
                        if !s.outputs.is_null() {
                            println!("      outputs: {}", s.outputs);
                        }
                        for l in &s.logs {
                            println!("      | {l}");
                        }
                        if let Some(e) = &s.error {
                            println!("      error: {e}");
                        }
                    }
                    Ok(ExitCode::Success)
                }
                Err(StoreError::NoSuchRun(id)) => {
                    eprintln!("sluice: no run `{id}`");
                    Ok(ExitCode::Invalid)
                }
                Err(e) => Err(e.into()),
            },
        }
    })
}
