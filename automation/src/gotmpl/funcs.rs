//! Template functions: Go's builtins and those Prometheus adds for alert
//! templates (`humanize*`, `title`, `reReplaceAll`, `query`, …), with the same
//! output formats as Prometheus.

use std::collections::BTreeMap;

use super::format::{format_g, print_value, sprintf};
use super::value::Value;

/// One sample returned by the `query` function.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs an instant PromQL query for the `query` template function.
pub type QueryFn<'a> = &'a (dyn Fn(&str) -> Result<Vec<QuerySample>, String> + Sync);

/// What functions can see besides their arguments.
#[derive(Default, Clone, Copy)]
pub struct Env<'a> {
    /// Evaluation time in Unix seconds (`now`).
    pub now_secs: f64,
    /// The external URL (`externalURL`, `pathPrefix`).
    pub external_url: &'a str,
    /// Query engine for `query`; `None` makes `query` an error.
    pub query: Option<QueryFn<'a>>,
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn string_arg(v: &Value) -> Result<&str, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

/// `ConvertToFloat` from prometheus/common: floats, integers and numeric strings.
pub fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn parse_go_float(s: &str) -> Result<f64, String> {
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    let ok_word = matches!(body, "inf" | "infinity" | "nan");
    if !ok_word
        && !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return Err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

pub fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

pub fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

pub fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
        let total = v as i64;
        let seconds = total % 60;
        let minutes = (total / 60) % 60;
        let hours = (total / 3600) % 24;
        let days = total / 86400;
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", format_g(v, Some(4)))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, Some(4)))
}

pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", format_g(v * 100.0, Some(4)))
}

/// Go's `time.Time.String()` of a Unix time in seconds, at millisecond
/// precision as Prometheus's `model.Time` keeps it.
pub fn humanize_timestamp(v: f64) -> Result<String, String> {
    if v.is_nan() || v.is_infinite() {
        return Ok(format_g(v, Some(4)));
    }
    let nanos = v * 1e9;
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&nanos) {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_g(v, None)
        ));
    }
    let millis = (nanos as i64) / 1_000_000;
    let t = chrono::DateTime::from_timestamp_millis(millis).ok_or("timestamp out of range")?;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let ms = t.timestamp_subsec_millis();
    if ms != 0 {
        let frac = format!("{ms:03}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    Ok(s)
}

/// `cases.Title(language.AmericanEnglish, cases.NoLower)`: upper-cases the first
/// letter of every word, leaves the rest alone.
pub fn title(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let in_word = i > 0 && {
            let p = chars[i - 1];
            p.is_alphanumeric()
                || p == '_'
                // An apostrophe or dot between letters does not start a new word ("don't").
                || (matches!(p, '\'' | '.' | ':' | '’') && i > 1 && chars[i - 2].is_alphanumeric())
        };
        if in_word {
            out.push(c);
        } else {
            out.extend(c.to_uppercase());
        }
    }
    out
}

/// `net.SplitHostPort`; `None` where Go returns an error.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':')?;
        if port.contains(':') || host.contains('[') {
            return None;
        }
        return Some((host, port));
    }
    let i = hp.rfind(':')?;
    let host = &hp[..i];
    if host.contains(':') || host.contains('[') || host.contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or(host);
    if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&print_value(a));
    }
    out
}

/// Prometheus duration syntax (`1h30m`, `-5m`, `500ms`) in seconds.
pub fn parse_duration_secs(s: &str) -> Result<f64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let ms = crate::rules::duration::parse_duration_ms(body).map_err(|e| e.to_string())?;
    let secs = ms as f64 / 1000.0;
    Ok(if neg { -secs } else { secs })
}

fn ordering(name: &str, a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    let incompatible = || "incompatible types for comparison".to_string();
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Less)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) if name == "eq" || name == "ne" => Ok(x.cmp(y)),
        (Value::Bool(_), Value::Bool(_)) => Err("invalid type for comparison".to_string()),
        (Value::Nil, _) | (_, Value::Nil) if name == "eq" || name == "ne" => {
            if a == b {
                Ok(Ordering::Equal)
            } else {
                Ok(Ordering::Less)
            }
        }
        (
            Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_),
            Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_),
        ) => Err(incompatible()),
        _ => Err("invalid type for comparison".to_string()),
    }
}

fn values_equal(a: &Value, b: &Value) -> Result<bool, String> {
    if let (Value::Float(x), Value::Float(y)) = (a, b) {
        return Ok(x == y);
    }
    Ok(ordering("eq", a, b)? == std::cmp::Ordering::Equal)
}

fn sample_value(s: &QuerySample) -> Value {
    let labels = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    Value::Struct(vec![
        ("Labels".to_string(), Value::string_map(labels)),
        ("Value".to_string(), Value::Float(s.value)),
    ])
}

/// Calls function `name` (already known to exist) with evaluated arguments.
pub fn call(name: &str, args: Vec<Value>, env: &Env) -> Result<Value, String> {
    let float_fn = |f: fn(f64) -> String| -> Result<Value, String> {
        arity(name, &args, 1)?;
        Ok(Value::Str(f(to_float(&args[0])?)))
    };
    let string_fn = |f: &dyn Fn(&str) -> String| -> Result<Value, String> {
        arity(name, &args, 1)?;
        Ok(Value::Str(f(string_arg(&args[0])?)))
    };
    match name {
        "not" => {
            arity(name, &args, 1)?;
            Ok(Value::Bool(!args[0].is_true()))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for b in &args[1..] {
                if values_equal(&args[0], b)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            use std::cmp::Ordering::*;
            if name == "ne" {
                return Ok(Value::Bool(!values_equal(&args[0], &args[1])?));
            }
            if let (Value::Float(x), Value::Float(y)) = (&args[0], &args[1]) {
                return Ok(Value::Bool(match name {
                    "lt" => x < y,
                    "le" => x <= y,
                    "gt" => x > y,
                    _ => x >= y,
                }));
            }
            let o = ordering(name, &args[0], &args[1])?;
            Ok(Value::Bool(match name {
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            }))
        }
        "len" => {
            arity(name, &args, 1)?;
            match &args[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::Map(m) => Ok(Value::Int(m.len() as i64)),
                Value::List(l) => Ok(Value::Int(l.len() as i64)),
                other => Err(format!("len of type {}", other.type_name())),
            }
        }
        "index" => {
            let (first, keys) = args
                .split_first()
                .ok_or("wrong number of args for index: want at least 1 got 0")?;
            let mut v = first.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Map(m), Value::Str(s)) => {
                        m.get(s).cloned().unwrap_or(Value::Str(String::new()))
                    }
                    (Value::List(l), Value::Int(i)) => l
                        .get(usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?)
                        .cloned()
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (c, _) => return Err(format!("can't index item of type {}", c.type_name())),
                };
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(sprint(&args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(print_value).collect();
            Ok(Value::Str(format!("{}\n", parts.join(" "))))
        }
        "printf" => {
            let (fmt, rest) = args
                .split_first()
                .ok_or("wrong number of args for printf: want at least 1 got 0")?;
            Ok(Value::Str(sprintf(string_arg(fmt)?, rest)))
        }
        "urlquery" => Ok(Value::Str(query_escape(&sprint(&args)))),
        "urlQueryEscape" => string_fn(&query_escape),
        "html" => Ok(Value::Str(html_escape(&sprint(&args)))),
        "humanize" => float_fn(humanize),
        "humanize1024" => float_fn(humanize1024),
        "humanizeDuration" => float_fn(humanize_duration),
        "humanizePercentage" => float_fn(humanize_percentage),
        "humanizeTimestamp" => {
            arity(name, &args, 1)?;
            Ok(Value::Str(humanize_timestamp(to_float(&args[0])?)?))
        }
        "title" => string_fn(&title),
        "toUpper" => string_fn(&|s: &str| s.to_uppercase()),
        "toLower" => string_fn(&|s: &str| s.to_lowercase()),
        "stripPort" => string_fn(&|s: &str| split_host_port(s).map_or(s, |(h, _)| h).to_string()),
        "stripDomain" => string_fn(&strip_domain),
        "safeHtml" => string_fn(&|s: &str| s.to_string()),
        "graphLink" => string_fn(&|s: &str| format!("/graph?g0.expr={}&g0.tab=0", query_escape(s))),
        "tableLink" => string_fn(&|s: &str| format!("/graph?g0.expr={}&g0.tab=1", query_escape(s))),
        "reReplaceAll" => {
            arity(name, &args, 3)?;
            let pattern = string_arg(&args[0])?;
            let re = regex::Regex::new(pattern)
                .map_err(|e| format!("regexp: Compile({pattern:?}): {e}"))?;
            Ok(Value::Str(
                re.replace_all(string_arg(&args[2])?, string_arg(&args[1])?)
                    .into_owned(),
            ))
        }
        "match" => {
            arity(name, &args, 2)?;
            let re = regex::Regex::new(string_arg(&args[0])?).map_err(|e| e.to_string())?;
            Ok(Value::Bool(re.is_match(string_arg(&args[1])?)))
        }
        "now" => {
            arity(name, &args, 0)?;
            Ok(Value::Float(env.now_secs))
        }
        "externalURL" => Ok(Value::Str(env.external_url.to_string())),
        "pathPrefix" => Ok(Value::Str(
            url::Url::parse(env.external_url)
                .map(|u| u.path().trim_end_matches('/').to_string())
                .unwrap_or_default(),
        )),
        "parseDuration" => {
            arity(name, &args, 1)?;
            Ok(Value::Float(parse_duration_secs(string_arg(&args[0])?)?))
        }
        "args" => Ok(Value::Map(
            args.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v))
                .collect(),
        )),
        "query" => {
            arity(name, &args, 1)?;
            let q = env.query.ok_or("query is not available here")?;
            let samples = q(string_arg(&args[0])?)?;
            Ok(Value::List(samples.iter().map(sample_value).collect()))
        }
        "first" => {
            arity(name, &args, 1)?;
            match &args[0] {
                Value::List(l) => l
                    .first()
                    .cloned()
                    .ok_or_else(|| "first() called on vector with no elements".to_string()),
                other => Err(format!(
                    "wrong type for value; expected queryResult; got {}",
                    other.type_name()
                )),
            }
        }
        "label" => {
            arity(name, &args, 2)?;
            let label = string_arg(&args[0])?;
            args[1].field("Labels")?.field(label)
        }
        "value" => {
            arity(name, &args, 1)?;
            args[0].field("Value")
        }
        "strvalue" => {
            arity(name, &args, 1)?;
            args[0].field("Labels")?.field("__value__")
        }
        "sortByLabel" => {
            arity(name, &args, 2)?;
            let label = string_arg(&args[0])?.to_string();
            let Value::List(mut items) = args[1].clone() else {
                return Err("wrong type for value; expected queryResult".into());
            };
            let key = |v: &Value| match v.field("Labels").and_then(|l| l.field(&label)) {
                Ok(Value::Str(s)) => s,
                _ => String::new(),
            };
            items.sort_by_key(|a| key(a));
            Ok(Value::List(items))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are Prometheus's own (template/template_test.go).
    #[test]
    fn humanize_family_matches_prometheus() {
        let h: Vec<String> = [0.0, 1.0, 1234567.0, 0.12]
            .iter()
            .map(|v| humanize(*v))
            .collect();
        assert_eq!(h.join(":"), "0:1:1.235M:120m");
        assert_eq!(humanize(i64::MAX as f64), "9.223E");
        assert_eq!(humanize(-1.0), "-1");
        let h: Vec<String> = [0.0, 1.0, 1048576.0, 0.12, 1234567.0]
            .iter()
            .map(|v| humanize1024(*v))
            .collect();
        assert_eq!(h.join(":"), "0:1:1Mi:0.12:1.177Mi");
        assert_eq!(humanize1024(u64::MAX as f64), "16Ei");
        let d: Vec<String> = [
            0.0,
            1.0,
            60.0,
            3600.0,
            86400.0,
            90000.0,
            -(86400.0 * 2.0 + 3600.0 * 3.0 + 245.0),
            899.99,
        ]
        .iter()
        .map(|v| humanize_duration(*v))
        .collect();
        assert_eq!(
            d.join(":"),
            "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s"
        );
        let d: Vec<String> = [0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]
            .iter()
            .map(|v| humanize_duration(*v))
            .collect();
        assert_eq!(d.join(":"), "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s");
        let p: Vec<String> = [-0.22222, 0.0, 0.1234567, 1.23456, 1234567.0]
            .iter()
            .map(|v| humanize_percentage(*v))
            .collect();
        assert_eq!(p.join(":"), "-22.22%:0%:12.35%:123.5%:1.235e+08%");
        for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let want = format_g(v, None);
            assert_eq!(humanize(v), want);
            assert_eq!(humanize1024(v), want);
            assert_eq!(humanize_duration(v), want);
            assert_eq!(humanize_timestamp(v).unwrap(), want);
        }
    }

    #[test]
    fn humanize_timestamp_matches_go_time_string() {
        let t: Vec<String> = [0.0, -1.0, 1.0, 1234567.0, 9223372036.0]
            .iter()
            .map(|v| humanize_timestamp(*v).unwrap())
            .collect();
        assert_eq!(
            t.join(":"),
            "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:\
             1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC"
        );
        assert_eq!(
            humanize_timestamp(1435065584.128).unwrap(),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert!(humanize_timestamp(i64::MAX as f64).is_err());
    }

    #[test]
    fn string_helpers() {
        assert_eq!(title("aa bb CC"), "Aa Bb CC");
        assert_eq!(title("don't stop-me"), "Don't Stop-Me");
        assert_eq!(
            split_host_port("foo.example.com:12345"),
            Some(("foo.example.com", "12345"))
        );
        assert_eq!(
            split_host_port("[2001:0DB8::1]:12345"),
            Some(("2001:0DB8::1", "12345"))
        );
        assert_eq!(split_host_port("[2001:0DB8::1]::12345"), None);
        assert_eq!(split_host_port("2001:0DB8::1"), None);
        assert_eq!(strip_domain("foo.example.com:12345"), "foo:12345");
        assert_eq!(strip_domain("192.0.2.1:12345"), "192.0.2.1:12345");
        assert_eq!(query_escape("a b&c/é"), "a+b%26c%2F%C3%A9");
        assert!(to_float(&Value::Str("one".into())).is_err());
        assert_eq!(to_float(&Value::Str(".12".into())), Ok(0.12));
        assert_eq!(to_float(&Value::Str("+Inf".into())), Ok(f64::INFINITY));
    }
}
