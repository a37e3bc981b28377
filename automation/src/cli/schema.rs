//! `sluice schema`: the JSON Schema (draft-07) of runbook files.

use super::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&crate::runbook::schema::runbook_schema())?
    );
    Ok(ExitCode::Success)
}
