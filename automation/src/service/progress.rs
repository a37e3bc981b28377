//! Step events into the service's metrics: step durations by kind and
//! outcome, and the time of the last successful backup per backup and target.

use std::sync::Arc;

use crate::exec::context::{Progress, StepEvent};

use super::metrics::ServiceMetrics;

pub struct MetricsProgress(pub Arc<ServiceMetrics>);

impl Progress for MetricsProgress {
    fn step_started(&self, _run_id: &str, _path: &str, _kind: &str) {}

    fn step_finished(&self, ev: &StepEvent<'_>) {
        if matches!(ev.status, "succeeded" | "failed") {
            self.0
                .step_duration
                .observe(&[ev.kind, ev.status], ev.elapsed.as_secs_f64());
        }
        if ev.kind == "backup" && ev.status == "succeeded" {
            let name = ev.inputs["name"].as_str().unwrap_or(ev.runbook);
            let target = ev.inputs["engine_version_from"]
                .as_str()
                .or_else(|| {
                    ev.inputs["downloads"]
                        .as_array()
                        .and_then(|d| d.iter().find_map(|x| x["target"].as_str()))
                })
                .unwrap_or("");
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            self.0.backup_last_success.set(&[name, target], now);
        }
    }
}
