//! The runbooks and rule files the service runs, loaded from the configured
//! paths and reloaded when they change. A changed file is validated first and
//! swapped in only when valid: an invalid file keeps its previous version in
//! effect (or none, when it never was valid) and is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cli::validate::{FileKind, classify, expand};
use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::rules::{RuleFile, RuleKind};
use crate::runbook::model::{CatchUp, Trigger};
use crate::runbook::validate::Known;
use crate::runbook::{self, Runbook};
use crate::schedule::Schedule;
use crate::schedule::scheduler::Entry;

/// A runbook in effect, with the text it was loaded from.
#[derive(Debug)]
pub struct LoadedRunbook {
    pub runbook: Arc<Runbook>,
    pub path: PathBuf,
    pub text: String,
    pub loaded_at: DateTime<Utc>,
}

impl LoadedRunbook {
    pub fn name(&self) -> &str {
        &self.runbook.name.value
    }
}

/// What the service knows about one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub path: String,
    /// `runbook` or `rules`.
    pub kind: &'static str,
    pub valid: bool,
    /// Which version runs: `current`, `previous` (the file is invalid now), or `none`.
    pub in_effect: &'static str,
    /// The runbook name this file provides, when one is in effect.
    pub runbook: Option<String>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub checked_at: String,
}

#[derive(Debug)]
struct RunbookFile {
    hash: u64,
    good: Option<Arc<LoadedRunbook>>,
    status: FileStatus,
}

#[derive(Debug)]
struct RulesFile {
    hash: u64,
    good: Option<RuleFile>,
    status: FileStatus,
}

/// An alert trigger of a runbook.
#[derive(Debug, Clone)]
pub struct AlertTrigger {
    pub runbook: Arc<LoadedRunbook>,
    pub labels: BTreeMap<String, String>,
    pub matchers: Vec<crate::dispatch::Matcher>,
    pub on_resolved: bool,
}

impl AlertTrigger {
    /// Whether an alert with `labels` is one this trigger wants.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        crate::runbook::model::alert_wanted(&self.labels, &self.matchers, labels)
    }
}

/// A schedule trigger of a runbook.
#[derive(Debug, Clone)]
pub struct ScheduleTrigger {
    pub entry: Entry,
    pub runbook: Arc<LoadedRunbook>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadReport {
    pub at: String,
    /// No file is invalid.
    pub ok: bool,
    /// Files whose new content is now in effect.
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Files with problems (their previous version, if any, stays in effect).
    pub invalid: Vec<FileStatus>,
    /// The rule files in effect changed (rule groups must be rebuilt).
    pub rules_changed: bool,
}

/// Runbooks and rule files in effect.
#[derive(Debug, Default)]
pub struct Library {
    runbook_files: BTreeMap<PathBuf, RunbookFile>,
    rule_files: BTreeMap<PathBuf, RulesFile>,
    by_name: BTreeMap<String, Arc<LoadedRunbook>>,
    alerts: BTreeMap<String, Vec<AlertTrigger>>,
    hooks: BTreeMap<String, Vec<Arc<LoadedRunbook>>>,
    schedules: Vec<ScheduleTrigger>,
    pub last_reload: ReloadReport,
}

fn hash_text(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn render(diags: &[Diagnostic], text: Option<&str>) -> Vec<String> {
    diags.iter().map(|d| d.render(text)).collect()
}

/// Reads the YAML files under `paths` (missing paths are reported).
fn read_all(paths: &[PathBuf]) -> (BTreeMap<PathBuf, String>, Vec<Diagnostic>) {
    let mut out = BTreeMap::new();
    let mut diags = Vec::new();
    for p in paths {
        match expand(std::slice::from_ref(p)) {
            Ok(files) => {
                for f in files {
                    match std::fs::read_to_string(&f) {
                        Ok(t) => {
                            out.insert(f, t);
                        }
                        Err(e) => {
                            diags.push(Diagnostic::whole_file(&f, format!("cannot read: {e}")))
                        }
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    (out, diags)
}

impl Library {
    /// Re-reads every file under `runbook_paths` and `rule_paths`, swapping in
    /// each valid change.
    pub fn reload(
        &mut self,
        config: &Config,
        runbook_paths: &[PathBuf],
        rule_paths: &[PathBuf],
    ) -> ReloadReport {
        let now = Utc::now();
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut report = ReloadReport {
            at: stamp.clone(),
            ..ReloadReport::default()
        };
        let (rule_texts, rule_read_errors) = read_all(rule_paths);
        let (rb_texts, rb_read_errors) = read_all(runbook_paths);

        // Rules first: runbook alert triggers are checked against their alert names.
        let mut seen_rules = BTreeSet::new();
        for (path, text) in &rule_texts {
            if classify(path, text) != FileKind::Rules {
                continue;
            }
            seen_rules.insert(path.clone());
            let hash = hash_text(text);
            let prev = self.rule_files.remove(path);
            let changed = prev.as_ref().is_none_or(|p| p.hash != hash);
            let entry = match crate::rules::parse_rule_file(path, text) {
                Ok(file) => {
                    if changed || prev.as_ref().is_some_and(|p| !p.status.valid) {
                        report.changed.push(path.display().to_string());
                        report.rules_changed = true;
                    }
                    RulesFile {
                        hash,
                        good: Some(file),
                        status: FileStatus {
                            path: path.display().to_string(),
                            kind: "rules",
                            valid: true,
                            in_effect: "current",
                            runbook: None,
                            problems: Vec::new(),
                            warnings: Vec::new(),
                            checked_at: stamp.clone(),
                        },
                    }
                }
                Err(diags) => {
                    let good = prev.and_then(|p| p.good);
                    RulesFile {
                        hash,
                        status: FileStatus {
                            path: path.display().to_string(),
                            kind: "rules",
                            valid: false,
                            in_effect: if good.is_some() { "previous" } else { "none" },
                            runbook: None,
                            problems: render(&diags, Some(text)),
                            warnings: Vec::new(),
                            checked_at: stamp.clone(),
                        },
                        good,
                    }
                }
            };
            self.rule_files.insert(path.clone(), entry);
        }
        for gone in self
            .rule_files
            .keys()
            .filter(|p| !seen_rules.contains(*p))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.rule_files.remove(&gone);
            report.removed.push(gone.display().to_string());
            report.rules_changed = true;
        }
        let alert_names: BTreeSet<String> = self
            .rule_files
            .values()
            .filter_map(|f| f.good.as_ref())
            .flat_map(|f| &f.groups)
            .flat_map(|g| &g.rules)
            .filter_map(|r| match &r.kind {
                RuleKind::Alert { name, .. } => Some(name.clone()),
                RuleKind::Record { .. } => None,
            })
            .collect();

        // Runbooks: every name first (runbook steps may call any of them).
        let runbook_texts: BTreeMap<&PathBuf, &String> = rb_texts
            .iter()
            .filter(|(p, t)| classify(p, t) == FileKind::Runbook)
            .collect();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for text in runbook_texts.values() {
            if let Ok(node) = crate::yaml::parse(text)
                && let Some(name) = node.get("name").and_then(|n| n.as_str())
            {
                names.insert(name.to_string());
            }
        }
        let mut seen = BTreeSet::new();
        for (path, text) in &runbook_texts {
            let path = (*path).clone();
            seen.insert(path.clone());
            let hash = hash_text(text);
            let prev = self.runbook_files.remove(&path);
            let changed = prev.as_ref().is_none_or(|p| p.hash != hash);
            let known = Known {
                config: Some(config),
                runbooks: Some(&names),
                alerts: None,
            };
            let (rb, diags) = runbook::check_str(&path, text, known);
            let entry = match rb {
                Some(rb) if diags.is_empty() => {
                    let warnings = trigger_warnings(&rb, &alert_names, config);
                    let unchanged_good = prev
                        .as_ref()
                        .filter(|p| !changed && p.status.valid)
                        .and_then(|p| p.good.clone());
                    let good = unchanged_good.unwrap_or_else(|| {
                        Arc::new(LoadedRunbook {
                            runbook: Arc::new(rb.clone()),
                            path: path.clone(),
                            text: (*text).clone(),
                            loaded_at: now,
                        })
                    });
                    if changed || prev.as_ref().is_some_and(|p| !p.status.valid) {
                        report.changed.push(path.display().to_string());
                    }
                    RunbookFile {
                        hash,
                        status: FileStatus {
                            path: path.display().to_string(),
                            kind: "runbook",
                            valid: true,
                            in_effect: "current",
                            runbook: Some(rb.name.value.clone()),
                            problems: Vec::new(),
                            warnings,
                            checked_at: stamp.clone(),
                        },
                        good: Some(good),
                    }
                }
                _ => {
                    let good = prev.and_then(|p| p.good);
                    RunbookFile {
                        hash,
                        status: FileStatus {
                            path: path.display().to_string(),
                            kind: "runbook",
                            valid: false,
                            in_effect: if good.is_some() { "previous" } else { "none" },
                            runbook: good.as_ref().map(|g| g.name().to_string()),
                            problems: render(&diags, Some(text)),
                            warnings: Vec::new(),
                            checked_at: stamp.clone(),
                        },
                        good,
                    }
                }
            };
            self.runbook_files.insert(path, entry);
        }
        for gone in self
            .runbook_files
            .keys()
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.runbook_files.remove(&gone);
            report.removed.push(gone.display().to_string());
        }

        // One file per name: a second file using a name in effect is refused.
        let mut by_name: BTreeMap<String, Arc<LoadedRunbook>> = BTreeMap::new();
        let mut owner: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, f) in self.runbook_files.iter_mut() {
            let Some(good) = &f.good else { continue };
            let name = good.name().to_string();
            if let Some(first) = owner.get(&name) {
                f.status.valid = false;
                f.status.in_effect = "none";
                f.status.problems.push(format!(
                    "{}: runbook name `{name}` is also used by {}",
                    path.display(),
                    first.display()
                ));
                continue;
            }
            owner.insert(name.clone(), path.clone());
            by_name.insert(name, good.clone());
        }
        for (path, d) in rb_read_errors
            .iter()
            .chain(&rule_read_errors)
            .map(|d| (d.file.clone(), d))
        {
            report.invalid.push(FileStatus {
                path: path.display().to_string(),
                kind: "file",
                valid: false,
                in_effect: "none",
                runbook: None,
                problems: vec![d.to_string()],
                warnings: Vec::new(),
                checked_at: stamp.clone(),
            });
        }
        report
            .invalid
            .extend(self.files().into_iter().filter(|s| !s.valid));
        report.ok = report.invalid.is_empty();
        self.by_name = by_name;
        self.index();
        self.last_reload = report.clone();
        report
    }

    /// Rebuilds the trigger indexes from the runbooks in effect.
    fn index(&mut self) {
        self.alerts.clear();
        self.hooks.clear();
        self.schedules.clear();
        for rb in self.by_name.values() {
            for t in &rb.runbook.triggers {
                match &t.value {
                    Trigger::Alert {
                        name,
                        labels,
                        matchers,
                        on_resolved,
                    } => self
                        .alerts
                        .entry(name.value.clone())
                        .or_default()
                        .push(AlertTrigger {
                            runbook: rb.clone(),
                            labels: labels.clone(),
                            matchers: matchers.clone(),
                            on_resolved: *on_resolved,
                        }),
                    Trigger::Webhook { name } => self
                        .hooks
                        .entry(name.value.clone())
                        .or_default()
                        .push(rb.clone()),
                    Trigger::Schedule {
                        cron,
                        timezone,
                        catch_up,
                    } => {
                        if let Ok(schedule) = Schedule::parse(cron.as_str(), Some(timezone.name()))
                        {
                            self.schedules.push(ScheduleTrigger {
                                entry: Entry {
                                    id: schedule_id(rb.name(), cron.as_str(), timezone.name()),
                                    schedule,
                                    catch_up: match catch_up {
                                        CatchUp::Skip => crate::schedule::CatchUp::Skip,
                                        CatchUp::Once => crate::schedule::CatchUp::Once,
                                    },
                                },
                                runbook: rb.clone(),
                            });
                        }
                    }
                    Trigger::Manual => {}
                }
            }
        }
    }

    pub fn runbook(&self, name: &str) -> Option<Arc<LoadedRunbook>> {
        self.by_name.get(name).cloned()
    }

    pub fn runbooks(&self) -> impl Iterator<Item = &Arc<LoadedRunbook>> {
        self.by_name.values()
    }

    pub fn alert_triggers(&self, alertname: &str) -> &[AlertTrigger] {
        self.alerts.get(alertname).map_or(&[], Vec::as_slice)
    }

    pub fn hook_runbooks(&self, hook: &str) -> &[Arc<LoadedRunbook>] {
        self.hooks.get(hook).map_or(&[], Vec::as_slice)
    }

    pub fn schedules(&self) -> &[ScheduleTrigger] {
        &self.schedules
    }

    /// Rule files in effect (the previous version of an invalid one).
    pub fn rule_files(&self) -> Vec<RuleFile> {
        self.rule_files
            .values()
            .filter_map(|f| f.good.clone())
            .collect()
    }

    /// Status of every file, runbooks then rules.
    pub fn files(&self) -> Vec<FileStatus> {
        self.runbook_files
            .values()
            .map(|f| f.status.clone())
            .chain(self.rule_files.values().map(|f| f.status.clone()))
            .collect()
    }

    /// Status of the file providing `name`.
    pub fn status_of(&self, name: &str) -> Option<FileStatus> {
        let rb = self.by_name.get(name)?;
        self.runbook_files.get(&rb.path).map(|f| f.status.clone())
    }
}

/// Stable id of a schedule: a changed cron line or zone is a new schedule.
pub fn schedule_id(runbook: &str, cron: &str, tz: &str) -> String {
    format!("{runbook}@{cron}@{tz}")
}

/// Triggers that can never fire with this configuration.
fn trigger_warnings(rb: &Runbook, alerts: &BTreeSet<String>, config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for t in &rb.triggers {
        match &t.value {
            Trigger::Alert { name, .. } if !alerts.contains(&name.value) => out.push(format!(
                "line {}: alert `{}` is not defined by a loaded rule file; only alerts from the Alertmanager webhook can trigger it",
                name.pos.line, name.value
            )),
            Trigger::Webhook { name } if !config.hooks.contains_key(&name.value) => {
                out.push(format!(
                    "line {}: webhook `{}` is not defined under `hooks:` in sluice.yaml; it cannot be called",
                    name.pos.line, name.value
                ))
            }
            _ => {}
        }
    }
    out
}

/// Paths with a default: `runbooks/` and `alerts/` next to the config.
pub fn default_paths(config: &Config, base: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let resolve = |list: &[PathBuf], default: &str| -> Vec<PathBuf> {
        let list = if list.is_empty() {
            vec![PathBuf::from(default)]
        } else {
            list.to_vec()
        };
        list.into_iter()
            .map(|p| if p.is_absolute() { p } else { base.join(p) })
            .collect()
    };
    (
        resolve(&config.runbooks, "runbooks"),
        resolve(&config.rules, "alerts"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn an_invalid_change_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let rb = dir.path().join("runbooks");
        std::fs::create_dir(&rb).unwrap();
        write(
            &rb,
            "a.yaml",
            "name: a\ntriggers: [manual]\nsteps:\n  - id: s\n    sleep: 1ms\n",
        );
        let config = Config::default();
        let mut lib = Library::default();
        let r = lib.reload(&config, std::slice::from_ref(&rb), &[]);
        assert!(r.ok, "{r:?}");
        let first = lib.runbook("a").unwrap();
        assert_eq!(first.runbook.steps.len(), 1);

        write(&rb, "a.yaml", "name: a\nsteps:\n  - id: s\n    slep: 1ms\n");
        let r = lib.reload(&config, std::slice::from_ref(&rb), &[]);
        assert!(!r.ok);
        assert_eq!(r.invalid.len(), 1);
        assert!(
            r.invalid[0].problems[0].contains("did you mean `sleep`"),
            "{r:?}"
        );
        assert_eq!(r.invalid[0].in_effect, "previous");
        assert!(Arc::ptr_eq(&first, &lib.runbook("a").unwrap()));

        write(
            &rb,
            "a.yaml",
            "name: a\nsteps:\n  - id: s\n    sleep: 1ms\n  - id: t\n    sleep: 1ms\n",
        );
        let r = lib.reload(&config, std::slice::from_ref(&rb), &[]);
        assert!(r.ok);
        assert_eq!(lib.runbook("a").unwrap().runbook.steps.len(), 2);
        assert_eq!(r.changed.len(), 1);
    }

    #[test]
    fn a_never_valid_file_is_not_in_effect_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bad.yaml", "name: bad\nsteps: 3\n");
        write(
            dir.path(),
            "one.yaml",
            "name: same\nsteps:\n  - sleep: 1ms\n",
        );
        write(
            dir.path(),
            "two.yaml",
            "name: same\nsteps:\n  - sleep: 2ms\n",
        );
        let mut lib = Library::default();
        let r = lib.reload(&Config::default(), &[dir.path().to_path_buf()], &[]);
        assert!(!r.ok);
        assert!(lib.runbook("bad").is_none());
        assert!(lib.runbook("same").unwrap().path.ends_with("one.yaml"));
        let two = r
            .invalid
            .iter()
            .find(|s| s.path.ends_with("two.yaml"))
            .unwrap();
        assert!(two.problems[0].contains("also used by"), "{two:?}");
    }

    #[test]
    fn indexes_triggers() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.yaml",
            "name: r\ntriggers:\n  - alert: CircuitBreakerOpen\n    labels: {severity: critical}\n    matchers: ['instance=~\"prod-.*\"']\n  - schedule: '0 2 * * 0'\n    timezone: Europe/Paris\n  - webhook: deploy\nsteps:\n  - sleep: 1ms\n",
        );
        let mut lib = Library::default();
        lib.reload(&Config::default(), &[dir.path().to_path_buf()], &[]);
        let t = &lib.alert_triggers("CircuitBreakerOpen")[0];
        let labels = |sev: &str, inst: &str| {
            [("severity", sev), ("instance", inst)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(t.matches(&labels("critical", "prod-1")));
        assert!(!t.matches(&labels("critical", "dev-1")));
        assert!(!t.matches(&labels("warning", "prod-1")));
        assert_eq!(lib.hook_runbooks("deploy").len(), 1);
        assert_eq!(lib.schedules()[0].entry.id, "r@0 2 * * 0@Europe/Paris");
        let status = lib.status_of("r").unwrap();
        assert_eq!(status.warnings.len(), 2, "{status:?}");
    }
}
