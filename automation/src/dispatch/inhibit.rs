//! Inhibition: while a source alert fires, target alerts that share the
//! `equal` labels with it are muted (e.g. `EngineDown` inhibits everything
//! else about that engine). An alert never inhibits itself.

use chrono::{DateTime, Utc};

use super::matcher::{LabelSet, Matcher, matches_all};
use super::{Alert, Muter};

#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    /// Labels whose values must be equal in source and target (missing = empty).
    pub equal: Vec<String>,
}

/// Inhibition rules evaluated against the currently firing alerts.
#[derive(Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    /// Per rule: the label sets of firing alerts matching its source matchers.
    sources: Vec<Vec<LabelSet>>,
}

impl Inhibitor {
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let sources = vec![Vec::new(); rules.len()];
        Self { rules, sources }
    }

    /// Recomputes the source sets from all alerts known now.
    pub fn update<'a>(&mut self, alerts: impl IntoIterator<Item = &'a Alert>, now: DateTime<Utc>) {
        for s in &mut self.sources {
            s.clear();
        }
        for alert in alerts {
            if alert.is_resolved(now) {
                continue;
            }
            for (rule, sources) in self.rules.iter().zip(self.sources.iter_mut()) {
                if matches_all(&rule.source_matchers, &alert.labels) {
                    sources.push(alert.labels.clone());
                }
            }
        }
    }
}

impl Muter for Inhibitor {
    fn mutes(&self, labels: &LabelSet, _now: DateTime<Utc>) -> bool {
        self.rules.iter().zip(&self.sources).any(|(rule, sources)| {
            matches_all(&rule.target_matchers, labels)
                && sources.iter().any(|src| {
                    src != labels
                        && rule.equal.iter().all(|name| {
                            src.get(name).map(String::as_str).unwrap_or("")
                                == labels.get(name).map(String::as_str).unwrap_or("")
                        })
                })
        })
    }
}
