//! The engine's metrics: every name in one place (DESIGN.md's `sluice_*`
//! set), updated by the pipeline with atomics, rendered by [`render`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::circuit_breaker::BreakerSnapshot;
use crate::exposition::Exposition;

/// Metric names (the only place they are spelled).
pub mod name {
    pub const MEMORY_USAGE_BYTES: &str = "sluice_memory_usage_bytes";
    pub const MEMORY_PEAK_BYTES: &str = "sluice_memory_peak_bytes";
    pub const PROCESSING_LATENCY_MS: &str = "sluice_processing_latency_ms";
    pub const RECORD_LATENCY_SECONDS: &str = "sluice_record_latency_seconds";
    pub const THROUGHPUT: &str = "sluice_throughput_records_per_second";
    pub const PROCESSING_ERRORS_TOTAL: &str = "sluice_processing_errors_total";
    pub const BREAKER_STATE: &str = "sluice_circuit_breaker_state";
    pub const BREAKER_FAILURES_TOTAL: &str = "sluice_circuit_breaker_failures_total";
    pub const BREAKER_SUCCESSES_TOTAL: &str = "sluice_circuit_breaker_successes_total";
    pub const RESOURCE_UTILIZATION_PERCENT: &str = "sluice_resource_utilization_percent";
    pub const RESOURCE_LIMIT_VIOLATIONS_TOTAL: &str = "sluice_resource_limit_violations_total";
    pub const WATERMARK_LAG_SECONDS: &str = "sluice_watermark_lag_seconds";
    pub const LATE_DATA_DROPPED_TOTAL: &str = "sluice_late_data_dropped_total";
    pub const LATE_DATA_PROCESSED_TOTAL: &str = "sluice_late_data_processed_total";
    pub const RECORDS_PROCESSED_TOTAL: &str = "sluice_records_processed_total";
    pub const RECORDS_FAILED_TOTAL: &str = "sluice_records_failed_total";
    pub const BACKLOG_SIZE: &str = "sluice_backlog_size";
    pub const QUERY_EXECUTION_TIME_MS: &str = "sluice_query_execution_time_ms";
    pub const QUERY_RESULTS_PRODUCED_TOTAL: &str = "sluice_query_results_produced_total";
    pub const MAINTENANCE_MODE: &str = "sluice_maintenance_mode";
    pub const BUILD_INFO: &str = "sluice_build_info";
}

/// An f64 gauge in an atomic.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
    pub fn set_max(&self, v: f64) {
        let _ = self.0.fetch_update(Relaxed, Relaxed, |cur| {
            (v > f64::from_bits(cur)).then_some(v.to_bits())
        });
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Latency histogram with fixed buckets (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Self {
            bounds: LATENCY_BOUNDS,
            buckets: LATENCY_BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// Quantile `q` of observations counted per bucket (`bounds` are upper
/// bounds; larger values are beyond the last bound). Linear within the
/// bucket; beyond the last bound, the last bound. 0 without observations.
pub fn quantile_of(bounds: &[f64], counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let upper = bounds[i];
            return lower + (upper - lower) * ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
        }
        below += n;
    }
    bounds.last().copied().unwrap_or(0.0)
}

impl Histogram {
    /// Records `n` observations of `seconds`.
    pub fn observe_n(&self, seconds: f64, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(n, Relaxed);
        }
        self.count.fetch_add(n, Relaxed);
        self.sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64 * n, Relaxed);
    }

    /// Quantile `q` since start, interpolated within its bucket like
    /// PromQL's `histogram_quantile`.
    pub fn quantile(&self, q: f64) -> f64 {
        quantile_of(self.bounds, &self.bucket_counts(), q)
    }

    /// Observations per bucket (not cumulative), for quantiles over an interval.
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// Quantile `q` of the observations made since `earlier` (a `bucket_counts`).
    pub fn quantile_since(&self, earlier: &[u64], q: f64) -> f64 {
        let now = self.bucket_counts();
        let delta: Vec<u64> = now
            .iter()
            .zip(earlier.iter().chain(std::iter::repeat(&0)))
            .map(|(n, e)| n.saturating_sub(*e))
            .collect();
        quantile_of(self.bounds, &delta, q)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, e: &mut Exposition, name: &str) {
        let mut acc = 0;
        let bucket = format!("{name}_bucket");
        for (i, b) in self.bounds.iter().enumerate() {
            acc += self.buckets[i].load(Relaxed);
            e.sample(
                &bucket,
                &[("le", &crate::exposition::format_value(*b))],
                acc as f64,
            );
        }
        let count = self.count.load(Relaxed);
        e.sample(&bucket, &[("le", "+Inf")], count as f64);
        e.sample(
            &format!("{name}_sum"),
            &[],
            self.sum_micros.load(Relaxed) as f64 / 1e6,
        );
        e.sample(&format!("{name}_count"), &[], count as f64);
    }
}

/// What one pipeline worker saw over its last report interval (about a
/// second). Each worker consumes its own partitions, so the engine's
/// throughput, backlog and record age are the sum (or weighted mean) of the
/// workers' reports.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub at: Instant,
    pub throughput: f64,
    /// Consumer lag of the worker's partitions by topic (refreshed every few reports).
    pub backlog: BTreeMap<String, i64>,
    /// Sum of processed records' ages (processing time − Kafka timestamp), ms.
    pub age_ms_sum: f64,
    pub age_n: u64,
}

/// A report older than this is a worker that stopped: it no longer counts.
const REPORT_FRESH: Duration = Duration::from_secs(5);

/// The workers' reports added up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    pub throughput: f64,
    pub backlog: BTreeMap<String, i64>,
    /// Mean age of the records processed in the last interval (0 when none were).
    pub end_to_end_ms: f64,
}

impl Totals {
    pub fn backlog_total(&self) -> i64 {
        self.backlog.values().sum()
    }
}

/// Every metric the engine exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub memory_total: Gauge,
    pub memory_operator: Gauge,
    pub memory_process: Gauge,
    pub memory_ballast: Gauge,
    pub memory_peak: Gauge,
    pub latency_record_ms: Gauge,
    pub latency_batch_ms: Gauge,
    pub record_latency: Histogram,
    pub workers: Mutex<HashMap<usize, WorkerReport>>,
    pub errors_retryable: Counter,
    pub errors_fatal: Counter,
    pub cpu_percent: Gauge,
    pub memory_percent: Gauge,
    pub violations: Mutex<BTreeMap<String, u64>>,
    pub watermark_lag: Gauge,
    pub late_dropped: Counter,
    pub late_processed: Counter,
    pub records_processed: Counter,
    pub records_failed: Counter,
    pub query_time_ms: Mutex<BTreeMap<String, f64>>,
    pub results_produced: Counter,
    pub maintenance: Gauge,
}

impl Metrics {
    pub fn violation(&self, resource: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut v = self.violations.lock().unwrap_or_else(|p| p.into_inner());
        *v.entry(resource.to_owned()).or_default() += n;
    }

    pub fn violations_total(&self) -> u64 {
        self.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// Records worker `id`'s report; `backlog: None` keeps its last backlog.
    pub fn report(
        &self,
        id: usize,
        throughput: f64,
        age_ms_sum: f64,
        age_n: u64,
        backlog: Option<BTreeMap<String, i64>>,
    ) {
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let kept = w.remove(&id).map(|r| r.backlog).unwrap_or_default();
        w.insert(
            id,
            WorkerReport {
                at: Instant::now(),
                throughput,
                backlog: backlog.unwrap_or(kept),
                age_ms_sum,
                age_n,
            },
        );
    }

    /// The recent reports of every worker, added up.
    pub fn totals(&self) -> Totals {
        let w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = Totals::default();
        let (mut age, mut n) = (0.0, 0u64);
        for r in w.values().filter(|r| r.at.elapsed() < REPORT_FRESH) {
            t.throughput += r.throughput;
            for (topic, lag) in &r.backlog {
                *t.backlog.entry(topic.clone()).or_default() += lag;
            }
            age += r.age_ms_sum;
            n += r.age_n;
        }
        if n > 0 {
            t.end_to_end_ms = age / n as f64;
        }
        t
    }

    pub fn set_query_time(&self, query_type: &str, ms: f64) {
        self.query_time_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(query_type.to_owned(), ms);
    }

    /// Renders the exposition; breakers are passed in (they live elsewhere).
    pub fn render(&self, breakers: &[BreakerSnapshot]) -> String {
        use name::*;
        let totals = self.totals();
        let mut e = Exposition::default();
        e.family(
            MEMORY_USAGE_BYTES,
            "gauge",
            "Memory in use by component (operator state, process RSS, total).",
        );
        e.sample(
            MEMORY_USAGE_BYTES,
            &[("component", "total")],
            self.memory_total.get(),
        );
        e.sample(
            MEMORY_USAGE_BYTES,
            &[("component", "operator")],
            self.memory_operator.get(),
        );
        e.sample(
            MEMORY_USAGE_BYTES,
            &[("component", "process")],
            self.memory_process.get(),
        );
        e.sample(
            MEMORY_USAGE_BYTES,
            &[("component", "ballast")],
            self.memory_ballast.get(),
        );
        e.family(
            MEMORY_PEAK_BYTES,
            "gauge",
            "Highest total memory seen since start.",
        );
        e.sample(
            MEMORY_PEAK_BYTES,
            &[("component", "total")],
            self.memory_peak.get(),
        );
        e.family(
            PROCESSING_LATENCY_MS,
            "gauge",
            "Recent latency in milliseconds: per-record query time (record_processing), \
             last batch delivery (batch_delivery), mean age of processed records since \
             they were produced (end_to_end).",
        );
        e.sample(
            PROCESSING_LATENCY_MS,
            &[("operation", "record_processing")],
            self.latency_record_ms.get(),
        );
        e.sample(
            PROCESSING_LATENCY_MS,
            &[("operation", "batch_delivery")],
            self.latency_batch_ms.get(),
        );
        e.sample(
            PROCESSING_LATENCY_MS,
            &[("operation", "end_to_end")],
            totals.end_to_end_ms,
        );
        e.family(
            RECORD_LATENCY_SECONDS,
            "histogram",
            "Time from consuming a record to the sink acknowledging its results.",
        );
        self.record_latency.render(&mut e, RECORD_LATENCY_SECONDS);
        e.single(
            THROUGHPUT,
            "gauge",
            "Records consumed per second (recent).",
            totals.throughput,
        );
        e.family(
            PROCESSING_ERRORS_TOTAL,
            "counter",
            "Processing errors by kind.",
        );
        e.sample(
            PROCESSING_ERRORS_TOTAL,
            &[("error_type", "retryable")],
            self.errors_retryable.get() as f64,
        );
        e.sample(
            PROCESSING_ERRORS_TOTAL,
            &[("error_type", "fatal")],
            self.errors_fatal.get() as f64,
        );
        e.family(
            BREAKER_STATE,
            "gauge",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
        );
        for b in breakers {
            e.sample(BREAKER_STATE, &[("name", &b.name)], b.state.metric_value());
        }
        e.family(
            BREAKER_FAILURES_TOTAL,
            "counter",
            "Failed calls seen by the breaker.",
        );
        for b in breakers {
            e.sample(
                BREAKER_FAILURES_TOTAL,
                &[("name", &b.name)],
                b.failures_total as f64,
            );
        }
        e.family(
            BREAKER_SUCCESSES_TOTAL,
            "counter",
            "Successful calls seen by the breaker.",
        );
        for b in breakers {
            e.sample(
                BREAKER_SUCCESSES_TOTAL,
                &[("name", &b.name)],
                b.successes_total as f64,
            );
        }
        e.family(
            RESOURCE_UTILIZATION_PERCENT,
            "gauge",
            "Memory use against max_total_memory, CPU use of the process.",
        );
        e.sample(
            RESOURCE_UTILIZATION_PERCENT,
            &[("resource", "memory")],
            self.memory_percent.get(),
        );
        e.sample(
            RESOURCE_UTILIZATION_PERCENT,
            &[("resource", "cpu")],
            self.cpu_percent.get(),
        );
        e.family(
            RESOURCE_LIMIT_VIOLATIONS_TOTAL,
            "counter",
            "Times a resource limit was hit.",
        );
        {
            let v = self.violations.lock().unwrap_or_else(|p| p.into_inner());
            for r in ["memory", "groups", "windows"] {
                e.sample(
                    RESOURCE_LIMIT_VIOLATIONS_TOTAL,
                    &[("resource", r)],
                    v.get(r).copied().unwrap_or(0) as f64,
                );
            }
        }
        e.single(
            WATERMARK_LAG_SECONDS,
            "gauge",
            "Wall clock minus the lowest query watermark.",
            self.watermark_lag.get(),
        );
        e.single(
            LATE_DATA_DROPPED_TOTAL,
            "counter",
            "Late records dropped.",
            self.late_dropped.get() as f64,
        );
        e.single(
            LATE_DATA_PROCESSED_TOTAL,
            "counter",
            "Late records aggregated into late window updates.",
            self.late_processed.get() as f64,
        );
        e.family(
            RECORDS_PROCESSED_TOTAL,
            "counter",
            "Input records processed.",
        );
        e.sample(
            RECORDS_PROCESSED_TOTAL,
            &[("source", "kafka")],
            self.records_processed.get() as f64,
        );
        e.family(
            RECORDS_FAILED_TOTAL,
            "counter",
            "Input records that could not be processed (bad JSON, no event time, limits).",
        );
        e.sample(
            RECORDS_FAILED_TOTAL,
            &[("source", "kafka")],
            self.records_failed.get() as f64,
        );
        e.family(
            BACKLOG_SIZE,
            "gauge",
            "Consumer lag (messages) per source topic.",
        );
        for (topic, lag) in &totals.backlog {
            e.sample(BACKLOG_SIZE, &[("topic", topic)], *lag as f64);
        }
        e.family(
            QUERY_EXECUTION_TIME_MS,
            "gauge",
            "Mean execution time per record by query type (filter, windowing), in milliseconds.",
        );
        for (t, ms) in self
            .query_time_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            e.sample(QUERY_EXECUTION_TIME_MS, &[("query_type", t)], *ms);
        }
        e.single(
            QUERY_RESULTS_PRODUCED_TOTAL,
            "counter",
            "Result records delivered to sinks.",
            self.results_produced.get() as f64,
        );
        e.single(
            MAINTENANCE_MODE,
            "gauge",
            "1 while maintenance mode pauses intake.",
            self.maintenance.get(),
        );
        e.family(BUILD_INFO, "gauge", "Build information.");
        e.sample(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let bounds = [0.1, 0.2, 0.4];
        assert_eq!(quantile_of(&bounds, &[0, 0, 0], 0.99), 0.0);
        // 10 in (0.1, 0.2]: the median is halfway through that bucket.
        assert!((quantile_of(&bounds, &[0, 10, 0], 0.5) - 0.15).abs() < 1e-9);
        assert!((quantile_of(&bounds, &[10, 0, 10], 0.75) - 0.3).abs() < 1e-9);
        let h = Histogram::default();
        h.observe_n(0.003, 99);
        let before = h.bucket_counts();
        h.observe_n(0.7, 100);
        assert!(
            h.quantile_since(&before, 0.5) > 0.5,
            "only the later observations"
        );
        assert!(h.quantile(0.25) < 0.005);
    }

    #[test]
    fn histogram_quantile_and_rendering() {
        let h = Histogram::default();
        h.observe_n(0.002, 99);
        h.observe_n(0.7, 1);
        // Interpolated within (0.001, 0.005]: rank 50 of 99.
        assert!((h.quantile(0.5) - (0.001 + 0.004 * 50.0 / 99.0)).abs() < 1e-12);
        assert_eq!(h.quantile(1.0), 1.0);
        let mut e = Exposition::default();
        h.render(&mut e, "x");
        let text = e.finish();
        assert!(text.contains("x_bucket{le=\"+Inf\"} 100\n"), "{text}");
        assert!(text.contains("x_count 100\n"));
    }

    #[test]
    fn worker_reports_add_up_and_stale_ones_drop_out() {
        let m = Metrics::default();
        let lag = |n| Some(BTreeMap::from([("orders".to_string(), n)]));
        m.report(0, 100.0, 3000.0, 3, lag(40));
        m.report(1, 50.0, 1000.0, 1, lag(2));
        // A report without a fresh backlog keeps the worker's last one.
        m.report(1, 60.0, 1000.0, 1, None);
        let t = m.totals();
        assert_eq!(t.throughput, 160.0);
        assert_eq!(t.backlog["orders"], 42);
        assert_eq!(t.end_to_end_ms, 1000.0);
        let text = m.render(&[]);
        assert!(
            text.contains("sluice_backlog_size{topic=\"orders\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_processing_latency_ms{operation=\"end_to_end\"} 1000\n"),
            "{text}"
        );
        m.workers.lock().unwrap().get_mut(&0).unwrap().at -= REPORT_FRESH;
        let t = m.totals();
        assert_eq!((t.throughput, t.backlog["orders"]), (60.0, 2));
    }

    #[test]
    fn render_contains_the_whole_metric_set() {
        let m = Metrics::default();
        m.records_processed.add(5);
        let text = m.render(&[]);
        for n in [
            name::MEMORY_USAGE_BYTES,
            name::MEMORY_PEAK_BYTES,
            name::PROCESSING_LATENCY_MS,
            name::RECORD_LATENCY_SECONDS,
            name::THROUGHPUT,
            name::PROCESSING_ERRORS_TOTAL,
            name::BREAKER_STATE,
            name::BREAKER_FAILURES_TOTAL,
            name::BREAKER_SUCCESSES_TOTAL,
            name::RESOURCE_UTILIZATION_PERCENT,
            name::RESOURCE_LIMIT_VIOLATIONS_TOTAL,
            name::WATERMARK_LAG_SECONDS,
            name::LATE_DATA_DROPPED_TOTAL,
            name::LATE_DATA_PROCESSED_TOTAL,
            name::RECORDS_PROCESSED_TOTAL,
            name::RECORDS_FAILED_TOTAL,
            name::BACKLOG_SIZE,
            name::QUERY_EXECUTION_TIME_MS,
            name::QUERY_RESULTS_PRODUCED_TOTAL,
            name::MAINTENANCE_MODE,
            name::BUILD_INFO,
        ] {
            assert!(text.contains(&format!("# TYPE {n} ")), "{n} missing");
        }
        assert!(text.contains("sluice_records_processed_total{source=\"kafka\"} 5\n"));
        assert!(!text.contains("# EOF"));
    }
}
