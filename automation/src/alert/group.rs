//! A rule group: its rules evaluated in order at one timestamp, results written
//! back to the store, staleness markers for series a rule stopped producing
//! (Prometheus `rules/group.go`).

use std::collections::HashSet;
use std::path::PathBuf;

use tracing::warn;

use super::event::{AlertEvent, AlertEventKind, AlertSource};
use super::fingerprint::fingerprint;
use super::rule::{AlertingRule, RecordingRule, RuleError, TemplateContext, Transition};
use super::series_names::ALERT_NAME;
use super::{Alert, AlertState, LabelSet, RuleQueryEngine};
use crate::rules::RuleGroup;
use crate::scrape::{SampleSink, SeriesLabels};

/// One rule of a group.
#[derive(Debug, Clone)]
pub enum GroupRule {
    Alerting(AlertingRule),
    Recording(RecordingRule),
}

impl GroupRule {
    pub fn name(&self) -> &str {
        match self {
            GroupRule::Alerting(r) => &r.name,
            GroupRule::Recording(r) => &r.name,
        }
    }
}

/// What one group evaluation did.
#[derive(Debug, Clone, Default)]
pub struct GroupEvalReport {
    pub events: Vec<AlertEvent>,
    /// (rule name, error) for rules whose evaluation failed.
    pub errors: Vec<(String, RuleError)>,
    pub samples_written: usize,
}

/// A group of rules sharing an interval.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub file: PathBuf,
    pub interval_ms: i64,
    pub query_offset_ms: i64,
    pub limit: u64,
    pub rules: Vec<GroupRule>,
    /// Series each rule wrote at its last successful evaluation.
    previous: Vec<HashSet<SeriesLabels>>,
    /// When the group was last evaluated, how long it took, what failed.
    pub last_eval: Option<LastEval>,
}

/// The last evaluation of a group (Prometheus's `lastEvaluation`,
/// `evaluationTime` and per-rule `lastError`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LastEval {
    pub at_ms: i64,
    pub took_ms: f64,
    /// rule name → error of that evaluation.
    pub errors: Vec<(String, String)>,
}

fn to_series(l: LabelSet) -> SeriesLabels {
    l.into_iter().collect()
}

impl Group {
    /// Builds a group from a validated rule-file group; `default_interval_ms`
    /// applies when the group has none.
    pub fn from_rule_group(g: &RuleGroup, default_interval_ms: i64) -> Self {
        let rules: Vec<GroupRule> = g
            .rules
            .iter()
            .filter_map(|r| {
                AlertingRule::from_rule(r, &g.labels)
                    .map(GroupRule::Alerting)
                    .or_else(|| RecordingRule::from_rule(r, &g.labels).map(GroupRule::Recording))
            })
            .collect();
        Group {
            name: g.name.clone(),
            file: g.file.clone(),
            interval_ms: g.interval_ms.unwrap_or(default_interval_ms).max(1),
            query_offset_ms: g.query_offset_ms.unwrap_or(0),
            limit: g.limit,
            previous: vec![HashSet::new(); rules.len()],
            rules,
            last_eval: None,
        }
    }

    /// `file;name`, Prometheus's group key.
    pub fn key(&self) -> String {
        format!("{};{}", self.file.display(), self.name)
    }

    /// All alerts of the group's alerting rules (pending, firing, recently resolved).
    pub fn alerts(&self) -> impl Iterator<Item = (&AlertingRule, &Alert)> {
        self.rules
            .iter()
            .filter_map(|r| match r {
                GroupRule::Alerting(a) => Some(a),
                GroupRule::Recording(_) => None,
            })
            .flat_map(|r| r.active_alerts().map(move |a| (r, a)))
    }

    /// Puts restored alerts back into their rules (matched by `alertname`).
    pub fn restore(&mut self, alerts: Vec<Alert>) {
        for rule in &mut self.rules {
            if let GroupRule::Alerting(r) = rule {
                let mine: Vec<Alert> = alerts
                    .iter()
                    .filter(|a| {
                        a.labels.get(ALERT_NAME) == Some(&r.name) && a.state != AlertState::Inactive
                    })
                    .cloned()
                    .collect();
                r.restore(mine);
            }
        }
    }

    /// Evaluates every rule in order at `ts_ms` and writes results to `sink`.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        engine: &dyn RuleQueryEngine,
        sink: &dyn SampleSink,
        tmpl: &TemplateContext,
    ) -> GroupEvalReport {
        let mut report = GroupEvalReport::default();
        let sample_ts = ts_ms - self.query_offset_ms;
        for i in 0..self.rules.len() {
            let name = self.rules[i].name().to_string();
            let result = match &mut self.rules[i] {
                GroupRule::Alerting(r) => r
                    .eval(ts_ms, self.query_offset_ms, engine, tmpl, self.limit)
                    .map(|(s, t)| {
                        for tr in t {
                            if let Some(ev) = self.event(&tr, ts_ms, tmpl) {
                                report.events.push(ev);
                            }
                        }
                        s
                    }),
                GroupRule::Recording(r) => r.eval(ts_ms, self.query_offset_ms, engine, self.limit),
            };
            let samples = match result {
                Ok(s) => s,
                Err(e) => {
                    warn!(group = %self.name, rule = %name, error = %e, "Evaluating rule failed.");
                    report.errors.push((name, e));
                    continue;
                }
            };
            let mut written = HashSet::with_capacity(samples.len());
            for (labels, v) in samples {
                let series = to_series(labels);
                sink.append(&series, sample_ts, v);
                written.insert(series);
            }
            report.samples_written += written.len();
            for gone in self.previous[i].difference(&written) {
                sink.append_stale(gone, sample_ts);
            }
            self.previous[i] = written;
        }
        report
    }

    fn event(&self, tr: &Transition, ts_ms: i64, tmpl: &TemplateContext) -> Option<AlertEvent> {
        let kind = match (tr.from, tr.to) {
            (_, AlertState::Firing) => AlertEventKind::Firing,
            (AlertState::Firing, _) => AlertEventKind::Resolved,
            _ => return None,
        };
        let a = &tr.alert;
        // Alerts leaving Sluice carry the external labels, as Prometheus sends them.
        let mut labels = tmpl.external_labels.clone();
        labels.extend(a.labels.clone());
        Some(AlertEvent {
            kind,
            name: a.labels.get(ALERT_NAME).cloned().unwrap_or_default(),
            fingerprint: fingerprint(&labels),
            labels,
            annotations: a.annotations.clone(),
            value: Some(a.value),
            since_ms: a.active_at_ms,
            ended_ms: (kind == AlertEventKind::Resolved).then_some(ts_ms),
            at_ms: ts_ms,
            generator_url: None,
            source: AlertSource::Rule {
                file: self.file.display().to_string(),
                group: self.name.clone(),
            },
        })
    }
}
