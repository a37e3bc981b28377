//! The value of one field of a record while a query runs. Strings borrow from
//! the input buffer when they need no unescaping, so most records are decoded
//! and filtered without a heap allocation.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// A SQL value: JSON's scalars with integers and floats kept apart.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
}

impl<'a> Value<'a> {
    /// A copy that owns its string (for state kept across records).
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
        }
    }

    /// A copy borrowing this value's string (never allocates).
    pub fn borrowed(&self) -> Value<'_> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(Cow::Borrowed(s)),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Numeric view; strings and booleans are not numbers.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// SQL truth: only `TRUE` passes a WHERE/HAVING (NULL and FALSE do not).
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
        }
    }

    /// SQL comparison: `None` when either side is NULL or the types do not compare.
    pub fn sql_cmp(&self, other: &Value<'_>) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                self.as_f64()?.partial_cmp(&other.as_f64()?)
            }
            (Value::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Identity used for group keys: same variant and same payload.
    pub fn key_eq(&self, other: &Value<'_>) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => a == b,
            _ => false,
        }
    }

    /// Hash consistent with [`Value::key_eq`].
    pub fn key_hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, *b).hash(h),
            Value::Int(i) => (2u8, *i).hash(h),
            Value::Float(f) => (3u8, f.to_bits()).hash(h),
            Value::Str(s) => {
                4u8.hash(h);
                s.as_ref().hash(h);
            }
        }
    }

    /// Text form used for message keys and string functions.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed(""),
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Value::Int(i) => Cow::Owned(itoa::Buffer::new().format(*i).to_owned()),
            Value::Float(f) => Cow::Owned(format_float(*f)),
            Value::Str(s) => Cow::Borrowed(s),
        }
    }

    /// Estimated heap + inline size, for resource accounting.
    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Value::Str(Cow::Owned(s)) => s.capacity(),
                _ => 0,
            }
    }

    /// Converts to a JSON value (state export, diagnostics).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
        }
    }

    /// Converts from a JSON scalar; objects and arrays become their JSON text.
    pub fn from_json(v: &serde_json::Value) -> Value<'static> {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(Cow::Owned(s.clone())),
            other => Value::Str(Cow::Owned(other.to_string())),
        }
    }
}

/// Shortest round-trip text of a float (`1.5`, `2.0`).
pub fn format_float(f: f64) -> String {
    if f.is_finite() {
        zmij::Buffer::new().format_finite(f).to_owned()
    } else {
        "null".to_owned()
    }
}

/// A group key wrapper hashing and comparing with SQL key identity.
#[derive(Debug, Clone)]
pub struct KeyValue(pub Value<'static>);

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.key_eq(&other.0)
    }
}
impl Eq for KeyValue {}
impl Hash for KeyValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key_hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert_eq!(
            Value::Int(2).sql_cmp(&Value::Float(2.5)),
            Some(Ordering::Less)
        );
        assert_eq!(Value::Int(2).sql_cmp(&Value::Null), None);
        assert_eq!(Value::Str("a".into()).sql_cmp(&Value::Int(1)), None);
    }

    #[test]
    fn key_identity_distinguishes_int_and_float() {
        assert!(!Value::Int(1).key_eq(&Value::Float(1.0)));
        assert!(Value::Str("x".into()).key_eq(&Value::Str(Cow::Owned("x".into()))));
    }
}
