//! Secrets: a wrapper that never shows its value in Debug, Display or
//! serialized output, and a redactor that scrubs known secret values from
//! anything recorded (run inputs, outputs, logs, errors).

use std::borrow::Cow;
use std::fmt;

/// A secret string (token, password, webhook URL). Only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

pub const MASK: &str = "***";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Replaces every known secret value by `***` in text and JSON.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    // Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

impl Redactor {
    /// Secrets shorter than 4 characters are ignored: masking `a` would mangle every record.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut values: Vec<String> = secrets
            .into_iter()
            .map(|s| s.expose().to_string())
            .filter(|s| s.len() >= 4)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    pub fn add(&mut self, secret: &Secret) {
        if secret.expose().len() >= 4 && !self.values.iter().any(|v| v == secret.expose()) {
            self.values.push(secret.expose().to_string());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// `value` with every secret masked; returned as is when there are none.
    pub fn json(&self, value: serde_json::Value) -> serde_json::Value {
        if self.values.is_empty() {
            return value;
        }
        self.mask(&value)
    }

    /// Like [`Redactor::json`] for a value the caller keeps: borrowed as is
    /// when there are no secrets, so nothing is copied.
    pub fn json_ref<'a>(&self, value: &'a serde_json::Value) -> Cow<'a, serde_json::Value> {
        if self.values.is_empty() {
            Cow::Borrowed(value)
        } else {
            Cow::Owned(self.mask(value))
        }
    }

    fn mask(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            J::String(s) => J::String(self.text(s)),
            J::Array(items) => J::Array(items.iter().map(|v| self.mask(v)).collect()),
            J::Object(map) => {
                J::Object(map.iter().map(|(k, v)| (k.clone(), self.mask(v))).collect())
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }

    #[test]
    fn redactor_scrubs_nested_json() {
        let r = Redactor::new([&Secret::new("hunter2-token")]);
        let v = serde_json::json!({"h": ["Bearer hunter2-token"], "n": 1});
        let want = serde_json::json!({"h": ["Bearer ***"], "n": 1});
        assert_eq!(*r.json_ref(&v), want);
        assert_eq!(r.json(v.clone()), want);
        // Without secrets nothing is copied.
        let none = Redactor::new(std::iter::empty::<&Secret>());
        assert!(matches!(none.json_ref(&v), Cow::Borrowed(_)));
        assert_eq!(none.json(v.clone()), v);
    }
}
