//! The narrow interface the evaluator reads series through.

use promql_parser::label::Matcher;

use crate::value::{Labels, Sample, Series, is_stale};

/// What `rate()`, `increase()`, `delta()`, `resets()`, `count_over_time()`
/// and `last_over_time()` need of a window of samples. Stores can compute
/// it from per-chunk summaries without decoding whole windows. Stale
/// markers are not part of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSummary {
    pub count: usize,
    pub first: (i64, f64),
    pub last: (i64, f64),
    /// Sum of the values just before each counter reset (a sample lower
    /// than its predecessor).
    pub reset_sum: f64,
    pub resets: usize,
}

impl WindowSummary {
    /// A summary of one sample.
    pub fn new(t: i64, v: f64) -> Self {
        Self {
            count: 1,
            first: (t, v),
            last: (t, v),
            reset_sum: 0.0,
            resets: 0,
        }
    }

    /// Appends a later sample.
    pub fn push(&mut self, t: i64, v: f64) {
        if v < self.last.1 {
            self.reset_sum += self.last.1;
            self.resets += 1;
        }
        self.last = (t, v);
        self.count += 1;
    }

    /// Appends the summary of a later, adjacent stretch of samples.
    pub fn merge(&mut self, later: &WindowSummary) {
        if later.first.1 < self.last.1 {
            self.reset_sum += self.last.1;
            self.resets += 1;
        }
        self.reset_sum += later.reset_sum;
        self.resets += later.resets;
        self.last = later.last;
        self.count += later.count;
    }

    /// Summary of points in time order, stale markers skipped.
    pub fn from_points(points: &[(i64, f64)]) -> Option<Self> {
        let mut it = points.iter().filter(|(_, v)| !is_stale(*v));
        let (t, v) = *it.next()?;
        let mut s = Self::new(t, v);
        for &(t, v) in it {
            s.push(t, v);
        }
        Some(s)
    }
}

/// Where the evaluator reads series from: the in-memory store, or anything
/// else (a remote Prometheus, a test fixture).
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` with their samples whose timestamps lie
    /// in `[mint_ms, maxt_ms]` (both inclusive), stale markers included.
    /// Series without samples in that interval are left out.
    fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<Series>;

    /// For each matching series, its last sample in `[mint_ms, maxt_ms]`
    /// (possibly a stale marker). Instant selectors only need this; stores
    /// override it to avoid decoding whole windows.
    fn select_last(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<Sample> {
        self.select(matchers, mint_ms, maxt_ms)
            .into_iter()
            .filter_map(|s| {
                let (t, v) = *s.points.last()?;
                Some(Sample {
                    labels: s.labels,
                    t,
                    v,
                })
            })
            .collect()
    }

    /// For each matching series with samples in `[mint_ms, maxt_ms]`, the
    /// summary of those samples (stale markers excluded).
    fn select_summary(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Vec<(Labels, WindowSummary)> {
        self.select(matchers, mint_ms, maxt_ms)
            .into_iter()
            .filter_map(|s| Some((s.labels, WindowSummary::from_points(&s.points)?)))
            .collect()
    }
}

/// Whether a label set satisfies all matchers (a missing label matches as "").
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}
