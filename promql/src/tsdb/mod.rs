//! In-memory time-series head: series indexed by label postings, samples
//! kept compressed in Gorilla chunks, old chunks dropped after `retention`.
//!
//! Scrapers append while rules evaluate: the index sits behind one RwLock
//! (written only when a series is created or collected) and each series has
//! its own mutex, so appends to different series never contend.

mod chunk;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};

pub use chunk::{CHUNK_SAMPLES, Chunk, ChunkIter, ChunkWriter};

use crate::storage::{Queryable, WindowSummary, matches_all};
use crate::value::{Labels, STALE_NAN, Sample, Series};

/// Why an append was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AppendError {
    #[error("out of order sample for {labels}: t={t} is not after the last sample t={last}")]
    OutOfOrder { labels: String, t: i64, last: i64 },
    #[error("duplicate sample for {labels} at t={t} with a different value")]
    DuplicateTimestamp { labels: String, t: i64 },
}

/// Storage footprint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Live series.
    pub series: usize,
    /// Retained samples (including stale markers).
    pub samples: usize,
    /// Bytes of compressed chunk data, including chunk headers.
    pub bytes: usize,
}

struct MemSeries {
    sealed: VecDeque<Chunk>,
    head: ChunkWriter,
    /// Last appended sample, kept decoded for instant lookups.
    last: Option<(i64, f64)>,
}

impl MemSeries {
    fn new() -> Self {
        Self {
            sealed: VecDeque::new(),
            head: ChunkWriter::default(),
            last: None,
        }
    }

    fn append(&mut self, t: i64, v: f64, labels: &Labels) -> Result<(), AppendError> {
        if let Some((lt, lv)) = self.last {
            if t < lt {
                return Err(AppendError::OutOfOrder {
                    labels: labels.to_string(),
                    t,
                    last: lt,
                });
            }
            if t == lt {
                if lv.to_bits() == v.to_bits() {
                    return Ok(());
                }
                return Err(AppendError::DuplicateTimestamp {
                    labels: labels.to_string(),
                    t,
                });
            }
        }
        if self.head.is_full(t) {
            let full = std::mem::take(&mut self.head);
            self.sealed.push_back(full.seal());
        }
        self.head.append(t, v);
        self.last = Some((t, v));
        Ok(())
    }

    /// Drops sealed chunks that end before `cutoff`; true when nothing is left.
    fn truncate(&mut self, cutoff: i64) -> bool {
        while self.sealed.front().is_some_and(|c| c.max_t() < cutoff) {
            self.sealed.pop_front();
        }
        if self.sealed.is_empty() && self.head.count() > 0 && self.head.max_t() < cutoff {
            self.head = ChunkWriter::default();
            self.last = None;
        }
        self.last.is_none()
    }

    fn points(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        for c in &self.sealed {
            c.points(mint, maxt, out);
        }
        self.head.points(mint, maxt, out);
    }

    /// Summary of the samples in `[mint, maxt]`, stale markers excluded;
    /// chunk parts lying wholly inside the window are not decoded.
    fn summary(&self, mint: i64, maxt: i64) -> Option<WindowSummary> {
        let mut acc = None;
        for c in &self.sealed {
            c.summarize(mint, maxt, &mut acc);
        }
        self.head.summarize(mint, maxt, &mut acc);
        acc
    }

    fn last_in(&self, mint: i64, maxt: i64) -> Option<(i64, f64)> {
        let (lt, lv) = self.last?;
        if lt <= maxt {
            return (lt >= mint).then_some((lt, lv));
        }
        // Looking into the past: decode the chunks that may hold it.
        fn scan(it: impl Iterator<Item = (i64, f64)>, mint: i64, maxt: i64) -> Option<(i64, f64)> {
            let mut found = None;
            for (t, v) in it {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    found = Some((t, v));
                }
            }
            found
        }
        if self.head.count() > 0
            && self.head.min_t() <= maxt
            && let Some(f) = scan(self.head.iter(), mint, maxt)
        {
            return Some(f);
        }
        for c in self.sealed.iter().rev() {
            if c.min_t() > maxt {
                continue;
            }
            if c.max_t() < mint {
                break;
            }
            if let Some(f) = scan(c.iter(), mint, maxt) {
                return Some(f);
            }
        }
        None
    }

    fn stats(&self) -> (usize, usize) {
        let samples = self
            .sealed
            .iter()
            .map(|c| c.count() as usize)
            .sum::<usize>()
            + self.head.count() as usize;
        let bytes = self.sealed.iter().map(Chunk::bytes).sum::<usize>()
            + self.head.bytes()
            + std::mem::size_of::<ChunkWriter>();
        (samples, bytes)
    }
}

struct Entry {
    labels: Labels,
    data: Mutex<MemSeries>,
}

#[derive(Default)]
struct Index {
    /// Series by id; collected series leave `None`.
    series: Vec<Option<Arc<Entry>>>,
    /// Fingerprint → ids (more than one only on a hash collision).
    by_fp: HashMap<u64, Vec<u32>>,
    /// Label name → value → ascending ids.
    postings: HashMap<String, HashMap<String, Vec<u32>>>,
    live: usize,
}

impl Index {
    fn lookup(&self, labels: &Labels) -> Option<Arc<Entry>> {
        let ids = self.by_fp.get(&labels.fingerprint())?;
        ids.iter()
            .filter_map(|id| self.series[*id as usize].as_ref())
            .find(|e| e.labels == *labels)
            .cloned()
    }

    fn insert(&mut self, labels: &Labels) -> Arc<Entry> {
        let id = self.series.len() as u32;
        let entry = Arc::new(Entry {
            labels: labels.with_cached_variants(),
            data: Mutex::new(MemSeries::new()),
        });
        self.series.push(Some(entry.clone()));
        self.by_fp.entry(labels.fingerprint()).or_default().push(id);
        for (n, v) in labels.iter() {
            self.postings
                .entry(n.to_string())
                .or_default()
                .entry(v.to_string())
                .or_default()
                .push(id);
        }
        self.live += 1;
        entry
    }

    fn remove(&mut self, ids: &[u32]) {
        let mut names: Vec<String> = Vec::new();
        for &id in ids {
            let Some(entry) = self.series[id as usize].take() else {
                continue;
            };
            self.live -= 1;
            let fp = entry.labels.fingerprint();
            if let Some(v) = self.by_fp.get_mut(&fp) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    self.by_fp.remove(&fp);
                }
            }
            for (n, val) in entry.labels.iter() {
                if let Some(values) = self.postings.get_mut(n)
                    && let Some(list) = values.get_mut(val)
                {
                    if let Ok(pos) = list.binary_search(&id) {
                        list.remove(pos);
                    }
                    if list.is_empty() {
                        values.remove(val);
                    }
                }
                names.push(n.to_string());
            }
        }
        for n in names {
            if self.postings.get(&n).is_some_and(HashMap::is_empty) {
                self.postings.remove(&n);
            }
        }
    }

    /// Ids of series that may match; every one must still be checked
    /// against all matchers. `None` means "all series". A single equality
    /// matcher's postings list is borrowed, not copied.
    fn candidates(&self, matchers: &[Matcher]) -> Option<Cow<'_, [u32]>> {
        let mut lists: Vec<Cow<'_, [u32]>> = Vec::new();
        for m in matchers {
            if m.is_match("") {
                // Matches series lacking the label too: postings cannot narrow.
                continue;
            }
            let values = self.postings.get(&m.name);
            let list: Cow<'_, [u32]> = match (&m.op, values) {
                (_, None) => Cow::Borrowed(&[]),
                (MatchOp::Equal, Some(values)) => match values.get(&m.value) {
                    Some(ids) => Cow::Borrowed(ids.as_slice()),
                    None => Cow::Borrowed(&[]),
                },
                (_, Some(values)) => {
                    let mut ids: Vec<u32> = values
                        .iter()
                        .filter(|(v, _)| m.is_match(v))
                        .flat_map(|(_, ids)| ids.iter().copied())
                        .collect();
                    ids.sort_unstable();
                    Cow::Owned(ids)
                }
            };
            if list.is_empty() {
                return Some(Cow::Borrowed(&[]));
            }
            lists.push(list);
        }
        lists.sort_by_key(|l| l.len());
        let mut iter = lists.into_iter();
        let first = iter.next()?;
        Some(iter.fold(first, |acc, l| Cow::Owned(intersect(&acc, &l))))
    }

    /// Calls `f` for every series matching all matchers, under the index
    /// read lock (no per-series reference counting on the hot path).
    fn for_each_match(&self, matchers: &[Matcher], mut f: impl FnMut(&Entry)) {
        match self.candidates(matchers) {
            Some(ids) => {
                for id in ids.iter() {
                    if let Some(e) = self.series[*id as usize].as_deref()
                        && matches_all(&e.labels, matchers)
                    {
                        f(e);
                    }
                }
            }
            None => {
                for e in self.series.iter().flatten() {
                    if matches_all(&e.labels, matchers) {
                        f(e);
                    }
                }
            }
        }
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The in-memory store. Cheap to share behind an `Arc`.
pub struct MemStorage {
    retention_ms: i64,
    index: RwLock<Index>,
    /// Newest timestamp appended so far; retention is measured from it.
    max_t: AtomicI64,
    /// Timestamp of the last retention pass.
    last_gc: AtomicI64,
}

impl MemStorage {
    /// A store that keeps samples for at least `retention` behind the newest
    /// appended sample.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            index: RwLock::new(Index::default()),
            max_t: AtomicI64::new(i64::MIN),
            last_gc: AtomicI64::new(i64::MIN),
        }
    }

    /// How long samples are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_millis(self.retention_ms.max(0) as u64)
    }

    /// Appends one sample; creates the series on first sight.
    pub fn append(&self, labels: &Labels, t_ms: i64, v: f64) -> Result<(), AppendError> {
        let entry = self.entry(labels);
        let res = lock(&entry.data).append(t_ms, v, labels);
        if res.is_ok() {
            let prev = self.max_t.fetch_max(t_ms, Ordering::Relaxed);
            if t_ms > prev {
                self.maybe_gc(t_ms);
            }
        }
        res
    }

    /// Appends a staleness marker: the series ended at `t_ms`.
    pub fn append_stale(&self, labels: &Labels, t_ms: i64) -> Result<(), AppendError> {
        self.append(labels, t_ms, STALE_NAN)
    }

    fn entry(&self, labels: &Labels) -> Arc<Entry> {
        if let Some(e) = read(&self.index).lookup(labels) {
            return e;
        }
        let mut idx = write(&self.index);
        match idx.lookup(labels) {
            Some(e) => e,
            None => idx.insert(labels),
        }
    }

    /// Runs a retention pass at most once per tenth of the retention.
    fn maybe_gc(&self, now: i64) {
        let every = (self.retention_ms / 10).max(1000);
        let last = self.last_gc.load(Ordering::Relaxed);
        if last != i64::MIN && now - last < every {
            return;
        }
        if self
            .last_gc
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.gc(now.saturating_sub(self.retention_ms));
        }
    }

    /// Drops chunks that end before `cutoff_ms` and series left empty.
    pub fn gc(&self, cutoff_ms: i64) {
        let entries: Vec<(u32, Arc<Entry>)> = read(&self.index)
            .series
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i as u32, e.clone()?)))
            .collect();
        let dead: Vec<u32> = entries
            .iter()
            .filter(|(_, e)| lock(&e.data).truncate(cutoff_ms))
            .map(|(i, _)| *i)
            .collect();
        if dead.is_empty() {
            return;
        }
        let mut idx = write(&self.index);
        // A series may have received samples since; keep those.
        let dead: Vec<u32> = dead
            .into_iter()
            .filter(|id| {
                idx.series[*id as usize]
                    .as_ref()
                    .is_some_and(|e| lock(&e.data).last.is_none())
            })
            .collect();
        idx.remove(&dead);
    }

    /// Series, samples and bytes currently held.
    pub fn stats(&self) -> Stats {
        let idx = read(&self.index);
        let mut st = Stats {
            series: idx.live,
            ..Stats::default()
        };
        for e in idx.series.iter().flatten() {
            let (s, b) = lock(&e.data).stats();
            st.samples += s;
            st.bytes += b;
        }
        st
    }

    /// Removes every series.
    pub fn clear(&self) {
        *write(&self.index) = Index::default();
        self.max_t.store(i64::MIN, Ordering::Relaxed);
        self.last_gc.store(i64::MIN, Ordering::Relaxed);
    }
}

impl Queryable for MemStorage {
    fn select(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<Series> {
        let mut out = Vec::new();
        read(&self.index).for_each_match(matchers, |e| {
            let mut points = Vec::new();
            lock(&e.data).points(mint_ms, maxt_ms, &mut points);
            if !points.is_empty() {
                out.push(Series {
                    labels: e.labels.clone(),
                    points,
                });
            }
        });
        out
    }

    fn select_summary(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Vec<(Labels, WindowSummary)> {
        let mut out = Vec::new();
        read(&self.index).for_each_match(matchers, |e| {
            if let Some(s) = lock(&e.data).summary(mint_ms, maxt_ms) {
                out.push((e.labels.clone(), s));
            }
        });
        out
    }

    fn select_last(&self, matchers: &[Matcher], mint_ms: i64, maxt_ms: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        read(&self.index).for_each_match(matchers, |e| {
            if let Some((t, v)) = lock(&e.data).last_in(mint_ms, maxt_ms) {
                out.push(Sample {
                    labels: e.labels.clone(),
                    t,
                    v,
                });
            }
        });
        out
    }
}

// A panic while holding a lock cannot leave a series half-written in a way
// later readers trip over (appends complete or do nothing), so poisoned
// locks are used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::is_stale;

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value)
    }

    fn re(s: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{s})$")).expect("regex")
    }

    fn store() -> MemStorage {
        let s = MemStorage::new(Duration::from_secs(3600));
        for (i, job) in ["api", "db", "web"].iter().enumerate() {
            let l = Labels::new([("__name__", "up"), ("job", job)]);
            for t in 0..10 {
                s.append(&l, t * 1000, i as f64).expect("append");
            }
        }
        let l = Labels::new([("__name__", "other")]);
        s.append(&l, 0, 1.0).expect("append");
        s
    }

    #[test]
    fn select_with_all_matcher_kinds() {
        let s = store();
        let name = m(MatchOp::Equal, "__name__", "up");
        let jobs = |sel: Vec<Series>| -> Vec<String> {
            let mut v: Vec<_> = sel
                .iter()
                .map(|s| s.labels.get("job").unwrap_or("").to_string())
                .collect();
            v.sort();
            v
        };
        let all = s.select(std::slice::from_ref(&name), 0, 10_000);
        assert_eq!(jobs(all), ["api", "db", "web"]);
        let ne = s.select(
            &[name.clone(), m(MatchOp::NotEqual, "job", "db")],
            0,
            10_000,
        );
        assert_eq!(jobs(ne), ["api", "web"]);
        let rx = s.select(
            &[name.clone(), m(MatchOp::Re(re("a.*|w.b")), "job", "")],
            0,
            10_000,
        );
        assert_eq!(jobs(rx), ["api", "web"]);
        // Regexes are anchored: "ap" must not match "api".
        let anchored = s.select(
            &[name.clone(), m(MatchOp::Re(re("ap")), "job", "")],
            0,
            10_000,
        );
        assert!(anchored.is_empty());
        let nre = s.select(
            &[name.clone(), m(MatchOp::NotRe(re("a.*")), "job", "")],
            0,
            10_000,
        );
        assert_eq!(jobs(nre), ["db", "web"]);
        // A matcher on a missing label with "" matches series without it.
        let missing = s.select(&[m(MatchOp::Equal, "job", "")], 0, 10_000);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].labels.metric_name(), Some("other"));
    }

    #[test]
    fn select_bounds_are_inclusive() {
        let s = store();
        let name = [m(MatchOp::Equal, "job", "api")];
        let got = s.select(&name, 2000, 5000);
        let ts: Vec<i64> = got[0].points.iter().map(|p| p.0).collect();
        assert_eq!(ts, [2000, 3000, 4000, 5000]);
        let last = s.select_last(&name, 0, 4500);
        assert_eq!(last[0].t, 4000);
        assert!(s.select_last(&name, 10_000, 20_000).is_empty());
    }

    #[test]
    fn out_of_order_and_duplicates_are_refused() {
        let s = store();
        let l = Labels::new([("__name__", "up"), ("job", "api")]);
        assert!(matches!(
            s.append(&l, 5000, 0.0),
            Err(AppendError::OutOfOrder { .. })
        ));
        assert!(s.append(&l, 9000, 0.0).is_ok());
        assert!(matches!(
            s.append(&l, 9000, 7.0),
            Err(AppendError::DuplicateTimestamp { .. })
        ));
    }

    #[test]
    fn stale_markers_are_stored() {
        let s = store();
        let l = Labels::new([("__name__", "up"), ("job", "db")]);
        s.append_stale(&l, 10_000).expect("stale");
        let last = s.select_last(&[m(MatchOp::Equal, "job", "db")], 0, 20_000);
        assert!(is_stale(last[0].v));
    }

    #[test]
    fn retention_drops_old_chunks_and_empty_series() {
        let s = MemStorage::new(Duration::from_secs(600));
        let old = Labels::new([("__name__", "gone")]);
        let kept = Labels::new([("__name__", "kept")]);
        s.append(&old, 0, 1.0).expect("append");
        for t in 0..3600 {
            s.append(&kept, t * 1000, t as f64).expect("append");
        }
        let st = s.stats();
        assert_eq!(st.series, 1, "{st:?}");
        // At most retention plus one chunk plus the head survive.
        assert!(st.samples <= 600 + 2 * CHUNK_SAMPLES as usize, "{st:?}");
        assert!(st.samples >= 600, "{st:?}");
        let sel = s.select(&[m(MatchOp::Equal, "__name__", "kept")], 0, i64::MAX);
        assert_eq!(sel[0].points.last().map(|p| p.0), Some(3_599_000));
    }

    #[test]
    fn window_summaries_match_decoded_windows() {
        // Counters with resets and stale markers spanning several chunks;
        // lengths chosen so the open chunk ends before, between and after
        // its checkpoints.
        for n in [1000i64, 1080, 1130, 1190, 1240] {
            let s = MemStorage::new(Duration::from_secs(86_400));
            let l = Labels::new([("__name__", "c_total")]);
            let mut v = 0.0;
            let mut appended = Vec::new();
            for i in 0..n {
                if i % 97 == 0 {
                    v = 0.0; // reset
                } else {
                    v += (i % 7) as f64;
                }
                let val = if i % 311 == 5 || i == 1170 {
                    STALE_NAN
                } else {
                    v
                };
                s.append(&l, i * 1000, val).expect("append");
                appended.push((i * 1000, val));
            }
            let m = [Matcher::new(MatchOp::Equal, "__name__", "c_total")];
            let end = n * 1000;
            let mut windows = vec![(0, end), (5_000, 5_000)];
            let quarter = i64::from(CHUNK_SAMPLES / 4) * 1000;
            for k in 1..(n * 1000 / quarter) {
                let e = k * quarter;
                windows.extend([
                    (e - 1000, e),
                    (e, e + 60_000),
                    (e + 1, end),
                    (e - 30_000, e + 30_000),
                    (e - 1000, end),
                ]);
            }
            let mut x: u64 = 42;
            for _ in 0..300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let a = (x % end as u64) as i64;
                let len = ((x >> 20) % 400_000) as i64;
                windows.push((a, a + len));
                windows.push((end - len, end));
            }
            for (mint, maxt) in windows {
                let pts: Vec<(i64, f64)> = s
                    .select(&m, mint, maxt)
                    .first()
                    .map(|s| s.points.clone())
                    .unwrap_or_default();
                let raw: Vec<(i64, f64)> = appended
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= mint && *t <= maxt)
                    .collect();
                assert_eq!(pts.len(), raw.len(), "n={n} window [{mint}, {maxt}]");
                for (p, r) in pts.iter().zip(&raw) {
                    assert_eq!((p.0, p.1.to_bits()), (r.0, r.1.to_bits()));
                }
                let want = WindowSummary::from_points(&raw);
                let got = s.select_summary(&m, mint, maxt).first().map(|x| x.1);
                assert_eq!(got, want, "n={n} window [{mint}, {maxt}]");
            }
        }
    }

    #[test]
    fn concurrent_appends_and_selects() {
        let s = Arc::new(MemStorage::new(Duration::from_secs(3600)));
        let mut handles = Vec::new();
        for w in 0..4 {
            let s = s.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..50 {
                    let l = Labels::new([
                        ("__name__", "c"),
                        ("w", &w.to_string()),
                        ("i", &i.to_string()),
                    ]);
                    for t in 0..20 {
                        s.append(&l, t * 1000, t as f64).expect("append");
                    }
                    let _ = s.select(&[Matcher::new(MatchOp::Equal, "__name__", "c")], 0, 20_000);
                }
            }));
        }
        for h in handles {
            h.join().expect("thread");
        }
        let st = s.stats();
        assert_eq!(st.series, 200);
        assert_eq!(st.samples, 4000);
    }
}
