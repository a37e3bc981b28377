//! A YAML document as a tree of nodes that remember where they came from.
//!
//! `serde-saphyr` parses the text (its `Spanned<T>` gives every node's
//! line/column); the tree is then decoded into typed structs by
//! [`de::from_node`], whose errors point at the node that caused them. Keeping
//! the tree lets runbook steps be templated first and typed afterwards, and
//! lets validation report every problem of a file instead of the first one.

pub mod de;

use std::fmt;

use serde::Deserialize;
use serde::de::{self as sde, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

pub use de::{DeError, from_node};

/// 1-based line and column of a node; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    fn from_location(loc: &serde_saphyr::Location) -> Self {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// The value of a node. Mappings keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Node {
    pub fn new(pos: Pos, value: Value) -> Self {
        Node { pos, value }
    }

    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of node this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Visits every string scalar (not keys) with its position.
    pub fn for_each_str(&self, f: &mut dyn FnMut(&str, Pos)) {
        match &self.value {
            Value::Str(s) => f(s, self.pos),
            Value::Seq(items) => items.iter().for_each(|n| n.for_each_str(f)),
            Value::Map(entries) => entries.iter().for_each(|(_, n)| n.for_each_str(f)),
            _ => {}
        }
    }

    /// Rebuilds the tree with every string scalar passed through `f`.
    pub fn try_map_str<E>(
        &self,
        f: &mut dyn FnMut(&str, Pos) -> Result<String, E>,
    ) -> Result<Node, E> {
        let value = match &self.value {
            Value::Str(s) => Value::Str(f(s, self.pos)?),
            Value::Seq(items) => Value::Seq(
                items
                    .iter()
                    .map(|n| n.try_map_str(f))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, n)| Ok((k.clone(), n.try_map_str(f)?)))
                    .collect::<Result<_, E>>()?,
            ),
            other => other.clone(),
        };
        Ok(Node {
            pos: self.pos,
            value,
        })
    }

    /// The node as plain JSON (positions dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A node (without positions) from JSON, so rendered values can be typed again.
    pub fn from_json(value: &serde_json::Value, pos: Pos) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(items) => Value::Seq(items.iter().map(|v| Node::from_json(v, pos)).collect()),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                pos,
                                name: k.clone(),
                            },
                            Node::from_json(v, pos),
                        )
                    })
                    .collect(),
            ),
        };
        Node { pos, value }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document into a node tree. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // YAML 1.2 booleans only: with YAML 1.1's `y`/`n`/`on`/`off`, a parameter
    // named `n` would become `false` (and `no` a boolean where a string was meant).
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        strict_booleans: true,
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<RawValue>>>(text, options) {
        Ok(Some(spanned)) => Ok(node_of(spanned)),
        Ok(None) => Ok(Node::new(Pos { line: 1, column: 1 }, Value::Null)),
        Err(err) => {
            let err = err.without_snippet();
            let pos = err
                .location()
                .map(|l| Pos::from_location(&l))
                .unwrap_or_default();
            let message = user_message(plain_message(&err.to_string()));
            Err(SyntaxError { pos, message })
        }
    }
}

/// saphyr's message carries its own "at line X, column Y" suffix; the diagnostic prints the position itself.
fn plain_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text).trim();
    let cut = first.find(" at line ").map_or(first, |i| &first[..i]);
    cut.trim_end_matches('.').to_string()
}

/// Rewords saphyr messages that speak to Rust programmers (options, API names) for runbook authors.
fn user_message(message: String) -> String {
    if message.starts_with("multiple YAML documents detected") {
        "a file holds one YAML document; a second one starts here".into()
    } else if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        format!("duplicate key `{key}`")
    } else if message.starts_with("budget breached") {
        "the document is too large (too many nodes, e.g. from alias expansion)".into()
    } else if message.starts_with("recursion limit exceeded") {
        "the document is nested too deeply".into()
    } else {
        message
    }
}

fn node_of(spanned: Spanned<RawValue>) -> Node {
    Node {
        pos: Pos::from_location(&spanned.referenced),
        value: spanned.value.0,
    }
}

/// Deserialized by saphyr; builds the tree with positions.
struct RawValue(Value);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: sde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor).map(RawValue)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: sde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
            items.push(node_of(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawValue>>()? {
            let pos = Pos::from_location(&key.referenced);
            let name = match key.value.0 {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(sde::Error::custom("mapping keys must be scalars"));
                }
            };
            let value = map.next_value::<Spanned<RawValue>>()?;
            entries.push((Key { pos, name }, node_of(value)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_positions() {
        let node = parse("name: x\nsteps:\n  - id: a\n    sleep: 1s\n").unwrap();
        let steps = node.get("steps").unwrap();
        let Value::Seq(items) = &steps.value else {
            panic!("not a list")
        };
        let sleep = items[0].get("sleep").unwrap();
        assert_eq!(
            sleep.pos,
            Pos {
                line: 4,
                column: 12
            }
        );
        assert_eq!(sleep.as_str(), Some("1s"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("name: x\nsteps: [a, b\n").unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
        assert!(!err.message.contains(" at line "), "{}", err.message);
    }

    #[test]
    fn yaml_1_1_boolean_spellings_stay_strings() {
        let node = parse("n: 1\ny: 2\non: 3\nno: 4\nv: yes\nt: true\n").unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(keys, ["n", "y", "on", "no", "v", "t"]);
        assert_eq!(node.get("v").unwrap().as_str(), Some("yes"));
        assert_eq!(node.get("t").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("name: x\nname: y\n").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err:?}");
    }
}
