//! The `sluice` binary, built as part of this crate so end-to-end tests get
//! its path from Cargo (`CARGO_BIN_EXE_sluice-under-test`).

use clap::Parser;
use sluice_automation::cli::{Cli, ExitCode};

fn main() -> std::process::ExitCode {
    match sluice_automation::cli::run(Cli::parse()) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("sluice: {err:#}");
            ExitCode::Failed.into()
        }
    }
}
