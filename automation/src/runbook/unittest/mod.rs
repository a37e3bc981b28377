//! `sluice test`: runbooks unit-tested like code. Each case of a test file
//! runs the runbook's real control flow in a rehearsal (no step acts: every
//! leaf step is answered by a mock, notifications are recorded), or replays a
//! sequence of automatic starts through the real guard logic, and compares
//! what happened with what the case expects. A failure names the file, the
//! line and column of the expectation, and shows expected against actual.

mod file;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use serde_json::{Value as J, json};

use self::file::{AlertTrigger, Case, Expect, MockSpec, TestFile, Trigger};
use crate::config::Config;
use crate::exec::context::{Progress, Services, StepEvent};
use crate::exec::executor::{RunRequest, execute};
use crate::exec::rehearsal::{Mock, Mocked, Rehearsal};
use crate::runbook::Runbook;
use crate::runbook::model::Trigger as RunbookTrigger;
use crate::trigger::guard::{Admission, Guards, Key};
use crate::yaml::Pos;

/// One expectation that did not hold.
#[derive(Debug, Clone)]
pub struct Failure {
    pub pos: Pos,
    pub what: String,
    pub expected: String,
    pub actual: String,
}

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub passed: usize,
    /// `(case name, failures)` of the cases that failed.
    pub failed: Vec<(String, Vec<Failure>)>,
}

/// Steps as they started and ended.
#[derive(Default)]
struct Trace {
    steps: Mutex<Vec<(String, String)>>,
}

impl Progress for Trace {
    fn step_started(&self, _: &str, path: &str, _: &str) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_string(), "running".into()));
    }
    fn step_finished(&self, ev: &StepEvent<'_>) {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        match steps
            .iter_mut()
            .rev()
            .find(|(p, s)| p == ev.path && s == "running")
        {
            Some(entry) => entry.1 = ev.status.to_string(),
            None => steps.push((ev.path.to_string(), ev.status.to_string())),
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn mocks(specs: &[MockSpec]) -> Vec<Mock> {
    let one = |r: &file::MockResult| {
        if r.timeout {
            Mocked::Timeout
        } else if r.reject {
            Mocked::Rejected
        } else if let Some(m) = &r.fail {
            Mocked::Fail {
                message: m.clone(),
                transient: !r.permanent,
            }
        } else {
            Mocked::Output(r.output.clone().unwrap_or_else(|| json!({})))
        }
    };
    specs
        .iter()
        .map(|s| Mock {
            step: s.step.clone(),
            kind: s.kind.clone(),
            results: if s.results.is_empty() {
                vec![one(&s.result)]
            } else {
                s.results.iter().map(one).collect()
            },
        })
        .collect()
}

/// The alert a case names, completed from the runbook's first alert trigger.
fn alert_of(rb: &Runbook, a: &AlertTrigger) -> (String, BTreeMap<String, String>) {
    let first = rb.triggers.iter().find_map(|t| match &t.value {
        RunbookTrigger::Alert { name, labels, .. } => Some((name.value.clone(), labels.clone())),
        _ => None,
    });
    let name = a
        .name
        .clone()
        .or_else(|| first.as_ref().map(|f| f.0.clone()))
        .unwrap_or_else(|| "TestAlert".into());
    let mut labels = first
        .filter(|f| f.0 == name && a.labels.is_empty())
        .map(|f| f.1)
        .unwrap_or_default();
    labels.extend(a.labels.clone());
    labels.insert("alertname".into(), name.clone());
    (name, labels)
}

/// Whether an alert would start the runbook (its `alert:` triggers, labels and matchers).
fn triggers(rb: &Runbook, name: &str, labels: &BTreeMap<String, String>) -> bool {
    rb.triggers.iter().any(|t| match &t.value {
        RunbookTrigger::Alert {
            name: n,
            labels: want,
            matchers,
            ..
        } => n.value == name && crate::runbook::model::alert_wanted(want, matchers, labels),
        _ => false,
    })
}

fn alert_json(name: &str, labels: &BTreeMap<String, String>, a: &AlertTrigger) -> J {
    json!({
        "name": name,
        "status": "firing",
        "labels": labels,
        "annotations": a.annotations,
        "value": a.value,
        "fingerprint": crate::alert::fingerprint::fingerprint(labels),
        "since": chrono::Utc::now().to_rfc3339(),
        "source": "rule",
    })
}

fn show(v: &J) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Every field of `want` is in `got` with the same value (objects compared recursively).
fn subset(want: &J, got: &J) -> bool {
    match (want, got) {
        (J::Object(w), J::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|x| subset(v, x))),
        (J::Number(a), J::Number(b)) => a.as_f64() == b.as_f64(),
        // A templated value is rendered as text: `7` matches `"7"`, `true` matches `"true"`.
        (J::Number(w), J::String(g)) => g.trim().parse::<f64>().ok() == w.as_f64(),
        (J::Bool(w), J::String(g)) => g.trim() == w.to_string(),
        (J::Array(w), J::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| subset(a, b))
        }
        (w, g) => w == g,
    }
}

async fn run_case(rb: &Arc<Runbook>, config: &Config, case: &Case) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail = |pos: Pos, what: &str, expected: String, actual: String| {
        failures.push(Failure {
            pos,
            what: what.to_string(),
            expected,
            actual,
        })
    };
    if !case.guards.is_empty() {
        guard_sequence(rb, case, &mut fail);
        return failures;
    }
    let rehearsal = Arc::new(Rehearsal::new(mocks(&case.mocks)));
    let trace = Arc::new(Trace::default());
    let mut services = match Services::new(config.clone(), None) {
        Ok(s) => s,
        Err(e) => {
            fail(case.name.pos, "services", "usable".into(), e.to_string());
            return failures;
        }
    };
    services.rehearsal = Some(rehearsal.clone());
    services.progress = Some(trace.clone());
    let services = Arc::new(services);
    let mut req = RunRequest {
        params: case.params.clone().into_iter().collect(),
        trigger: "manual".into(),
        who: "sluice test".into(),
        ..RunRequest::default()
    };
    match &case.trigger {
        Trigger::Manual => {}
        Trigger::Alert(a) => {
            let (name, labels) = alert_of(rb, a);
            let starts = triggers(rb, &name, &labels);
            if let Some(want) = &case.expect.triggered {
                if want.value != starts {
                    fail(
                        want.pos,
                        "triggered",
                        want.value.to_string(),
                        format!("{starts}: alert {name}{labels:?}"),
                    );
                }
                if !starts {
                    return failures;
                }
            }
            if !starts {
                fail(
                    case.name.pos,
                    "trigger",
                    format!("alert {name} to start runbook `{}`", rb.name.value),
                    format!("no `alert:` trigger of the runbook matches {name}{labels:?}"),
                );
            }
            req.trigger = "alert".into();
            req.who = format!("alert:{name}");
            req.alert = Some(alert_json(&name, &labels, a));
        }
        Trigger::Schedule(at) => {
            req.trigger = "schedule".into();
            req.who = "scheduler".into();
            match chrono::DateTime::parse_from_rfc3339(at) {
                Ok(t) => req.scheduled_at = Some(t.with_timezone(&chrono::Utc)),
                Err(e) => fail(
                    case.name.pos,
                    "trigger.schedule",
                    "an RFC 3339 time".into(),
                    e.to_string(),
                ),
            }
        }
        Trigger::Webhook(body) => {
            req.trigger = "webhook".into();
            req.who = "webhook".into();
            req.webhook = Some(body.clone());
        }
    }
    let out = match tokio::time::timeout(
        StdDuration::from_secs(60),
        execute(&services, rb.clone(), req),
    )
    .await
    {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            match &case.expect.refused {
                Some(want) if e.to_string().contains(&want.value) => {}
                Some(want) => fail(want.pos, "refused", want.value.clone(), e.to_string()),
                None => fail(
                    case.name.pos,
                    "run",
                    "a run".into(),
                    format!("it did not start: {e}"),
                ),
            }
            return failures;
        }
        Err(_) => {
            fail(
                case.name.pos,
                "run",
                "to end".into(),
                "it ran for more than 60 s (an approval without a mock?)".into(),
            );
            return failures;
        }
    };
    if let Some(want) = &case.expect.refused {
        fail(
            want.pos,
            "refused",
            want.value.clone(),
            format!("the run started and {}", out.status),
        );
    }
    let steps = trace
        .steps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    check(&case.expect, &out, &steps, &rehearsal, &mut fail);
    failures
}

fn check(
    e: &Expect,
    out: &crate::exec::executor::RunOutcome,
    steps: &[(String, String)],
    rehearsal: &Rehearsal,
    fail: &mut impl FnMut(Pos, &str, String, String),
) {
    if let Some(s) = &e.status
        && out.status.as_str() != s.value
    {
        fail(
            s.pos,
            "status",
            s.value.clone(),
            format!("{} ({})", out.status, out.error.clone().unwrap_or_default()),
        );
    }
    let ran: Vec<String> = steps
        .iter()
        .filter(|(_, s)| s == "succeeded" || s == "failed")
        .map(|(p, _)| p.clone())
        .collect();
    if let Some(want) = &e.steps
        && want.value != ran
    {
        fail(
            want.pos,
            "steps",
            show(&json!(want.value)),
            show(&json!(ran)),
        );
    }
    let skipped: Vec<String> = steps
        .iter()
        .filter(|(_, s)| s == "skipped")
        .map(|(p, _)| p.clone())
        .collect();
    if let Some(want) = &e.skipped
        && want.value != skipped
    {
        fail(
            want.pos,
            "skipped",
            show(&json!(want.value)),
            show(&json!(skipped)),
        );
    }
    let failed_at = out
        .error
        .as_deref()
        .and_then(|e| e.split_once(':'))
        .map(|(s, _)| s.to_string());
    if let Some(want) = &e.failed_step
        && failed_at.as_deref() != Some(want.value.as_str())
    {
        fail(
            want.pos,
            "failed_step",
            want.value.clone(),
            format!("{failed_at:?}"),
        );
    }
    if let Some(want) = &e.error_contains
        && !out.error.as_deref().unwrap_or("").contains(&want.value)
    {
        fail(
            want.pos,
            "error_contains",
            want.value.clone(),
            format!("{:?}", out.error),
        );
    }
    let calls = rehearsal
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for (path, want) in &e.inputs {
        match calls.iter().rev().find(|c| &c.path == path) {
            Some(c) if subset(&want.value, &c.inputs) => {}
            Some(c) => fail(
                want.pos,
                &format!("inputs of `{path}`"),
                show(&want.value),
                show(&c.inputs),
            ),
            None => fail(
                want.pos,
                &format!("inputs of `{path}`"),
                show(&want.value),
                "the step did not run".into(),
            ),
        }
    }
    for (path, want) in &e.inputs_contain {
        match calls.iter().rev().find(|c| &c.path == path) {
            Some(c) => {
                let text = c.inputs.to_string();
                for needle in &want.value {
                    if !text.contains(needle.as_str()) {
                        fail(
                            want.pos,
                            &format!("inputs of `{path}` contain"),
                            needle.clone(),
                            show(&c.inputs),
                        );
                    }
                }
            }
            None => fail(
                want.pos,
                &format!("inputs of `{path}`"),
                format!("{:?}", want.value),
                "the step did not run".into(),
            ),
        }
    }
    for (path, want) in &e.attempts {
        let got = calls.iter().filter(|c| &c.path == path).count() as u32;
        if got != want.value {
            fail(
                want.pos,
                &format!("attempts of `{path}`"),
                want.value.to_string(),
                got.to_string(),
            );
        }
    }
    if let Some(want) = &e.notifications {
        let sent = rehearsal
            .notifications
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ok = want.value.len() == sent.len()
            && want.value.iter().zip(&sent).all(|(w, s)| {
                w.channel == s.channel
                    && w.contains
                        .as_ref()
                        .is_none_or(|c| s.text.contains(c.as_str()) || s.title.contains(c.as_str()))
            });
        if !ok {
            let got: Vec<J> = sent
                .iter()
                .map(|n| json!({"channel": n.channel, "title": n.title, "text": n.text}))
                .collect();
            fail(
                want.pos,
                "notifications",
                show(&json!(want.value)),
                show(&json!(got)),
            );
        }
    }
}

/// Starts at the given offsets through the real guard logic, as the service keys them.
fn guard_sequence(
    rb: &Arc<Runbook>,
    case: &Case,
    fail: &mut impl FnMut(Pos, &str, String, String),
) {
    let guards = Guards::new();
    let policy = crate::service::runner::policy_of(rb);
    let base = Instant::now();
    let default = match &case.trigger {
        Trigger::Alert(a) => Some(a.clone()),
        _ => None,
    };
    // Runs still going: (key, when they end).
    let mut active: Vec<(Key, Instant)> = Vec::new();
    for (i, g) in case.guards.iter().enumerate() {
        let now = base + g.at.std();
        active.retain(|(k, end)| {
            let over = *end <= now;
            if over {
                guards.finished(k);
            }
            !over
        });
        let scope = match g.alert.clone().or_else(|| default.clone()) {
            Some(a) => {
                let (name, labels) = alert_of(rb, &a);
                let alert = alert_json(&name, &labels, &a);
                crate::service::alerts::guard_scope(
                    rb,
                    &alert,
                    alert["fingerprint"].as_str().unwrap_or(""),
                )
            }
            None => String::new(),
        };
        let key = Key::new(&rb.name.value, &scope);
        let decision = guards.admit(&key, &policy, now);
        let got = match decision {
            Admission::Start => {
                match g.runs_for {
                    Some(d) if !d.std().is_zero() => active.push((key.clone(), now + d.std())),
                    _ => {
                        guards.finished(&key);
                    }
                }
                "start"
            }
            Admission::SkipActive => "skip_active",
            Admission::Queued => "queued",
            Admission::Cooldown { .. } => "cooldown",
            Admission::Escalate { .. } => "escalate",
            Admission::KillSwitch => "kill_switch",
        };
        if got != g.expect.value {
            fail(
                g.expect.pos,
                &format!("guards[{i}] at {}", g.at),
                g.expect.value.clone(),
                got.to_string(),
            );
        }
    }
}

/// Runs every case of one test file.
pub async fn run_file(path: &Path) -> Result<FileReport, Vec<crate::diagnostic::Diagnostic>> {
    use crate::diagnostic::Diagnostic;
    let text = read(path).map_err(|e| vec![Diagnostic::whole_file(path, e)])?;
    let node = crate::yaml::parse(&text).map_err(|e| {
        vec![Diagnostic::new(
            path,
            e.pos.line as usize,
            e.pos.column as usize,
            e.message,
        )]
    })?;
    let tf: TestFile = crate::yaml::from_node(&node, false).map_err(|e| {
        vec![Diagnostic::new(
            path,
            e.pos.line as usize,
            e.pos.column as usize,
            e.message,
        )]
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let at = |p: &crate::yaml::de::At<String>| -> PathBuf { dir.join(&p.value) };
    let config = match &tf.config {
        Some(c) => Config::load(&at(c))?,
        None => Config::default(),
    };
    let rb_path = at(&tf.runbook);
    let rb_text = read(&rb_path).map_err(|e| {
        vec![Diagnostic::new(
            path,
            tf.runbook.pos.line as usize,
            tf.runbook.pos.column as usize,
            e,
        )]
    })?;
    let known = crate::runbook::validate::Known {
        config: tf.config.as_ref().map(|_| &config),
        runbooks: None,
        alerts: None,
    };
    let (rb, diags) = crate::runbook::check_str(&rb_path, &rb_text, known);
    let Some(rb) = rb else { return Err(diags) };
    let rb = Arc::new(rb);
    let mut report = FileReport::default();
    for case in &tf.cases {
        let failures = run_case(&rb, &config, case).await;
        if failures.is_empty() {
            report.passed += 1;
        } else {
            report.failed.push((case.name.value.clone(), failures));
        }
    }
    Ok(report)
}

/// Prints each file's result; exit 0 when every case passed.
pub async fn run_paths(
    paths: &[PathBuf],
    out: &mut dyn Write,
) -> std::io::Result<crate::cli::ExitCode> {
    use crate::cli::ExitCode;
    let files = match crate::cli::validate::expand(paths) {
        Ok(f) => f,
        Err(d) => {
            writeln!(out, "{d}")?;
            return Ok(ExitCode::Invalid);
        }
    };
    let (mut passed, mut failed, mut invalid) = (0, 0, 0);
    for f in &files {
        match run_file(f).await {
            Ok(r) => {
                passed += r.passed;
                failed += r.failed.len();
                for (name, fs) in &r.failed {
                    writeln!(out, "FAIL {}: {name}", f.display())?;
                    for x in fs {
                        writeln!(
                            out,
                            "  {}:{}:{}: {}",
                            f.display(),
                            x.pos.line,
                            x.pos.column,
                            x.what
                        )?;
                        writeln!(
                            out,
                            "    expected: {}",
                            x.expected.replace('\n', "\n              ")
                        )?;
                        writeln!(
                            out,
                            "    actual:   {}",
                            x.actual.replace('\n', "\n              ")
                        )?;
                    }
                }
                if r.failed.is_empty() {
                    writeln!(out, "ok   {} ({} case(s))", f.display(), r.passed)?;
                }
            }
            Err(diags) => {
                invalid += 1;
                for d in diags {
                    writeln!(out, "{d}")?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if invalid > 0 {
        ExitCode::Invalid
    } else if failed > 0 {
        ExitCode::Failed
    } else {
        ExitCode::Success
    })
}
