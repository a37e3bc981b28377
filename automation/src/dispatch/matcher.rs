//! Label matchers in Alertmanager's syntax: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"` (regexes fully anchored; a missing label
//! matches as the empty string).

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// A label set: sorted name → value.
pub type LabelSet = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("matcher {0:?}: expected name, one of = != =~ !~, and a value")]
    Syntax(String),
    #[error("matcher {0:?}: invalid label name")]
    LabelName(String),
    #[error("matcher {input:?}: invalid regex: {reason}")]
    Regex { input: String, reason: String },
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, MatcherError> {
        if !valid_label_name(name) {
            return Err(MatcherError::LabelName(name.to_string()));
        }
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError::Regex {
                    input: format!("{name}=~{value:?}"),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Parses `name="value"` (quotes optional for simple values).
    pub fn parse(input: &str) -> Result<Self, MatcherError> {
        let s = input.trim();
        let syntax = || MatcherError::Syntax(input.to_string());
        let pos = s.find(['=', '!']).ok_or_else(syntax)?;
        let name = s[..pos].trim();
        let rest = &s[pos..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Equal, v)
        } else {
            return Err(syntax());
        };
        let value = value.trim();
        let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            unescape(&value[1..value.len() - 1]).ok_or_else(syntax)?
        } else if value.contains('"') {
            return Err(syntax());
        } else {
            value.to_string()
        };
        Self::new(name, op, &value)
    }

    pub fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// All matchers must match.
pub fn matches_all(matchers: &[Matcher], labels: &LabelSet) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_all_operators() {
        let l = labels(&[
            ("alertname", "CircuitBreakerOpen"),
            ("severity", "critical"),
        ]);
        assert!(
            Matcher::parse(r#"severity="critical""#)
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::parse("severity=critical").unwrap().matches(&l));
        assert!(
            Matcher::parse(r#"severity!="warning""#)
                .unwrap()
                .matches(&l)
        );
        assert!(
            Matcher::parse(r#"alertname=~"Circuit.*|Memory.*""#)
                .unwrap()
                .matches(&l)
        );
        assert!(
            !Matcher::parse(r#"alertname=~"Circuit""#)
                .unwrap()
                .matches(&l),
            "anchored"
        );
        assert!(
            Matcher::parse(r#"team!~".+""#).unwrap().matches(&l),
            "missing label is empty"
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            Matcher::parse("severity"),
            Err(MatcherError::Syntax(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"1x="a""#),
            Err(MatcherError::LabelName(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a=~"(""#),
            Err(MatcherError::Regex { .. })
        ));
        assert!(matches!(
            Matcher::parse(r#"a=b"c"#),
            Err(MatcherError::Syntax(_))
        ));
    }

    #[test]
    fn quoted_values_unescape() {
        let m = Matcher::parse(r#"msg="a \"b\"""#).unwrap();
        assert_eq!(m.value, "a \"b\"");
    }
}
