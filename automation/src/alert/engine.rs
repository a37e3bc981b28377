//! The two query engines rules run on: the local evaluator over the in-memory
//! store, and a remote Prometheus. Also makes the store a scrape/rule sink.

use std::sync::Arc;

use promql_parser::parser::Expr;
use sluice_promql::{Evaluator, Labels, MemStorage, Value};
use tracing::debug;

use super::{LabelSet, QueryError, QuerySample, RuleQueryEngine};
use crate::scrape::remote::RemotePrometheus;
use crate::scrape::{SampleSink, SeriesLabels};

/// Converts an instant-query result into rule samples: vectors as they are,
/// a scalar as one sample without labels, anything else an error (Prometheus's
/// `EngineQueryFunc`).
pub fn result_samples(v: Value) -> Result<Vec<QuerySample>, QueryError> {
    match v {
        Value::Vector(samples) => Ok(samples
            .into_iter()
            .map(|s| QuerySample {
                labels: s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value: s.v,
            })
            .collect()),
        Value::Scalar(_, v) => Ok(vec![QuerySample {
            labels: LabelSet::new(),
            value: v,
        }]),
        other => Err(QueryError(format!(
            "rule result is not a vector or scalar (got {})",
            other.type_name()
        ))),
    }
}

/// Rules evaluated by Sluice's PromQL evaluator over its own store.
pub struct LocalEngine {
    pub storage: Arc<MemStorage>,
    pub evaluator: Evaluator,
}

impl LocalEngine {
    pub fn new(storage: Arc<MemStorage>) -> Self {
        LocalEngine {
            storage,
            evaluator: Evaluator::default(),
        }
    }
}

impl RuleQueryEngine for LocalEngine {
    fn instant(&self, expr: &Expr, t_ms: i64) -> Result<Vec<QuerySample>, QueryError> {
        let v = self
            .evaluator
            .instant(self.storage.as_ref(), expr, t_ms)
            .map_err(|e| QueryError(e.to_string()))?;
        result_samples(v)
    }
}

/// Rules evaluated by a remote Prometheus (`/api/v1/query`). Must be called
/// from a blocking thread of a Tokio runtime (the rule manager evaluates there).
pub struct RemoteEngine {
    pub prometheus: RemotePrometheus,
    pub runtime: tokio::runtime::Handle,
}

impl RuleQueryEngine for RemoteEngine {
    fn instant(&self, expr: &Expr, t_ms: i64) -> Result<Vec<QuerySample>, QueryError> {
        let q = expr.to_string();
        let res = self
            .runtime
            .block_on(self.prometheus.instant(&q, t_ms))
            .map_err(|e| QueryError(e.to_string()))?;
        Ok(res
            .into_iter()
            .map(|s| QuerySample {
                labels: s.labels,
                value: s.value,
            })
            .collect())
    }
}

fn labels_of(l: &SeriesLabels) -> Labels {
    Labels::new(l.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

impl SampleSink for MemStorage {
    fn append(&self, labels: &SeriesLabels, t_ms: i64, v: f64) {
        if let Err(e) = MemStorage::append(self, &labels_of(labels), t_ms, v) {
            // Out-of-order and duplicate samples are dropped, as Prometheus does.
            debug!(error = %e, "Sample dropped.");
        }
    }

    fn append_stale(&self, labels: &SeriesLabels, t_ms: i64) {
        if let Err(e) = MemStorage::append_stale(self, &labels_of(labels), t_ms) {
            debug!(error = %e, "Staleness marker dropped.");
        }
    }
}
