//! The evaluator: walks `promql-parser`'s AST at one instant (or at every
//! step of a range) with Prometheus 3 semantics.
//!
//! Everything is evaluated as instant queries; a range query is the instant
//! evaluation repeated at each step, and a subquery is the same inside one
//! evaluation. Selectors read through [`Queryable`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use crate::storage::{Queryable, WindowSummary};
use crate::value::{Labels, Sample, Series, Value, is_stale};
use crate::{aggregate, binary, functions};

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The query is valid but its data makes it fail (e.g. many-to-many
    /// matching); Prometheus reports these as execution errors.
    #[error("{0}")]
    Execution(String),
    /// The expression uses something this evaluator does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Most steps a range query may have (Prometheus' limit).
pub const MAX_RANGE_POINTS: i64 = 11_000;

/// Most evaluation steps one subquery may take; a bound on work, since
/// every step is a full evaluation of the inner expression.
pub const MAX_SUBQUERY_STEPS: i64 = 100_000;

pub(crate) fn exec_err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Execution(msg.into()))
}

/// Evaluates PromQL expressions.
#[derive(Debug, Clone)]
pub struct Evaluator {
    /// How far back an instant selector looks for the latest sample
    /// (Prometheus: `--query.lookback-delta`, default 5m).
    pub lookback_delta: Duration,
    /// Resolution of subqueries written without one (`x[5m:]`). Prometheus
    /// uses the global evaluation interval (default 1m).
    pub default_subquery_step: Duration,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Per-query settings shared by the whole walk.
pub(crate) struct Ctx<'a> {
    pub q: &'a dyn Queryable,
    /// Start and end of the query, for `@ start()` / `@ end()`.
    pub start: i64,
    pub end: i64,
    pub lookback: i64,
    pub sub_step: i64,
}

/// A range vector together with the window it was taken over, which
/// `rate()` and friends need for extrapolation.
pub(crate) struct RangeVec {
    pub series: Vec<Series>,
    pub range_ms: i64,
    /// Inclusive end of the window (evaluation time after `@` and `offset`).
    pub end_ms: i64,
}

impl Evaluator {
    fn ctx<'a>(&self, q: &'a dyn Queryable, start: i64, end: i64) -> Ctx<'a> {
        Ctx {
            q,
            start,
            end,
            lookback: duration_ms(&self.lookback_delta),
            sub_step: duration_ms(&self.default_subquery_step).max(1),
        }
    }

    /// Evaluates `expr` at `t_ms` (an instant query).
    pub fn instant(&self, q: &dyn Queryable, expr: &Expr, t_ms: i64) -> Result<Value, EvalError> {
        let ctx = self.ctx(q, t_ms, t_ms);
        eval(&ctx, expr, t_ms)
    }

    /// Evaluates `expr` at every step from `start_ms` to `end_ms` (a range
    /// query). Scalars come back as one series without labels. Series are
    /// sorted by labels.
    pub fn range(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        if step_ms <= 0 {
            return exec_err("zero or negative query resolution step widths are not accepted");
        }
        if end_ms < start_ms {
            return exec_err("end timestamp must not be before start time");
        }
        if (end_ms - start_ms) / step_ms >= MAX_RANGE_POINTS {
            return exec_err(format!(
                "exceeded maximum resolution of {MAX_RANGE_POINTS} points per timeseries. Try decreasing the query resolution (?step=XX)"
            ));
        }
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return exec_err(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    if other == ValueType::Matrix {
                        "range vector".to_string()
                    } else {
                        other.to_string()
                    }
                ));
            }
        }
        let ctx = self.ctx(q, start_ms, end_ms);
        let mut acc = SeriesAcc::default();
        let mut t = start_ms;
        while t <= end_ms {
            match eval(&ctx, expr, t)? {
                Value::Scalar(_, v) => acc.push(&Labels::empty(), t, v),
                Value::Vector(vec) => {
                    for s in vec {
                        acc.push(&s.labels, t, s.v);
                    }
                }
                other => {
                    return exec_err(format!(
                        "unexpected {} result in range query",
                        other.type_name()
                    ));
                }
            }
            t += step_ms;
        }
        let mut out = acc.finish();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

/// Collects points per label set, keeping first-seen order.
#[derive(Default)]
pub(crate) struct SeriesAcc {
    pos: HashMap<Labels, usize>,
    series: Vec<Series>,
}

impl SeriesAcc {
    pub fn push(&mut self, labels: &Labels, t: i64, v: f64) {
        match self.pos.entry(labels.clone()) {
            Entry::Occupied(e) => self.series[*e.get()].points.push((t, v)),
            Entry::Vacant(e) => {
                e.insert(self.series.len());
                self.series.push(Series {
                    labels: labels.clone(),
                    points: vec![(t, v)],
                });
            }
        }
    }

    pub fn finish(self) -> Vec<Series> {
        self.series
    }
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// The time a selector reads at: its `@` (or the evaluation time) minus its offset.
pub(crate) fn selector_time(
    ctx: &Ctx,
    at: &Option<AtModifier>,
    offset: &Option<Offset>,
    t: i64,
) -> i64 {
    let base = match at {
        None => t,
        Some(AtModifier::Start) => ctx.start,
        Some(AtModifier::End) => ctx.end,
        Some(AtModifier::At(st)) => system_time_ms(st),
    };
    base - offset_ms(offset)
}

/// The matcher groups of a selector: one group normally, several for the
/// `{a="1" or b="2"}` form. The metric name becomes a `__name__` matcher.
pub(crate) fn matcher_groups(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, n));
    let with_name = |ms: &[Matcher]| -> Vec<Matcher> {
        let mut v: Vec<Matcher> = name.iter().cloned().collect();
        v.extend(ms.iter().cloned());
        v
    };
    if vs.matchers.or_matchers.is_empty() {
        vec![with_name(&vs.matchers.matchers)]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|g| with_name(g))
            .collect()
    }
}

/// Instant selector: the latest non-stale sample within the lookback window
/// `(te - lookback, te]`, with its own timestamp.
pub(crate) fn select_instant(ctx: &Ctx, vs: &VectorSelector, t: i64) -> Vec<Sample> {
    let te = selector_time(ctx, &vs.at, &vs.offset, t);
    let groups = matcher_groups(vs);
    let mut out = Vec::new();
    for g in &groups {
        out.extend(ctx.q.select_last(g, te - ctx.lookback + 1, te));
    }
    if groups.len() > 1 {
        dedup_by_labels(&mut out);
    }
    out.retain(|s| !is_stale(s.v));
    out
}

fn dedup_by_labels(v: &mut Vec<Sample>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.labels.clone()));
}

/// Range selector: samples in the left-open window `(te - range, te]`,
/// stale markers removed.
fn select_range(ctx: &Ctx, ms: &MatrixSelector, t: i64) -> RangeVec {
    let vs = &ms.vs;
    let te = selector_time(ctx, &vs.at, &vs.offset, t);
    let range = duration_ms(&ms.range);
    let groups = matcher_groups(vs);
    let mut series = Vec::new();
    for g in &groups {
        series.extend(ctx.q.select(g, te - range + 1, te));
    }
    if groups.len() > 1 {
        let mut seen = std::collections::HashSet::new();
        series.retain(|s: &Series| seen.insert(s.labels.clone()));
    }
    for s in &mut series {
        s.points.retain(|(_, v)| !is_stale(*v));
    }
    series.retain(|s| !s.points.is_empty());
    RangeVec {
        series,
        range_ms: range,
        end_ms: te,
    }
}

fn eval_subquery(ctx: &Ctx, sq: &SubqueryExpr, t: i64) -> Result<RangeVec, EvalError> {
    let te = selector_time(ctx, &sq.at, &sq.offset, t);
    let range = duration_ms(&sq.range);
    let step = sq.step.as_ref().map(duration_ms).unwrap_or(ctx.sub_step);
    if step <= 0 {
        return exec_err("subquery step must be positive");
    }
    // First step-aligned timestamp after te - range.
    let mut start = step * (te - range).div_euclid(step);
    if start <= te - range {
        start += step;
    }
    if (te - start) / step >= MAX_SUBQUERY_STEPS {
        return exec_err(format!(
            "subquery would take more than {MAX_SUBQUERY_STEPS} steps; use a coarser resolution"
        ));
    }
    let mut acc = SeriesAcc::default();
    let mut ts = start;
    while ts <= te {
        match eval(ctx, &sq.expr, ts)? {
            Value::Vector(v) => {
                for s in v {
                    acc.push(&s.labels, ts, s.v);
                }
            }
            Value::Scalar(_, v) => acc.push(&Labels::empty(), ts, v),
            other => {
                return exec_err(format!(
                    "subquery is only allowed on instant vector, got {}",
                    other.type_name()
                ));
            }
        }
        ts += step;
    }
    Ok(RangeVec {
        series: acc.finish(),
        range_ms: range,
        end_ms: te,
    })
}

/// Window summaries of a range vector, for the functions that need no
/// more than that.
pub(crate) struct SummaryVec {
    pub series: Vec<(Labels, WindowSummary)>,
    pub range_ms: i64,
    pub end_ms: i64,
}

/// Like [`eval_range_vec`] but summarised; a plain range selector is
/// summarised by the store without decoding whole windows.
pub(crate) fn eval_range_summary(ctx: &Ctx, expr: &Expr, t: i64) -> Result<SummaryVec, EvalError> {
    let mut inner = expr;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    if let Expr::MatrixSelector(ms) = inner {
        let vs = &ms.vs;
        let te = selector_time(ctx, &vs.at, &vs.offset, t);
        let range = duration_ms(&ms.range);
        let groups = matcher_groups(vs);
        let mut series = Vec::new();
        for g in &groups {
            series.extend(ctx.q.select_summary(g, te - range + 1, te));
        }
        if groups.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            series.retain(|(l, _): &(Labels, WindowSummary)| seen.insert(l.clone()));
        }
        return Ok(SummaryVec {
            series,
            range_ms: range,
            end_ms: te,
        });
    }
    let rv = eval_range_vec(ctx, expr, t)?;
    Ok(SummaryVec {
        series: rv
            .series
            .into_iter()
            .filter_map(|s| Some((s.labels, WindowSummary::from_points(&s.points)?)))
            .collect(),
        range_ms: rv.range_ms,
        end_ms: rv.end_ms,
    })
}

/// Evaluates an expression of range-vector type.
pub(crate) fn eval_range_vec(ctx: &Ctx, expr: &Expr, t: i64) -> Result<RangeVec, EvalError> {
    match expr {
        Expr::MatrixSelector(ms) => Ok(select_range(ctx, ms, t)),
        Expr::Subquery(sq) => eval_subquery(ctx, sq, t),
        Expr::Paren(p) => eval_range_vec(ctx, &p.expr, t),
        other => exec_err(format!("expected range vector, got {}", other.value_type())),
    }
}

/// Evaluates an expression that must yield an instant vector.
pub(crate) fn eval_vector(ctx: &Ctx, expr: &Expr, t: i64) -> Result<Vec<Sample>, EvalError> {
    match eval(ctx, expr, t)? {
        Value::Vector(v) => Ok(v),
        other => exec_err(format!(
            "expected instant vector, got {}",
            other.type_name()
        )),
    }
}

/// Evaluates an expression that must yield a scalar.
pub(crate) fn eval_scalar(ctx: &Ctx, expr: &Expr, t: i64) -> Result<f64, EvalError> {
    match eval(ctx, expr, t)? {
        Value::Scalar(_, v) => Ok(v),
        other => exec_err(format!("expected scalar, got {}", other.type_name())),
    }
}

/// Evaluates an expression that must yield a string.
pub(crate) fn eval_string(ctx: &Ctx, expr: &Expr, t: i64) -> Result<String, EvalError> {
    match eval(ctx, expr, t)? {
        Value::String(_, s) => Ok(s),
        other => exec_err(format!("expected string, got {}", other.type_name())),
    }
}

/// Fails when two samples share a label set (after a function or operator
/// dropped the labels that told them apart), as Prometheus does.
pub(crate) fn check_unique(v: &[Sample]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return exec_err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

/// The recursive walk.
pub(crate) fn eval(ctx: &Ctx, expr: &Expr, t: i64) -> Result<Value, EvalError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Value::Scalar(t, n.val)),
        Expr::StringLiteral(s) => Ok(Value::String(t, s.val.clone())),
        Expr::Paren(p) => eval(ctx, &p.expr, t),
        Expr::VectorSelector(vs) => {
            let mut v = select_instant(ctx, vs, t);
            for s in &mut v {
                s.t = t;
            }
            Ok(Value::Vector(v))
        }
        Expr::MatrixSelector(_) | Expr::Subquery(_) => {
            let rv = eval_range_vec(ctx, expr, t)?;
            Ok(Value::Matrix(rv.series))
        }
        Expr::Unary(u) => match eval(ctx, &u.expr, t)? {
            Value::Scalar(ts, v) => Ok(Value::Scalar(ts, -v)),
            Value::Vector(v) => {
                let out: Vec<Sample> = v
                    .into_iter()
                    .map(|s| Sample {
                        labels: s.labels.without_name(),
                        t: s.t,
                        v: -s.v,
                    })
                    .collect();
                check_unique(&out)?;
                Ok(Value::Vector(out))
            }
            other => exec_err(format!(
                "unary expression only allowed on expressions of type scalar or vector, got: {}",
                other.type_name()
            )),
        },
        Expr::Binary(b) => binary::eval(ctx, b, t),
        Expr::Aggregate(a) => aggregate::eval(ctx, a, t),
        Expr::Call(c) => functions::call(ctx, c, t),
        Expr::Extension(e) => Err(EvalError::Unsupported(format!(
            "extension expression {}",
            e.expr.name()
        ))),
    }
}

/// Rejects expressions this evaluator cannot evaluate, so a rule file fails
/// when it loads rather than at every evaluation.
pub fn check_supported(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::VectorSelector(_) => Ok(()),
        Expr::MatrixSelector(_) => Ok(()),
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return Err(format!("fill modifiers are not supported: {expr}"));
            }
            if !binary::supports(b.op) {
                return Err(format!("binary operator {} is not supported", b.op));
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Aggregate(a) => {
            if !aggregate::supports(a.op) {
                return Err(format!("aggregation {} is not supported", a.op));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Call(c) => {
            if !functions::supports(c.func.name) {
                return Err(format!("function {}() is not supported", c.func.name));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(e) => Err(format!(
            "extension expression {} is not supported",
            e.expr.name()
        )),
    }
}
