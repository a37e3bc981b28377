//! The narrow interface the evaluator reads series through.

use promql_parser::label::Matcher;

use crate::value::{Labels, Sample, Series};

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
}

/// Whether a label set satisfies all matchers (a missing label matches as "").
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}
