//! Go's `fmt` formatting for the values templates handle: `%v` printing of
//! values and `printf` verbs. Floats follow `strconv.FormatFloat` exactly
//! (shortest digits for `%v`, exponent with at least two digits, `%g`
//! switching to `%e` when the exponent is < -4 or >= the precision), because
//! alert annotations must read the same as Prometheus's.

use super::value::Value;

/// Decimal digits of |v| and the position of the decimal point
/// (`0.d1d2… × 10^dp`), without trailing zeros.
struct Digits {
    digits: Vec<u8>,
    dp: i32,
}

/// `sig` significant digits (correctly rounded), or the shortest round-trip
/// digits when `sig` is `None`.
fn decimal_digits(v: f64, sig: Option<usize>) -> Digits {
    let v = v.abs();
    if v == 0.0 {
        return Digits {
            digits: vec![b'0'],
            dp: 1,
        };
    }
    let s = match sig {
        Some(n) => format!("{:.*e}", n.max(1) - 1, v),
        None => format!("{v:e}"),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    Digits {
        digits,
        dp: exp + 1,
    }
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

fn sign(v: f64) -> &'static str {
    if v.is_sign_negative() { "-" } else { "" }
}

/// `%e` layout: d.ddd e±XX with `prec` digits after the point.
fn fmt_e(neg: &str, d: &Digits, prec: usize) -> String {
    let mut out = String::from(neg);
    out.push(d.digits[0] as char);
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(*d.digits.get(i).unwrap_or(&b'0') as char);
        }
    }
    let exp = if d.digits == [b'0'] { 0 } else { d.dp - 1 };
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    out.push_str(&e.to_string());
    out
}

/// `%f` layout from digits with `prec` digits after the point.
fn fmt_f(neg: &str, d: &Digits, prec: usize) -> String {
    let mut out = String::from(neg);
    if d.dp > 0 {
        for i in 0..d.dp as usize {
            out.push(*d.digits.get(i).unwrap_or(&b'0') as char);
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 0..prec as i32 {
            let idx = d.dp + i;
            let c = if idx < 0 {
                b'0'
            } else {
                *d.digits.get(idx as usize).unwrap_or(&b'0')
            };
            out.push(c as char);
        }
    }
    out
}

/// Go's `%g` (`prec` = None means shortest, as `%v` prints floats).
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let neg = sign(v);
    let prec = prec.map(|p| p.max(1));
    let d = decimal_digits(v, prec);
    let nd = d.digits.len() as i32;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p as i32;
            if p > nd && nd >= d.dp { nd } else { p }
        }
    };
    let exp = d.dp - 1;
    if exp < -4 || exp >= eprec {
        let p = match prec {
            Some(p) if (p as i32) <= nd => p as i32,
            _ => nd,
        };
        return fmt_e(neg, &d, (p - 1).max(0) as usize);
    }
    let p = match prec {
        Some(p) if (p as i32) <= d.dp => p as i32,
        _ => nd,
    };
    fmt_f(neg, &d, (p - d.dp).max(0) as usize)
}

/// Go's `%e` with a precision (default 6).
pub fn format_e(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let d = decimal_digits(v, Some(prec + 1));
    fmt_e(sign(v), &d, prec)
}

/// Go's `%f` with a precision (default 6).
pub fn format_f(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let s = format!("{:.*}", prec, v.abs());
    format!("{}{s}", sign(v))
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How `fmt.Sprint` prints a value (`%v`).
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_g(*f, None),
        Value::Str(s) => s.clone(),
        Value::Map(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", print_value(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(print_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Struct(fields) => {
            let parts: Vec<String> = fields.iter().map(|(_, v)| print_value(v)).collect();
            format!("{{{}}}", parts.join(" "))
        }
    }
}

/// Go type name used in `%!verb(type=value)` error strings.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::Map(_) => "map[string]string",
        Value::List(_) => "[]interface {}",
        Value::Struct(_) => "struct",
    }
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(width) = spec.width else { return s };
    let len = s.chars().count();
    if len >= width {
        return s;
    }
    let fill = width - len;
    if spec.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        let (sign, rest) = match s.strip_prefix(['-', '+']) {
            Some(rest) => (&s[..1], rest),
            None => ("", s.as_str()),
        };
        format!("{sign}{}{rest}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

fn with_sign(s: String, negative: bool, spec: &Spec) -> String {
    if negative {
        s
    } else if spec.plus {
        format!("+{s}")
    } else if spec.space {
        format!(" {s}")
    } else {
        s
    }
}

fn bad_verb(verb: char, arg: &Value) -> String {
    format!("%!{verb}({}={})", go_type(arg), print_value(arg))
}

fn format_one(verb: char, spec: &Spec, arg: &Value) -> String {
    match (verb, arg) {
        ('v', Value::Float(f)) | ('g', Value::Float(f)) => {
            let s = format_g(*f, spec.prec);
            pad(with_sign(s, f.is_sign_negative(), spec), spec, true)
        }
        ('v', Value::Int(i)) | ('d', Value::Int(i)) => {
            pad(with_sign(i.to_string(), *i < 0, spec), spec, true)
        }
        ('v', v) => pad(print_value(v), spec, false),
        ('s', Value::Str(s)) => {
            let s = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            pad(s, spec, false)
        }
        ('s', v @ (Value::Map(_) | Value::List(_) | Value::Bool(_))) => {
            pad(print_value(v), spec, false)
        }
        ('q', Value::Str(s)) => pad(quote(s), spec, false),
        ('f' | 'F', Value::Float(f)) => {
            let s = format_f(*f, spec.prec.unwrap_or(6));
            pad(with_sign(s, f.is_sign_negative(), spec), spec, true)
        }
        ('e', Value::Float(f)) => {
            let s = format_e(*f, spec.prec.unwrap_or(6));
            pad(with_sign(s, f.is_sign_negative(), spec), spec, true)
        }
        ('x', Value::Int(i)) => {
            let s = if *i < 0 {
                format!("-{:x}", i.unsigned_abs())
            } else {
                format!("{i:x}")
            };
            let s = if spec.sharp { format!("0x{s}") } else { s };
            pad(s, spec, true)
        }
        ('x', Value::Str(s)) => pad(hex::encode(s.as_bytes()), spec, false),
        ('t', Value::Bool(b)) => pad(b.to_string(), spec, false),
        _ => bad_verb(verb, arg),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: %v %s %d %f %e %g %q %x %t %%,
/// with flags `-+ 0#`, width and precision (also `*`).
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let read_num = |chars: &mut std::iter::Peekable<std::str::Chars>, next: &mut usize| {
            if chars.peek() == Some(&'*') {
                chars.next();
                let n = match args.get(*next) {
                    Some(Value::Int(i)) if *i >= 0 => Some(*i as usize),
                    _ => None,
                };
                *next += 1;
                return n;
            }
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = read_num(&mut chars, &mut next);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(read_num(&mut chars, &mut next).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(arg) => out.push_str(&format_one(verb, &spec, arg)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", go_type(a), print_value(a)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_formatting_matches_go() {
        // Expected strings are what Go's fmt prints for the same values.
        let cases: &[(f64, Option<usize>, &str)] = &[
            (0.0, None, "0"),
            (1.0, None, "1"),
            (95.5, None, "95.5"),
            (100000.0, None, "100000"),
            (1_000_000.0, None, "1e+06"),
            (1_234_567.0, None, "1.234567e+06"),
            (0.0001, None, "0.0001"),
            (0.00001, None, "1e-05"),
            (-2.5, None, "-2.5"),
            (1.2345678, Some(4), "1.235"),
            (1000.0, Some(4), "1000"),
            (12345.0, Some(4), "1.234e+04"),
            (100000.0, Some(4), "1e+05"),
            (0.0001234, Some(4), "0.0001234"),
            (123456700.0, Some(4), "1.235e+08"),
            (f64::INFINITY, Some(4), "+Inf"),
            (f64::NEG_INFINITY, None, "-Inf"),
            (f64::NAN, None, "NaN"),
        ];
        for (v, p, want) in cases {
            assert_eq!(format_g(*v, *p), *want, "value {v} prec {p:?}");
        }
    }

    #[test]
    fn sprintf_verbs() {
        let f = Value::Float(1.23456);
        assert_eq!(sprintf("%.2f", std::slice::from_ref(&f)), "1.23");
        assert_eq!(sprintf("%f", std::slice::from_ref(&f)), "1.234560");
        assert_eq!(
            sprintf("%v|%s", &[f.clone(), Value::Str("x".into())]),
            "1.23456|x"
        );
        assert_eq!(sprintf("%d", &[Value::Int(-42)]), "-42");
        assert_eq!(
            sprintf(
                "%5d|%-5d|%05d",
                &[Value::Int(42), Value::Int(42), Value::Int(-42)]
            ),
            "   42|42   |-0042"
        );
        assert_eq!(
            sprintf("%d", std::slice::from_ref(&f)),
            "%!d(float64=1.23456)"
        );
        assert_eq!(
            sprintf("%q", &[Value::Str("a\"b\n".into())]),
            "\"a\\\"b\\n\""
        );
        assert_eq!(
            sprintf("%s %s", &[Value::Str("a".into())]),
            "a %!s(MISSING)"
        );
        assert_eq!(
            sprintf("%s", &[Value::Str("a".into()), Value::Int(1)]),
            "a%!(EXTRA int=1)"
        );
        assert_eq!(sprintf("%.1e", &[Value::Float(12345.0)]), "1.2e+04");
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%8.3f|", &[Value::Float(-1.5)]), "  -1.500|");
        assert_eq!(sprintf("%+.1f", &[Value::Float(2.0)]), "+2.0");
    }
}
