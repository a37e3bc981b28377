//! PromQL instant queries over the service's own scraped store, answered in
//! the Prometheus HTTP API's `data` shape. `wait_until` steps use it when no
//! Prometheus is configured, and `GET /api/v1/query` serves it.

use std::sync::Arc;

use serde_json::{Value as J, json};
use sluice_promql::{Evaluator, MemStorage, Value};

use crate::exec::context::InstantQuery;

pub struct LocalQuery {
    storage: Arc<MemStorage>,
    evaluator: Evaluator,
}

impl LocalQuery {
    pub fn new(storage: Arc<MemStorage>) -> Self {
        LocalQuery {
            storage,
            evaluator: Evaluator::default(),
        }
    }
}

fn fmt(v: f64) -> String {
    crate::gotmpl::format::format_g(v, None)
}

fn secs(t_ms: i64) -> J {
    json!(t_ms as f64 / 1000.0)
}

/// A PromQL value as the Prometheus API's `data` object.
pub fn api_data(v: &Value) -> J {
    let metric = |l: &sluice_promql::Labels| {
        J::Object(
            l.iter()
                .map(|(k, v)| (k.to_string(), J::String(v.to_string())))
                .collect(),
        )
    };
    match v {
        Value::Scalar(t, x) => json!({"resultType": "scalar", "result": [secs(*t), fmt(*x)]}),
        Value::String(t, s) => json!({"resultType": "string", "result": [secs(*t), s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({"metric": metric(&s.labels), "value": [secs(s.t), fmt(s.v)]})).collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": metric(&s.labels),
                "values": s.points.iter().map(|(t, v)| json!([secs(*t), fmt(*v)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
}

impl InstantQuery for LocalQuery {
    fn query(&self, expr: &str, t_ms: i64) -> Result<J, String> {
        let parsed = sluice_promql::parse(expr)?;
        let v = self
            .evaluator
            .instant(self.storage.as_ref(), &parsed, t_ms)
            .map_err(|e| e.to_string())?;
        Ok(api_data(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_the_prometheus_shape() {
        let storage = Arc::new(MemStorage::new(std::time::Duration::from_secs(3600)));
        let labels = sluice_promql::Labels::new([("__name__", "up"), ("job", "e")]);
        storage.append(&labels, 1_000, 1.0).unwrap();
        let q = LocalQuery::new(storage);
        let data = q.query("up == 1", 2_000).unwrap();
        assert_eq!(data["resultType"], "vector");
        assert_eq!(data["result"][0]["metric"]["job"], "e");
        assert_eq!(data["result"][0]["value"][1], "1");
        assert!(q.query("up ==", 2_000).is_err());
        let empty = q.query("up == 0", 2_000).unwrap();
        assert_eq!(empty["result"], json!([]));
    }
}
