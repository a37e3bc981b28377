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
    init_logging();
    let (config, config_path) = match &args.config {
        Some(path) => match config::load_file(path) {
            Ok(c) => (c, Some(path.clone())),
            Err(e) => {
                let source = std::fs::read_to_string(path).unwrap_or_default();
                for d in &e.diagnostics {
                    eprintln!("{}", d.render(&source));
                }
                return 1;
            }
        },
        None => (config::EngineConfig::default(), None),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice-engine: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let opts = crate::run::RunOptions {
        config,
        config_path,
        fault_injection: args.enable_fault_injection,
    };
    match runtime.block_on(crate::run::run(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice-engine: {e:#}");
            1
        }
    }
}

/// JSON logs when SLUICE_LOG_FORMAT=json, human logs otherwise; level from RUST_LOG (default info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|v| v == "json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
