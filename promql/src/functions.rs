//! PromQL functions. Range-vector functions take a window per series;
//! instant-vector functions map values; a few special ones (absent,
//! label_replace, histogram_quantile, sort…) reshape vectors.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::label::{METRIC_NAME, MatchOp};
use promql_parser::parser::{Call, Expr};

use crate::aggregate::{kahan_inc, quantile};
use crate::eval::{
    Ctx, EvalError, check_unique, eval_range_summary, eval_range_vec, eval_scalar, eval_string,
    eval_vector, exec_err, matcher_groups, select_instant,
};
use crate::storage::WindowSummary;
use crate::value::{Labels, Sample, Value};

/// Functions this evaluator implements.
const SUPPORTED: &[&str] = &[
    // range-vector functions
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "first_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "mad_over_time",
    "present_over_time",
    "absent_over_time",
    // instant-vector math
    "abs",
    "ceil",
    "floor",
    "round",
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "sgn",
    "clamp",
    "clamp_min",
    "clamp_max",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "deg",
    "rad",
    "pi",
    // time
    "time",
    "timestamp",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
    // shape
    "vector",
    "scalar",
    "absent",
    "sort",
    "sort_desc",
    "sort_by_label",
    "sort_by_label_desc",
    "label_replace",
    "label_join",
    "histogram_quantile",
];

/// Whether function `name` is implemented.
pub(crate) fn supports(name: &str) -> bool {
    SUPPORTED.contains(&name)
}

fn arg(c: &Call, i: usize) -> Result<&Expr, EvalError> {
    c.args.args.get(i).map(|b| b.as_ref()).ok_or_else(|| {
        EvalError::Execution(format!("{}(): missing argument {}", c.func.name, i + 1))
    })
}

pub(crate) fn call(ctx: &Ctx, c: &Call, t: i64) -> Result<Value, EvalError> {
    let name = c.func.name;
    let out = match name {
        "time" => return Ok(Value::Scalar(t, t as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(t, std::f64::consts::PI)),
        "scalar" => {
            let v = eval_vector(ctx, arg(c, 0)?, t)?;
            let s = if v.len() == 1 { v[0].v } else { f64::NAN };
            return Ok(Value::Scalar(t, s));
        }
        "vector" => {
            let v = eval_scalar(ctx, arg(c, 0)?, t)?;
            vec![Sample {
                labels: Labels::empty(),
                t,
                v,
            }]
        }
        "absent" => {
            let e = arg(c, 0)?;
            if eval_vector(ctx, e, t)?.is_empty() {
                vec![Sample {
                    labels: absent_labels(e),
                    t,
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "absent_over_time" => {
            let e = arg(c, 0)?;
            if eval_range_vec(ctx, e, t)?.series.is_empty() {
                vec![Sample {
                    labels: absent_labels(e),
                    t,
                    v: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "timestamp" => timestamp(ctx, arg(c, 0)?, t)?,
        "sort" | "sort_desc" => {
            let mut v = eval_vector(ctx, arg(c, 0)?, t)?;
            sort_by_value(&mut v, name == "sort_desc");
            return Ok(Value::Vector(v));
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = eval_vector(ctx, arg(c, 0)?, t)?;
            let mut names = Vec::new();
            for i in 1..c.args.args.len() {
                names.push(eval_string(ctx, arg(c, i)?, t)?);
            }
            v.sort_by(|a, b| {
                let ord = names
                    .iter()
                    .map(|n| {
                        natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| a.labels.cmp(&b.labels));
                if name == "sort_by_label_desc" {
                    ord.reverse()
                } else {
                    ord
                }
            });
            return Ok(Value::Vector(v));
        }
        "label_replace" => label_replace(ctx, c, t)?,
        "label_join" => label_join(ctx, c, t)?,
        "histogram_quantile" => {
            let q = eval_scalar(ctx, arg(c, 0)?, t)?;
            let v = eval_vector(ctx, arg(c, 1)?, t)?;
            histogram_quantile(q, v, t)
        }
        "round" => {
            let v = eval_vector(ctx, arg(c, 0)?, t)?;
            let to = match c.args.args.get(1) {
                Some(e) => eval_scalar(ctx, e, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            map_values(v, |f| (f * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let v = eval_vector(ctx, arg(c, 0)?, t)?;
            let lo = eval_scalar(ctx, arg(c, 1)?, t)?;
            let hi = eval_scalar(ctx, arg(c, 2)?, t)?;
            if hi < lo {
                Vec::new()
            } else {
                map_values(v, |f| go_max(lo, go_min(hi, f)))
            }
        }
        "clamp_min" => {
            let v = eval_vector(ctx, arg(c, 0)?, t)?;
            let lo = eval_scalar(ctx, arg(c, 1)?, t)?;
            map_values(v, |f| go_max(lo, f))
        }
        "clamp_max" => {
            let v = eval_vector(ctx, arg(c, 0)?, t)?;
            let hi = eval_scalar(ctx, arg(c, 1)?, t)?;
            map_values(v, |f| go_min(hi, f))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = match c.args.args.first() {
                Some(e) => eval_vector(ctx, e, t)?,
                None => vec![Sample {
                    labels: Labels::empty(),
                    t,
                    v: t as f64 / 1000.0,
                }],
            };
            map_values(v, |f| date_part(name, f))
        }
        _ => {
            if let Some(f) = math_fn(name) {
                let v = eval_vector(ctx, arg(c, 0)?, t)?;
                map_values(v, f)
            } else {
                range_fn(ctx, c, t)?
            }
        }
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |f: f64| {
            if f > 0.0 {
                1.0
            } else if f < 0.0 {
                -1.0
            } else {
                f // 0, -0 and NaN stay as they are
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

/// Go's math.Max: NaN wins, +0 beats -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's math.Min: NaN wins, -0 beats +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Applies `f` to every value and drops the metric name.
fn map_values(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            t: s.t,
            v: f(s.v),
        })
        .collect()
}

fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let Some(d) = DateTime::from_timestamp(secs as i64, 0) else {
        return f64::NAN;
    };
    f64::from(match name {
        "day_of_month" => d.day(),
        "day_of_week" => d.weekday().num_days_from_sunday(),
        "day_of_year" => d.ordinal(),
        "days_in_month" => {
            let (y, m) = (d.year(), d.month());
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let first_next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
            let first = chrono::NaiveDate::from_ymd_opt(y, m, 1);
            match (first, first_next) {
                (Some(a), Some(b)) => (b - a).num_days() as u32,
                _ => return f64::NAN,
            }
        }
        "hour" => d.hour(),
        "minute" => d.minute(),
        "month" => d.month(),
        "year" => return f64::from(d.year()),
        _ => return f64::NAN,
    })
}

/// `timestamp(v)`: the sample's own timestamp when `v` is a plain selector,
/// the evaluation time otherwise.
fn timestamp(ctx: &Ctx, e: &Expr, t: i64) -> Result<Vec<Sample>, EvalError> {
    let mut inner = e;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    let v = match inner {
        Expr::VectorSelector(vs) => select_instant(ctx, vs, t),
        other => eval_vector(ctx, other, t)?,
    };
    Ok(v.into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            t,
            v: s.t as f64 / 1000.0,
        })
        .collect())
}

/// Labels for `absent()`: the equality matchers of the selector argument,
/// except the metric name and labels matched more than once.
fn absent_labels(e: &Expr) -> Labels {
    let mut inner = e;
    loop {
        match inner {
            Expr::Paren(p) => inner = &p.expr,
            Expr::MatrixSelector(m) => return selector_labels(&matcher_groups(&m.vs)),
            Expr::VectorSelector(vs) => return selector_labels(&matcher_groups(vs)),
            _ => return Labels::empty(),
        }
    }
}

fn selector_labels(groups: &[Vec<promql_parser::label::Matcher>]) -> Labels {
    if groups.len() != 1 {
        return Labels::empty();
    }
    let ms = &groups[0];
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut repeated: Vec<&str> = Vec::new();
    for m in ms {
        if m.name == METRIC_NAME {
            continue;
        }
        if ms.iter().filter(|o| o.name == m.name).count() > 1 {
            repeated.push(&m.name);
            continue;
        }
        if matches!(m.op, MatchOp::Equal) {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    Labels::new(
        pairs
            .into_iter()
            .filter(|(n, _)| !repeated.contains(&n.as_str())),
    )
}

fn sort_by_value(v: &mut [Sample], desc: bool) {
    // NaN sorts last in both directions.
    v.sort_by(|a, b| {
        use std::cmp::Ordering;
        match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ if desc => b.v.partial_cmp(&a.v).unwrap_or(Ordering::Equal),
            _ => a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal),
        }
    });
}

/// Compares strings with embedded numbers in numeric order ("a2" < "a10").
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut ai, mut bi) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (ai.peek().copied(), bi.peek().copied()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let mut na = String::new();
                while let Some(c) = ai.peek().copied().filter(char::is_ascii_digit) {
                    na.push(c);
                    ai.next();
                }
                let mut nb = String::new();
                while let Some(c) = bi.peek().copied().filter(char::is_ascii_digit) {
                    nb.push(c);
                    bi.next();
                }
                let (ta, tb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord.is_ne() {
                    return ord;
                }
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                ai.next();
                bi.next();
            }
        }
    }
}

fn label_replace(ctx: &Ctx, c: &Call, t: i64) -> Result<Vec<Sample>, EvalError> {
    let v = eval_vector(ctx, arg(c, 0)?, t)?;
    let dst = eval_string(ctx, arg(c, 1)?, t)?;
    let repl = eval_string(ctx, arg(c, 2)?, t)?;
    let src = eval_string(ctx, arg(c, 3)?, t)?;
    let re_src = eval_string(ctx, arg(c, 4)?, t)?;
    let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
        EvalError::Execution(format!(
            "invalid regular expression in label_replace(): {re_src}: {e}"
        ))
    })?;
    if dst.is_empty() {
        return exec_err(format!(
            "invalid destination label name in label_replace(): {dst}"
        ));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let value = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&value) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.labels = s.labels.with(&dst, &res);
        }
        out.push(s);
    }
    Ok(out)
}

fn label_join(ctx: &Ctx, c: &Call, t: i64) -> Result<Vec<Sample>, EvalError> {
    let v = eval_vector(ctx, arg(c, 0)?, t)?;
    let dst = eval_string(ctx, arg(c, 1)?, t)?;
    let sep = eval_string(ctx, arg(c, 2)?, t)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.args.len() {
        srcs.push(eval_string(ctx, arg(c, i)?, t)?);
    }
    if dst.is_empty() {
        return exec_err(format!(
            "invalid destination label name in label_join(): {dst}"
        ));
    }
    Ok(v.into_iter()
        .map(|mut s| {
            let joined = srcs
                .iter()
                .map(|n| s.labels.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&sep);
            s.labels = s.labels.with(&dst, &joined);
            s
        })
        .collect())
}

/// Go's `almost.Equal`: relative comparison with special cases near zero.
fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Quantile over classic histogram buckets (upper bound, cumulative count).
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, cnt) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += cnt,
            _ => merged.push((ub, cnt)),
        }
    }
    // Force monotonic counts, ignoring tiny float noise.
    let mut prev = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            b.1 = prev;
            continue;
        }
        prev = curr;
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len();
    let b = merged[..n - 1]
        .iter()
        .position(|x| x.1 >= rank)
        .unwrap_or(n - 1);
    if b == n - 1 {
        return merged[n - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let bucket_end = merged[b].0;
    let mut count = merged[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

fn histogram_quantile(q: f64, v: Vec<Sample>, t: i64) -> Vec<Sample> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let key = s.labels.filter(|n| n != "le" && n != METRIC_NAME);
        match groups.entry(key) {
            Entry::Occupied(mut e) => e.get_mut().push((le, s.v)),
            Entry::Vacant(e) => {
                order.push(e.key().clone());
                e.insert(vec![(le, s.v)]);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|l| {
            let mut b = groups.remove(&l)?;
            let v = bucket_quantile(q, &mut b);
            Some(Sample { labels: l, t, v })
        })
        .collect()
}

/// Parses a float as Go's strconv.ParseFloat does for `le` values
/// ("+Inf", "Inf", "-inf", "NaN", decimals and exponents).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

// ---- range-vector functions ----

/// Range functions computed from a [`WindowSummary`] alone.
fn summary_fn(ctx: &Ctx, c: &Call, t: i64) -> Result<Vec<Sample>, EvalError> {
    let name = c.func.name;
    let sv = eval_range_summary(ctx, arg(c, 0)?, t)?;
    let (start, end, range) = (sv.end_ms - sv.range_ms, sv.end_ms, sv.range_ms);
    let mut out = Vec::with_capacity(sv.series.len());
    for (labels, s) in sv.series {
        let v = match name {
            "rate" => extrapolated_rate(&s, start, end, range, true, true),
            "increase" => extrapolated_rate(&s, start, end, range, true, false),
            "delta" => extrapolated_rate(&s, start, end, range, false, false),
            "resets" => Some(s.resets as f64),
            "count_over_time" => Some(s.count as f64),
            "present_over_time" => Some(1.0),
            "last_over_time" => Some(s.last.1),
            _ => return Err(EvalError::Unsupported(format!("function {name}()"))),
        };
        if let Some(v) = v {
            let labels = if name == "last_over_time" {
                labels
            } else {
                labels.without_name()
            };
            out.push(Sample { labels, t, v });
        }
    }
    Ok(out)
}

fn range_fn(ctx: &Ctx, c: &Call, t: i64) -> Result<Vec<Sample>, EvalError> {
    let name = c.func.name;
    if matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "resets"
            | "count_over_time"
            | "present_over_time"
            | "last_over_time"
    ) {
        return summary_fn(ctx, c, t);
    }
    // quantile_over_time takes the scalar first; predict_linear second.
    let (rv, scalar) = match name {
        "quantile_over_time" => {
            let q = eval_scalar(ctx, arg(c, 0)?, t)?;
            (eval_range_vec(ctx, arg(c, 1)?, t)?, q)
        }
        "predict_linear" => {
            let d = eval_scalar(ctx, arg(c, 1)?, t)?;
            (eval_range_vec(ctx, arg(c, 0)?, t)?, d)
        }
        _ if supports(name) => (eval_range_vec(ctx, arg(c, 0)?, t)?, 0.0),
        _ => return Err(EvalError::Unsupported(format!("function {name}()"))),
    };
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let series = rv.series;
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let p = &s.points;
        let v = match name {
            "irate" => instant_value(p, true),
            "idelta" => instant_value(p, false),
            "deriv" => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
            "predict_linear" => (p.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(p, t);
                slope * scalar + intercept
            }),
            "changes" => Some(
                p.windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            ),
            "avg_over_time" => Some(avg(p)),
            "sum_over_time" => {
                let (s, c) = p.iter().fold((0.0, 0.0), |(s, c), x| kahan_inc(x.1, s, c));
                Some(s + c)
            }
            "min_over_time" => Some(
                p.iter()
                    .skip(1)
                    .fold(p[0].1, |m, x| if x.1 < m || m.is_nan() { x.1 } else { m }),
            ),
            "max_over_time" => Some(
                p.iter()
                    .skip(1)
                    .fold(p[0].1, |m, x| if x.1 > m || m.is_nan() { x.1 } else { m }),
            ),
            "first_over_time" => p.first().map(|x| x.1),
            "quantile_over_time" => {
                let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
                Some(quantile(scalar, &mut vals))
            }
            "stdvar_over_time" => Some(variance(p)),
            "stddev_over_time" => Some(variance(p).sqrt()),
            "mad_over_time" if p.iter().any(|x| x.1.is_nan()) => Some(f64::NAN),
            "mad_over_time" => {
                let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
                let median = quantile(0.5, &mut vals);
                let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
                Some(quantile(0.5, &mut dev))
            }
            "absent_over_time" => None,
            _ => return Err(EvalError::Unsupported(format!("function {name}()"))),
        };
        if let Some(v) = v {
            let labels = if keep_name {
                s.labels
            } else {
                s.labels.without_name()
            };
            out.push(Sample { labels, t, v });
        }
    }
    Ok(out)
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated
/// towards the window's edges exactly as Prometheus does.
pub(crate) fn extrapolated_rate(
    s: &WindowSummary,
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if s.count < 2 {
        return None;
    }
    let (first_t, first_v) = s.first;
    let (last_t, last_v) = s.last;
    let mut result = last_v - first_v;
    if is_counter {
        result += s.reset_sum;
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = sampled / (s.count - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if is_counter {
        // A counter cannot go below zero: do not extrapolate past the point
        // where it would have been zero.
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = 1.0;
    if sampled != 0.0 {
        factor = (sampled + to_start + to_end) / sampled;
    }
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` / `idelta`: from the last two samples.
fn instant_value(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (t0, v0) = p[p.len() - 2];
    let (t1, v1) = p[p.len() - 1];
    let dt = t1 - t0;
    if dt == 0 {
        return None;
    }
    // A counter reset keeps the last value as the increase.
    let mut r = if is_rate && v1 < v0 { v1 } else { v1 - v0 };
    if is_rate {
        r /= dt as f64 / 1000.0;
    }
    Some(r)
}

/// Least-squares fit; returns (slope per second, value at `intercept_t`).
fn linear_regression(p: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let init_y = p[0].1;
    let mut const_y = true;
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(ts, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (ts - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Mean with Kahan summation, switching to an incremental mean on overflow.
fn avg(p: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c) = (p[0].1, 0.0);
    let (mut mean, mut incremental) = (0.0, false);
    let mut count = 1.0;
    for (i, x) in p.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(x.1, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(x.1 / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for x in p {
        count += 1.0;
        let delta = x.1 - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (x.1 - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // Counter +10 every 15s, window (0, 60s], samples at 15..60.
        let p: Vec<_> = (1..=4).map(|i| (i * 15_000, 10.0 * i as f64)).collect();
        // 30 increase over 45s sampled; extrapolate 15s at start (capped by
        // zero point: 10/30*45 = 15s) and 0 at end → 40 over 60s.
        let s = WindowSummary::from_points(&p).expect("points");
        let inc = extrapolated_rate(&s, 0, 60_000, 60_000, true, false).expect("value");
        assert!((inc - 40.0).abs() < 1e-9, "{inc}");
        let rate = extrapolated_rate(&s, 0, 60_000, 60_000, true, true).expect("value");
        assert!((rate - 40.0 / 60.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn counter_resets_are_added_back() {
        let p = vec![(10_000, 5.0), (20_000, 8.0), (30_000, 2.0), (40_000, 4.0)];
        // raw delta -1, plus 8 at the reset = 7 over 30s; no extrapolation
        // beyond half a step at the start: window (5s, 40s].
        let s = WindowSummary::from_points(&p).expect("points");
        let inc = extrapolated_rate(&s, 5_000, 40_000, 35_000, true, false).expect("value");
        assert!((inc - 7.0 * (35.0 / 30.0)).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn bucket_quantile_interpolates_linearly() {
        let mut b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        let q = bucket_quantile(0.5, &mut b);
        // rank 20 lies halfway through the (0.1, 0.5] bucket.
        assert!((q - 0.3).abs() < 1e-12, "{q}");
        let mut b = vec![(0.1, 10.0), (f64::INFINITY, 40.0)];
        assert_eq!(bucket_quantile(0.99, &mut b), 0.1);
        let mut no_inf = vec![(0.1, 10.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
    }

    #[test]
    fn natural_order_of_numbers_in_labels() {
        assert!(natural_cmp("a2", "a10").is_lt());
        assert!(natural_cmp("b", "a10").is_gt());
        assert!(natural_cmp("a02", "a2").is_eq());
    }
}
