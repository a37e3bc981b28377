//! Alert events: what the service (triggers, notifications) consumes, from
//! internal rules and from the Alertmanager webhook alike.

use serde::{Deserialize, Serialize};

use super::LabelSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
    /// The alert started firing (or is still firing, when re-sent by an external source).
    Firing,
    Resolved,
}

/// Where an alert came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AlertSource {
    /// A rule evaluated by Sluice.
    Rule { file: String, group: String },
    /// An Alertmanager webhook delivery.
    Webhook { receiver: String },
}

/// A firing or resolved alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub kind: AlertEventKind,
    /// The `alertname` label.
    pub name: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    /// Sample value that made the alert active (internal alerts only).
    pub value: Option<f64>,
    /// Alertmanager-compatible label fingerprint.
    pub fingerprint: String,
    /// When the alert became active (Prometheus `activeAt`, Alertmanager `startsAt`), Unix ms.
    pub since_ms: i64,
    /// When it resolved, for resolved events, Unix ms.
    pub ended_ms: Option<i64>,
    /// Time of the event, Unix ms.
    pub at_ms: i64,
    pub generator_url: Option<String>,
    pub source: AlertSource,
}
