//! The service's own metrics (`GET /metrics`): runs by runbook and status,
//! step durations, trigger decisions, alert states, scrape health,
//! notification results, last successful backup per target, reload health.
//! Every name is spelled once, in [`name`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Metric names (the only place they are spelled).
pub mod name {
    pub const RUNS_TOTAL: &str = "sluice_runs_total";
    pub const RUNS_ACTIVE: &str = "sluice_runs_active";
    pub const STEP_DURATION: &str = "sluice_step_duration_seconds";
    pub const TRIGGER_DECISIONS: &str = "sluice_trigger_decisions_total";
    pub const ALERTS: &str = "sluice_alerts";
    pub const ALERTS_RECEIVED: &str = "sluice_alerts_received_total";
    pub const SCRAPE_UP: &str = "sluice_scrape_target_up";
    pub const SCRAPE_DURATION: &str = "sluice_scrape_duration_seconds";
    pub const NOTIFICATIONS: &str = "sluice_notifications_total";
    pub const BACKUP_LAST_SUCCESS: &str = "sluice_backup_last_success_timestamp_seconds";
    pub const RELOAD_SUCCESS: &str = "sluice_config_last_reload_successful";
    pub const RELOAD_SUCCESS_TIME: &str = "sluice_config_last_reload_success_timestamp_seconds";
    pub const FILE_VALID: &str = "sluice_file_valid";
    pub const KILL_SWITCH: &str = "sluice_kill_switch";
    pub const SCHEDULE_MISSED: &str = "sluice_schedule_missed_fires_total";
    pub const BUILD_INFO: &str = "sluice_service_build_info";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Cell {
    Value(f64),
    Hist {
        buckets: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// One metric with labels.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    ty: Type,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    cells: Mutex<BTreeMap<Vec<String>, Cell>>,
}

impl Family {
    const fn new(
        name: &'static str,
        help: &'static str,
        ty: Type,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            ty,
            labels,
            bounds: &[],
            cells: Mutex::new(BTreeMap::new()),
        }
    }

    fn key(&self, values: &[&str]) -> Vec<String> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        values.iter().map(|v| v.to_string()).collect()
    }

    fn cells(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, Cell>> {
        self.cells.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds to a counter.
    pub fn inc_by(&self, values: &[&str], n: f64) {
        let mut cells = self.cells();
        match cells.entry(self.key(values)).or_insert(Cell::Value(0.0)) {
            Cell::Value(v) => *v += n,
            Cell::Hist { .. } => {}
        }
    }

    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, values: &[&str], v: f64) {
        self.cells().insert(self.key(values), Cell::Value(v));
    }

    /// Replaces every series of a gauge (series no longer present disappear).
    pub fn replace(&self, series: impl IntoIterator<Item = (Vec<String>, f64)>) {
        let mut cells = self.cells();
        cells.clear();
        for (k, v) in series {
            cells.insert(k, Cell::Value(v));
        }
    }

    /// Records one observation of a histogram.
    pub fn observe(&self, values: &[&str], v: f64) {
        let n = self.bounds.len();
        let mut cells = self.cells();
        let cell = cells.entry(self.key(values)).or_insert(Cell::Hist {
            buckets: vec![0; n],
            sum: 0.0,
            count: 0,
        });
        if let Cell::Hist {
            buckets,
            sum,
            count,
        } = cell
        {
            for (b, bound) in buckets.iter_mut().zip(self.bounds) {
                if v <= *bound {
                    *b += 1;
                }
            }
            *sum += v;
            *count += 1;
        }
    }

    /// The value of a counter or gauge series.
    pub fn get(&self, values: &[&str]) -> Option<f64> {
        match self.cells().get(&self.key(values)) {
            Some(Cell::Value(v)) => Some(*v),
            _ => None,
        }
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.ty.as_str());
        for (values, cell) in self.cells().iter() {
            let labels = label_text(self.labels, values, None);
            match cell {
                Cell::Value(v) => {
                    let _ = writeln!(out, "{}{labels} {}", self.name, fmt_value(*v));
                }
                Cell::Hist {
                    buckets,
                    sum,
                    count,
                } => {
                    for (b, bound) in buckets.iter().zip(self.bounds) {
                        let l = label_text(self.labels, values, Some(&fmt_value(*bound)));
                        let _ = writeln!(out, "{}_bucket{l} {b}", self.name);
                    }
                    let l = label_text(self.labels, values, Some("+Inf"));
                    let _ = writeln!(out, "{}_bucket{l} {count}", self.name);
                    let _ = writeln!(out, "{}_sum{labels} {}", self.name, fmt_value(*sum));
                    let _ = writeln!(out, "{}_count{labels} {count}", self.name);
                }
            }
        }
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

const STEP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0,
];

/// Every metric of the service.
#[derive(Debug)]
pub struct ServiceMetrics {
    pub runs_total: Family,
    pub runs_active: Family,
    pub step_duration: Family,
    pub trigger_decisions: Family,
    pub alerts: Family,
    pub alerts_received: Family,
    pub scrape_up: Family,
    pub scrape_duration: Family,
    pub notifications: Family,
    pub backup_last_success: Family,
    pub reload_success: Family,
    pub reload_success_time: Family,
    pub file_valid: Family,
    pub kill_switch: Family,
    pub schedule_missed: Family,
    pub build_info: Family,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        use Type::*;
        let m = ServiceMetrics {
            runs_total: Family::new(
                name::RUNS_TOTAL,
                "Runs that ended, by runbook and final status.",
                Counter,
                &["runbook", "status"],
            ),
            runs_active: Family::new(
                name::RUNS_ACTIVE,
                "Runs executing on this instance now, by runbook.",
                Gauge,
                &["runbook"],
            ),
            step_duration: Family {
                bounds: STEP_BUCKETS,
                ..Family::new(
                    name::STEP_DURATION,
                    "Duration of executed steps, by step kind and outcome.",
                    Histogram,
                    &["kind", "status"],
                )
            },
            trigger_decisions: Family::new(
                name::TRIGGER_DECISIONS,
                "What happened to automatic starts: started, queued, deduplicated, cooldown, escalated, kill_switch, maintenance.",
                Counter,
                &["runbook", "decision"],
            ),
            alerts: Family::new(
                name::ALERTS,
                "Alerts of the internally evaluated rules, by name and state.",
                Gauge,
                &["alertname", "state"],
            ),
            alerts_received: Family::new(
                name::ALERTS_RECEIVED,
                "Alert events received, by source (rules, webhook) and kind (firing, resolved).",
                Counter,
                &["source", "kind"],
            ),
            scrape_up: Family::new(
                name::SCRAPE_UP,
                "Whether the last scrape of a target succeeded.",
                Gauge,
                &["target"],
            ),
            scrape_duration: Family::new(
                name::SCRAPE_DURATION,
                "Duration of the last scrape of a target.",
                Gauge,
                &["target"],
            ),
            notifications: Family::new(
                name::NOTIFICATIONS,
                "Notifications sent, by channel and result (ok, failed).",
                Counter,
                &["channel", "result"],
            ),
            backup_last_success: Family::new(
                name::BACKUP_LAST_SUCCESS,
                "Unix time of the last successful backup step, by backup name and target.",
                Gauge,
                &["backup", "target"],
            ),
            reload_success: Family::new(
                name::RELOAD_SUCCESS,
                "Whether the last reload of runbooks and rules had no invalid file.",
                Gauge,
                &[],
            ),
            reload_success_time: Family::new(
                name::RELOAD_SUCCESS_TIME,
                "Unix time of the last reload without an invalid file.",
                Gauge,
                &[],
            ),
            file_valid: Family::new(
                name::FILE_VALID,
                "Whether a runbook or rule file is valid (an invalid one keeps its previous version running).",
                Gauge,
                &["file", "kind"],
            ),
            kill_switch: Family::new(
                name::KILL_SWITCH,
                "1 while automatic runs are switched off.",
                Gauge,
                &[],
            ),
            schedule_missed: Family::new(
                name::SCHEDULE_MISSED,
                "Schedule fires missed while the service was down and not run (catch_up).",
                Counter,
                &["runbook"],
            ),
            build_info: Family::new(
                name::BUILD_INFO,
                "Version of the running service.",
                Gauge,
                &["version"],
            ),
        };
        m.build_info.set(&[env!("CARGO_PKG_VERSION")], 1.0);
        m.kill_switch.set(&[], 0.0);
        m
    }
}

impl ServiceMetrics {
    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        for f in [
            &self.runs_total,
            &self.runs_active,
            &self.step_duration,
            &self.trigger_decisions,
            &self.alerts,
            &self.alerts_received,
            &self.scrape_up,
            &self.scrape_duration,
            &self.notifications,
            &self.backup_last_success,
            &self.reload_success,
            &self.reload_success_time,
            &self.file_valid,
            &self.kill_switch,
            &self.schedule_missed,
            &self.build_info,
        ] {
            f.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = ServiceMetrics::default();
        m.runs_total.inc(&["cb-reset", "succeeded"]);
        m.runs_total.inc(&["cb-reset", "succeeded"]);
        m.step_duration.observe(&["http", "succeeded"], 0.02);
        m.scrape_up.set(&["primary \"x\""], 1.0);
        let text = m.render();
        assert!(
            text.contains("sluice_runs_total{runbook=\"cb-reset\",status=\"succeeded\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "sluice_step_duration_seconds_bucket{kind=\"http\",status=\"succeeded\",le=\"0.01\"} 0\n"
        ));
        assert!(text.contains(
            "sluice_step_duration_seconds_bucket{kind=\"http\",status=\"succeeded\",le=\"0.05\"} 1\n"
        ));
        assert!(text.contains(
            "sluice_step_duration_seconds_count{kind=\"http\",status=\"succeeded\"} 1\n"
        ));
        assert!(text.contains("sluice_scrape_target_up{target=\"primary \\\"x\\\"\"} 1\n"));
        assert!(text.contains("# TYPE sluice_runs_total counter\n"));
        assert!(text.contains("sluice_kill_switch 0\n"));
    }
}
