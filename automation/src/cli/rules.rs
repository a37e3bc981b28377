//! `sluice rules check` and `sluice rules test`: promtool's `check rules` and
//! `test rules`, with the same report shape.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::{ExitCode, RulesCommand};
use crate::rules::{self, RuleKind};

/// Runs one `rules` subcommand, writing the report to stdout.
pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        RulesCommand::Check { files } => Ok(check(&files, &mut out)?),
        RulesCommand::Test { files } => Ok(crate::rules::unittest::run_files(&files, &mut out)?),
    }
}

/// `promtool check rules`: per file, SUCCESS with the rule count or FAILED
/// with every problem at its file:line:column. Exit 1 when any file has problems.
pub fn check(files: &[PathBuf], out: &mut dyn Write) -> std::io::Result<ExitCode> {
    let mut failed = false;
    for path in files {
        writeln!(out, "Checking {}", path.display())?;
        match rules::load_rule_file(path) {
            Ok(file) => {
                let count: usize = file.groups.iter().map(|g| g.rules.len()).sum();
                let dups = duplicate_records(&file);
                if !dups.is_empty() {
                    writeln!(out, "{} duplicate rule(s) found.", dups.len())?;
                    for (name, labels) in dups {
                        writeln!(out, "Metric: {name}\nLabel(s):")?;
                        for (k, v) in labels {
                            writeln!(out, "\t{k}: {v}")?;
                        }
                    }
                    writeln!(
                        out,
                        "Might cause inconsistency while recording expressions."
                    )?;
                }
                writeln!(out, "  SUCCESS: {count} rules found")?;
            }
            Err(diags) => {
                failed = true;
                writeln!(out, "  FAILED:")?;
                let source = std::fs::read_to_string(path).ok();
                for d in diags {
                    writeln!(out, "{}", d.render(source.as_deref()))?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(if failed {
        ExitCode::Failed
    } else {
        ExitCode::Success
    })
}

/// Recording rules with the same name and labels in one file, as promtool warns.
fn duplicate_records(file: &rules::RuleFile) -> Vec<(String, BTreeMap<String, String>)> {
    let mut seen: BTreeMap<(String, Vec<(String, String)>), usize> = BTreeMap::new();
    for g in &file.groups {
        for r in &g.rules {
            if let RuleKind::Record { name } = &r.kind {
                let labels = r
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                *seen.entry((name.clone(), labels)).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((name, labels), _)| (name, labels.into_iter().collect()))
        .collect()
}
