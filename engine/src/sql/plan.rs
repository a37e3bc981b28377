//! Turns a parsed SELECT into a plan of compiled expressions.
//!
//! Stateless queries evaluate WHERE and the SELECT list over the record's
//! slots. Windowed queries (`GROUP BY TUMBLE(..)`/`HOP(..)`) evaluate WHERE,
//! the group keys and the aggregate arguments over the record, and HAVING and
//! the SELECT list over the *group row*, whose slots are laid out as
//! `[window_start, window_end, keys…, aggregates…]`.

use std::fmt;

use sqlparser::ast::{
    self as sql, BinaryOperator, DuplicateTreatment, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, SelectItem, UnaryOperator,
};

use super::PlanError;
use super::expr::{BinOp, CastType, Expr, Func, Show, UnOp, like_regex};
use super::parse::parse;
use crate::value::Value;

/// A planned continuous query.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// The FROM name as written.
    pub from: String,
    /// Input fields the query reads; slot `i` of a record holds field `fields[i]`.
    pub fields: Vec<String>,
    /// `SELECT *`: the record passes through unchanged.
    pub select_star: bool,
    /// WHERE, over the record's slots.
    pub filter: Option<Expr>,
    /// The SELECT list: over record slots, or over group-row slots when windowed.
    pub outputs: Vec<OutputColumn>,
    /// Present for `GROUP BY TUMBLE/HOP` queries.
    pub window: Option<WindowPlan>,
}

/// One output column.
#[derive(Debug, Clone)]
pub struct OutputColumn {
    pub name: String,
    pub expr: Expr,
}

/// Window shape, in milliseconds of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble { size_ms: i64 },
    Hop { slide_ms: i64, size_ms: i64 },
}

impl WindowKind {
    pub fn size_ms(&self) -> i64 {
        match self {
            WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => *size_ms,
        }
    }
}

/// The aggregation half of a windowed query.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    /// Record slot holding the event time.
    pub time_field: usize,
    pub kind: WindowKind,
    /// GROUP BY expressions other than the window, over record slots.
    pub keys: Vec<Expr>,
    pub key_names: Vec<String>,
    pub aggregates: Vec<Aggregate>,
    /// HAVING, over group-row slots.
    pub having: Option<Expr>,
}

impl WindowPlan {
    /// Group-row slot of the first key.
    pub const FIRST_KEY_SLOT: usize = 2;

    /// Group-row slot of aggregate `i`.
    pub fn aggregate_slot(&self, i: usize) -> usize {
        Self::FIRST_KEY_SLOT + self.keys.len() + i
    }

    /// Names of the group-row slots (for plan display).
    pub fn slot_names(&self) -> Vec<String> {
        let mut names = vec!["window_start".to_owned(), "window_end".to_owned()];
        names.extend(self.key_names.iter().cloned());
        names.extend(self.aggregates.iter().map(|a| a.name.clone()));
        names
    }
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl AggFunc {
    fn lookup(name: &str) -> Option<AggFunc> {
        Some(match name.to_ascii_uppercase().as_str() {
            "COUNT" => AggFunc::Count,
            "SUM" => AggFunc::Sum,
            "AVG" => AggFunc::Avg,
            "MIN" => AggFunc::Min,
            "MAX" => AggFunc::Max,
            _ => return None,
        })
    }
}

/// One aggregate call; `arg` is `None` for `COUNT(*)`.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub func: AggFunc,
    pub arg: Option<Expr>,
    /// The call as written (`SUM(price)`), for display and dedup.
    pub name: String,
}

/// Plans `sql`.
pub fn plan(sql_text: &str) -> Result<QueryPlan, PlanError> {
    let parsed = parse(sql_text)?;
    let select = parsed.select;
    let mut p = Planner::default();

    let group_exprs = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return Err(PlanError::new(
                    "GROUP BY modifiers (ROLLUP, CUBE, TOTALS) are not supported",
                    None,
                ));
            }
            exprs.clone()
        }
        GroupByExpr::All(_) => return Err(PlanError::new("GROUP BY ALL is not supported", None)),
    };
    if let Some(prewhere) = &select.prewhere {
        return Err(PlanError::at("PREWHERE is not supported", prewhere));
    }

    let filter = select
        .selection
        .as_ref()
        .map(|w| p.compile(w, &mut Scope::Input { clause: "WHERE" }))
        .transpose()?;

    if group_exprs.is_empty() {
        if let Some(h) = &select.having {
            return Err(PlanError::at(
                "HAVING needs GROUP BY with a TUMBLE or HOP window",
                h,
            ));
        }
        let mut outputs = Vec::new();
        let mut select_star = false;
        for (i, item) in select.projection.iter().enumerate() {
            match item {
                SelectItem::Wildcard(_) if select.projection.len() == 1 => select_star = true,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    return Err(PlanError::at(
                        "`*` must be the only item of the SELECT list",
                        item,
                    ));
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let expr = p.compile(e, &mut Scope::Input { clause: "SELECT" })?;
                    outputs.push(OutputColumn {
                        name: output_name(item, i),
                        expr,
                    });
                }
                other => return Err(PlanError::at("unsupported SELECT item", other)),
            }
        }
        check_unique_names(&outputs, &select.projection)?;
        return Ok(QueryPlan {
            from: parsed.from,
            fields: p.fields,
            select_star,
            filter,
            outputs,
            window: None,
        });
    }

    // Windowed aggregation.
    let mut window: Option<(&sql::Expr, usize, WindowKind)> = None;
    let mut keys = Vec::new();
    let mut key_names = Vec::new();
    let mut key_texts = Vec::new();
    for g in &group_exprs {
        if let Some((time_field, kind)) = p.window_function(g)? {
            if window.is_some() {
                return Err(PlanError::at("only one TUMBLE or HOP window per query", g));
            }
            window = Some((g, time_field, kind));
            continue;
        }
        keys.push(p.compile(g, &mut Scope::Input { clause: "GROUP BY" })?);
        key_names.push(match g {
            sql::Expr::Identifier(id) => id.value.clone(),
            sql::Expr::CompoundIdentifier(ids) => {
                ids.last().map(|i| i.value.clone()).unwrap_or_default()
            }
            other => other.to_string(),
        });
        key_texts.push(g.to_string());
    }
    let Some((window_expr, time_field, kind)) = window else {
        return Err(PlanError::at(
            "GROUP BY needs a TUMBLE(ts, INTERVAL …) or HOP(ts, slide, size) window (unbounded aggregation is not supported)",
            &group_exprs[0],
        ));
    };
    let mut g = GroupScope {
        key_texts,
        window_text: window_expr.to_string(),
        n_keys: keys.len(),
        aggregates: Vec::new(),
    };
    let mut outputs = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let expr = p.compile(e, &mut Scope::Grouped(&mut g))?;
                outputs.push(OutputColumn {
                    name: output_name(item, i),
                    expr,
                });
            }
            other => {
                return Err(PlanError::at(
                    "`*` cannot be used with GROUP BY; list the output columns",
                    other,
                ));
            }
        }
    }
    check_unique_names(&outputs, &select.projection)?;
    let having = select
        .having
        .as_ref()
        .map(|h| p.compile(h, &mut Scope::Grouped(&mut g)))
        .transpose()?;
    Ok(QueryPlan {
        from: parsed.from,
        fields: p.fields,
        select_star: false,
        filter,
        outputs,
        window: Some(WindowPlan {
            time_field,
            kind,
            keys,
            key_names,
            aggregates: g.aggregates,
            having,
        }),
    })
}

fn check_unique_names(outputs: &[OutputColumn], items: &[SelectItem]) -> Result<(), PlanError> {
    for (i, o) in outputs.iter().enumerate() {
        if outputs[..i].iter().any(|p| p.name == o.name) {
            return Err(PlanError::at(
                format!(
                    "duplicate output column `{}`; give it an alias with AS",
                    o.name
                ),
                &items[i],
            ));
        }
    }
    Ok(())
}

/// The output name of a SELECT item: its alias, column name, or a derived name.
fn output_name(item: &SelectItem, index: usize) -> String {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
        SelectItem::UnnamedExpr(e) => match e {
            sql::Expr::Identifier(id) => id.value.clone(),
            sql::Expr::CompoundIdentifier(ids) => {
                ids.last().map(|i| i.value.clone()).unwrap_or_default()
            }
            sql::Expr::Function(f) => {
                let name = f.name.to_string().to_ascii_lowercase();
                if matches!(name.as_str(), "tumble" | "hop") {
                    return "window_start".to_owned();
                }
                match function_args(f).ok().as_deref() {
                    Some([Arg::Expr(sql::Expr::Identifier(id))]) => format!("{name}_{}", id.value),
                    _ => name,
                }
            }
            _ => format!("expr{index}"),
        },
        _ => format!("expr{index}"),
    }
}

enum Scope<'g> {
    /// Expressions over the incoming record (WHERE, GROUP BY, aggregate arguments).
    Input { clause: &'static str },
    /// Expressions over a group row (SELECT and HAVING of a windowed query).
    Grouped(&'g mut GroupScope),
}

struct GroupScope {
    key_texts: Vec<String>,
    window_text: String,
    n_keys: usize,
    aggregates: Vec<Aggregate>,
}

enum Arg<'a> {
    Expr(&'a sql::Expr),
    Star,
}

fn function_args(f: &sql::Function) -> Result<Vec<Arg<'_>>, PlanError> {
    if f.over.is_some() {
        return Err(PlanError::at(
            "window functions (OVER) are not supported; use GROUP BY TUMBLE(..) or HOP(..)",
            f,
        ));
    }
    if f.filter.is_some() || !f.within_group.is_empty() {
        return Err(PlanError::at("FILTER / WITHIN GROUP are not supported", f));
    }
    if !matches!(f.parameters, FunctionArguments::None) {
        return Err(PlanError::at(
            "parametric function calls are not supported",
            f,
        ));
    }
    match &f.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::Subquery(q) => {
            Err(PlanError::at("subqueries are not supported", q.as_ref()))
        }
        FunctionArguments::List(list) => {
            if matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)) {
                return Err(PlanError::at(
                    "DISTINCT inside a function call is not supported",
                    f,
                ));
            }
            if !list.clauses.is_empty() {
                return Err(PlanError::at(
                    "clauses inside a function call are not supported",
                    f,
                ));
            }
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(Arg::Expr(e)),
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Ok(Arg::Star),
                    other => Err(PlanError::at("unsupported function argument", other)),
                })
                .collect()
        }
    }
}

#[derive(Default)]
struct Planner {
    fields: Vec<String>,
}

impl Planner {
    fn field(&mut self, name: &str) -> usize {
        match self.fields.iter().position(|f| f == name) {
            Some(i) => i,
            None => {
                self.fields.push(name.to_owned());
                self.fields.len() - 1
            }
        }
    }

    /// `TUMBLE(ts, size)` / `HOP(ts, slide, size)` → (time field slot, kind).
    fn window_function(&mut self, e: &sql::Expr) -> Result<Option<(usize, WindowKind)>, PlanError> {
        let sql::Expr::Function(f) = e else {
            return Ok(None);
        };
        let name = f.name.to_string().to_ascii_uppercase();
        if name != "TUMBLE" && name != "HOP" {
            return Ok(None);
        }
        let args = function_args(f)?;
        let want = if name == "TUMBLE" { 2 } else { 3 };
        if args.len() != want {
            let shape = if name == "TUMBLE" {
                "TUMBLE(ts, INTERVAL '1' MINUTE)"
            } else {
                "HOP(ts, slide, size)"
            };
            return Err(PlanError::at(
                format!("{name} takes {want} arguments: {shape}"),
                e,
            ));
        }
        let time_field = match &args[0] {
            Arg::Expr(sql::Expr::Identifier(id)) => self.field(&id.value),
            Arg::Expr(sql::Expr::CompoundIdentifier(ids)) if !ids.is_empty() => {
                self.field(&ids[ids.len() - 1].value)
            }
            _ => {
                return Err(PlanError::at(
                    format!("the first argument of {name} must be the event-time column"),
                    e,
                ));
            }
        };
        let ms = |a: &Arg| match a {
            Arg::Expr(x) => interval_ms(x),
            Arg::Star => Err(PlanError::at("expected an INTERVAL", e)),
        };
        let kind = if name == "TUMBLE" {
            WindowKind::Tumble {
                size_ms: ms(&args[1])?,
            }
        } else {
            let (slide_ms, size_ms) = (ms(&args[1])?, ms(&args[2])?);
            if size_ms < slide_ms || size_ms % slide_ms != 0 {
                return Err(PlanError::at(
                    "HOP size must be a whole multiple of the slide",
                    e,
                ));
            }
            WindowKind::Hop { slide_ms, size_ms }
        };
        Ok(Some((time_field, kind)))
    }

    fn compile(&mut self, e: &sql::Expr, scope: &mut Scope) -> Result<Expr, PlanError> {
        use sql::Expr as S;
        if let Scope::Grouped(g) = scope {
            let text = e.to_string();
            if let Some(i) = g.key_texts.iter().position(|k| *k == text) {
                return Ok(Expr::Column(WindowPlan::FIRST_KEY_SLOT + i));
            }
            if text == g.window_text {
                return Ok(Expr::Column(0));
            }
            let ident = match e {
                S::Identifier(id) => Some(&id.value),
                S::CompoundIdentifier(ids) => ids.last().map(|i| &i.value),
                _ => None,
            };
            if let Some(name) = ident {
                return match name.to_ascii_lowercase().as_str() {
                    "window_start" => Ok(Expr::Column(0)),
                    "window_end" => Ok(Expr::Column(1)),
                    _ => Err(PlanError::at(
                        format!(
                            "column `{name}` must appear in GROUP BY or be used inside an aggregate"
                        ),
                        e,
                    )),
                };
            }
            if let S::Function(f) = e
                && let Some(func) = AggFunc::lookup(&f.name.to_string())
            {
                let args = function_args(f)?;
                let arg = match (func, args.as_slice()) {
                    (AggFunc::Count, [Arg::Star]) => None,
                    (_, [Arg::Expr(a)]) => Some(self.compile(
                        a,
                        &mut Scope::Input {
                            clause: "an aggregate argument",
                        },
                    )?),
                    _ => return Err(PlanError::at(format!("{} takes one argument", f.name), e)),
                };
                let slot_base = WindowPlan::FIRST_KEY_SLOT + g.n_keys;
                if let Some(i) = g.aggregates.iter().position(|a| a.name == text) {
                    return Ok(Expr::Column(slot_base + i));
                }
                g.aggregates.push(Aggregate {
                    func,
                    arg,
                    name: text,
                });
                return Ok(Expr::Column(slot_base + g.aggregates.len() - 1));
            }
        }
        match e {
            S::Identifier(id) => self.column(&id.value, scope, e),
            S::CompoundIdentifier(ids) => match ids.last() {
                Some(id) => self.column(&id.value, scope, e),
                None => Err(PlanError::at("empty identifier", e)),
            },
            S::Value(v) => literal(&v.value).ok_or_else(|| PlanError::at("unsupported literal", e)),
            S::TypedString(ts) => {
                let ty = ts.data_type.to_string().to_ascii_uppercase();
                let text = match &ts.value.value {
                    sql::Value::SingleQuotedString(s) | sql::Value::DoubleQuotedString(s) => {
                        s.clone()
                    }
                    _ => return Err(PlanError::at("expected a quoted string", e)),
                };
                if ty.starts_with("TIMESTAMP") {
                    parse_timestamp_ms(&text)
                        .map(|ms| Expr::Literal(Value::Int(ms)))
                        .ok_or_else(|| {
                            PlanError::at(format!("invalid TIMESTAMP literal '{text}'"), e)
                        })
                } else {
                    Err(PlanError::at(format!("{ty} literals are not supported"), e))
                }
            }
            S::Nested(inner) => self.compile(inner, scope),
            S::UnaryOp { op, expr } => {
                let inner = self.compile(expr, scope)?;
                match op {
                    UnaryOperator::Not => Ok(Expr::Unary(UnOp::Not, Box::new(inner))),
                    UnaryOperator::Minus => Ok(match inner {
                        Expr::Literal(Value::Int(i)) => Expr::Literal(Value::Int(-i)),
                        Expr::Literal(Value::Float(f)) => Expr::Literal(Value::Float(-f)),
                        other => Expr::Unary(UnOp::Neg, Box::new(other)),
                    }),
                    UnaryOperator::Plus => Ok(inner),
                    other => Err(PlanError::at(
                        format!("operator {other} is not supported"),
                        e,
                    )),
                }
            }
            S::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => BinOp::Add,
                    BinaryOperator::Minus => BinOp::Sub,
                    BinaryOperator::Multiply => BinOp::Mul,
                    BinaryOperator::Divide => BinOp::Div,
                    BinaryOperator::Modulo => BinOp::Mod,
                    BinaryOperator::StringConcat => BinOp::Concat,
                    BinaryOperator::Gt => BinOp::Gt,
                    BinaryOperator::Lt => BinOp::Lt,
                    BinaryOperator::GtEq => BinOp::GtEq,
                    BinaryOperator::LtEq => BinOp::LtEq,
                    BinaryOperator::Eq => BinOp::Eq,
                    BinaryOperator::NotEq => BinOp::NotEq,
                    BinaryOperator::And => BinOp::And,
                    BinaryOperator::Or => BinOp::Or,
                    other => {
                        return Err(PlanError::at(
                            format!("operator {other} is not supported"),
                            e,
                        ));
                    }
                };
                let l = self.compile(left, scope)?;
                let r = self.compile(right, scope)?;
                Ok(Expr::Binary(op, Box::new(l), Box::new(r)))
            }
            S::IsNull(x) | S::IsNotNull(x) => Ok(Expr::IsNull {
                expr: Box::new(self.compile(x, scope)?),
                negated: matches!(e, S::IsNotNull(_)),
            }),
            S::IsTrue(x) | S::IsNotTrue(x) | S::IsFalse(x) | S::IsNotFalse(x) => {
                let mut cond = self.compile(x, scope)?;
                if matches!(e, S::IsFalse(_) | S::IsNotFalse(_)) {
                    cond = Expr::Unary(UnOp::Not, Box::new(cond));
                }
                let is = Expr::Case {
                    operand: None,
                    whens: vec![(cond, Expr::Literal(Value::Bool(true)))],
                    otherwise: Some(Box::new(Expr::Literal(Value::Bool(false)))),
                };
                Ok(if matches!(e, S::IsNotTrue(_) | S::IsNotFalse(_)) {
                    Expr::Unary(UnOp::Not, Box::new(is))
                } else {
                    is
                })
            }
            S::InList {
                expr,
                list,
                negated,
            } => Ok(Expr::InList {
                expr: Box::new(self.compile(expr, scope)?),
                list: list
                    .iter()
                    .map(|x| self.compile(x, scope))
                    .collect::<Result<_, _>>()?,
                negated: *negated,
            }),
            S::Between {
                expr,
                negated,
                low,
                high,
            } => Ok(Expr::Between {
                expr: Box::new(self.compile(expr, scope)?),
                low: Box::new(self.compile(low, scope)?),
                high: Box::new(self.compile(high, scope)?),
                negated: *negated,
            }),
            S::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | S::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(PlanError::at("LIKE ANY and ESCAPE are not supported", e));
                }
                let S::Value(sql::ValueWithSpan {
                    value: sql::Value::SingleQuotedString(p),
                    ..
                }) = pattern.as_ref()
                else {
                    return Err(PlanError::at(
                        "the LIKE pattern must be a string literal",
                        pattern.as_ref(),
                    ));
                };
                let re = like_regex(p, matches!(e, S::ILike { .. })).map_err(|err| {
                    PlanError::at(format!("invalid LIKE pattern: {err}"), pattern.as_ref())
                })?;
                Ok(Expr::Like {
                    expr: Box::new(self.compile(expr, scope)?),
                    pattern: re,
                    negated: *negated,
                })
            }
            S::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Ok(Expr::Case {
                operand: operand
                    .as_ref()
                    .map(|o| self.compile(o, scope).map(Box::new))
                    .transpose()?,
                whens: conditions
                    .iter()
                    .map(|c| {
                        Ok((
                            self.compile(&c.condition, scope)?,
                            self.compile(&c.result, scope)?,
                        ))
                    })
                    .collect::<Result<_, PlanError>>()?,
                otherwise: else_result
                    .as_ref()
                    .map(|o| self.compile(o, scope).map(Box::new))
                    .transpose()?,
            }),
            S::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some()
                    || !matches!(kind, sql::CastKind::Cast | sql::CastKind::DoubleColon)
                {
                    return Err(PlanError::at(
                        "only CAST(x AS type) and x::type are supported",
                        e,
                    ));
                }
                let ty = data_type.to_string().to_ascii_uppercase();
                let t = if [
                    "INT", "BIGINT", "SMALLINT", "TINYINT", "INTEGER", "INT64", "INT8",
                ]
                .iter()
                .any(|p| ty.starts_with(p))
                {
                    CastType::Int
                } else if ["DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC"]
                    .iter()
                    .any(|p| ty.starts_with(p))
                {
                    CastType::Float
                } else if ["VARCHAR", "TEXT", "STRING", "CHAR"]
                    .iter()
                    .any(|p| ty.starts_with(p))
                {
                    CastType::Text
                } else if ty.starts_with("BOOL") {
                    CastType::Bool
                } else {
                    return Err(PlanError::at(format!("CAST to {ty} is not supported"), e));
                };
                Ok(Expr::Cast(t, Box::new(self.compile(expr, scope)?)))
            }
            S::Ceil { expr, field } | S::Floor { expr, field } => {
                if !matches!(
                    field,
                    sql::CeilFloorKind::DateTimeField(sql::DateTimeField::NoDateTime)
                ) {
                    return Err(PlanError::at("CEIL/FLOOR take one argument", e));
                }
                let f = if matches!(e, S::Ceil { .. }) {
                    Func::Ceil
                } else {
                    Func::Floor
                };
                Ok(Expr::Call(f, vec![self.compile(expr, scope)?]))
            }
            S::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.compile(expr, scope)?];
                match substring_from {
                    Some(f) => args.push(self.compile(f, scope)?),
                    None => args.push(Expr::Literal(Value::Int(1))),
                }
                if let Some(f) = substring_for {
                    args.push(self.compile(f, scope)?);
                }
                Ok(Expr::Call(Func::Substring, args))
            }
            S::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_where.is_some() || trim_what.is_some() || trim_characters.is_some() {
                    return Err(PlanError::at("only TRIM(x) is supported", e));
                }
                Ok(Expr::Call(Func::Trim, vec![self.compile(expr, scope)?]))
            }
            S::Function(f) => {
                let name = f.name.to_string();
                if f.over.is_some() {
                    return Err(PlanError::at(
                        "window functions (OVER) are not supported; use GROUP BY TUMBLE(..) or HOP(..)",
                        e,
                    ));
                }
                if AggFunc::lookup(&name).is_some() {
                    let clause = match scope {
                        Scope::Input { clause } => *clause,
                        Scope::Grouped(_) => "here",
                    };
                    let msg = if clause == "SELECT" {
                        "aggregates need GROUP BY with a TUMBLE or HOP window (unbounded aggregation is not supported)".to_owned()
                    } else {
                        format!("aggregates are not allowed in {clause}")
                    };
                    return Err(PlanError::at(msg, e));
                }
                if matches!(name.to_ascii_uppercase().as_str(), "TUMBLE" | "HOP") {
                    return Err(PlanError::at(format!("{name}(..) belongs in GROUP BY"), e));
                }
                let Some((func, min, max)) = Func::lookup(&name) else {
                    return Err(PlanError::at(format!("unknown function {name}"), e));
                };
                let args = function_args(f)?;
                if args.len() < min || args.len() > max {
                    return Err(PlanError::at(
                        format!("{name} takes {}", arity(min, max)),
                        e,
                    ));
                }
                let compiled = args
                    .iter()
                    .map(|a| match a {
                        Arg::Expr(x) => self.compile(x, scope),
                        Arg::Star => Err(PlanError::at(format!("{name}(*) is not valid"), e)),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Expr::Call(func, compiled))
            }
            S::Interval(_) => Err(PlanError::at(
                "INTERVAL values are only supported as TUMBLE/HOP arguments",
                e,
            )),
            S::Subquery(_) | S::Exists { .. } | S::InSubquery { .. } => {
                Err(PlanError::at("subqueries are not supported", e))
            }
            other => Err(PlanError::at(
                format!("unsupported expression `{other}`"),
                e,
            )),
        }
    }

    fn column(&mut self, name: &str, scope: &Scope, e: &sql::Expr) -> Result<Expr, PlanError> {
        match scope {
            Scope::Input { .. } => Ok(Expr::Column(self.field(name))),
            Scope::Grouped(_) => Err(PlanError::at(
                format!("column `{name}` must appear in GROUP BY or be used inside an aggregate"),
                e,
            )),
        }
    }
}

fn arity(min: usize, max: usize) -> String {
    match (min, max) {
        (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
        (a, usize::MAX) => format!("at least {a} argument{}", if a == 1 { "" } else { "s" }),
        (a, b) => format!("{a} to {b} arguments"),
    }
}

fn literal(v: &sql::Value) -> Option<Expr> {
    Some(Expr::Literal(match v {
        sql::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(n.parse().ok()?),
        },
        sql::Value::SingleQuotedString(s) | sql::Value::DoubleQuotedString(s) => {
            Value::Str(s.clone().into())
        }
        sql::Value::Boolean(b) => Value::Bool(*b),
        sql::Value::Null => Value::Null,
        _ => return None,
    }))
}

/// `INTERVAL '1' MINUTE`, `INTERVAL '30 seconds'`, `INTERVAL 5 SECOND` → milliseconds.
fn interval_ms(e: &sql::Expr) -> Result<i64, PlanError> {
    let bad = || PlanError::at("expected an interval such as INTERVAL '1' MINUTE", e);
    let sql::Expr::Interval(iv) = e else {
        return Err(bad());
    };
    if iv.last_field.is_some() {
        return Err(PlanError::at(
            "compound intervals (… TO …) are not supported",
            e,
        ));
    }
    let text = match iv.value.as_ref() {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::SingleQuotedString(s) => s.trim().to_owned(),
            sql::Value::Number(n, _) => n.clone(),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    let (amount, unit) = match &iv.leading_field {
        Some(f) => (text.as_str(), f.to_string()),
        None => {
            let mut parts = text.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(u), None) => (a, u.to_owned()),
                _ => return Err(bad()),
            }
        }
    };
    let unit_ms: f64 = match unit.to_ascii_uppercase().trim_end_matches('S') {
        "MILLISECOND" => 1.0,
        "SECOND" => 1_000.0,
        "MINUTE" => 60_000.0,
        "HOUR" => 3_600_000.0,
        "DAY" => 86_400_000.0,
        _ => {
            return Err(PlanError::at(
                format!("unsupported interval unit {unit}"),
                e,
            ));
        }
    };
    let amount: f64 = amount.parse().map_err(|_| bad())?;
    let ms = (amount * unit_ms).round();
    if !(1.0..1e15).contains(&ms) {
        return Err(PlanError::at(
            "window intervals must be at least 1 millisecond",
            e,
        ));
    }
    Ok(ms as i64)
}

/// RFC 3339 or `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) → epoch milliseconds.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()?;
    Some(naive.and_utc().timestamp_millis())
}

impl fmt::Display for QueryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "from: {}", self.from)?;
        writeln!(f, "fields: [{}]", self.fields.join(", "))?;
        if let Some(w) = &self.filter {
            writeln!(
                f,
                "filter: {}",
                Show {
                    expr: w,
                    names: &self.fields
                }
            )?;
        }
        let out_names = match &self.window {
            None => self.fields.clone(),
            Some(win) => {
                match win.kind {
                    WindowKind::Tumble { size_ms } => writeln!(
                        f,
                        "window: TUMBLE({}, {size_ms}ms)",
                        self.fields[win.time_field]
                    )?,
                    WindowKind::Hop { slide_ms, size_ms } => writeln!(
                        f,
                        "window: HOP({}, slide {slide_ms}ms, size {size_ms}ms)",
                        self.fields[win.time_field]
                    )?,
                }
                for (k, name) in win.keys.iter().zip(&win.key_names) {
                    writeln!(
                        f,
                        "key: {name} = {}",
                        Show {
                            expr: k,
                            names: &self.fields
                        }
                    )?;
                }
                for a in &win.aggregates {
                    match &a.arg {
                        Some(arg) => writeln!(
                            f,
                            "aggregate: {:?}({})",
                            a.func,
                            Show {
                                expr: arg,
                                names: &self.fields
                            }
                        )?,
                        None => writeln!(f, "aggregate: {:?}(*)", a.func)?,
                    }
                }
                let names = win.slot_names();
                if let Some(h) = &win.having {
                    writeln!(
                        f,
                        "having: {}",
                        Show {
                            expr: h,
                            names: &names
                        }
                    )?;
                }
                names
            }
        };
        if self.select_star {
            writeln!(f, "output: *")?;
        }
        for o in &self.outputs {
            writeln!(
                f,
                "output: {} = {}",
                o.name,
                Show {
                    expr: &o.expr,
                    names: &out_names
                }
            )?;
        }
        Ok(())
    }
}
