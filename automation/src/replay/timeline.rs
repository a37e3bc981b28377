//! What a replay found: the timeline of alert transitions and run decisions,
//! a summary per runbook, and their text and JSON renderings.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value as J, json};

use super::history::History;
use crate::alert::LabelSet;
use crate::duration::Duration as Human;
use crate::exec::executor::PlannedStep;
use crate::service::runner::Decision;

/// One thing that happened at `t_ms`.
#[derive(Debug, Clone)]
pub struct Event {
    pub t_ms: i64,
    pub what: What,
}

#[derive(Debug, Clone)]
pub enum What {
    /// An alert started firing (`firing`) or resolved.
    Alert {
        name: String,
        /// All labels, `alertname` and external labels included.
        labels: LabelSet,
        firing: bool,
        fingerprint: String,
        active_since_ms: i64,
    },
    /// What the guards decided for one start a trigger asked for.
    Run(RunEvent),
    /// A rule's evaluation failed (shown once until its error changes).
    RuleError {
        group: String,
        rule: String,
        error: String,
    },
}

#[derive(Debug, Clone)]
pub struct RunEvent {
    pub runbook: String,
    pub alert: String,
    pub labels: LabelSet,
    pub fingerprint: String,
    /// Guard scope (the alert fingerprint unless `guards.scope` says otherwise).
    pub scope: String,
    /// Asked for by the periodic re-send of a still-firing alert.
    pub resent: bool,
    /// Asked for by the alert resolving (`on_resolved: true`).
    pub on_resolved: bool,
    pub outcome: Outcome,
}

/// The decision for one start.
#[derive(Debug, Clone)]
pub enum Outcome {
    Started {
        /// What each step would do, in order (a dry run).
        plan: Vec<PlannedStep>,
        /// Why the dry run could not plan it (the run would fail at once).
        error: Option<String>,
        /// It waited behind another run of its key (`concurrency: queue`).
        from_queue: bool,
    },
    Queued,
    /// A run of the key is active (`concurrency: skip`).
    Active,
    Cooldown {
        cooldown: Duration,
        last_run_ms: i64,
        remaining: Duration,
    },
    /// `max_runs` exceeded: people are told instead.
    Escalated {
        runs_in_window: u32,
        max_runs: u32,
        window: Duration,
        /// The runbook has `guards.escalate`.
        configured: bool,
        /// The escalation channels were told (once per window per key).
        notified: bool,
    },
    KillSwitch,
    Maintenance {
        window: String,
    },
}

impl Outcome {
    /// The service's name for the decision (`sluice_trigger_decisions_total{decision}`).
    pub fn decision(&self) -> Decision {
        match self {
            Outcome::Started { .. } => Decision::Started,
            Outcome::Queued => Decision::Queued,
            Outcome::Active => Decision::Active,
            Outcome::Cooldown { .. } => Decision::Cooldown,
            Outcome::Escalated { .. } => Decision::Escalated,
            Outcome::KillSwitch => Decision::KillSwitch,
            Outcome::Maintenance { .. } => Decision::Maintenance,
        }
    }
}

/// Per runbook: what the replay would have done.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunbookSummary {
    pub runbook: String,
    pub runs: u32,
    /// Starts not made, by decision (`cooldown`, `active`, `queued`, `maintenance`, `kill_switch`).
    pub suppressed: BTreeMap<String, u32>,
    /// Of the suppressed, those asked for by the re-send of a still-firing alert.
    pub suppressed_resends: u32,
    pub escalations: u32,
    /// Alert firings (not re-sends) that triggered this runbook, by alert name.
    pub firings: BTreeMap<String, u32>,
    /// Runs per calendar day (UTC, `YYYY-MM-DD`).
    pub runs_per_day: BTreeMap<String, u32>,
}

impl RunbookSummary {
    /// The busiest day: (date, runs).
    pub fn busiest_day(&self) -> Option<(&str, u32)> {
        self.runs_per_day
            .iter()
            .max_by_key(|(d, n)| (**n, Reverse(d.as_str())))
            .map(|(d, n)| (d.as_str(), *n))
    }
}

use std::cmp::Reverse;

/// Everything a replay found.
#[derive(Debug, Clone)]
pub struct Report {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Group evaluations made.
    pub evaluations: usize,
    pub series: usize,
    pub samples: usize,
    pub events: Vec<Event>,
    pub summary: Vec<RunbookSummary>,
}

fn day(t_ms: i64) -> String {
    Utc.timestamp_millis_opt(t_ms)
        .single()
        .map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d").to_string())
}

/// Builds the report and its per-runbook summary from the events.
pub fn report(
    start_ms: i64,
    end_ms: i64,
    evaluations: usize,
    history: &History,
    events: Vec<Event>,
) -> Report {
    let mut by: BTreeMap<String, RunbookSummary> = BTreeMap::new();
    for e in &events {
        let What::Run(r) = &e.what else { continue };
        let s = by
            .entry(r.runbook.clone())
            .or_insert_with(|| RunbookSummary {
                runbook: r.runbook.clone(),
                ..RunbookSummary::default()
            });
        if !r.resent
            && !r.on_resolved
            && !matches!(
                r.outcome,
                Outcome::Started {
                    from_queue: true,
                    ..
                }
            )
        {
            *s.firings.entry(r.alert.clone()).or_default() += 1;
        }
        match &r.outcome {
            Outcome::Started { .. } => {
                s.runs += 1;
                *s.runs_per_day.entry(day(e.t_ms)).or_default() += 1;
            }
            Outcome::Escalated { .. } => s.escalations += 1,
            other => {
                *s.suppressed
                    .entry(other.decision().as_str().to_string())
                    .or_default() += 1;
                if r.resent {
                    s.suppressed_resends += 1;
                }
            }
        }
    }
    Report {
        start_ms,
        end_ms,
        evaluations,
        series: history.series,
        samples: history.samples,
        events,
        summary: by.into_values().collect(),
    }
}

impl Report {
    /// Runbooks that ran more than `n` times on some UTC day: (runbook, day, runs).
    pub fn over_daily_limit(&self, n: u32) -> Vec<(String, String, u32)> {
        self.summary
            .iter()
            .flat_map(|s| {
                s.runs_per_day
                    .iter()
                    .filter(|(_, c)| **c > n)
                    .map(|(d, c)| (s.runbook.clone(), d.clone(), *c))
            })
            .collect()
    }
}

/// `2026-11-30T02:14:05Z`.
pub fn stamp(t_ms: i64) -> String {
    Utc.timestamp_millis_opt(t_ms).single().map_or_else(
        || t_ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn stamp_ms(t_ms: i64) -> String {
    Utc.timestamp_millis_opt(t_ms).single().map_or_else(
        || t_ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// `02:14:05`, or the whole stamp when `t_ms` is on another day than `now_ms`.
fn clock(t_ms: i64, now_ms: i64) -> String {
    if day(t_ms) == day(now_ms) {
        Utc.timestamp_millis_opt(t_ms)
            .single()
            .map_or_else(String::new, |t| t.format("%H:%M:%S").to_string())
    } else {
        stamp(t_ms)
    }
}

/// `EngineDown{target="primary"}`: the name and the other labels.
pub fn alert_display(name: &str, labels: &LabelSet) -> String {
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != crate::alert::series_names::ALERT_NAME)
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

fn steps_word(n: usize) -> &'static str {
    if n == 1 { "step" } else { "steps" }
}

/// The timeline and summary as text. Suppressions asked for by re-sends of
/// a still-firing alert (one a minute) are counted, not listed.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    for e in &r.events {
        let ts = stamp(e.t_ms);
        match &e.what {
            What::Alert {
                name,
                labels,
                firing,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "{ts}  alert {} {}",
                    alert_display(name, labels),
                    if *firing { "firing" } else { "resolved" }
                );
            }
            What::RuleError { group, rule, error } => {
                let _ = writeln!(out, "{ts}  rule {group}/{rule} failed: {error}");
            }
            What::Run(run) => {
                // Re-sends (one a minute while an alert fires) show only what is new:
                // a start, or an escalation that tells people.
                let quiet = run.resent
                    && !matches!(
                        run.outcome,
                        Outcome::Started { .. } | Outcome::Escalated { notified: true, .. }
                    );
                if quiet {
                    continue;
                }
                let why = format!(
                    "alert {}{}{}",
                    alert_display(&run.alert, &run.labels),
                    if run.resent { ", still firing" } else { "" },
                    if run.on_resolved { ", resolved" } else { "" },
                );
                let rb = &run.runbook;
                match &run.outcome {
                    Outcome::Started {
                        plan,
                        error,
                        from_queue,
                    } => {
                        let queued = if *from_queue { ", after its queue" } else { "" };
                        match error {
                            Some(err) => {
                                let _ = writeln!(out, "{ts}  run {rb} ({why}{queued}) — {err}");
                            }
                            None => {
                                let _ = writeln!(
                                    out,
                                    "{ts}  run {rb} ({why}{queued}) — would start: {} {}",
                                    plan.len(),
                                    steps_word(plan.len())
                                );
                                for (i, p) in plan.iter().enumerate() {
                                    let what =
                                        p.what.trim_end().replace('\n', &format!("\n{:25}", ""));
                                    let _ = writeln!(
                                        out,
                                        "{:22}{}. {} [{}]: {what}",
                                        "",
                                        i + 1,
                                        p.path,
                                        p.kind,
                                    );
                                }
                            }
                        }
                    }
                    Outcome::Cooldown {
                        cooldown,
                        last_run_ms,
                        ..
                    } => {
                        let _ = writeln!(
                            out,
                            "{ts}  run {rb} suppressed: cooldown ({}, last run {}) — {why}",
                            Human(*cooldown),
                            clock(*last_run_ms, e.t_ms)
                        );
                    }
                    Outcome::Escalated {
                        runs_in_window,
                        max_runs,
                        window,
                        configured,
                        notified,
                    } => {
                        let told = match (configured, notified) {
                            (false, _) => "no guards.escalate to tell",
                            (true, true) => "people told",
                            (true, false) => "people already told in this window",
                        };
                        let _ = writeln!(
                            out,
                            "{ts}  run {rb} escalated: max_runs {max_runs} per {} ({runs_in_window} {} in the window; {told}) — {why}",
                            Human(*window),
                            if *runs_in_window == 1 { "run" } else { "runs" },
                        );
                    }
                    Outcome::Active => {
                        let _ = writeln!(
                            out,
                            "{ts}  run {rb} suppressed: a run is active (concurrency: skip) — {why}"
                        );
                    }
                    Outcome::Queued => {
                        let _ =
                            writeln!(out, "{ts}  run {rb} queued behind the active run — {why}");
                    }
                    Outcome::KillSwitch => {
                        let _ = writeln!(out, "{ts}  run {rb} suppressed: kill switch — {why}");
                    }
                    Outcome::Maintenance { window } => {
                        let _ = writeln!(
                            out,
                            "{ts}  run {rb} suppressed: maintenance window {window} — {why}"
                        );
                    }
                }
            }
        }
    }
    if !r.events.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "replayed {} … {}: {} group evaluations over {} series ({} samples)",
        stamp(r.start_ms),
        stamp(r.end_ms),
        r.evaluations,
        r.series,
        r.samples
    );
    if r.summary.is_empty() {
        let _ = writeln!(out, "no runbook would have been triggered");
    }
    for s in &r.summary {
        let suppressed: Vec<String> = s
            .suppressed
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let firings: Vec<String> = s.firings.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "{}:", s.runbook);
        let _ = writeln!(out, "  runs: {}", s.runs);
        let _ = writeln!(
            out,
            "  suppressed: {}{}",
            if suppressed.is_empty() {
                "none".to_string()
            } else {
                suppressed.join(", ")
            },
            if s.suppressed_resends > 0 {
                format!(
                    " ({} of them re-sends of a still-firing alert, not listed above)",
                    s.suppressed_resends
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(out, "  escalations: {}", s.escalations);
        let _ = writeln!(
            out,
            "  firings: {}",
            if firings.is_empty() {
                "none".to_string()
            } else {
                firings.join(", ")
            }
        );
        if let Some((d, n)) = s.busiest_day() {
            let _ = writeln!(out, "  most runs in a day: {n} ({d})");
        }
    }
    out
}

fn outcome_json(o: &Outcome) -> J {
    let mut v = json!({"decision": o.decision().as_str()});
    match o {
        Outcome::Started {
            plan,
            error,
            from_queue,
        } => {
            v["steps"] = json!(plan.len());
            v["plan"] = json!(plan);
            v["plan_error"] = json!(error);
            v["from_queue"] = json!(from_queue);
        }
        Outcome::Cooldown {
            cooldown,
            last_run_ms,
            remaining,
        } => {
            v["cooldown"] = json!(Human(*cooldown).to_string());
            v["last_run"] = json!(stamp_ms(*last_run_ms));
            v["remaining"] = json!(Human(*remaining).to_string());
        }
        Outcome::Escalated {
            runs_in_window,
            max_runs,
            window,
            configured,
            notified,
        } => {
            v["runs_in_window"] = json!(runs_in_window);
            v["max_runs"] = json!(max_runs);
            v["window"] = json!(Human(*window).to_string());
            v["escalate_configured"] = json!(configured);
            v["notified"] = json!(notified);
        }
        Outcome::Maintenance { window } => v["window"] = json!(window),
        Outcome::Queued | Outcome::Active | Outcome::KillSwitch => {}
    }
    v
}

/// One event as JSON: `at`, `t_ms`, `kind` (`alert`, `run`, `rule_error`) and its fields.
pub fn event_json(e: &Event) -> J {
    let mut v = match &e.what {
        What::Alert {
            name,
            labels,
            firing,
            fingerprint,
            active_since_ms,
        } => json!({
            "kind": "alert",
            "alert": name,
            "labels": labels,
            "state": if *firing { "firing" } else { "resolved" },
            "fingerprint": fingerprint,
            "active_since": stamp_ms(*active_since_ms),
        }),
        What::Run(r) => {
            let mut v = json!({
                "kind": "run",
                "runbook": r.runbook,
                "alert": r.alert,
                "labels": r.labels,
                "fingerprint": r.fingerprint,
                "scope": r.scope,
                "resent": r.resent,
                "on_resolved": r.on_resolved,
            });
            if let (J::Object(m), J::Object(o)) = (&mut v, outcome_json(&r.outcome)) {
                m.extend(o);
            }
            v
        }
        What::RuleError { group, rule, error } => json!({
            "kind": "rule_error",
            "group": group,
            "rule": rule,
            "error": error,
        }),
    };
    v["at"] = json!(stamp_ms(e.t_ms));
    v["t_ms"] = json!(e.t_ms);
    v
}

/// The whole report as one JSON document.
pub fn render_json(r: &Report) -> J {
    json!({
        "start": stamp_ms(r.start_ms),
        "end": stamp_ms(r.end_ms),
        "evaluations": r.evaluations,
        "series": r.series,
        "samples": r.samples,
        "events": r.events.iter().map(event_json).collect::<Vec<_>>(),
        "summary": r.summary,
    })
}
