//! Binary operators: arithmetic, comparison (with and without `bool`) and
//! set operators, with `on`/`ignoring` and `group_left`/`group_right`.

use std::collections::{HashMap, HashSet};

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenType,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::eval::{Ctx, EvalError, check_unique, eval as eval_expr, exec_err};
use crate::value::{Labels, Sample, Value};

/// Whether the evaluator implements operator `op`.
pub(crate) fn supports(op: TokenType) -> bool {
    matches!(
        op.id(),
        T_ADD
            | T_SUB
            | T_MUL
            | T_DIV
            | T_MOD
            | T_POW
            | T_ATAN2
            | T_EQLC
            | T_NEQ
            | T_GTR
            | T_LSS
            | T_GTE
            | T_LTE
            | T_LAND
            | T_LOR
            | T_LUNLESS
    )
}

fn is_comparison(op: TokenType) -> bool {
    matches!(op.id(), T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

fn is_set(op: TokenType) -> bool {
    matches!(op.id(), T_LAND | T_LOR | T_LUNLESS)
}

/// Applies `op` to two floats: the value and whether to keep it (false only
/// for a failed comparison). Comparisons yield the left value.
fn apply(op: TokenType, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op.id() {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return exec_err(format!("operator {op} not allowed here")),
    })
}

/// How two vectors' samples are paired.
struct Matching {
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    on: bool,
    names: Vec<String>,
    card: VectorMatchCardinality,
}

impl Matching {
    fn from_expr(b: &BinaryExpr) -> Self {
        let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let card = match b.modifier.as_ref() {
            _ if is_set(b.op) => VectorMatchCardinality::ManyToMany,
            Some(m) => m.card.clone(),
            None => VectorMatchCardinality::OneToOne,
        };
        Self { on, names, card }
    }

    /// The labels two samples must share to match.
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            l.keep_only(&self.names)
        } else {
            l.filter(|n| n != METRIC_NAME && !self.names.iter().any(|x| x == n))
        }
    }

    fn include(&self) -> &[String] {
        match &self.card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
                &l.labels
            }
            _ => &[],
        }
    }
}

pub(crate) fn eval(ctx: &Ctx, b: &BinaryExpr, t: i64) -> Result<Value, EvalError> {
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = eval_expr(ctx, &b.lhs, t)?;
    let rhs = eval_expr(ctx, &b.rhs, t)?;
    let out = match (lhs, rhs) {
        (Value::Scalar(_, l), Value::Scalar(_, r)) => {
            let (v, keep) = apply(b.op, l, r)?;
            let v = if is_comparison(b.op) {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            };
            return Ok(Value::Scalar(t, v));
        }
        (Value::Vector(l), Value::Scalar(_, r)) => vector_scalar(b.op, l, r, false, return_bool)?,
        (Value::Scalar(_, l), Value::Vector(r)) => vector_scalar(b.op, r, l, true, return_bool)?,
        (Value::Vector(l), Value::Vector(r)) => {
            let m = Matching::from_expr(b);
            match b.op.id() {
                T_LAND => and(l, r, &m),
                T_LOR => or(l, r, &m),
                T_LUNLESS => unless(l, r, &m),
                _ => vector_vector(b.op, l, r, &m, return_bool, t)?,
            }
        }
        (l, r) => {
            return exec_err(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ));
        }
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

fn vector_scalar(
    op: TokenType,
    vec: Vec<Sample>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    let drop_name = return_bool || !is_comparison(op);
    let mut out = Vec::with_capacity(vec.len());
    for mut s in vec {
        let (l, r) = if scalar_left {
            (scalar, s.v)
        } else {
            (s.v, scalar)
        };
        let (mut v, mut keep) = apply(op, l, r)?;
        // A comparison always yields the vector element's value.
        if is_comparison(op) && scalar_left {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            s.v = v;
            if drop_name {
                s.labels = s.labels.without_name();
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn vector_vector(
    op: TokenType,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &Matching,
    return_bool: bool,
    t: i64,
) -> Result<Vec<Sample>, EvalError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    // For one-to-many, swap sides so the "many" side is always on the left.
    let swapped = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };

    let mut one_by_sig: HashMap<Labels, &Sample> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = m.signature(&s.labels);
        if let Some(prev) = one_by_sig.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            let (mut a, mut b) = (s.labels.to_braced_string(), prev.labels.to_braced_string());
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            return exec_err(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{a}, {b}];many-to-many matching not allowed: matching labels must be unique on one side",
                sig.to_braced_string()
            ));
        }
        one_by_sig.insert(sig, s);
    }

    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut matched_one: HashSet<Labels> = HashSet::new();
    let mut matched_many: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let drop_name = return_bool || !is_comparison(op);
    let mut out = Vec::new();
    for ls in &many {
        let sig = m.signature(&ls.labels);
        let Some(rs) = one_by_sig.get(&sig) else {
            continue;
        };
        let (fl, fr) = if swapped { (rs.v, ls.v) } else { (ls.v, rs.v) };
        let (mut v, keep) = apply(op, fl, fr)?;
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        }
        let labels = result_labels(&ls.labels, &rs.labels, m, drop_name);
        if one_to_one {
            if !matched_one.insert(sig) {
                return exec_err(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                );
            }
        } else if !matched_many.entry(sig).or_default().insert(labels.clone()) {
            return exec_err(
                "multiple matches for labels: grouping labels must ensure unique matches",
            );
        }
        if !keep && !return_bool {
            continue;
        }
        out.push(Sample { labels, t, v });
    }
    Ok(out)
}

fn result_labels(many: &Labels, one: &Labels, m: &Matching, drop_name: bool) -> Labels {
    let mut l = if drop_name {
        many.without_name()
    } else {
        many.clone()
    };
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        l = if m.on {
            l.keep_only(&m.names)
        } else {
            l.drop_names(&m.names)
        };
    }
    for name in m.include() {
        l = l.with(name, one.get(name).unwrap_or(""));
    }
    l
}

fn and(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let sigs: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| sigs.contains(&m.signature(&s.labels)))
        .collect()
}

fn or(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let sigs: HashSet<Labels> = lhs.iter().map(|s| m.signature(&s.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|s| !sigs.contains(&m.signature(&s.labels))),
    );
    out
}

fn unless(lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let sigs: HashSet<Labels> = rhs.iter().map(|s| m.signature(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| !sigs.contains(&m.signature(&s.labels)))
        .collect()
}
