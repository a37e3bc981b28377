//! Aggregation operators (`sum`, `avg`, `topk`, … with `by`/`without`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK, TokenType,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::eval::{Ctx, EvalError, eval_scalar, eval_string, eval_vector, exec_err};
use crate::value::{Labels, Sample, Value};

/// Whether the evaluator implements aggregation `op`.
pub(crate) fn supports(op: TokenType) -> bool {
    matches!(
        op.id(),
        T_SUM
            | T_AVG
            | T_COUNT
            | T_MIN
            | T_MAX
            | T_GROUP
            | T_STDDEV
            | T_STDVAR
            | T_QUANTILE
            | T_COUNT_VALUES
            | T_TOPK
            | T_BOTTOMK
    )
}

/// Neumaier-compensated addition, as Prometheus' kahansum.Inc.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Linear-interpolated φ-quantile of `values` (sorted in place), as
/// Prometheus' `quantile` aggregation and `quantile_over_time`.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| nan_first_cmp(*a, *b));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Ascending order with NaN before everything (Prometheus' value heap order).
fn nan_first_cmp(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Formats a float like Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Assigns samples to aggregation groups by their `by`/`without` labels,
/// hashing the relevant labels in place and building a key label set only
/// once per group.
pub(crate) struct Grouper<'a> {
    modifier: &'a Option<LabelModifier>,
    index: HashMap<u64, Vec<usize>>,
    keys: Vec<Labels>,
}

impl<'a> Grouper<'a> {
    pub fn new(modifier: &'a Option<LabelModifier>) -> Self {
        Self {
            modifier,
            index: HashMap::new(),
            keys: Vec::new(),
        }
    }

    fn keep(modifier: &Option<LabelModifier>, n: &str) -> bool {
        match modifier {
            None => false,
            Some(LabelModifier::Include(by)) => by.labels.iter().any(|b| b == n),
            Some(LabelModifier::Exclude(without)) => {
                n != METRIC_NAME && !without.labels.iter().any(|w| w == n)
            }
        }
    }

    /// The group index of `l`, and whether the group is new.
    pub fn group(&mut self, l: &Labels) -> (usize, bool) {
        let m = self.modifier;
        let fp = l.fingerprint_filtered(|n| Self::keep(m, n));
        let ids = self.index.entry(fp).or_default();
        if let Some(&i) = ids
            .iter()
            .find(|&&i| self.keys[i].equals_filtered(l, |n| Self::keep(m, n)))
        {
            return (i, false);
        }
        let i = self.keys.len();
        self.keys.push(l.filter(|n| Self::keep(m, n)));
        ids.push(i);
        (i, true)
    }

    pub fn key(&self, i: usize) -> &Labels {
        &self.keys[i]
    }
}

#[derive(Default)]
struct Group {
    labels: Labels,
    count: f64,
    value: f64,
    kahan_c: f64,
    mean: f64,
    incremental_mean: bool,
    values: Vec<f64>,
}

pub(crate) fn eval(ctx: &Ctx, a: &AggregateExpr, t: i64) -> Result<Value, EvalError> {
    let op = a.op.id();
    let input = eval_vector(ctx, &a.expr, t)?;
    let key = |l: &Labels| -> Labels {
        match &a.modifier {
            None => Labels::empty(),
            Some(LabelModifier::Include(by)) => l.keep_only(&by.labels),
            Some(LabelModifier::Exclude(without)) => {
                l.filter(|n| n != METRIC_NAME && !without.labels.iter().any(|w| w == n))
            }
        }
    };

    match op {
        T_TOPK | T_BOTTOMK => {
            let param = a
                .param
                .as_ref()
                .ok_or_else(|| EvalError::Execution("topk/bottomk needs a parameter".into()))?;
            let k = eval_scalar(ctx, param, t)?;
            if k.is_nan() {
                return exec_err("Parameter value is NaN");
            }
            if k.abs() >= 9.223_372_036_854_776e18 {
                return exec_err(format!("Scalar value {} overflows int64", format_float(k)));
            }
            return Ok(Value::Vector(top_k(input, k, op == T_TOPK, key)));
        }
        T_COUNT_VALUES => {
            let param = a
                .param
                .as_ref()
                .ok_or_else(|| EvalError::Execution("count_values needs a label name".into()))?;
            let label = eval_string(ctx, param, t)?;
            if !is_valid_label_name(&label) {
                return exec_err(format!("invalid label name {label:?}"));
            }
            let mut order: Vec<Labels> = Vec::new();
            let mut counts: HashMap<Labels, f64> = HashMap::new();
            for s in &input {
                let l = key(&s.labels).with(&label, &format_float(s.v));
                match counts.entry(l) {
                    Entry::Occupied(mut e) => *e.get_mut() += 1.0,
                    Entry::Vacant(e) => {
                        order.push(e.key().clone());
                        e.insert(1.0);
                    }
                }
            }
            return Ok(Value::Vector(
                order
                    .into_iter()
                    .map(|l| {
                        let v = counts[&l];
                        Sample { labels: l, t, v }
                    })
                    .collect(),
            ));
        }
        _ => {}
    }

    let q = match (op, &a.param) {
        (T_QUANTILE, Some(p)) => eval_scalar(ctx, p, t)?,
        (T_QUANTILE, None) => return exec_err("quantile needs a parameter"),
        _ => 0.0,
    };

    let mut groups: Vec<Group> = Vec::new();
    let mut grouper = Grouper::new(&a.modifier);
    for s in &input {
        let f = s.v;
        let gi = match grouper.group(&s.labels) {
            (i, false) => i,
            (i, true) => {
                let labels = grouper.key(i).clone();
                let mut g = Group {
                    labels,
                    count: 1.0,
                    value: f,
                    mean: f,
                    ..Group::default()
                };
                match op {
                    T_STDDEV | T_STDVAR => {
                        g.value = if f.is_nan() || f.is_infinite() {
                            f64::NAN
                        } else {
                            0.0
                        };
                    }
                    T_QUANTILE => g.values.push(f),
                    T_GROUP => g.value = 1.0,
                    _ => {}
                }
                groups.push(g);
                continue;
            }
        };
        let g = &mut groups[gi];
        match op {
            T_SUM => (g.value, g.kahan_c) = kahan_inc(f, g.value, g.kahan_c),
            T_AVG => {
                g.count += 1.0;
                if !g.incremental_mean {
                    let (nv, nc) = kahan_inc(f, g.value, g.kahan_c);
                    if !nv.is_infinite() {
                        (g.value, g.kahan_c) = (nv, nc);
                        continue;
                    }
                    // The sum overflowed: continue with an incremental mean.
                    g.incremental_mean = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.kahan_c /= g.count - 1.0;
                }
                let q = (g.count - 1.0) / g.count;
                (g.mean, g.kahan_c) = kahan_inc(f / g.count, q * g.mean, q * g.kahan_c);
            }
            T_GROUP => {}
            T_MAX => {
                if g.value < f || g.value.is_nan() {
                    g.value = f;
                }
            }
            T_MIN => {
                if g.value > f || g.value.is_nan() {
                    g.value = f;
                }
            }
            T_COUNT => g.count += 1.0,
            T_STDDEV | T_STDVAR => {
                g.count += 1.0;
                let delta = f - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (f - g.mean);
            }
            T_QUANTILE => g.values.push(f),
            _ => return exec_err(format!("unsupported aggregation {}", a.op)),
        }
    }

    let out = groups
        .into_iter()
        .map(|mut g| {
            let v = match op {
                T_SUM => g.value + g.kahan_c,
                T_AVG if g.incremental_mean => g.mean + g.kahan_c,
                T_AVG => g.value / g.count + g.kahan_c / g.count,
                T_COUNT => g.count,
                T_STDVAR => g.value / g.count,
                T_STDDEV => (g.value / g.count).sqrt(),
                T_QUANTILE => quantile(q, &mut g.values),
                _ => g.value,
            };
            Sample {
                labels: g.labels,
                t,
                v,
            }
        })
        .collect();
    Ok(Value::Vector(out))
}

fn top_k(input: Vec<Sample>, k: f64, top: bool, key: impl Fn(&Labels) -> Labels) -> Vec<Sample> {
    let k = if k.is_nan() {
        0
    } else {
        k.min(input.len() as f64) as i64
    };
    if k < 1 {
        return Vec::new();
    }
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for s in input {
        match groups.entry(key(&s.labels)) {
            Entry::Occupied(mut e) => e.get_mut().push(s),
            Entry::Vacant(e) => {
                order.push(e.key().clone());
                e.insert(vec![s]);
            }
        }
    }
    // NaN ranks below every number for topk and above for bottomk, so it
    // is only chosen when nothing else is left.
    let cmp = |a: &Sample, b: &Sample| {
        use std::cmp::Ordering;
        match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ if top => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
            _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
        }
    };
    let mut out = Vec::new();
    for key in order {
        if let Some(mut v) = groups.remove(&key) {
            v.sort_by(cmp);
            v.truncate(k as usize);
            out.extend(v);
        }
    }
    out
}

pub(crate) fn is_valid_label_name(s: &str) -> bool {
    // Prometheus 3 accepts any UTF-8 label name that is not empty.
    !s.is_empty()
}
