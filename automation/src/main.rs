//! `sluice`: the automation service and CLI. Thin: parse args, run, map to an exit code.

use clap::Parser;
use sluice_automation::cli::{Cli, ExitCode};

/// mimalloc rather than glibc's malloc: records and requests are allocated on
/// the runtime's workers and freed on the record writer thread (and the
/// reverse), which glibc serves through locked arenas and frequent trims —
/// malloc/free were about 14% of `benches/executor.rs`'s CPU. `no_thp` keeps
/// the RSS at glibc's level (docs/runbooks.md, "Executor overhead").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
