//! Grouped aggregation over event-time windows.
//!
//! Open windows live in a BTreeMap by start; each holds a hash table of groups
//! keyed by the GROUP BY values (hashed with foldhash, looked up by borrowed
//! values so an existing group costs no allocation). A window is emitted when
//! the watermark passes its end. Each window also remembers the lowest input
//! offset per partition that fed it: offsets at or above it must not be
//! committed until the window's results are delivered.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::config::LimitAction;
use crate::sql::{AggFunc, WindowKind, WindowPlan};
use crate::value::Value;

/// Running state of one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Acc {
    Count(i64),
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
        seen: bool,
    },
    Avg {
        sum: f64,
        n: i64,
    },
    Min(Value<'static>),
    Max(Value<'static>),
}

impl Acc {
    pub fn new(f: AggFunc) -> Self {
        match f {
            AggFunc::Count => Acc::Count(0),
            AggFunc::Sum => Acc::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
                seen: false,
            },
            AggFunc::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggFunc::Min => Acc::Min(Value::Null),
            AggFunc::Max => Acc::Max(Value::Null),
        }
    }

    /// Adds one value (`None` = COUNT(*)'s row). NULLs are ignored, as in SQL.
    #[inline]
    pub fn update(&mut self, v: Option<Value<'_>>) {
        match self {
            Acc::Count(n) => {
                if v.as_ref().is_none_or(|v| !v.is_null()) {
                    *n += 1;
                }
            }
            Acc::Sum {
                int,
                float,
                is_float,
                seen,
            } => match v {
                Some(Value::Int(i)) => {
                    *seen = true;
                    if *is_float {
                        *float += i as f64;
                    } else if let Some(s) = int.checked_add(i) {
                        *int = s;
                    } else {
                        *is_float = true;
                        *float = *int as f64 + i as f64;
                    }
                }
                Some(Value::Float(f)) => {
                    *seen = true;
                    if !*is_float {
                        *is_float = true;
                        *float = *int as f64;
                    }
                    *float += f;
                }
                _ => {}
            },
            Acc::Avg { sum, n } => {
                if let Some(x) = v.as_ref().and_then(Value::as_f64) {
                    *sum += x;
                    *n += 1;
                }
            }
            Acc::Min(cur) => replace_if(cur, v, std::cmp::Ordering::Less),
            Acc::Max(cur) => replace_if(cur, v, std::cmp::Ordering::Greater),
        }
    }

    /// Folds another partial state of the same aggregate into this one
    /// (state documents exported by several workers).
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (
                Acc::Sum {
                    int,
                    float,
                    is_float,
                    seen,
                },
                Acc::Sum {
                    int: i2,
                    float: f2,
                    is_float: fl2,
                    seen: s2,
                },
            ) => {
                *seen |= *s2;
                let int_sum = if *is_float || *fl2 {
                    None
                } else {
                    int.checked_add(*i2)
                };
                match int_sum {
                    Some(v) => *int = v,
                    None => {
                        let mine = if *is_float { *float } else { *int as f64 };
                        let theirs = if *fl2 { *f2 } else { *i2 as f64 };
                        *is_float = true;
                        *float = mine + theirs;
                    }
                }
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Acc::Min(cur), Acc::Min(v)) => {
                replace_if(cur, Some(v.borrowed()), std::cmp::Ordering::Less)
            }
            (Acc::Max(cur), Acc::Max(v)) => {
                replace_if(cur, Some(v.borrowed()), std::cmp::Ordering::Greater)
            }
            _ => {}
        }
    }

    /// The aggregate's result.
    pub fn result(&self) -> Value<'_> {
        match self {
            Acc::Count(n) => Value::Int(*n),
            Acc::Sum { seen: false, .. } => Value::Null,
            Acc::Sum {
                float,
                is_float: true,
                ..
            } => Value::Float(*float),
            Acc::Sum { int, .. } => Value::Int(*int),
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => Value::Float(sum / *n as f64),
            Acc::Min(v) | Acc::Max(v) => v.borrowed(),
        }
    }

    fn size_bytes(&self) -> usize {
        match self {
            Acc::Min(v) | Acc::Max(v) => v.size_bytes(),
            _ => std::mem::size_of::<Self>(),
        }
    }

    /// JSON form for state export.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Acc::Count(n) => serde_json::json!({"count": n}),
            Acc::Sum {
                int,
                float,
                is_float,
                seen,
            } => {
                serde_json::json!({"sum_int": int, "sum_float": float, "is_float": is_float, "seen": seen})
            }
            Acc::Avg { sum, n } => serde_json::json!({"avg_sum": sum, "avg_n": n}),
            Acc::Min(v) => serde_json::json!({"min": v.to_json()}),
            Acc::Max(v) => serde_json::json!({"max": v.to_json()}),
        }
    }

    /// Inverse of [`Acc::to_json`].
    pub fn from_json(f: AggFunc, j: &serde_json::Value) -> Option<Acc> {
        Some(match f {
            AggFunc::Count => Acc::Count(j.get("count")?.as_i64()?),
            AggFunc::Sum => Acc::Sum {
                int: j.get("sum_int")?.as_i64()?,
                float: j.get("sum_float")?.as_f64()?,
                is_float: j.get("is_float")?.as_bool()?,
                seen: j.get("seen")?.as_bool()?,
            },
            AggFunc::Avg => Acc::Avg {
                sum: j.get("avg_sum")?.as_f64()?,
                n: j.get("avg_n")?.as_i64()?,
            },
            AggFunc::Min => Acc::Min(Value::from_json(j.get("min")?)),
            AggFunc::Max => Acc::Max(Value::from_json(j.get("max")?)),
        })
    }
}

#[inline]
fn replace_if(cur: &mut Value<'static>, v: Option<Value<'_>>, want: std::cmp::Ordering) {
    if let Some(v) = v
        && !v.is_null()
        && (cur.is_null() || v.sql_cmp(cur) == Some(want))
    {
        *cur = v.into_owned();
    }
}

/// One group of one window.
#[derive(Debug, Clone)]
pub struct Group {
    hash: u64,
    pub key: Box<[Value<'static>]>,
    pub accs: Box<[Acc]>,
}

/// One open window.
#[derive(Debug, Clone, Default)]
pub struct WindowState {
    pub groups: HashTable<Group>,
    /// Lowest input offset per partition that contributed.
    pub holds: Vec<(i32, i64)>,
    /// Estimated bytes held.
    pub bytes: usize,
}

/// Limits applied to one aggregation (from `resource_limits`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_groups: u64,
    pub max_bytes: u64,
    pub max_windows: u64,
    pub on_limit: LimitAction,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_groups: u64::MAX,
            max_bytes: u64::MAX,
            max_windows: u64::MAX,
            on_limit: LimitAction::RejectNewGroups,
        }
    }
}

/// Which limit a record ran into (the `resource` label of
/// `sluice_resource_limit_violations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Groups,
    Memory,
    Windows,
}

impl LimitHit {
    pub fn label(self) -> &'static str {
        match self {
            LimitHit::Groups => "groups",
            LimitHit::Memory => "memory",
            LimitHit::Windows => "windows",
        }
    }
}

/// Outcome of adding a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Ok,
    /// A limit was hit and the record was not aggregated.
    Rejected,
    /// A limit was hit; intake should pause until state shrinks.
    Pause,
    /// A limit was hit and the oldest window must be evicted (emitted) first.
    EvictOldest,
}

/// All open windows of one windowed query.
#[derive(Debug)]
pub struct WindowedAggregate {
    pub kind: WindowKind,
    pub funcs: Vec<AggFunc>,
    pub windows: BTreeMap<i64, WindowState>,
    pub limits: Limits,
    hasher: foldhash::fast::FixedState,
    groups: u64,
    bytes: u64,
    /// The limit the last refused add ran into.
    pub last_hit: LimitHit,
}

const GROUP_OVERHEAD: usize = std::mem::size_of::<Group>() + 16;

impl WindowedAggregate {
    pub fn new(plan: &WindowPlan, limits: Limits) -> Self {
        Self {
            kind: plan.kind,
            funcs: plan.aggregates.iter().map(|a| a.func).collect(),
            windows: BTreeMap::new(),
            limits,
            hasher: foldhash::fast::FixedState::with_seed(0x5157_1ce0),
            groups: 0,
            bytes: 0,
            last_hit: LimitHit::Groups,
        }
    }

    pub fn group_count(&self) -> u64 {
        self.groups
    }

    pub fn state_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn hash_key(&self, key: &[Value<'_>]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for v in key {
            v.key_hash(&mut h);
        }
        std::hash::Hasher::finish(&h)
    }

    /// Adds one record's key and aggregate inputs to window `start`.
    /// `arg(i)` yields aggregate `i`'s input (None for COUNT(*)).
    #[inline]
    pub fn add<'v>(
        &mut self,
        start: i64,
        key: &[Value<'_>],
        hash: u64,
        origin: Option<(i32, i64)>,
        mut arg: impl FnMut(usize) -> Option<Value<'v>>,
    ) -> Added {
        if !self.windows.contains_key(&start)
            && self.windows.len() as u64 >= self.limits.max_windows
        {
            return self.at_limit(LimitHit::Windows);
        }
        let window = self.windows.entry(start).or_default();
        if let Some((p, off)) = origin {
            match window.holds.iter_mut().find(|(q, _)| *q == p) {
                Some((_, o)) => *o = (*o).min(off),
                None => window.holds.push((p, off)),
            }
        }
        let found = window.groups.find_mut(hash, |g| {
            g.key.len() == key.len() && g.key.iter().zip(key).all(|(a, b)| a.key_eq(b))
        });
        let group = match found {
            Some(g) => g,
            None => {
                if self.groups >= self.limits.max_groups || self.bytes >= self.limits.max_bytes {
                    if window.groups.is_empty() {
                        self.windows.remove(&start);
                    }
                    let hit = if self.groups >= self.limits.max_groups {
                        LimitHit::Groups
                    } else {
                        LimitHit::Memory
                    };
                    return self.at_limit(hit);
                }
                let key: Box<[Value<'static>]> =
                    key.iter().map(|v| v.clone().into_owned()).collect();
                let accs: Box<[Acc]> = self.funcs.iter().map(|f| Acc::new(*f)).collect();
                let size = GROUP_OVERHEAD
                    + key.iter().map(Value::size_bytes).sum::<usize>()
                    + accs.iter().map(Acc::size_bytes).sum::<usize>();
                window.bytes += size;
                self.bytes += size as u64;
                self.groups += 1;
                let hasher = self.hasher.clone();
                window
                    .groups
                    .insert_unique(hash, Group { hash, key, accs }, move |g| {
                        let mut h = hasher.build_hasher();
                        for v in g.key.iter() {
                            v.key_hash(&mut h);
                        }
                        std::hash::Hasher::finish(&h)
                    })
                    .into_mut()
            }
        };
        for (i, acc) in group.accs.iter_mut().enumerate() {
            acc.update(arg(i));
        }
        Added::Ok
    }

    /// Whether a new group in a new window would fit under the limits.
    pub fn has_room(&self) -> bool {
        self.groups < self.limits.max_groups
            && self.bytes < self.limits.max_bytes
            && (self.windows.len() as u64) < self.limits.max_windows
    }

    fn at_limit(&mut self, hit: LimitHit) -> Added {
        self.last_hit = hit;
        match self.limits.on_limit {
            LimitAction::RejectNewGroups => Added::Rejected,
            LimitAction::Pause => Added::Pause,
            LimitAction::EvictOldest => Added::EvictOldest,
        }
    }

    /// Start of the window that closes first, if any.
    pub fn oldest_start(&self) -> Option<i64> {
        self.windows.keys().next().copied()
    }

    /// Removes and returns the oldest window whose end is ≤ `watermark`.
    pub fn pop_closed(&mut self, watermark: i64) -> Option<(i64, WindowState)> {
        let size = self.kind.size_ms();
        let (&start, _) = self.windows.iter().next()?;
        if start.saturating_add(size) <= watermark {
            self.pop_oldest()
        } else {
            None
        }
    }

    /// Removes and returns the oldest window regardless of the watermark.
    pub fn pop_oldest(&mut self) -> Option<(i64, WindowState)> {
        let (start, w) = self.windows.pop_first()?;
        self.groups -= w.groups.len() as u64;
        self.bytes -= w.bytes as u64;
        Some((start, w))
    }

    /// Removes window `start` (state import merges into it and puts it back).
    pub fn take_window(&mut self, start: i64) -> Option<WindowState> {
        let w = self.windows.remove(&start)?;
        self.groups -= w.groups.len() as u64;
        self.bytes -= w.bytes as u64;
        Some(w)
    }

    /// Puts a window back (state import).
    pub fn insert_window(&mut self, start: i64, w: WindowState) {
        self.groups += w.groups.len() as u64;
        self.bytes += w.bytes as u64;
        if let Some(old) = self.windows.insert(start, w) {
            self.groups -= old.groups.len() as u64;
            self.bytes -= old.bytes as u64;
        }
    }

    /// Rebuilds a group from exported parts.
    pub fn make_group(&self, key: Vec<Value<'static>>, accs: Vec<Acc>) -> (u64, Group, usize) {
        let hash = self.hash_key(&key);
        let size = GROUP_OVERHEAD
            + key.iter().map(Value::size_bytes).sum::<usize>()
            + accs.iter().map(Acc::size_bytes).sum::<usize>();
        (
            hash,
            Group {
                hash,
                key: key.into(),
                accs: accs.into(),
            },
            size,
        )
    }

    /// Lowest offset per partition held by any open window.
    pub fn holds(&self) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for w in self.windows.values() {
            for &(p, o) in &w.holds {
                match out.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, m)) => *m = (*m).min(o),
                    None => out.push((p, o)),
                }
            }
        }
        out
    }
}

impl WindowState {
    /// Inserts a prepared group, or folds it into the group with the same key (state import).
    pub fn merge_group(&mut self, hash: u64, group: Group, size: usize) {
        let found = self.groups.find_mut(hash, |g| {
            g.key.len() == group.key.len() && g.key.iter().zip(&group.key).all(|(a, b)| a.key_eq(b))
        });
        match found {
            Some(existing) => {
                for (a, b) in existing.accs.iter_mut().zip(group.accs.iter()) {
                    a.merge(b);
                }
            }
            None => {
                self.bytes += size;
                self.groups.insert_unique(hash, group, Group::hash);
            }
        }
    }
}

impl Group {
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sql: &str) -> WindowPlan {
        crate::sql::plan(sql).unwrap().window.unwrap()
    }

    #[test]
    fn accumulators_follow_sql_null_rules() {
        let mut sum = Acc::new(AggFunc::Sum);
        assert_eq!(sum.result(), Value::Null);
        sum.update(Some(Value::Int(2)));
        sum.update(Some(Value::Null));
        assert_eq!(sum.result(), Value::Int(2));
        sum.update(Some(Value::Float(0.5)));
        assert_eq!(sum.result(), Value::Float(2.5));
        let mut count = Acc::new(AggFunc::Count);
        count.update(Some(Value::Null));
        count.update(None);
        assert_eq!(count.result(), Value::Int(1));
        let mut min = Acc::new(AggFunc::Min);
        for v in [Value::Int(5), Value::Null, Value::Int(3), Value::Int(4)] {
            min.update(Some(v));
        }
        assert_eq!(min.result(), Value::Int(3));
        let mut avg = Acc::new(AggFunc::Avg);
        avg.update(Some(Value::Int(1)));
        avg.update(Some(Value::Int(2)));
        assert_eq!(avg.result(), Value::Float(1.5));
    }

    #[test]
    fn groups_by_key_and_tracks_offsets() {
        let p = plan("SELECT k, COUNT(*) FROM s GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)");
        let mut agg = WindowedAggregate::new(&p, Limits::default());
        for (i, k) in ["a", "b", "a"].iter().enumerate() {
            let key = [Value::Str((*k).into())];
            let h = agg.hash_key(&key);
            assert_eq!(
                agg.add(0, &key, h, Some((0, 10 + i as i64)), |_| None),
                Added::Ok
            );
        }
        assert_eq!(agg.group_count(), 2);
        assert_eq!(agg.holds(), vec![(0, 10)]);
        assert!(agg.pop_closed(59_999).is_none());
        let (start, w) = agg.pop_closed(60_000).unwrap();
        assert_eq!(start, 0);
        let mut counts: Vec<_> = w
            .groups
            .iter()
            .map(|g| {
                (
                    g.key[0].to_text().into_owned(),
                    g.accs[0].result().into_owned(),
                )
            })
            .collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            counts,
            vec![("a".into(), Value::Int(2)), ("b".into(), Value::Int(1))]
        );
        assert_eq!(agg.group_count(), 0);
        assert_eq!(agg.state_bytes(), 0);
    }

    #[test]
    fn group_limit_rejects_new_groups_only() {
        let p = plan("SELECT k, COUNT(*) FROM s GROUP BY k, TUMBLE(ts, INTERVAL '1' MINUTE)");
        let limits = Limits {
            max_groups: 1,
            ..Limits::default()
        };
        let mut agg = WindowedAggregate::new(&p, limits);
        let a = [Value::Str("a".into())];
        let b = [Value::Str("b".into())];
        let (ha, hb) = (agg.hash_key(&a), agg.hash_key(&b));
        assert_eq!(agg.add(0, &a, ha, None, |_| None), Added::Ok);
        assert_eq!(agg.add(0, &b, hb, None, |_| None), Added::Rejected);
        assert_eq!(agg.add(0, &a, ha, None, |_| None), Added::Ok);
    }
}
