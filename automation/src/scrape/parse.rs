//! Parsers for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0
//! text. Both yield flat samples (histogram and summary series under their
//! `_bucket`/`_sum`/`_count` names), which is what PromQL sees.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// Series name (`__name__`).
    pub name: String,
    /// Labels as written (without `__name__`), in line order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Explicit timestamp in milliseconds, when the line has one.
    pub timestamp_ms: Option<i64>,
}

/// A line the parser rejected; a scrape with any such line fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Which exposition format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text`
    OpenMetrics,
}

impl Format {
    /// Picks the parser from a response's Content-Type, as Prometheus does.
    pub fn from_content_type(ct: Option<&str>) -> Format {
        match ct {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// Parses a whole exposition body.
pub fn parse(body: &str, format: Format) -> Result<Vec<ParsedSample>, ParseError> {
    let mut out = Vec::new();
    let om = format == Format::OpenMetrics;
    let mut saw_eof = false;
    // Family types, to skip OpenMetrics `_created` series as Prometheus does.
    let mut types: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (idx, raw) in body.split('\n').enumerate() {
        let line_no = idx + 1;
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        let line = if om {
            raw
        } else {
            raw.trim_matches([' ', '\t', '\r'])
        };
        if saw_eof {
            if om && !(line.is_empty() && idx + 1 == body.split('\n').count()) {
                return Err(err("unexpected data after # EOF".into()));
            }
            continue;
        }
        if line.is_empty() {
            if om && idx + 1 != body.split('\n').count() {
                return Err(err("unexpected empty line".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if om && line == "# EOF" {
                saw_eof = true;
                continue;
            }
            let mut parts = comment
                .trim_start_matches([' ', '\t'])
                .splitn(3, [' ', '\t']);
            match parts.next() {
                Some("TYPE") => {
                    let name = parts
                        .next()
                        .ok_or_else(|| err("TYPE line without metric name".into()))?;
                    let ty = parts.next().unwrap_or("").trim();
                    let known: &[&str] = if om {
                        &[
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "summary",
                            "info",
                            "stateset",
                            "unknown",
                        ]
                    } else {
                        &["counter", "gauge", "histogram", "summary", "untyped"]
                    };
                    if !known.contains(&ty) {
                        return Err(err(format!("invalid metric type {ty:?}")));
                    }
                    types.insert(name.to_string(), ty.to_string());
                }
                Some("HELP") | Some("UNIT") => {}
                _ if om => return Err(err(format!("invalid comment line {line:?}"))),
                _ => {}
            }
            continue;
        }
        let sample = parse_sample(line, om).map_err(err)?;
        if om && skip_created(&sample.name, &types) {
            continue;
        }
        out.push(sample);
    }
    if om && !saw_eof {
        return Err(ParseError {
            line: body.lines().count(),
            message: "data does not end with # EOF".into(),
        });
    }
    Ok(out)
}

fn skip_created(name: &str, types: &std::collections::HashMap<String, String>) -> bool {
    name.strip_suffix("_created")
        .and_then(|family| types.get(family))
        .is_some_and(|t| {
            matches!(
                t.as_str(),
                "counter" | "histogram" | "summary" | "gaugehistogram"
            )
        })
}

fn is_name_char(c: char, first: bool) -> bool {
    c == '_' || c == ':' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }
    fn name(&mut self, label: bool) -> Result<&'a str, String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = if label {
                c == '_' || c.is_ascii_alphabetic() || (self.pos > start && c.is_ascii_digit())
            } else {
                is_name_char(c, self.pos == start)
            };
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(format!("expected a name at column {}", start + 1));
        }
        Ok(&self.s[start..self.pos])
    }
    /// A double-quoted string with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, String> {
        if self.bump() != Some('"') {
            return Err(format!("expected '\"' at column {}", self.pos));
        }
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err("unterminated label value".into()),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some('n') => out.push('\n'),
                    Some(c) => return Err(format!("invalid escape sequence '\\{c}'")),
                    None => return Err("unterminated label value".into()),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

/// Go `strconv.ParseFloat` spellings used in expositions.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

fn parse_sample(line: &str, om: bool) -> Result<ParsedSample, String> {
    let mut c = Cursor { s: line, pos: 0 };
    let mut labels = Vec::new();
    let mut name = String::new();
    if c.peek() != Some('{') {
        name = c.name(false)?.to_string();
    }
    if c.peek() == Some('{') {
        c.bump();
        loop {
            c.skip_ws();
            match c.peek() {
                Some('}') => {
                    c.bump();
                    break;
                }
                // Prometheus 3's quoted UTF-8 metric name: `{"name", a="b"}`.
                Some('"') if name.is_empty() && labels.is_empty() => {
                    name = c.quoted()?;
                }
                Some(_) => {
                    let key = if c.peek() == Some('"') {
                        c.quoted()?
                    } else {
                        c.name(true)?.to_string()
                    };
                    c.skip_ws();
                    if c.bump() != Some('=') {
                        return Err(format!("expected '=' after label name {key:?}"));
                    }
                    c.skip_ws();
                    let value = c.quoted()?;
                    if labels.iter().any(|(k, _)| *k == key) {
                        return Err(format!("duplicate label name {key:?}"));
                    }
                    labels.push((key, value));
                }
                None => return Err("unterminated label set".into()),
            }
            c.skip_ws();
            match c.peek() {
                Some(',') => {
                    c.bump();
                }
                Some('}') => {}
                _ => return Err(format!("expected ',' or '}}' at column {}", c.pos + 1)),
            }
        }
    }
    if name.is_empty() {
        return Err("sample without a metric name".into());
    }
    if !matches!(c.peek(), Some(' ' | '\t')) {
        return Err(format!("expected a space before the value of {name}"));
    }
    c.skip_ws();
    let rest = &line[c.pos..];
    // OpenMetrics exemplars follow " # ".
    let rest = if om {
        rest.split(" # ").next().unwrap_or(rest)
    } else {
        rest
    };
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    let value_text = fields
        .next()
        .ok_or_else(|| format!("missing value for {name}"))?;
    let value = parse_value(value_text)
        .ok_or_else(|| format!("invalid value {value_text:?} for {name}"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(ts) if om => {
            let secs: f64 = ts
                .parse()
                .map_err(|_| format!("invalid timestamp {ts:?}"))?;
            Some((secs * 1000.0).round() as i64)
        }
        Some(ts) => Some(
            ts.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {ts:?}"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the sample of {name}"));
    }
    Ok(ParsedSample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_with_escapes_timestamps_and_specials() {
        let body = "# HELP sluice_up Whether it \\\\ works\n\
                    # TYPE sluice_up gauge\n\
                    sluice_up 1\n\
                    sluice_memory_usage_bytes{component=\"window\",path=\"C:\\\\tmp\\n\\\"q\\\"\",} 1.5e3 1700000000123\n\
                    \n\
                    weird_values{k=\"a\"} NaN\n\
                    weird_values{k=\"b\"} +Inf\n\
                    weird_values{k=\"c\"} -Inf\n\
                    # a free comment\n\
                    rpc_duration_seconds_bucket{le=\"0.5\"} 3\n\
                    rpc_duration_seconds_sum 1.2\n";
        let s = parse(body, Format::Text).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(
            s[0],
            ParsedSample {
                name: "sluice_up".into(),
                labels: vec![],
                value: 1.0,
                timestamp_ms: None
            }
        );
        assert_eq!(
            s[1].labels,
            vec![
                ("component".into(), "window".into()),
                ("path".into(), "C:\\tmp\n\"q\"".into())
            ]
        );
        assert_eq!(s[1].value, 1500.0);
        assert_eq!(s[1].timestamp_ms, Some(1_700_000_000_123));
        assert!(s[2].value.is_nan());
        assert_eq!(s[3].value, f64::INFINITY);
        assert_eq!(s[4].value, f64::NEG_INFINITY);
        assert_eq!(s[5].name, "rpc_duration_seconds_bucket");
        assert_eq!(s[6].name, "rpc_duration_seconds_sum");
    }

    #[test]
    fn openmetrics_requires_eof_and_uses_second_timestamps() {
        let body = "# TYPE jobs counter\n# HELP jobs Jobs.\njobs_total{q=\"x\"} 7 1700000000.5 # {trace_id=\"a\"} 1 1700000000\njobs_created{q=\"x\"} 1690000000\n# EOF\n";
        let s = parse(body, Format::OpenMetrics).unwrap();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_500));
        assert_eq!(s[0].value, 7.0);
        let err = parse("jobs_total 1\n", Format::OpenMetrics).unwrap_err();
        assert!(err.message.contains("# EOF"), "{err}");
        let err = parse("# EOF\njobs_total 1\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn utf8_quoted_names() {
        let s = parse("{\"my.metric\", \"lbl.x\"=\"1\"} 2\n", Format::Text).unwrap();
        assert_eq!(s[0].name, "my.metric");
        assert_eq!(s[0].labels, vec![("lbl.x".into(), "1".into())]);
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        for (body, line, want) in [
            ("ok 1\nbad{a=\"x} 1\n", 2, "unterminated"),
            ("m{a=\"\\q\"} 1\n", 1, "invalid escape"),
            ("m one\n", 1, "invalid value"),
            ("m 1 12.5\n", 1, "invalid timestamp"),
            ("m{a=\"1\",a=\"2\"} 1\n", 1, "duplicate label"),
            ("m{a=\"1\"}1\n", 1, "expected a space"),
            ("# TYPE m bogus\n", 1, "invalid metric type"),
            ("m\n", 1, "expected a space"),
        ] {
            let err = parse(body, Format::Text).expect_err(body);
            assert_eq!(err.line, line, "{body}: {err}");
            assert!(err.message.contains(want), "{body}: {err}");
        }
    }
}
