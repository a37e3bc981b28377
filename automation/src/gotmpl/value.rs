//! The values a template works on, mirroring the Go types Prometheus hands to
//! its templates (`map[string]string` labels, `float64` values, structs).

use std::collections::BTreeMap;

/// A Go value as seen by `text/template`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`, and the result of a missing value.
    Nil,
    Bool(bool),
    /// Go `int` (integer literals, lengths).
    Int(i64),
    /// Go `float64` (sample values, float literals).
    Float(f64),
    Str(String),
    /// A Go map; keys iterate sorted, as `range` does in Go. A missing key reads as
    /// `""`, the zero value of the `map[string]string` label maps templates see.
    Map(BTreeMap<String, Value>),
    List(Vec<Value>),
    /// A Go struct: named fields in declaration order.
    Struct(Vec<(String, Value)>),
}

impl Value {
    /// Go's notion of truth in `if`/`with`/`and`/`or`/`not`: false, 0, nil and empty values are false.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Struct(_) => true,
        }
    }

    /// Go type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
            Value::List(_) => "[]interface {}",
            Value::Struct(_) => "struct",
        }
    }

    /// A `map[string]string` from label pairs.
    pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }

    /// Reads field or key `name`, as `.name` does on this value.
    pub fn field(&self, name: &str) -> Result<Value, String> {
        match self {
            Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Str(String::new()))),
            Value::Struct(fields) => fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("can't evaluate field {name} in type struct")),
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }
}
