//! The values PromQL computes with: label sets, samples, series and the
//! four result types (scalar, string, instant vector, range vector).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern Prometheus writes as a staleness marker: a NaN that no
/// arithmetic produces, so it can be told apart from a scraped NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Whether `v` is the staleness marker (not merely any NaN).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A sorted, de-duplicated set of label pairs (including `__name__`).
///
/// Cloning is an `Arc` bump; the fingerprint is computed once. Names and
/// values are shared `Arc<str>`s, so derived label sets (without the name,
/// a `by` subset) do not copy strings. Stores build series labels with
/// [`Labels::with_cached_variants`], so the name-less variant every function
/// application needs is not rebuilt at each evaluation.
#[derive(Clone)]
pub struct Labels(Arc<Inner>);

type Pair = (Arc<str>, Arc<str>);

struct Inner {
    pairs: Box<[Pair]>,
    fingerprint: u64,
    without_name: Option<Labels>,
}

const FNV_OFFSET: u64 = 14_695_981_039_346_656_037;
const FNV_PRIME: u64 = 1_099_511_628_211;
const SEPARATOR: u8 = 0xff;

fn fnv_add(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl Labels {
    /// Builds a label set from pairs in any order. Empty values are dropped
    /// (in PromQL a label with an empty value does not exist); for a repeated
    /// name the last value wins.
    pub fn new<N: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut v: Vec<Pair> = pairs
            .into_iter()
            .map(|(n, v)| (Arc::from(n.as_ref()), Arc::from(v.as_ref())))
            .collect();
        // Stable sort keeps insertion order among equal names; keep the last.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<Pair> = Vec::with_capacity(v.len());
        for p in v {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        out.retain(|(_, v)| !v.is_empty());
        Self::from_sorted(out)
    }

    /// The empty label set.
    pub fn empty() -> Self {
        Self::from_sorted(Vec::new())
    }

    /// Builds from pairs already sorted by name, unique, with no empty values.
    fn from_sorted(pairs: Vec<Pair>) -> Self {
        // Same algorithm as Prometheus' model.LabelSet.Fingerprint (FNV-1a over
        // name, 0xff, value, 0xff), so fingerprints match Alertmanager's.
        let mut h = FNV_OFFSET;
        for (n, v) in &pairs {
            h = fnv_add(h, n.as_bytes());
            h = fnv_add(h, &[SEPARATOR]);
            h = fnv_add(h, v.as_bytes());
            h = fnv_add(h, &[SEPARATOR]);
        }
        Labels(Arc::new(Inner {
            pairs: pairs.into_boxed_slice(),
            fingerprint: h,
            without_name: None,
        }))
    }

    /// Stable 64-bit hash of the label set (FNV-1a, Prometheus/Alertmanager compatible).
    pub fn fingerprint(&self) -> u64 {
        self.0.fingerprint
    }

    /// Value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .pairs
            .binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| self.0.pairs[i].1.as_ref())
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Label pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.pairs.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.pairs.is_empty()
    }

    /// All labels in braces, `{__name__="up", job="api"}`, as Prometheus
    /// prints a label set (as opposed to a series) in error messages.
    pub fn to_braced_string(&self) -> String {
        let items: Vec<String> = self
            .iter()
            .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
            .collect();
        format!("{{{}}}", items.join(", "))
    }

    /// A copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut v: Vec<Pair> = self
            .0
            .pairs
            .iter()
            .filter(|(n, _)| n.as_ref() != name)
            .cloned()
            .collect();
        if !value.is_empty() {
            let pos = v.partition_point(|(n, _)| n.as_ref() < name);
            v.insert(pos, (Arc::from(name), Arc::from(value)));
        }
        Self::from_sorted(v)
    }

    /// A copy keeping only the labels for which `keep` is true.
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Self {
        if self.0.pairs.iter().all(|(n, _)| keep(n.as_ref())) {
            return self.clone();
        }
        Self::from_sorted(
            self.0
                .pairs
                .iter()
                .filter(|(n, _)| keep(n.as_ref()))
                .cloned()
                .collect(),
        )
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Self {
        if self.get(METRIC_NAME).is_none() {
            return self.clone();
        }
        match &self.0.without_name {
            Some(l) => l.clone(),
            None => self.filter(|n| n != METRIC_NAME),
        }
    }

    /// The same label set, carrying its name-less variant precomputed.
    pub fn with_cached_variants(&self) -> Self {
        if self.0.without_name.is_some() || self.get(METRIC_NAME).is_none() {
            return self.clone();
        }
        Labels(Arc::new(Inner {
            pairs: self.0.pairs.clone(),
            fingerprint: self.0.fingerprint,
            without_name: Some(self.filter(|n| n != METRIC_NAME)),
        }))
    }

    /// Whether `self` equals `other` restricted to the labels for which
    /// `keep` is true, without building that restriction.
    pub fn equals_filtered(&self, other: &Labels, mut keep: impl FnMut(&str) -> bool) -> bool {
        let mut a = self.iter();
        let mut b = other.iter().filter(|(n, _)| keep(n));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x == y => {}
                _ => return false,
            }
        }
    }

    /// The fingerprint `filter(keep)` would have, without building it.
    pub fn fingerprint_filtered(&self, mut keep: impl FnMut(&str) -> bool) -> u64 {
        let mut h = FNV_OFFSET;
        for (n, v) in self.iter() {
            if keep(n) {
                h = fnv_add(h, n.as_bytes());
                h = fnv_add(h, &[SEPARATOR]);
                h = fnv_add(h, v.as_bytes());
                h = fnv_add(h, &[SEPARATOR]);
            }
        }
        h
    }

    /// Only the labels named in `names`.
    pub fn keep_only(&self, names: &[String]) -> Self {
        self.filter(|n| names.iter().any(|k| k == n))
    }

    /// All labels except those named in `names`.
    pub fn drop_names(&self, names: &[String]) -> Self {
        self.filter(|n| !names.iter().any(|k| k == n))
    }
}

impl Default for Labels {
    fn default() -> Self {
        Self::empty()
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.fingerprint == other.0.fingerprint && self.0.pairs == other.0.pairs)
    }
}

impl Eq for Labels {}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.fingerprint);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Prometheus order: pairwise by name then value; a prefix sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.pairs.cmp(&other.0.pairs)
    }
}

impl fmt::Display for Labels {
    /// `name{a="b", c="d"}` as Prometheus prints a series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name().unwrap_or("");
        f.write_str(name)?;
        let rest: Vec<_> = self.iter().filter(|(n, _)| *n != METRIC_NAME).collect();
        if rest.is_empty() && !name.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (n, v)) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}=\"{}\"", escape(v))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// One value of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    /// Milliseconds since the epoch.
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector: points in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    /// `(milliseconds since the epoch, value)`.
    pub points: Vec<(i64, f64)>,
}

/// The result of evaluating a PromQL expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(i64, f64),
    String(i64, String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The PromQL type name, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(..) => "scalar",
            Value::String(..) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sorted_deduplicated_and_empty_values_dropped() {
        let l = Labels::new([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let pairs: Vec<_> = l.iter().collect();
        assert_eq!(pairs, vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn fingerprint_matches_alertmanager_fnv() {
        // Empty set hashes to the FNV offset basis, as in prometheus/common.
        assert_eq!(Labels::empty().fingerprint(), FNV_OFFSET);
        let a = Labels::new([("x", "1"), ("y", "2")]);
        let b = Labels::new([("y", "2"), ("x", "1")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), Labels::new([("x", "12")]).fingerprint());
        // Separator bytes keep "a"+"bc" apart from "ab"+"c".
        assert_ne!(
            Labels::new([("a", "bc")]).fingerprint(),
            Labels::new([("ab", "c")]).fingerprint()
        );
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::new([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), "up{job=\"a\\\"b\"}");
        assert_eq!(Labels::new([("__name__", "up")]).to_string(), "up");
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn stale_marker_is_distinct_from_nan() {
        assert!(is_stale(STALE_NAN));
        assert!(!is_stale(f64::NAN));
        assert!(STALE_NAN.is_nan());
    }
}
