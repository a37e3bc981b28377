//! `sluice schema`: the JSON Schema (draft-07) of runbook files, or with
//! `config` of sluice.yaml (its targets and their drivers in full).

use super::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// `runbook` (default) or `config`.
    #[arg(default_value = "runbook", value_parser = ["runbook", "config"])]
    pub of: String,
}

pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = match args.of.as_str() {
        "config" => crate::config::schema::config_schema(),
        _ => crate::runbook::schema::runbook_schema(),
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::Success)
}
