//! Compiled expressions: column references are slot indexes resolved at plan
//! time, so evaluating a record never looks a name up or allocates for it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use regex::Regex;

use crate::value::Value;

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
}

/// Target types of CAST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    Int,
    Float,
    Text,
    Bool,
}

/// Scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Upper,
    Lower,
    Abs,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Power,
    Coalesce,
    NullIf,
    Concat,
    Length,
    Trim,
    Substring,
    Greatest,
    Least,
}

impl Func {
    /// Looks a function up by SQL name; also returns its (min, max) arity.
    pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
        Some(match name.to_ascii_uppercase().as_str() {
            "UPPER" | "UCASE" => (Func::Upper, 1, 1),
            "LOWER" | "LCASE" => (Func::Lower, 1, 1),
            "ABS" => (Func::Abs, 1, 1),
            "ROUND" => (Func::Round, 1, 2),
            "FLOOR" => (Func::Floor, 1, 1),
            "CEIL" | "CEILING" => (Func::Ceil, 1, 1),
            "SQRT" => (Func::Sqrt, 1, 1),
            "POWER" | "POW" => (Func::Power, 2, 2),
            "COALESCE" | "IFNULL" => (Func::Coalesce, 1, usize::MAX),
            "NULLIF" => (Func::NullIf, 2, 2),
            "CONCAT" => (Func::Concat, 1, usize::MAX),
            "LENGTH" | "CHAR_LENGTH" | "CHARACTER_LENGTH" => (Func::Length, 1, 1),
            "TRIM" | "BTRIM" => (Func::Trim, 1, 1),
            "SUBSTRING" | "SUBSTR" => (Func::Substring, 2, 3),
            "GREATEST" => (Func::Greatest, 1, usize::MAX),
            "LEAST" => (Func::Least, 1, usize::MAX),
            _ => return None,
        })
    }
}

/// An expression over the slots of a row.
#[derive(Debug, Clone)]
pub enum Expr {
    Column(usize),
    Literal(Value<'static>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Regex,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Call(Func, Vec<Expr>),
    Cast(CastType, Box<Expr>),
}

impl Expr {
    /// Evaluates over `row`; strings in the result borrow from the row.
    pub fn eval<'r>(&'r self, row: &'r [Value<'_>]) -> Value<'r> {
        match self {
            Expr::Column(i) => row.get(*i).map(Value::borrowed).unwrap_or(Value::Null),
            Expr::Literal(v) => v.borrowed(),
            Expr::Unary(op, e) => {
                let v = e.eval(row);
                match (op, v) {
                    (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
                    (UnOp::Neg, Value::Int(i)) => {
                        i.checked_neg().map(Value::Int).unwrap_or(Value::Null)
                    }
                    (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
                    _ => Value::Null,
                }
            }
            Expr::Binary(op, l, r) => eval_binary(*op, l, r, row),
            Expr::IsNull { expr, negated } => Value::Bool(expr.eval(row).is_null() != *negated),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval(row);
                if v.is_null() {
                    return Value::Null;
                }
                let mut saw_null = false;
                for item in list {
                    let w = item.eval(row);
                    match v.sql_cmp(&w) {
                        Some(Ordering::Equal) => return Value::Bool(!negated),
                        None if w.is_null() => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let v = expr.eval(row);
                match (v.sql_cmp(&low.eval(row)), v.sql_cmp(&high.eval(row))) {
                    (Some(a), Some(b)) => {
                        Value::Bool((a != Ordering::Less && b != Ordering::Greater) != *negated)
                    }
                    _ => Value::Null,
                }
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => match expr.eval(row) {
                Value::Str(s) => Value::Bool(pattern.is_match(&s) != *negated),
                _ => Value::Null,
            },
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                let subject = operand.as_ref().map(|o| o.eval(row));
                for (when, then) in whens {
                    let hit = match &subject {
                        Some(s) => s.sql_cmp(&when.eval(row)) == Some(Ordering::Equal),
                        None => when.eval(row).is_true(),
                    };
                    if hit {
                        return then.eval(row);
                    }
                }
                otherwise
                    .as_ref()
                    .map(|e| e.eval(row))
                    .unwrap_or(Value::Null)
            }
            Expr::Call(f, args) => call(*f, args, row),
            Expr::Cast(t, e) => cast(*t, e.eval(row)),
        }
    }

    /// Evaluates as a predicate: only TRUE passes.
    #[inline]
    pub fn test(&self, row: &[Value<'_>]) -> bool {
        match self {
            Expr::Binary(BinOp::And, l, r) => l.test(row) && r.test(row),
            Expr::Binary(
                op @ (BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq),
                l,
                r,
            ) => compare(*op, &l.eval(row), &r.eval(row)).is_true(),
            other => other.eval(row).is_true(),
        }
    }

    /// Every slot this expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Column(i) => out.push(*i),
            Expr::Literal(_) => {}
            Expr::Unary(_, e) | Expr::Cast(_, e) => e.columns(out),
            Expr::IsNull { expr, .. } | Expr::Like { expr, .. } => expr.columns(out),
            Expr::Binary(_, l, r) => {
                l.columns(out);
                r.columns(out);
            }
            Expr::InList { expr, list, .. } => {
                expr.columns(out);
                list.iter().for_each(|e| e.columns(out));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.columns(out);
                low.columns(out);
                high.columns(out);
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    o.columns(out);
                }
                for (w, t) in whens {
                    w.columns(out);
                    t.columns(out);
                }
                if let Some(o) = otherwise {
                    o.columns(out);
                }
            }
            Expr::Call(_, args) => args.iter().for_each(|e| e.columns(out)),
        }
    }
}

fn eval_binary<'r>(op: BinOp, l: &'r Expr, r: &'r Expr, row: &'r [Value<'_>]) -> Value<'r> {
    match op {
        BinOp::And => {
            let a = l.eval(row);
            if matches!(a, Value::Bool(false)) {
                return Value::Bool(false);
            }
            match (a, r.eval(row)) {
                (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        BinOp::Or => {
            let a = l.eval(row);
            if a.is_true() {
                return Value::Bool(true);
            }
            match (a, r.eval(row)) {
                (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => {
            compare(op, &l.eval(row), &r.eval(row))
        }
        BinOp::Concat => match (l.eval(row), r.eval(row)) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            (a, b) => Value::Str(Cow::Owned(format!("{}{}", a.to_text(), b.to_text()))),
        },
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
            arithmetic(op, l.eval(row), r.eval(row))
        }
    }
}

fn compare(op: BinOp, a: &Value<'_>, b: &Value<'_>) -> Value<'static> {
    let Some(ord) = a.sql_cmp(b) else {
        return Value::Null;
    };
    Value::Bool(match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::NotEq => ord != Ordering::Equal,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::LtEq => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        BinOp::GtEq => ord != Ordering::Less,
        _ => return Value::Null,
    })
}

/// Integer arithmetic stays integral (overflow and division by zero give NULL);
/// any float operand makes the result a float.
fn arithmetic(op: BinOp, a: Value<'_>, b: Value<'_>) -> Value<'static> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::Div => x.checked_div(y),
            BinOp::Mod => x.checked_rem(y),
            _ => None,
        }
        .map(Value::Int)
        .unwrap_or(Value::Null),
        (a, b) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => {
                let v = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div if y != 0.0 => x / y,
                    BinOp::Mod if y != 0.0 => x % y,
                    _ => return Value::Null,
                };
                Value::Float(v)
            }
            _ => Value::Null,
        },
    }
}

fn call<'r>(f: Func, args: &'r [Expr], row: &'r [Value<'_>]) -> Value<'r> {
    let arg = |i: usize| args.get(i).map(|e| e.eval(row)).unwrap_or(Value::Null);
    match f {
        Func::Upper | Func::Lower | Func::Trim => match arg(0) {
            Value::Null => Value::Null,
            v => {
                let t = v.to_text();
                Value::Str(Cow::Owned(match f {
                    Func::Upper => t.to_uppercase(),
                    Func::Lower => t.to_lowercase(),
                    _ => t.trim().to_owned(),
                }))
            }
        },
        Func::Abs => match arg(0) {
            Value::Int(i) => i.checked_abs().map(Value::Int).unwrap_or(Value::Null),
            Value::Float(x) => Value::Float(x.abs()),
            _ => Value::Null,
        },
        Func::Round => {
            let digits = match arg(1) {
                Value::Int(d) => d.clamp(-18, 18) as i32,
                Value::Null if args.len() == 1 => 0,
                _ => return Value::Null,
            };
            match arg(0) {
                Value::Int(i) => Value::Int(i),
                Value::Float(x) => {
                    let scale = 10f64.powi(digits);
                    Value::Float((x * scale).round() / scale)
                }
                _ => Value::Null,
            }
        }
        Func::Floor | Func::Ceil | Func::Sqrt => match arg(0) {
            Value::Int(i) if f != Func::Sqrt => Value::Int(i),
            v => match v.as_f64() {
                Some(x) => Value::Float(match f {
                    Func::Floor => x.floor(),
                    Func::Ceil => x.ceil(),
                    _ => x.sqrt(),
                }),
                None => Value::Null,
            },
        },
        Func::Power => match (arg(0).as_f64(), arg(1).as_f64()) {
            (Some(x), Some(y)) => Value::Float(x.powf(y)),
            _ => Value::Null,
        },
        Func::Coalesce => args
            .iter()
            .map(|e| e.eval(row))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Func::NullIf => {
            let a = arg(0);
            if a.sql_cmp(&arg(1)) == Some(Ordering::Equal) {
                Value::Null
            } else {
                a
            }
        }
        Func::Concat => {
            // CONCAT skips NULLs (unlike ||), as in PostgreSQL and MySQL's CONCAT_WS.
            let mut s = String::new();
            for e in args {
                s.push_str(&e.eval(row).to_text());
            }
            Value::Str(Cow::Owned(s))
        }
        Func::Length => match arg(0) {
            Value::Null => Value::Null,
            v => Value::Int(v.to_text().chars().count() as i64),
        },
        Func::Substring => {
            let s = arg(0);
            if s.is_null() {
                return Value::Null;
            }
            let text = s.to_text();
            let Value::Int(start) = arg(1) else {
                return Value::Null;
            };
            let len = match arg(2) {
                Value::Int(l) => Some(l.max(0) as usize),
                Value::Null if args.len() == 2 => None,
                _ => return Value::Null,
            };
            // SQL positions are 1-based; positions before 1 shorten the length.
            let skip = (start - 1).max(0) as usize;
            let len = len.map(|l| l.saturating_sub((1 - start).max(0) as usize));
            let out: String = match len {
                Some(l) => text.chars().skip(skip).take(l).collect(),
                None => text.chars().skip(skip).collect(),
            };
            Value::Str(Cow::Owned(out))
        }
        Func::Greatest | Func::Least => {
            let mut best: Option<Value<'r>> = None;
            for e in args {
                let v = e.eval(row);
                if v.is_null() {
                    continue;
                }
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let better = match v.sql_cmp(&b) {
                            Some(Ordering::Greater) => f == Func::Greatest,
                            Some(Ordering::Less) => f == Func::Least,
                            _ => false,
                        };
                        if better { v } else { b }
                    }
                });
            }
            best.unwrap_or(Value::Null)
        }
    }
}

fn cast(t: CastType, v: Value<'_>) -> Value<'_> {
    match (t, v) {
        (_, Value::Null) => Value::Null,
        (CastType::Int, Value::Int(i)) => Value::Int(i),
        (CastType::Int, Value::Float(f)) if f.is_finite() => Value::Int(f.trunc() as i64),
        (CastType::Int, Value::Float(_)) => Value::Null,
        (CastType::Int, Value::Bool(b)) => Value::Int(b as i64),
        (CastType::Int, Value::Str(s)) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                })
                .map(Value::Int)
                .unwrap_or(Value::Null)
        }
        (CastType::Float, Value::Int(i)) => Value::Float(i as f64),
        (CastType::Float, Value::Float(f)) => Value::Float(f),
        (CastType::Float, Value::Bool(b)) => Value::Float(b as i64 as f64),
        (CastType::Float, Value::Str(s)) => {
            s.trim().parse().map(Value::Float).unwrap_or(Value::Null)
        }
        (CastType::Text, Value::Str(s)) => Value::Str(s),
        (CastType::Text, v) => Value::Str(Cow::Owned(v.to_text().into_owned())),
        (CastType::Bool, Value::Bool(b)) => Value::Bool(b),
        (CastType::Bool, Value::Int(i)) => Value::Bool(i != 0),
        (CastType::Bool, Value::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => Value::Null,
        },
        (CastType::Bool, Value::Float(_)) => Value::Null,
    }
}

/// Compiles a SQL LIKE pattern (`%`, `_`) into an anchored regex.
pub fn like_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, regex::Error> {
    let mut re = String::from(if case_insensitive { "(?is)^" } else { "(?s)^" });
    let mut buf = [0u8; 4];
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(c.encode_utf8(&mut buf))),
        }
    }
    re.push('$');
    Regex::new(&re)
}

impl fmt::Display for BinOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::NotEq => "<>",
            BinOp::Lt => "<",
            BinOp::LtEq => "<=",
            BinOp::Gt => ">",
            BinOp::GtEq => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Concat => "||",
        })
    }
}

/// Renders an expression with slot names, for EXPLAIN-style plan output.
pub struct Show<'a> {
    pub expr: &'a Expr,
    pub names: &'a [String],
}

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names;
        let s = |e| Show { expr: e, names };
        match self.expr {
            Expr::Column(i) => match self.names.get(*i) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "#{i}"),
            },
            Expr::Literal(Value::Str(v)) => write!(f, "'{v}'"),
            Expr::Literal(v) => match v {
                Value::Null => write!(f, "NULL"),
                other => write!(f, "{}", other.to_text()),
            },
            Expr::Unary(UnOp::Not, e) => write!(f, "NOT {}", s(e)),
            Expr::Unary(UnOp::Neg, e) => write!(f, "-{}", s(e)),
            Expr::Binary(op, l, r) => write!(f, "({} {op} {})", s(l), s(r)),
            Expr::IsNull { expr, negated } => {
                write!(
                    f,
                    "{} IS {}NULL",
                    s(expr),
                    if *negated { "NOT " } else { "" }
                )
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "{} {}IN (", s(expr), if *negated { "NOT " } else { "" })?;
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", s(e))?;
                }
                write!(f, ")")
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => write!(
                f,
                "{} {}BETWEEN {} AND {}",
                s(expr),
                if *negated { "NOT " } else { "" },
                s(low),
                s(high)
            ),
            Expr::Like {
                expr,
                pattern,
                negated,
            } => write!(
                f,
                "{} {}LIKE /{}/",
                s(expr),
                if *negated { "NOT " } else { "" },
                pattern.as_str()
            ),
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                write!(f, "CASE")?;
                if let Some(o) = operand {
                    write!(f, " {}", s(o))?;
                }
                for (w, t) in whens {
                    write!(f, " WHEN {} THEN {}", s(w), s(t))?;
                }
                if let Some(o) = otherwise {
                    write!(f, " ELSE {}", s(o))?;
                }
                write!(f, " END")
            }
            Expr::Call(func, args) => {
                write!(f, "{}(", format!("{func:?}").to_uppercase())?;
                for (i, e) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", s(e))?;
                }
                write!(f, ")")
            }
            Expr::Cast(t, e) => write!(f, "CAST({} AS {})", s(e), format!("{t:?}").to_uppercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: Value<'static>) -> Box<Expr> {
        Box::new(Expr::Literal(v))
    }

    #[test]
    fn three_valued_logic() {
        let row: [Value; 0] = [];
        let and = Expr::Binary(BinOp::And, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(and.eval(&row), Value::Bool(false));
        let or = Expr::Binary(BinOp::Or, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(or.eval(&row), Value::Null);
        assert!(!or.test(&row));
    }

    #[test]
    fn integer_arithmetic_is_checked() {
        let row: [Value; 0] = [];
        let div0 = Expr::Binary(BinOp::Div, lit(Value::Int(1)), lit(Value::Int(0)));
        assert_eq!(div0.eval(&row), Value::Null);
        let overflow = Expr::Binary(BinOp::Add, lit(Value::Int(i64::MAX)), lit(Value::Int(1)));
        assert_eq!(overflow.eval(&row), Value::Null);
        let mixed = Expr::Binary(BinOp::Mul, lit(Value::Int(3)), lit(Value::Float(0.5)));
        assert_eq!(mixed.eval(&row), Value::Float(1.5));
    }

    #[test]
    fn like_matches_sql_wildcards() {
        let re = like_regex("a%b_", false).unwrap();
        assert!(re.is_match("axxbz"));
        assert!(!re.is_match("axxb"));
        assert!(like_regex("1.5%", false).unwrap().is_match("1.50"));
        assert!(!like_regex("1.5%", false).unwrap().is_match("1x5"));
    }

    #[test]
    fn substring_is_one_based() {
        let row = [Value::Str("streaming".into())];
        let e = Expr::Call(
            Func::Substring,
            vec![
                Expr::Column(0),
                Expr::Literal(Value::Int(2)),
                Expr::Literal(Value::Int(3)),
            ],
        );
        assert_eq!(e.eval(&row), Value::Str("tre".into()));
    }
}
