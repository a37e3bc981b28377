//! Command line: `sluice-engine --config FILE` runs the engine,
//! `sluice-engine --config-check FILE` validates a config and exits 0/1.

use std::path::PathBuf;

use clap::Parser;

use crate::config;

/// Streaming SQL engine over Kafka.
#[derive(Debug, Parser)]
#[command(name = "sluice-engine", version, about)]
pub struct Args {
    /// Engine config file (YAML). Without it, the embedded defaults are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate FILE and exit: 0 when valid, 1 with `FILE:LINE:COL: field: message` otherwise.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub config_check: Option<PathBuf>,
    /// Enable the /admin/fault-injection endpoints (testing only).
    #[arg(long)]
    pub enable_fault_injection: bool,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    if let Some(path) = &args.config_check {
        return match config::check_file(path) {
            Ok(c) => {
                println!(
                    "{}: ok ({} quer{})",
                    path.display(),
                    c.queries.len(),
                    if c.queries.len() == 1 { "y" } else { "ies" }
                );
                0
            }
            Err(e) => {
                let source = std::fs::read_to_string(path).unwrap_or_default();
                for d in &e.diagnostics {
                    eprintln!("{}", d.render(&source));
                }
                1
            }
        };
    }
    eprintln!("sluice-engine: running requires the pipeline (not built yet); use --config-check");
    2
}
