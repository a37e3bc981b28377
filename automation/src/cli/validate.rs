//! `sluice validate [PATH…]`: checks runbooks, alert rule files and
//! sluice.yaml; prints every problem as `file:line:column: message` with the
//! offending line, and exits 2 when there is any.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{ExitCode, ValidateArgs};
use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::runbook::validate::Known;
use crate::runbook::{self, Runbook};

/// What a file holds, judged from its name and top-level keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Config,
    Rules,
    /// promtool-format rule tests (run by `sluice rules test`, not checked here).
    RuleTests,
    /// `sluice test` files: `runbook:` and `cases:`.
    RunbookTests,
    Runbook,
}

/// The YAML files under `paths` (directories recursively, sorted).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| Diagnostic::whole_file(p, format!("cannot read: {e}")))?;
        if meta.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| Diagnostic::whole_file(&dir, format!("cannot read: {e}")))?;
                for e in entries.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if matches!(
                        path.extension().and_then(|x| x.to_str()),
                        Some("yaml" | "yml")
                    ) {
                        out.push(path);
                    }
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub fn classify(path: &Path, text: &str) -> FileKind {
    // Content first: the shipped rule file may well be called sluice.yaml.
    if let Ok(node) = crate::yaml::parse(text) {
        if node.get("groups").is_some() {
            return FileKind::Rules;
        }
        if node.get("rule_files").is_some() && node.get("tests").is_some() {
            return FileKind::RuleTests;
        }
        if node.get("runbook").is_some() && node.get("cases").is_some() {
            return FileKind::RunbookTests;
        }
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if matches!(name, "sluice.yaml" | "sluice.yml") {
        return FileKind::Config;
    }
    FileKind::Runbook
}

/// Alert names a rule file defines; its problems go to `diags`.
fn check_rules(path: &Path, text: &str, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    match crate::rules::parse_rule_file(path, text) {
        Ok(file) => file
            .groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter_map(|r| match &r.kind {
                crate::rules::RuleKind::Alert { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect(),
        Err(d) => {
            diags.extend(d);
            Vec::new()
        }
    }
}

/// Every problem in the given files, with the source text of each file for rendering.
pub fn check_paths(paths: &[PathBuf]) -> (Vec<Diagnostic>, BTreeMap<PathBuf, String>, usize) {
    let (diags, _, sources, files) = check_and_lint(paths);
    (diags, sources, files)
}

/// [`check_paths`] plus the lints of every valid runbook.
pub fn check_and_lint(
    paths: &[PathBuf],
) -> (
    Vec<Diagnostic>,
    Vec<Diagnostic>,
    BTreeMap<PathBuf, String>,
    usize,
) {
    let mut diags = Vec::new();
    let mut sources = BTreeMap::new();
    let files = match expand(paths) {
        Ok(f) => f,
        Err(d) => return (vec![d], Vec::new(), sources, 0),
    };
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => {
                sources.insert(f.clone(), text);
            }
            Err(e) => diags.push(Diagnostic::whole_file(f, format!("cannot read: {e}"))),
        }
    }
    // sluice.yaml first: runbooks are checked against its targets and channels.
    let mut config: Option<Config> = None;
    let mut kinds = BTreeMap::new();
    for (path, text) in &sources {
        let kind = classify(path, text);
        kinds.insert(path.clone(), kind);
        if kind == FileKind::Config {
            match Config::parse(path, text, &|n| std::env::var(n).ok()) {
                Ok(c) => config = config.or(Some(c)),
                Err(d) => diags.extend(d),
            }
        }
    }
    if config.is_none() && !kinds.values().any(|k| *k == FileKind::Config) {
        let default = Path::new("sluice.yaml");
        if default.is_file() {
            match Config::load(default) {
                Ok(c) => config = Some(c),
                Err(d) => diags.extend(d),
            }
        }
    }
    // Alert names from the rule files given: `alert:` triggers must name one of them.
    let mut alerts = BTreeSet::new();
    let mut any_rules = false;
    for (path, text) in &sources {
        if kinds[path] == FileKind::Rules {
            any_rules = true;
            alerts.extend(check_rules(path, text, &mut diags));
        }
    }
    // Names first: `runbook` steps may call any of them.
    let mut runbooks: Vec<(PathBuf, Runbook)> = Vec::new();
    let mut all_names = BTreeSet::new();
    for (path, text) in &sources {
        if kinds[path] == FileKind::Runbook
            && let Ok(node) = crate::yaml::parse(text)
            && let Some(name) = node.get("name").and_then(|n| n.as_str())
        {
            all_names.insert(name.to_string());
        }
    }
    for (path, text) in &sources {
        match kinds[path] {
            FileKind::Config | FileKind::Rules | FileKind::RuleTests | FileKind::RunbookTests => {}
            FileKind::Runbook => {
                let known = Known {
                    config: config.as_ref(),
                    runbooks: Some(&all_names),
                    alerts: any_rules.then_some(&alerts),
                };
                let (rb, d) = runbook::check_str(path, text, known);
                diags.extend(d);
                if let Some(rb) = rb {
                    runbooks.push((path.clone(), rb));
                }
            }
        }
    }
    let mut names: BTreeMap<String, &Path> = BTreeMap::new();
    for (path, rb) in &runbooks {
        if let Some(first) = names.get(rb.name.as_str()) {
            diags.push(Diagnostic::new(
                path,
                rb.name.pos.line as usize,
                rb.name.pos.column as usize,
                format!(
                    "runbook name `{}` is also used by {}",
                    rb.name.value,
                    first.display()
                ),
            ));
        } else {
            names.insert(rb.name.value.clone(), path);
        }
    }
    let lints = runbooks
        .iter()
        .flat_map(|(path, rb)| {
            runbook::lint::lint(rb).into_iter().map(move |e| {
                Diagnostic::new(path, e.pos.line as usize, e.pos.column as usize, e.message)
            })
        })
        .collect();
    (diags, lints, sources, files.len())
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        let defaults: Vec<PathBuf> = ["runbooks", "alerts", "sluice.yaml"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        if defaults.is_empty() {
            eprintln!(
                "sluice: nothing to validate (no runbooks/, alerts/ or sluice.yaml here; give paths)"
            );
            return Ok(ExitCode::Invalid);
        }
        defaults
    } else {
        args.paths
    };
    let (mut diags, lints, sources, files) = check_and_lint(&paths);
    let warned = lints.len();
    if args.strict {
        diags.extend(lints);
        diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    } else {
        for d in &lints {
            println!(
                "warning: {}",
                d.render(sources.get(&d.file).map(String::as_str))
            );
        }
    }
    for d in &diags {
        println!("{}", d.render(sources.get(&d.file).map(String::as_str)));
    }
    if diags.is_empty() {
        if warned > 0 {
            eprintln!("{files} file(s) valid, {warned} lint warning(s) (--strict fails on them)");
        } else {
            eprintln!("{files} file(s) valid");
        }
        Ok(ExitCode::Success)
    } else {
        let bad: BTreeSet<&PathBuf> = diags.iter().map(|d| &d.file).collect();
        eprintln!(
            "{} problem(s) in {} of {files} file(s)",
            diags.len(),
            bad.len()
        );
        Ok(ExitCode::Invalid)
    }
}
