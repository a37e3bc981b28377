//! Command-line interface: one module per subcommand.
//!
//! Exit codes are the same for every command: 0 success, 1 the thing that ran
//! failed (a runbook, a rule test), 2 invalid input (bad file, bad argument).

use clap::{Parser, Subcommand};

pub mod approve;
pub mod plan;
pub mod replay;
pub mod rules;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod schema;
pub mod serve;
pub mod test;
pub mod up;
pub mod validate;

/// Process exit status shared by every subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything succeeded.
    Success = 0,
    /// What ran (a runbook, a rule test) failed.
    Failed = 1,
    /// The input was invalid: a file, a parameter, an argument.
    Invalid = 2,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// Declarative runbook automation for Kafka stream processors.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate runbooks, alert rule files and sluice.yaml (files or directories).
    Validate(ValidateArgs),
    /// Run a runbook now (`--dry-run`: show what it would do).
    Run(run::RunArgs),
    /// Print a runbook's resolved steps.
    Plan(plan::PlanArgs),
    /// List recent runs, or show one with its steps.
    Runs(runs::RunsArgs),
    /// Approve (or `--reject`) the approval a run waits for.
    Approve(approve::ApproveArgs),
    /// Print the JSON Schema of runbook files (or, with `config`, of sluice.yaml).
    Schema(schema::SchemaArgs),
    /// Run runbook tests (`runbooks/tests/*.yaml`): mocked steps, expected flow.
    Test(test::TestArgs),
    /// Alert rule files: check them, or run promtool-format rule tests.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Start Sluice on the embedded default: a supervised engine on an in-process
    /// Kafka with demo data, and the service with the shipped runbooks and
    /// alerts. Ctrl-C stops everything.
    Up(up::UpArgs),
    /// Run the service: schedules, alert-triggered runbooks, webhooks, the API.
    Serve(serve::ServeArgs),
    /// List schedules and their next fire times.
    Schedule(schedule::ScheduleArgs),
    /// Replay alert rules and runbooks over recorded metrics: what would have fired and run.
    Replay(replay::ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Files or directories to validate (default: runbooks/ alerts/ sluice.yaml).
    pub paths: Vec<std::path::PathBuf>,
    /// Fail on lints too (dangerous but valid runbooks), not only on errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule files for syntax and semantic errors (like `promtool check rules`).
    Check {
        /// Rule files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Run rule unit tests in promtool's `test rules` format.
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Run(args) => run::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Runs(args) => runs::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Test(args) => test::run(args),
        Command::Rules(cmd) => rules::run(cmd),
        Command::Up(args) => up::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Schedule(args) => schedule::run(args),
        Command::Replay(args) => replay::run(args),
    }
}
