//! Alert evaluation with Prometheus's semantics: rule groups evaluated on an
//! aligned interval, alerts moving pending → firing → inactive (`for`,
//! `keep_firing_for`, 15 min resolved retention), `ALERTS` /
//! `ALERTS_FOR_STATE` and recording-rule results written back, and alert
//! events published for the service.
//!
//! The evaluator and the store are reached only through [`RuleQueryEngine`]
//! and [`crate::scrape::SampleSink`], the way Prometheus's rule manager gets a
//! `QueryFunc` and an `Appendable`.

pub mod engine;
pub mod event;
pub mod fingerprint;
pub mod group;
pub mod manager;
pub mod rule;
pub mod state_store;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use engine::{LocalEngine, RemoteEngine};
pub use event::{AlertEvent, AlertEventKind, AlertSource};
pub use fingerprint::fingerprint;
pub use group::{Group, GroupEvalReport};
pub use manager::{RuleManager, RuleManagerOptions};
pub use rule::{AlertingRule, RecordingRule};
pub use state_store::{FileStateStore, ForStateStore, SavedAlert};

/// Label name → value, sorted by name.
pub type LabelSet = BTreeMap<String, String>;

/// One sample of an instant-query result.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// Labels including `__name__` when the series has one.
    pub labels: LabelSet,
    pub value: f64,
}

/// Why a rule's query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Runs instant queries for rules. A scalar result is returned as one sample
/// without labels, as Prometheus's rule query function does.
pub trait RuleQueryEngine: Send + Sync {
    fn instant(
        &self,
        expr: &promql_parser::parser::Expr,
        t_ms: i64,
    ) -> Result<Vec<QuerySample>, QueryError>;
}

/// Lifecycle of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved; kept for 15 minutes after it stopped firing.
    Inactive,
    /// Active, waiting for `for` to elapse.
    Pending,
    Firing,
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        })
    }
}

/// One alert instance of an alerting rule (one label set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub state: AlertState,
    /// Value of the sample that made it active, updated each evaluation.
    #[serde(with = "float_json")]
    pub value: f64,
    /// First evaluation at which the expression returned this label set.
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub keep_firing_since_ms: Option<i64>,
}

/// Metric names the rule evaluation writes.
pub mod series_names {
    pub const ALERTS: &str = "ALERTS";
    pub const ALERTS_FOR_STATE: &str = "ALERTS_FOR_STATE";
    pub const ALERT_NAME: &str = "alertname";
    pub const ALERT_STATE: &str = "alertstate";
}

/// How long a resolved alert is kept (and reported as resolved), as in Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// JSON has no NaN/Inf: those are written as the strings Prometheus uses.
mod float_json {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_str(&crate::gotmpl::format::format_g(*v, None))
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Num::deserialize(d)? {
            Num::F(f) => Ok(f),
            Num::S(s) => crate::scrape::parse::parse_value(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid number {s:?}"))),
        }
    }
}
