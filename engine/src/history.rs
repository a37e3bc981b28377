//! In-memory metric history: a sample every few seconds, kept for
//! `memory_management.history_retention` seconds. Feeds the weekly report,
//! performance baselines, `/admin/metrics/export` and `/admin/metrics/cleanup`.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// One point of history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub records_processed: u64,
    pub records_failed: u64,
    pub results_produced: u64,
    pub throughput: f64,
    pub latency_p99_seconds: f64,
    pub memory_bytes: f64,
    pub cpu_percent: f64,
    pub breaker_open: bool,
    pub backlog: i64,
}

/// Reference figures the weekly report compares against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baselines {
    pub updated_at: DateTime<Utc>,
    pub samples: usize,
    pub mean_throughput: f64,
    pub p99_latency_seconds: f64,
    pub mean_memory_bytes: f64,
    pub mean_cpu_percent: f64,
}

/// Summary over a period.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub samples: usize,
    pub records_processed: u64,
    pub records_failed: u64,
    pub results_produced: u64,
    pub mean_throughput: f64,
    pub max_throughput: f64,
    pub p99_latency_seconds: f64,
    pub mean_memory_bytes: f64,
    pub peak_memory_bytes: f64,
    pub mean_cpu_percent: f64,
    pub breaker_open_fraction: f64,
    pub max_backlog: i64,
}

#[derive(Debug)]
pub struct History {
    samples: VecDeque<Sample>,
    retention_secs: u64,
    pub baselines: Option<Baselines>,
}

impl History {
    pub fn new(retention_secs: u64) -> Self {
        Self {
            samples: VecDeque::new(),
            retention_secs,
            baselines: None,
        }
    }

    pub fn set_retention(&mut self, secs: u64) {
        self.retention_secs = secs;
    }

    pub fn push(&mut self, s: Sample) {
        let cutoff = s.at - Duration::seconds(self.retention_secs as i64);
        self.samples.push_back(s);
        while self.samples.front().is_some_and(|f| f.at < cutoff) {
            self.samples.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Removes samples older than `age`; returns how many.
    pub fn cleanup(&mut self, age: Duration) -> usize {
        let cutoff = Utc::now() - age;
        let before = self.samples.len();
        self.samples.retain(|s| s.at >= cutoff);
        before - self.samples.len()
    }

    /// Samples of the last `age`.
    pub fn since(&self, age: Duration) -> Vec<Sample> {
        let cutoff = Utc::now() - age;
        self.samples
            .iter()
            .filter(|s| s.at >= cutoff)
            .cloned()
            .collect()
    }

    pub fn summary(&self, age: Duration) -> Summary {
        let s = self.since(age);
        let n = s.len().max(1) as f64;
        let mut lat: Vec<f64> = s.iter().map(|x| x.latency_p99_seconds).collect();
        lat.sort_by(f64::total_cmp);
        let first = s.first();
        let last = s.last();
        let delta = |f: fn(&Sample) -> u64| match (first, last) {
            (Some(a), Some(b)) => f(b).saturating_sub(f(a)),
            _ => 0,
        };
        Summary {
            from: first.map(|x| x.at),
            to: last.map(|x| x.at),
            samples: s.len(),
            records_processed: delta(|x| x.records_processed),
            records_failed: delta(|x| x.records_failed),
            results_produced: delta(|x| x.results_produced),
            mean_throughput: s.iter().map(|x| x.throughput).sum::<f64>() / n,
            max_throughput: s.iter().map(|x| x.throughput).fold(0.0, f64::max),
            p99_latency_seconds: lat
                .get(((lat.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0),
            mean_memory_bytes: s.iter().map(|x| x.memory_bytes).sum::<f64>() / n,
            peak_memory_bytes: s.iter().map(|x| x.memory_bytes).fold(0.0, f64::max),
            mean_cpu_percent: s.iter().map(|x| x.cpu_percent).sum::<f64>() / n,
            breaker_open_fraction: s.iter().filter(|x| x.breaker_open).count() as f64 / n,
            max_backlog: s.iter().map(|x| x.backlog).max().unwrap_or(0),
        }
    }

    /// Sets the baselines from the last 7 days (or what history holds).
    pub fn update_baselines(&mut self) -> Baselines {
        let s = self.summary(Duration::days(7));
        let b = Baselines {
            updated_at: Utc::now(),
            samples: s.samples,
            mean_throughput: s.mean_throughput,
            p99_latency_seconds: s.p99_latency_seconds,
            mean_memory_bytes: s.mean_memory_bytes,
            mean_cpu_percent: s.mean_cpu_percent,
        };
        self.baselines = Some(b.clone());
        b
    }
}

/// Parses `7d`, `12h`, `30m`, `45s` into a duration.
pub fn parse_age(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    match unit {
        "d" => Some(Duration::days(n)),
        "h" => Some(Duration::hours(n)),
        "m" => Some(Duration::minutes(n)),
        "s" => Some(Duration::seconds(n)),
        "w" => Some(Duration::weeks(n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(age_secs: i64, processed: u64) -> Sample {
        Sample {
            at: Utc::now() - Duration::seconds(age_secs),
            records_processed: processed,
            records_failed: 0,
            results_produced: processed / 2,
            throughput: processed as f64,
            latency_p99_seconds: 0.01,
            memory_bytes: 100.0,
            cpu_percent: 5.0,
            breaker_open: false,
            backlog: 3,
        }
    }

    #[test]
    fn retention_cleanup_and_summary() {
        let mut h = History::new(3600);
        h.push(sample(7200, 1));
        h.push(sample(100, 10));
        h.push(sample(10, 30));
        assert_eq!(h.len(), 2, "the 2 h old sample is past retention");
        assert_eq!(h.summary(Duration::days(7)).records_processed, 20);
        assert_eq!(h.cleanup(Duration::seconds(50)), 1);
        assert_eq!(h.len(), 1);
        let b = h.update_baselines();
        assert_eq!(b.samples, 1);
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Some(Duration::days(7)));
        assert_eq!(parse_age("30m"), Some(Duration::minutes(30)));
        assert_eq!(parse_age("x"), None);
        assert_eq!(parse_age("5"), None);
    }
}
