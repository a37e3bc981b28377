//! `sluice rules test`: promtool's `test rules` file format, unchanged, and
//! the same semantics (cmd/promtool/unittest.go): input series loaded at the
//! test interval, every group evaluated at each `evaluation_interval` step
//! from 0 to the largest `eval_time`, firing alerts compared at each
//! `alert_rule_test` time, `promql_expr_test` queries run after the last
//! evaluation.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_promql::promqltest::{SeriesValue, parse_labels, parse_series};
use sluice_promql::{Evaluator, MemStorage};

use super::duration::{format_duration_ms, parse_duration_ms};
use crate::alert::group::Group;
use crate::alert::rule::TemplateContext;
use crate::alert::{AlertState, LabelSet, LocalEngine, QuerySample, engine::result_samples};
use crate::cli::ExitCode;
use crate::scrape::SampleSink;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<Scalar>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
    #[serde(default)]
    fuzzy_compare: bool,
}

/// A YAML scalar read as text (`5m`, `0`, `1 2 3`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    S(String),
    I(i64),
    F(f64),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::S(s) => s.clone(),
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<Scalar>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
    start_timestamp: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: Scalar,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestCase {
    eval_time: Scalar,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestCase {
    expr: String,
    eval_time: Scalar,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    labels: String,
    #[serde(default)]
    value: f64,
    #[serde(default)]
    histogram: Option<String>,
}

/// Outcome of one test file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    Passed,
    /// Test failures, each formatted like promtool's.
    Failed(Vec<String>),
    /// The file or a rule file it names is invalid.
    Invalid(Vec<String>),
}

fn duration(field: &str, s: &Scalar) -> Result<i64, String> {
    parse_duration_ms(&s.text()).map_err(|e| format!("{field}: {e}"))
}

/// Matches a path whose last component may contain `*` and `?`.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    fn matches(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => matches(&p[1..], s) || (!s.is_empty() && matches(p, &s[1..])),
            (Some('?'), Some(_)) => matches(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = name.chars().collect();
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    matches(
                        &p,
                        &e.file_name().to_string_lossy().chars().collect::<Vec<_>>(),
                    )
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `{a="b", c="d"}` as Prometheus prints label sets.
fn labels_string(l: &LabelSet) -> String {
    let name = l.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = l
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={}", crate::gotmpl::format::quote(v)))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

type LabelsAndAnnotations = Vec<(LabelSet, LabelSet)>;

fn alerts_string(v: &LabelsAndAnnotations) -> String {
    if v.is_empty() {
        return "[]".to_string();
    }
    let items: Vec<String> = v
        .iter()
        .enumerate()
        .map(|(i, (l, a))| {
            format!(
                "{i}:\n              Labels:{}\n              Annotations:{}",
                labels_string(l),
                labels_string(a)
            )
        })
        .collect();
    format!(
        "[\n            {}\n            ]",
        items.join(",\n            ")
    )
}

fn samples_string(v: &[QuerySample]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                labels_string(&s.labels),
                crate::gotmpl::format::format_g(s.value, None)
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn float_eq(a: f64, b: f64, fuzzy: bool) -> bool {
    a == b || (fuzzy && (a.next_up() == b || a.next_down() == b))
}

/// Runs every test group of one test file.
pub fn run_file(path: &Path) -> FileOutcome {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return FileOutcome::Invalid(vec![format!("{}: {e}", path.display())]),
    };
    let file: TestFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            let loc = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.without_snippet().to_string();
            return FileOutcome::Invalid(vec![format!(
                "{}{loc}: {}",
                path.display(),
                msg.lines().next().unwrap_or("")
            )]);
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = Vec::new();
    for rf in &file.rule_files {
        let p = if Path::new(rf).is_absolute() {
            PathBuf::from(rf)
        } else {
            base.join(rf)
        };
        let found = glob(&p);
        if found.is_empty() {
            return FileOutcome::Invalid(vec![format!(
                "  no file matches rule_files pattern {rf:?}"
            )]);
        }
        rule_files.extend(found);
    }
    let eval_interval = match file
        .evaluation_interval
        .as_ref()
        .map(|s| duration("evaluation_interval", s))
    {
        None => 60_000,
        Some(Ok(0)) => 60_000,
        Some(Ok(ms)) => ms,
        Some(Err(e)) => return FileOutcome::Invalid(vec![e]),
    };
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.as_str(), i).is_some() {
            return FileOutcome::Invalid(vec![format!(
                "group name repeated in evaluation order: {g}"
            )]);
        }
    }
    let mut rule_groups = Vec::new();
    let mut invalid = Vec::new();
    for f in &rule_files {
        match super::load_rule_file(f) {
            Ok(rf) => rule_groups.extend(rf.groups),
            Err(diags) => invalid.extend(diags.iter().map(|d| d.to_string())),
        }
    }
    if !invalid.is_empty() {
        return FileOutcome::Invalid(invalid);
    }
    // Listed groups by position, others first in file order (Go sorts them as index 0).
    rule_groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));

    let mut failures = Vec::new();
    for (i, tg) in file.tests.iter().enumerate() {
        let name = if tg.name.is_empty() {
            format!("unnamed#{i}")
        } else {
            tg.name.clone()
        };
        match run_group(tg, &rule_groups, eval_interval, file.fuzzy_compare) {
            Ok(errs) => failures.extend(errs),
            Err(e) => return FileOutcome::Invalid(vec![format!("    name: {name},\n    {e}")]),
        }
    }
    if failures.is_empty() {
        FileOutcome::Passed
    } else {
        FileOutcome::Failed(failures)
    }
}

fn parse_start(s: &Scalar) -> Result<i64, String> {
    let text = s.text();
    if let Ok(secs) = text.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("start_timestamp {text:?}: {e}"))
}

/// Runs one test group; `Err` for invalid input, `Ok(failures)` otherwise.
fn run_group(
    tg: &TestGroup,
    rule_groups: &[crate::rules::RuleGroup],
    eval_interval: i64,
    fuzzy: bool,
) -> Result<Vec<String>, String> {
    let interval = match &tg.interval {
        Some(s) => match duration("interval", s)? {
            0 => eval_interval,
            ms => ms,
        },
        None => eval_interval,
    };
    let mint = tg
        .start_timestamp
        .as_ref()
        .map(parse_start)
        .transpose()?
        .unwrap_or(0);
    let storage = Arc::new(MemStorage::new(Duration::from_secs(100 * 365 * 86_400)));
    for s in &tg.input_series {
        let (labels, values) = parse_series(&format!("{} {}", s.series, s.values.text()))
            .map_err(|e| format!("input_series {:?}: {e}", s.series))?;
        for (i, v) in values.iter().enumerate() {
            let t = mint + i as i64 * interval;
            let res = match v {
                SeriesValue::Missing => Ok(()),
                SeriesValue::Stale => storage.append_stale(&labels, t),
                SeriesValue::Value(x) => storage.append(&labels, t, *x),
            };
            res.map_err(|e| format!("input_series {:?}: {e}", s.series))?;
        }
    }
    let engine = LocalEngine {
        storage: storage.clone(),
        evaluator: Evaluator {
            default_subquery_step: Duration::from_millis(eval_interval as u64),
            ..Evaluator::default()
        },
    };
    let tmpl = TemplateContext {
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
    };
    let mut groups: Vec<Group> = rule_groups
        .iter()
        .map(|g| Group::from_rule_group(g, interval))
        .collect();

    let mut alert_times: BTreeMap<i64, Vec<&AlertTestCase>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        let t = duration("eval_time", &a.eval_time)?;
        if a.alertname.is_empty() {
            return Err(format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}",
                format_duration_ms(t)
            ));
        }
        alert_times.entry(t).or_default().push(a);
    }
    let mut max_t = alert_times.keys().next_back().copied().unwrap_or(0);
    for p in &tg.promql_expr_test {
        max_t = max_t.max(duration("eval_time", &p.eval_time)?);
    }
    let name_prefix = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };

    let mut errs = Vec::new();
    let sink: &dyn SampleSink = storage.as_ref();
    let mut pending_times: Vec<i64> = alert_times.keys().copied().collect();
    pending_times.reverse();
    let mut ts = mint;
    while ts <= mint + max_t {
        let mut eval_errs = Vec::new();
        for g in &mut groups {
            let report = g.eval(ts, &engine, sink, &tmpl);
            for (rule, e) in report.errors {
                eval_errs.push(format!(
                    "    rule: {rule}, time: {}, err: {e}",
                    format_duration_ms(ts)
                ));
            }
        }
        if !eval_errs.is_empty() {
            errs.extend(eval_errs);
            return Ok(errs);
        }
        while let Some(&t) = pending_times.last() {
            if !(ts - mint <= t && t < ts - mint + eval_interval) {
                break;
            }
            pending_times.pop();
            for case in &alert_times[&t] {
                let mut got: LabelsAndAnnotations = groups
                    .iter()
                    .flat_map(|g| g.alerts())
                    .filter(|(r, a)| r.name == case.alertname && a.state == AlertState::Firing)
                    .map(|(_, a)| (a.labels.clone(), a.annotations.clone()))
                    .collect();
                let mut exp: LabelsAndAnnotations = case
                    .exp_alerts
                    .iter()
                    .map(|a| {
                        let mut l = a.exp_labels.clone();
                        l.insert("alertname".to_string(), case.alertname.clone());
                        (l, a.exp_annotations.clone())
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    errs.push(format!(
                        "{name_prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        format_duration_ms(t),
                        alerts_string(&exp),
                        alerts_string(&got)
                    ));
                }
            }
        }
        ts += eval_interval;
    }

    for case in &tg.promql_expr_test {
        let t = duration("eval_time", &case.eval_time)?;
        let at = format_duration_ms(t);
        let got = sluice_promql::parse(&case.expr)
            .map_err(|e| e.to_string())
            .and_then(|expr| {
                engine
                    .evaluator
                    .instant(storage.as_ref(), &expr, mint + t)
                    .map_err(|e| e.to_string())
            })
            .and_then(|v| result_samples(v).map_err(|e| e.0));
        let mut got = match got {
            Ok(g) => g,
            Err(e) => {
                errs.push(format!("    expr: {:?}, time: {at}, err: {e}", case.expr));
                continue;
            }
        };
        let mut exp = Vec::new();
        let mut bad = None;
        for s in &case.exp_samples {
            if s.histogram.is_some() {
                bad = Some(format!(
                    "labels {:?}: native histograms are not supported",
                    s.labels
                ));
                break;
            }
            match parse_labels(&s.labels) {
                Ok(l) => exp.push(QuerySample {
                    labels: l
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    value: s.value,
                }),
                Err(e) => {
                    bad = Some(format!("labels {:?}: {e}", s.labels));
                    break;
                }
            }
        }
        if let Some(e) = bad {
            errs.push(format!("    expr: {:?}, time: {at}, err: {e}", case.expr));
            continue;
        }
        got.sort_by(|a, b| a.labels.cmp(&b.labels));
        exp.sort_by(|a, b| a.labels.cmp(&b.labels));
        let equal = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.labels == e.labels && float_eq(g.value, e.value, fuzzy));
        if !equal {
            errs.push(format!(
                "    expr: {:?}, time: {at},\n        exp: {}\n        got: {}",
                case.expr,
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    Ok(errs)
}

/// Runs test files and prints a promtool-like report. Exit: 0 all pass,
/// 1 a test failed, 2 a file (or a rule file it names) is invalid.
pub fn run_files(files: &[PathBuf], out: &mut dyn Write) -> std::io::Result<ExitCode> {
    let mut code = ExitCode::Success;
    for f in files {
        writeln!(out, "Unit Testing:  {}", f.display())?;
        match run_file(f) {
            FileOutcome::Passed => writeln!(out, "  SUCCESS")?,
            FileOutcome::Failed(errs) => {
                writeln!(out, "  FAILED:")?;
                for e in errs {
                    writeln!(out, "{e}\n")?;
                }
                if code == ExitCode::Success {
                    code = ExitCode::Failed;
                }
            }
            FileOutcome::Invalid(errs) => {
                writeln!(out, "  FAILED:")?;
                for e in errs {
                    writeln!(out, "{e}\n")?;
                }
                code = ExitCode::Invalid;
            }
        }
        writeln!(out)?;
    }
    Ok(code)
}
