//! A runner for Prometheus' promqltest script format, so PromQL semantics
//! are tested data-driven:
//!
//! ```text
//! load 1m
//!     http_requests_total{job="api"} 0+10x10 _ stale
//! eval instant at 5m rate(http_requests_total[5m])
//!     {job="api"} 0.16666666666666666
//! eval range from 0 to 2m step 1m http_requests_total
//!     http_requests_total{job="api"} 0 10 20
//! eval_fail instant at 0m foo + on() group_left bar
//! clear
//! ```
//!
//! Supported: `load`, `clear`, `eval instant at`, `eval range from … to …
//! step …`, `eval_fail`, `eval_ordered`, and the `expect fail [msg|regex]:`,
//! `expect ordered`, `expect no_warn`, `expect no_info` lines. Annotations
//! (`expect warn`/`expect info`, `eval_warn`, `eval_info`) are not produced
//! by this evaluator and are rejected. The series notation (`a+bxn`, `axn`,
//! `_`, `_xn`, `stale`) is the one promtool's `input_series` uses, exposed as
//! [`parse_series`] / [`expand_values`].

use std::time::Duration;

use promql_parser::parser::{self, Expr};

use crate::eval::Evaluator;
use crate::functions::parse_go_float;
use crate::tsdb::MemStorage;
use crate::value::{Labels, STALE_NAN, Sample, Series, Value, is_stale};

/// One point of an expanded series description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesValue {
    /// `_`: no sample at this step.
    Missing,
    /// `stale`: a staleness marker.
    Stale,
    Value(f64),
}

/// Expands promtool's series value notation: `1 2 3`, `a+bxn`, `a-bxn`,
/// `axn`, `_`, `_xn`, `stale`.
pub fn expand_values(s: &str) -> Result<Vec<SeriesValue>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(SeriesValue::Missing);
            continue;
        }
        if tok == "stale" {
            out.push(SeriesValue::Stale);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("invalid repetition in {tok:?}"))?;
            out.extend(std::iter::repeat_n(SeriesValue::Missing, n));
            continue;
        }
        if let Some((lhs, n)) = tok.rsplit_once('x')
            && !lhs.is_empty()
            && let Ok(n) = n.parse::<usize>()
        {
            let (start, step) = split_start_step(lhs)
                .ok_or_else(|| format!("invalid expanding notation {tok:?}"))?;
            for i in 0..=n {
                out.push(SeriesValue::Value(start + step * i as f64));
            }
            continue;
        }
        let v = parse_go_float(tok).ok_or_else(|| format!("invalid value {tok:?}"))?;
        out.push(SeriesValue::Value(v));
    }
    Ok(out)
}

/// Splits `a+b` / `a-b` / `a` into start and increment.
fn split_start_step(s: &str) -> Option<(f64, f64)> {
    let bytes = s.as_bytes();
    // The operator is the last + or - that is not a sign (at the start or
    // after an exponent marker).
    let pos = (1..bytes.len())
        .rev()
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    match pos {
        None => Some((parse_go_float(s)?, 0.0)),
        Some(i) => {
            let start = parse_go_float(&s[..i])?;
            let step = parse_go_float(&s[i + 1..])?;
            Some((start, if bytes[i] == b'-' { -step } else { step }))
        }
    }
}

/// Parses `metric{a="b"} 1 2 3` into labels and expanded values.
pub fn parse_series(line: &str) -> Result<(Labels, Vec<SeriesValue>), String> {
    let line = line.trim();
    let split = series_end(line);
    let (sel, vals) = line.split_at(split);
    Ok((parse_labels(sel)?, expand_values(vals)?))
}

/// Index just past the series selector at the start of `line`.
fn series_end(line: &str) -> usize {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '}' => return i + 1,
            c if c.is_whitespace() && !line[..i].contains('{') => return i,
            _ => {}
        }
    }
    line.len()
}

/// Parses a series selector with equality matchers (`name{a="b"}`, `{a="b"}`, `{}`) into labels.
pub fn parse_labels(sel: &str) -> Result<Labels, String> {
    let sel = sel.trim();
    if sel == "{}" {
        return Ok(Labels::empty());
    }
    let expr = parser::parse(sel).map_err(|e| format!("invalid series {sel:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("invalid series {sel:?}: not a series selector"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(n) = vs.name {
        pairs.push((crate::value::METRIC_NAME.to_string(), n));
    }
    for m in vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!(
                "invalid series {sel:?}: only = matchers describe a series"
            ));
        }
        pairs.push((m.name, m.value));
    }
    Ok(Labels::new(pairs))
}

/// Parses a duration like `5m`, `1h30m`, `90s`, `250ms` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            u => return Err(format!("invalid unit {u:?} in duration {s:?}")),
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(
        u64::try_from(total).map_err(|_| "duration overflow")?,
    ))
}

fn parse_time_ms(s: &str) -> Result<i64, String> {
    let d = parse_duration(s)?;
    i64::try_from(d.as_millis()).map_err(|_| "time overflow".to_string())
}

/// Relative float comparison used for expected values (Prometheus uses 1e-6).
fn close(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    let sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / sum.min(f64::MAX) < 1e-6
}

enum Expect {
    Ok,
    Fail(Option<FailMatch>),
}

enum FailMatch {
    Msg(String),
    Regex(regex::Regex),
}

enum Query {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

struct EvalCmd {
    line: usize,
    query: Query,
    expr_text: String,
    expect: Expect,
    ordered: bool,
    expected: Vec<(usize, Labels, Vec<SeriesValue>)>,
    /// Expected scalar result (a bare number line).
    scalar: Option<f64>,
    string: Option<String>,
    /// `expect range vector from <a> to <b> step <s>`: timestamps of the
    /// points of a range vector returned by an instant query.
    range_grid: Option<(i64, i64)>,
}

/// How strictly a script is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// For running Prometheus' own scripts: skip native-histogram series,
    /// ignore refused appends and annotation expectations
    /// (`expect warn|info`), which this evaluator does not produce.
    pub lenient: bool,
}

/// Runs a promqltest script. Returns the number of `eval` commands run, or
/// every failure as `name:line: message`.
pub fn run(name: &str, script: &str) -> Result<usize, Vec<String>> {
    run_with(name, script, Options::default())
}

/// [`run`] with options.
pub fn run_with(name: &str, script: &str, opts: Options) -> Result<usize, Vec<String>> {
    let storage = MemStorage::new(Duration::from_secs(100 * 365 * 86_400));
    let ev = Evaluator::default();
    let mut failures = Vec::new();
    let mut evals = 0;
    for Block { lineno, line, body } in blocks(script) {
        let load_rest = line.strip_prefix("load ").or_else(|| {
            // Native-histogram conversion is not supported: load the floats.
            opts.lenient
                .then(|| line.strip_prefix("load_with_nhcb "))
                .flatten()
        });
        let res = if let Some(rest) = load_rest {
            load(&storage, rest, &body, opts, 0)
                .map(|_| ())
                .map_err(|(l, e)| format!("line {l}: {e}"))
        } else if line == "clear" {
            storage.clear();
            Ok(())
        } else if line.starts_with("eval") {
            evals += 1;
            parse_eval(lineno, line, &body, opts).and_then(|cmd| run_eval(&ev, &storage, &cmd))
        } else {
            Err(format!("unknown command {line:?}"))
        };
        if let Err(e) = res {
            failures.push(format!("{name}:{lineno}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(evals)
    } else {
        Err(failures)
    }
}

/// One command of a script with its body (numbered lines, blank and comment lines left out).
struct Block<'a> {
    lineno: usize,
    line: &'a str,
    body: Vec<(usize, &'a str)>,
}

/// The commands of a script: each body runs until a blank line or the next command.
fn blocks(script: &str) -> Vec<Block<'_>> {
    let lines: Vec<&str> = script.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let lineno = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let body_start = i;
        while i < lines.len() {
            let l = lines[i];
            let t = l.trim();
            if t.is_empty() || (!l.starts_with([' ', '\t']) && is_command(t)) {
                break;
            }
            i += 1;
        }
        let body = (body_start..i)
            .map(|k| (k + 1, lines[k].trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect();
        out.push(Block { lineno, line, body });
    }
    out
}

fn is_command(line: &str) -> bool {
    line == "clear" || line.starts_with("load") || line.starts_with("eval")
}

/// Loads one `load <interval>` block whose first sample is at `base_ms`;
/// returns the first and last sample times. An error names the body line
/// it is about.
fn load(
    storage: &MemStorage,
    interval: &str,
    body: &[(usize, &str)],
    opts: Options,
    base_ms: i64,
) -> Result<Option<(i64, i64)>, (usize, String)> {
    let first = body.first().map_or(0, |(l, _)| *l);
    let step = parse_time_ms(interval).map_err(|e| (first.saturating_sub(1), e))?;
    // A series defined twice in one block keeps its last definition, as in
    // Prometheus' loader (definitions are keyed by label set).
    let mut defs = Vec::new();
    for (lineno, l) in body {
        if opts.lenient && l.contains("{{") {
            continue;
        }
        let (labels, values) = parse_series(l).map_err(|e| (*lineno, e))?;
        defs.retain(|(_, l, _)| *l != labels);
        defs.push((*lineno, labels, values));
    }
    let mut range: Option<(i64, i64)> = None;
    for (lineno, labels, values) in &defs {
        for (k, v) in values.iter().enumerate() {
            let t = base_ms + k as i64 * step;
            if *v != SeriesValue::Missing {
                range = Some(range.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            }
            let res = match v {
                SeriesValue::Missing => Ok(()),
                SeriesValue::Stale => storage.append(labels, t, STALE_NAN),
                SeriesValue::Value(f) => storage.append(labels, t, *f),
            };
            if !opts.lenient {
                res.map_err(|e| (*lineno, e.to_string()))?;
            }
        }
    }
    Ok(range)
}

/// A problem in a series file, at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub line: usize,
    pub message: String,
}

/// Loads a series file — one or more `load <interval>` blocks of a
/// promqltest script, the notation of promtool's `input_series` — into
/// `storage`, the first sample of every block at `base_ms`. `clear` and
/// `eval` commands have no place in a series file and are errors.
/// `keep(labels)` decides which series are loaded. Returns the first and
/// last sample times.
pub fn load_series_file(
    storage: &MemStorage,
    script: &str,
    base_ms: i64,
    keep: &dyn Fn(&Labels) -> bool,
) -> Result<Option<(i64, i64)>, LoadError> {
    let mut range: Option<(i64, i64)> = None;
    for Block {
        lineno,
        line,
        body: lines,
    } in blocks(script)
    {
        let Some(interval) = line.strip_prefix("load ") else {
            return Err(LoadError {
                line: lineno,
                message: format!(
                    "expected `load <interval>` followed by indented series lines, got {line:?}"
                ),
            });
        };
        let mut body: Vec<(usize, &str)> = Vec::new();
        for (k, l) in lines {
            let (labels, _) = parse_series(l).map_err(|message| LoadError { line: k, message })?;
            if keep(&labels) {
                body.push((k, l));
            }
        }
        match load(storage, interval, &body, Options::default(), base_ms) {
            Ok(Some((a, b))) => {
                range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
            }
            Ok(None) => {}
            Err((line, message)) => {
                return Err(LoadError {
                    line: if line == 0 { lineno } else { line },
                    message,
                });
            }
        }
    }
    Ok(range)
}

fn parse_eval(
    line: usize,
    text: &str,
    body: &[(usize, &str)],
    opts: Options,
) -> Result<EvalCmd, String> {
    let (cmd, rest) = text.split_once(' ').ok_or("eval needs a query")?;
    let mut expect = Expect::Ok;
    let mut ordered = false;
    match cmd {
        "eval" => {}
        "eval_fail" => expect = Expect::Fail(None),
        "eval_ordered" => ordered = true,
        "eval_warn" | "eval_info" if opts.lenient => {}
        "eval_warn" | "eval_info" => {
            return Err(format!(
                "{cmd}: annotations are not produced by this evaluator"
            ));
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    let rest = rest.trim();
    let (query, expr_text) = if let Some(r) = rest.strip_prefix("instant at ") {
        let (t, e) = r
            .trim()
            .split_once(' ')
            .ok_or("eval instant needs a time and a query")?;
        (Query::Instant(parse_time_ms(t)?), e.trim().to_string())
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let mut it = r.trim().splitn(6, ' ');
        let start = it.next().ok_or("missing start")?;
        let to = it.next();
        let end = it.next().ok_or("missing end")?;
        let step_kw = it.next();
        let step = it.next().ok_or("missing step")?;
        let expr = it.next().ok_or("missing query")?;
        if to != Some("to") || step_kw != Some("step") {
            return Err("expected: eval range from <start> to <end> step <step> <query>".into());
        }
        (
            Query::Range {
                start: parse_time_ms(start)?,
                end: parse_time_ms(end)?,
                step: parse_time_ms(step)?,
            },
            expr.trim().to_string(),
        )
    } else {
        return Err(format!("cannot parse eval command {rest:?}"));
    };

    let mut c = EvalCmd {
        line,
        query,
        expr_text,
        expect,
        ordered,
        expected: Vec::new(),
        scalar: None,
        string: None,
        range_grid: None,
    };
    for (lineno, l) in body {
        if let Some(e) = l.strip_prefix("expect ") {
            let e = e.trim();
            if e == "ordered" {
                c.ordered = true;
            } else if e == "no_warn"
                || e == "no_info"
                || (opts.lenient && (e.starts_with("warn") || e.starts_with("info")))
            {
                // Nothing to check: no annotations are ever produced.
            } else if let Some(f) = e.strip_prefix("fail") {
                let f = f.trim();
                c.expect = Expect::Fail(if let Some(m) = f.strip_prefix("msg:") {
                    Some(FailMatch::Msg(unquote(m.trim())))
                } else if let Some(r) = f.strip_prefix("regex:") {
                    let r = unquote(r.trim());
                    Some(FailMatch::Regex(
                        regex::Regex::new(&r).map_err(|e| format!("line {lineno}: {e}"))?,
                    ))
                } else {
                    None
                });
            } else if let Some(r) = e.strip_prefix("range vector from ") {
                let parts: Vec<&str> = r.split_whitespace().collect();
                match parts.as_slice() {
                    [a, "to", _b, "step", st] => {
                        c.range_grid = Some((parse_time_ms(a)?, parse_time_ms(st)?));
                    }
                    _ => return Err(format!("line {lineno}: cannot parse {e:?}")),
                }
            } else if let Some(s) = e.strip_prefix("string ") {
                c.string = Some(unquote(s.trim()));
            } else {
                return Err(format!("line {lineno}: unsupported expectation {e:?}"));
            }
            continue;
        }
        if let Some(m) = l.strip_prefix("expected_fail_message ") {
            c.expect = Expect::Fail(Some(FailMatch::Msg(m.trim().to_string())));
            continue;
        }
        if let Some(r) = l.strip_prefix("expected_fail_regexp ") {
            c.expect = Expect::Fail(Some(FailMatch::Regex(
                regex::Regex::new(r.trim()).map_err(|e| format!("line {lineno}: {e}"))?,
            )));
            continue;
        }
        if let Some(v) = parse_go_float(l)
            && !l.contains('{')
        {
            c.scalar = Some(v);
            continue;
        }
        let (labels, values) = parse_series(l).map_err(|e| format!("line {lineno}: {e}"))?;
        c.expected.push((*lineno, labels, values));
    }
    Ok(c)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('`') && s.ends_with('`')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

fn run_eval(ev: &Evaluator, storage: &MemStorage, c: &EvalCmd) -> Result<(), String> {
    let expr = parser::parse(&c.expr_text);
    let result: Result<Value, String> = match &expr {
        Err(e) => Err(format!("parse error: {e}")),
        Ok(expr) => {
            if let Err(e) = crate::eval::check_supported(expr) {
                Err(e)
            } else {
                match c.query {
                    Query::Instant(t) => ev.instant(storage, expr, t).map_err(|e| e.to_string()),
                    Query::Range { start, end, step } => ev
                        .range(storage, expr, start, end, step)
                        .map(Value::Matrix)
                        .map_err(|e| e.to_string()),
                }
            }
        }
    };
    match (&c.expect, result) {
        (Expect::Fail(m), Err(e)) => match m {
            None => Ok(()),
            Some(FailMatch::Msg(want)) if *want == e => Ok(()),
            Some(FailMatch::Regex(re)) if re.is_match(&e) => Ok(()),
            Some(FailMatch::Msg(want)) => Err(format!("expected error {want:?}, got {e:?}")),
            Some(FailMatch::Regex(re)) => Err(format!("expected error matching {re}, got {e:?}")),
        },
        (Expect::Fail(_), Ok(v)) => Err(format!(
            "expected `{}` (line {}) to fail, got {}",
            c.expr_text,
            c.line,
            summarize(&v)
        )),
        (Expect::Ok, Err(e)) => Err(format!("`{}` failed: {e}", c.expr_text)),
        (Expect::Ok, Ok(v)) => check_result(c, v),
    }
}

fn summarize(v: &Value) -> String {
    match v {
        Value::Scalar(_, f) => format!("scalar {f}"),
        Value::String(_, s) => format!("string {s:?}"),
        Value::Vector(vs) => {
            let items: Vec<String> = vs.iter().map(|s| format!("{} {}", s.labels, s.v)).collect();
            format!("vector [{}]", items.join(", "))
        }
        Value::Matrix(ms) => {
            let items: Vec<String> = ms
                .iter()
                .map(|s| {
                    let pts: Vec<String> =
                        s.points.iter().map(|(t, v)| format!("{v}@{t}")).collect();
                    format!("{} [{}]", s.labels, pts.join(" "))
                })
                .collect();
            format!("matrix [{}]", items.join(", "))
        }
    }
}

fn check_result(c: &EvalCmd, v: Value) -> Result<(), String> {
    match (&c.query, v) {
        (_, Value::String(_, s)) => match &c.string {
            Some(want) if *want == s => Ok(()),
            want => Err(format!("expected string {want:?}, got {s:?}")),
        },
        (_, Value::Scalar(_, f)) => match c.scalar {
            Some(want) if close(want, f) => Ok(()),
            want => Err(format!("expected scalar {want:?}, got {f}")),
        },
        (Query::Instant(_), Value::Vector(got)) => check_vector(c, &got),
        (Query::Instant(_), Value::Matrix(got)) => check_matrix(c, &got, c.range_grid),
        (Query::Range { start, step, .. }, Value::Matrix(got)) => {
            check_matrix(c, &got, Some((*start, *step)))
        }
        (Query::Range { .. }, other) => Err(format!(
            "unexpected {} from a range query",
            other.type_name()
        )),
    }
}

fn check_vector(c: &EvalCmd, got: &[Sample]) -> Result<(), String> {
    if c.scalar.is_some() {
        return Err(format!(
            "expected a scalar, got {}",
            summarize(&Value::Vector(got.to_vec()))
        ));
    }
    let mut errs = Vec::new();
    for (k, (lineno, labels, values)) in c.expected.iter().enumerate() {
        let want = match values.as_slice() {
            [SeriesValue::Value(v)] => *v,
            [SeriesValue::Stale] => STALE_NAN,
            _ => {
                errs.push(format!(
                    "line {lineno}: an instant result needs exactly one value"
                ));
                continue;
            }
        };
        let pos = got.iter().position(|s| s.labels == *labels);
        match pos {
            None => errs.push(format!(
                "line {lineno}: expected {labels} {want}, not in result"
            )),
            Some(p) => {
                if !close(want, got[p].v) || is_stale(want) != is_stale(got[p].v) {
                    errs.push(format!(
                        "line {lineno}: {labels}: expected {want}, got {}",
                        got[p].v
                    ));
                }
                if c.ordered && p != k {
                    errs.push(format!(
                        "line {lineno}: {labels}: expected at position {k}, found at {p}"
                    ));
                }
            }
        }
    }
    for s in got {
        if !c.expected.iter().any(|(_, l, _)| *l == s.labels) {
            errs.push(format!("unexpected sample {} {}", s.labels, s.v));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("`{}`: {}", c.expr_text, errs.join("; ")))
    }
}

/// Checks a range-query result (or a range vector from an instant query,
/// whose expected values are compared point by point ignoring timestamps
/// of missing samples).
fn check_matrix(c: &EvalCmd, got: &[Series], grid: Option<(i64, i64)>) -> Result<(), String> {
    let mut errs = Vec::new();
    for (lineno, labels, values) in &c.expected {
        let Some(s) = got.iter().find(|s| s.labels == *labels) else {
            errs.push(format!(
                "line {lineno}: expected series {labels}, not in result"
            ));
            continue;
        };
        let want: Vec<(Option<i64>, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(k, v)| {
                let t = grid.map(|(start, step)| start + k as i64 * step);
                match v {
                    SeriesValue::Missing => None,
                    SeriesValue::Stale => Some((t, STALE_NAN)),
                    SeriesValue::Value(f) => Some((t, *f)),
                }
            })
            .collect();
        let ok = want.len() == s.points.len()
            && want
                .iter()
                .zip(&s.points)
                .all(|((wt, wv), (gt, gv))| wt.is_none_or(|wt| wt == *gt) && close(*wv, *gv));
        if !ok {
            let w: Vec<String> = want
                .iter()
                .map(|(t, v)| match t {
                    Some(t) => format!("{v}@{t}"),
                    None => format!("{v}"),
                })
                .collect();
            let g: Vec<String> = s.points.iter().map(|(t, v)| format!("{v}@{t}")).collect();
            errs.push(format!(
                "line {lineno}: {labels}: expected [{}], got [{}]",
                w.join(" "),
                g.join(" ")
            ));
        }
    }
    for s in got {
        if !c.expected.iter().any(|(_, l, _)| *l == s.labels) {
            errs.push(format!("unexpected series {}", s.labels));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("`{}`: {}", c.expr_text, errs.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        use SeriesValue::*;
        assert_eq!(
            expand_values("-2+4x3 1-2x2 5x2 _ _x2 stale 1e3 NaN").expect("parse")[..12],
            [
                Value(-2.0),
                Value(2.0),
                Value(6.0),
                Value(10.0),
                Value(1.0),
                Value(-1.0),
                Value(-3.0),
                Value(5.0),
                Value(5.0),
                Value(5.0),
                Missing,
                Missing,
            ]
        );
        let v = expand_values("_x2 stale 1e3 1e-3+1e-3x1").expect("parse");
        assert_eq!(v[..3], [Missing, Missing, Stale]);
        assert_eq!(v[3], Value(1000.0));
        assert_eq!(v[4], Value(0.001));
        assert_eq!(v[5], Value(0.002));
        assert!(expand_values("1+x").is_err());
        assert!(expand_values("abc").is_err());
    }

    #[test]
    fn series_lines_with_spaces_in_label_values() {
        let (l, v) = parse_series(r#"m{a="x y}", b="2"} 1 2"#).expect("parse");
        assert_eq!(l.get("a"), Some("x y}"));
        assert_eq!(l.metric_name(), Some("m"));
        assert_eq!(v.len(), 2);
        let (l, _) = parse_series("up 1").expect("parse");
        assert_eq!(l.metric_name(), Some("up"));
        let (l, _) = parse_series("{} 3").expect("parse");
        assert!(l.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("1h30m").expect("d"),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("250ms").expect("d"),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("0").expect("d"), Duration::ZERO);
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn a_wrong_expectation_is_reported_with_its_line() {
        let script = "load 1m\n  m 1 2 3\n\neval instant at 2m m\n  m 5\n";
        let errs = run("t", script).expect_err("must fail");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t:4:"), "{errs:?}");
        assert!(errs[0].contains("expected 5, got 3"), "{errs:?}");
    }

    #[test]
    fn an_unexpected_extra_sample_fails() {
        let script =
            "load 1m\n  m{a=\"1\"} 1\n  m{a=\"2\"} 1\n\neval instant at 0m m\n  m{a=\"1\"} 1\n";
        let errs = run("t", script).expect_err("must fail");
        assert!(errs[0].contains("unexpected sample"), "{errs:?}");
    }
}
