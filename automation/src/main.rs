//! `sluice`: the automation service and CLI. Thin: parse args, run, map to an exit code.

use clap::Parser;
use sluice_automation::cli::{Cli, ExitCode};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match sluice_automation::cli::run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("sluice: {err:#}");
            ExitCode::Failed.into()
        }
    }
}
