//! Evaluation of one alerting or recording rule, following Prometheus's
//! `rules/alerting.go` and `rules/recording.go`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::fingerprint::fingerprint_u64;
use super::series_names::{ALERT_NAME, ALERT_STATE, ALERTS, ALERTS_FOR_STATE};
use super::{Alert, AlertState, LabelSet, QuerySample, RESOLVED_RETENTION_MS, RuleQueryEngine};
use crate::gotmpl::{self, AlertData};
use crate::rules::{Rule, RuleKind};

/// A rule evaluation that produced no usable result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("{0}")]
    Query(String),
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateAlertLabelSet,
    #[error("vector contains metrics with the same labelset after applying rule labels")]
    DuplicateRecordingLabelSet,
    #[error("exceeded limit of {limit} with {count} alerts")]
    AlertLimit { limit: u64, count: usize },
    #[error("exceeded limit of {limit} with {count} series")]
    SeriesLimit { limit: u64, count: usize },
}

/// What an alert template can see besides the sample.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    pub external_labels: LabelSet,
    pub external_url: String,
}

/// A series to write back: labels (with `__name__`) and value, at the evaluation time.
pub type OutputSample = (LabelSet, f64);

/// A state change of one alert during an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alert: Alert,
    pub from: AlertState,
    pub to: AlertState,
}

/// An alerting rule and its active alerts, keyed by label-set fingerprint.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub name: String,
    pub expr: promql_parser::parser::Expr,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    active: HashMap<u64, Alert>,
}

fn labels_without_name(l: &LabelSet) -> LabelSet {
    l.iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn template_query<'a>(
    engine: &'a dyn RuleQueryEngine,
    t_ms: i64,
) -> impl Fn(&str) -> Result<Vec<gotmpl::QuerySample>, String> + Sync + 'a {
    move |q: &str| {
        let expr = promql_parser::parser::parse(q)?;
        let res = engine.instant(&expr, t_ms).map_err(|e| e.0)?;
        Ok(res
            .into_iter()
            .map(|s| gotmpl::QuerySample {
                labels: s.labels,
                value: s.value,
            })
            .collect())
    }
}

impl AlertingRule {
    /// Builds the rule from a validated rule-file entry; `None` for recording rules.
    pub fn from_rule(rule: &Rule, group_labels: &LabelSet) -> Option<Self> {
        let RuleKind::Alert {
            name,
            for_ms,
            keep_firing_for_ms,
            annotations,
        } = &rule.kind
        else {
            return None;
        };
        let mut labels = group_labels.clone();
        labels.extend(rule.labels.clone());
        Some(AlertingRule {
            name: name.clone(),
            expr: rule.ast.clone(),
            for_ms: *for_ms,
            keep_firing_for_ms: *keep_firing_for_ms,
            labels,
            annotations: annotations.clone(),
            active: HashMap::new(),
        })
    }

    /// Alerts currently pending, firing, or resolved within the retention.
    pub fn active_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// Replaces the active alerts (used when restoring `for` state after a restart).
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        for a in alerts {
            self.active.insert(fingerprint_u64(&a.labels), a);
        }
    }

    /// One evaluation at `ts_ms`, querying at `ts_ms - query_offset_ms`.
    /// Returns the `ALERTS`/`ALERTS_FOR_STATE` samples and the state changes.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        query_offset_ms: i64,
        engine: &dyn RuleQueryEngine,
        tmpl: &TemplateContext,
        limit: u64,
    ) -> Result<(Vec<OutputSample>, Vec<Transition>), RuleError> {
        let query_ts = ts_ms - query_offset_ms;
        let res = engine
            .instant(&self.expr, query_ts)
            .map_err(|e| RuleError::Query(e.0))?;
        let query = template_query(engine, ts_ms);
        let now_secs = ts_ms as f64 / 1000.0;

        let mut current: HashMap<u64, Alert> = HashMap::with_capacity(res.len());
        for QuerySample {
            labels: metric,
            value,
        } in res
        {
            // Templates see the series' labels including `__name__`, as in Prometheus.
            let data = AlertData {
                labels: &metric,
                external_labels: &tmpl.external_labels,
                external_url: &tmpl.external_url,
                value,
            };
            let expand = |text: &str| {
                gotmpl::expand_alert_or_error(&self.name, text, &data, now_secs, Some(&query))
            };
            let mut labels = labels_without_name(&metric);
            for (k, v) in &self.labels {
                labels.insert(k.clone(), expand(v));
            }
            labels.insert(ALERT_NAME.to_string(), self.name.clone());
            let annotations: LabelSet = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), expand(v)))
                .collect();
            let fp = fingerprint_u64(&labels);
            if current.contains_key(&fp) {
                return Err(RuleError::DuplicateAlertLabelSet);
            }
            current.insert(
                fp,
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at_ms: ts_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                },
            );
        }

        let before: HashMap<u64, AlertState> =
            self.active.iter().map(|(fp, a)| (*fp, a.state)).collect();
        let result_fps: HashSet<u64> = current.keys().copied().collect();
        for (fp, a) in current {
            match self.active.get_mut(&fp) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(fp, a);
                }
            }
        }

        let mut out = Vec::new();
        let mut transitions = Vec::new();
        let mut active_pending = 0usize;
        let mut to_delete = Vec::new();
        // Deterministic order: by fingerprint.
        let mut fps: Vec<u64> = self.active.keys().copied().collect();
        fps.sort_unstable();
        for fp in fps {
            let Some(a) = self.active.get_mut(&fp) else {
                continue;
            };
            let from = before.get(&fp).copied().unwrap_or(AlertState::Inactive);
            if !result_fps.contains(&fp) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < self.keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION_MS)
                {
                    to_delete.push(fp);
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    if from != a.state {
                        transitions.push(Transition {
                            alert: a.clone(),
                            from,
                            to: a.state,
                        });
                    }
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_pending += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            }
            if a.state == AlertState::Firing && ts_ms - a.active_at_ms < self.for_ms {
                a.state = AlertState::Pending;
                a.fired_at_ms = None;
                a.keep_firing_since_ms = None;
            }
            if from != a.state {
                transitions.push(Transition {
                    alert: a.clone(),
                    from,
                    to: a.state,
                });
            }
            let mut alerts_labels = a.labels.clone();
            alerts_labels.insert("__name__".to_string(), ALERTS.to_string());
            alerts_labels.insert(ALERT_STATE.to_string(), a.state.to_string());
            out.push((alerts_labels, 1.0));
            let mut for_labels = a.labels.clone();
            for_labels.insert("__name__".to_string(), ALERTS_FOR_STATE.to_string());
            // Prometheus stores whole seconds (`ActiveAt.Unix()`).
            out.push((for_labels, a.active_at_ms.div_euclid(1000) as f64));
        }
        for fp in to_delete {
            self.active.remove(&fp);
        }
        if limit > 0 && active_pending as u64 > limit {
            self.active.clear();
            return Err(RuleError::AlertLimit {
                limit,
                count: active_pending,
            });
        }
        Ok((out, transitions))
    }
}

/// A recording rule: its result, renamed and relabelled, is written back.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    pub name: String,
    pub expr: promql_parser::parser::Expr,
    pub labels: LabelSet,
}

impl RecordingRule {
    pub fn from_rule(rule: &Rule, group_labels: &LabelSet) -> Option<Self> {
        let RuleKind::Record { name } = &rule.kind else {
            return None;
        };
        let mut labels = group_labels.clone();
        labels.extend(rule.labels.clone());
        Some(RecordingRule {
            name: name.clone(),
            expr: rule.ast.clone(),
            labels,
        })
    }

    pub fn eval(
        &self,
        ts_ms: i64,
        query_offset_ms: i64,
        engine: &dyn RuleQueryEngine,
        limit: u64,
    ) -> Result<Vec<OutputSample>, RuleError> {
        let res = engine
            .instant(&self.expr, ts_ms - query_offset_ms)
            .map_err(|e| RuleError::Query(e.0))?;
        let mut seen = HashSet::with_capacity(res.len());
        let mut out = Vec::with_capacity(res.len());
        for s in res {
            let mut labels: BTreeMap<String, String> = s.labels;
            labels.insert("__name__".to_string(), self.name.clone());
            for (k, v) in &self.labels {
                labels.insert(k.clone(), v.clone());
            }
            if !seen.insert(fingerprint_u64(&labels)) {
                return Err(RuleError::DuplicateRecordingLabelSet);
            }
            out.push((labels, s.value));
        }
        if limit > 0 && out.len() as u64 > limit {
            return Err(RuleError::SeriesLimit {
                limit,
                count: out.len(),
            });
        }
        Ok(out)
    }
}
