//! Typed decoding of a [`Node`] tree with serde: every error carries the
//! position of the node (or key) it is about, and unknown fields come with a
//! did-you-mean.
//!
//! In *lenient* mode (validation of not-yet-rendered runbooks) a scalar that
//! holds a template (`{{…}}`) is accepted where a number or boolean is
//! expected: its real value is only known at run time.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::{Key, Node, Pos, Value};

/// A decoding error, positioned when the failing node is known.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub pos: Pos,
    pub message: String,
}

impl DeError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        DeError {
            pos,
            message: message.into(),
        }
    }

    /// Attaches `pos` unless the error already knows where it is.
    fn at(mut self, pos: Pos) -> Self {
        if self.pos == Pos::UNKNOWN {
            self.pos = pos;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(Pos::UNKNOWN, msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Pos::UNKNOWN, unknown_message("field", field, expected))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Pos::UNKNOWN, unknown_message("value", variant, expected))
    }
}

/// `unknown field `stpes`, did you mean `steps`?` — or the list of choices when nothing is close.
pub fn unknown_message(what: &str, got: &str, expected: &[&str]) -> String {
    match did_you_mean(got, expected.iter().copied()) {
        Some(best) => format!("unknown {what} `{got}`, did you mean `{best}`?"),
        None if expected.is_empty() => format!("unknown {what} `{got}`"),
        None => format!(
            "unknown {what} `{got}`, expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The candidate closest to `got` when it is plausibly a typo of it.
pub fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (got.chars().count() / 3).clamp(1, 3);
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let close = candidates
        .iter()
        .map(|c| (edit_distance(got, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // A truncated name (`webhook` for `webhook_url`) is a likely slip too.
    close.or_else(|| {
        candidates
            .iter()
            .find(|c| got.len() >= 3 && (c.starts_with(got) || got.starts_with(**c)))
            .copied()
    })
}

/// Optimal-string-alignment distance: a swap of two neighbours counts as one edit (`stpes` → `steps`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Decodes `node` into `T`; `lenient` accepts templates where scalars are expected.
pub fn from_node<'a, T: de::Deserialize<'a>>(node: &'a Node, lenient: bool) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, lenient }).map_err(|e| e.at(node.pos))
}

/// A position-aware value: decoded from a node it records where the node was.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct At<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> At<T> {
    pub fn new(pos: Pos, value: T) -> Self {
        At { pos, value }
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

const AT_MARKER: &str = "__sluice_at";

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for At<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AtVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for AtVisitor<T> {
            type Value = At<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            // From a node: (line, column, value).
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<At<T>, A::Error> {
                let line: u32 = seq.next_element()?.unwrap_or(0);
                let column: u32 = seq.next_element()?.unwrap_or(0);
                let value = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing value"))?;
                Ok(At {
                    pos: Pos { line, column },
                    value,
                })
            }
            // From any other format: no position.
            fn visit_newtype_struct<D: de::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<At<T>, D::Error> {
                Ok(At {
                    pos: Pos::UNKNOWN,
                    value: T::deserialize(d)?,
                })
            }
        }
        deserializer.deserialize_newtype_struct(AT_MARKER, AtVisitor(std::marker::PhantomData))
    }
}

impl<T: serde::Serialize> serde::Serialize for At<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    lenient: bool,
}

impl<'a> NodeDe<'a> {
    fn templated(&self) -> bool {
        self.lenient && matches!(&self.node.value, Value::Str(s) if s.contains("{{"))
    }

    fn invalid(&self, expected: &str) -> DeError {
        let got = match &self.node.value {
            Value::Str(s) => format!("string `{}`", truncate(s)),
            Value::Int(i) => format!("integer `{i}`"),
            Value::Float(f) => format!("number `{f}`"),
            Value::Bool(b) => format!("boolean `{b}`"),
            _ => self.node.kind().to_string(),
        };
        DeError::new(self.node.pos, format!("expected {expected}, found {got}"))
    }

    fn int(&self) -> Result<i128, DeError> {
        match &self.node.value {
            Value::Int(i) => Ok(i128::from(*i)),
            Value::Str(s) if self.templated() => {
                let _ = s;
                Ok(0)
            }
            Value::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| self.invalid("an integer")),
            _ => Err(self.invalid("an integer")),
        }
    }

    fn float(&self) -> Result<f64, DeError> {
        match &self.node.value {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            Value::Str(_) if self.templated() => Ok(0.0),
            Value::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| self.invalid("a number")),
            _ => Err(self.invalid("a number")),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty, $name:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.int()?;
            let v = <$ty>::try_from(v).map_err(|_| {
                DeError::new(self.node.pos, format!("{v} is out of range for {}", $name))
            })?;
            visitor.$visit(v).map_err(|e: DeError| e.at(self.node.pos))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                lenient: self.lenient,
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                lenient: self.lenient,
            }),
        };
        result.map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            Value::Str(_) if self.templated() => false,
            Value::Str(s) if s == "true" => true,
            Value::Str(s) if s == "false" => false,
            Value::Str(s)
                if ["yes", "no", "on", "off", "y", "n"]
                    .contains(&s.to_ascii_lowercase().as_str()) =>
            {
                return Err(self.invalid("a boolean (`true` or `false`; YAML 1.2 reads `yes`/`no`/`on`/`off` as strings)"));
            }
            _ => return Err(self.invalid("a boolean")),
        };
        visitor
            .visit_bool(b)
            .map_err(|e: DeError| e.at(self.node.pos))
    }

    int_method!(deserialize_i8, visit_i8, i8, "i8");
    int_method!(deserialize_i16, visit_i16, i16, "i16");
    int_method!(deserialize_i32, visit_i32, i32, "i32");
    int_method!(deserialize_i64, visit_i64, i64, "i64");
    int_method!(deserialize_u8, visit_u8, u8, "an unsigned 8-bit integer");
    int_method!(
        deserialize_u16,
        visit_u16,
        u16,
        "an unsigned 16-bit integer"
    );
    int_method!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    int_method!(deserialize_u64, visit_u64, u64, "a non-negative integer");

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = self.float()?;
        visitor
            .visit_f64(f)
            .map_err(|e: DeError| e.at(self.node.pos))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let result = match &self.node.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            // YAML users write `version: 1.2` or `code: 200` for strings; accept scalars.
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => return Err(self.invalid("a string")),
        };
        result.map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: DeError| e.at(self.node.pos))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor
                .visit_unit()
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.invalid("nothing (null)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        if name == AT_MARKER {
            return visitor
                .visit_seq(AtSeq {
                    node: self,
                    step: 0,
                })
                .map_err(|e: DeError| e.at(pos));
        }
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.at(pos))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqDe {
                    items: items.iter(),
                    lenient: self.lenient,
                })
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.invalid("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor
                .visit_map(MapDe {
                    entries: entries.iter(),
                    value: None,
                    lenient: self.lenient,
                })
                .map_err(|e: DeError| e.at(self.node.pos)),
            // `key:` with nothing after it is an empty mapping.
            Value::Null => visitor
                .visit_map(MapDe {
                    entries: [].iter(),
                    value: None,
                    lenient: self.lenient,
                })
                .map_err(|e: DeError| e.at(self.node.pos)),
            _ => Err(self.invalid("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(de::IntoDeserializer::<DeError>::into_deserializer(
                    s.as_str(),
                ))
                .map_err(|e: DeError| e.at(pos)),
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor
                    .visit_enum(EnumDe {
                        key,
                        value: NodeDe {
                            node: value,
                            lenient: self.lenient,
                        },
                    })
                    .map_err(|e: DeError| e.at(pos))
            }
            _ => Err(self.invalid("a name or a mapping with one key")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// Yields line, column, then the value, for [`At`].
struct AtSeq<'a> {
    node: NodeDe<'a>,
    step: u8,
}

impl<'de> de::SeqAccess<'de> for AtSeq<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.step += 1;
        match self.step {
            1 => seed
                .deserialize(self.node.node.pos.line.into_deserializer())
                .map(Some),
            2 => seed
                .deserialize(self.node.node.pos.column.into_deserializer())
                .map(Some),
            3 => seed.deserialize(self.node).map(Some),
            _ => Ok(None),
        }
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    lenient: bool,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDe {
                    node,
                    lenient: self.lenient,
                })
                .map(Some)
                .map_err(|e: DeError| e.at(node.pos)),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a Node>,
    lenient: bool,
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                let de: de::value::BorrowedStrDeserializer<'de, DeError> =
                    de::value::BorrowedStrDeserializer::new(&key.name);
                seed.deserialize(de)
                    .map(Some)
                    .map_err(|e: DeError| e.at(key.pos))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| DeError::new(Pos::UNKNOWN, "value without a key"))?;
        seed.deserialize(NodeDe {
            node,
            lenient: self.lenient,
        })
        .map_err(|e: DeError| e.at(node.pos))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumDe<'a> {
    key: &'a Key,
    value: NodeDe<'a>,
}

impl<'de> de::EnumAccess<'de> for EnumDe<'de> {
    type Error = DeError;
    type Variant = NodeDe<'de>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'de>), DeError> {
        let de: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(&self.key.name);
        let v = seed
            .deserialize(de)
            .map_err(|e: DeError| e.at(self.key.pos))?;
        Ok((v, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        match self.node.value {
            Value::Null => Ok(()),
            _ => Err(self.invalid("nothing")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Http {
        url: At<String>,
        #[serde(default)]
        expect: Option<u16>,
        #[serde(default)]
        #[allow(dead_code)]
        headers: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn unknown_fields_point_at_the_key_with_a_suggestion() {
        let node = parse("url: http://x\nexpcet: 200\n").unwrap();
        let err = from_node::<Http>(&node, false).unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 1 });
        assert_eq!(
            err.message,
            "unknown field `expcet`, did you mean `expect`?"
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let node = parse("url: http://x\nexpect: [1]\n").unwrap();
        let err = from_node::<Http>(&node, false).unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 9 });
        assert_eq!(err.message, "expected an integer, found a list");
    }

    #[test]
    fn missing_fields_point_at_the_mapping() {
        let node = parse("a:\n  expect: 200\n").unwrap();
        let err = from_node::<Http>(node.get("a").unwrap(), false).unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(
            err.message.contains("missing field `url`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn templates_are_accepted_for_numbers_only_when_lenient() {
        let node = parse("url: http://x\nexpect: '{{params.code}}'\n").unwrap();
        assert!(from_node::<Http>(&node, true).is_ok());
        assert!(from_node::<Http>(&node, false).is_err());
        let rendered = parse("url: http://x\nexpect: '204'\n").unwrap();
        assert_eq!(
            from_node::<Http>(&rendered, false).unwrap().expect,
            Some(204)
        );
    }

    #[test]
    fn at_records_positions() {
        let node = parse("url: http://x\n").unwrap();
        let http = from_node::<Http>(&node, false).unwrap();
        assert_eq!(http.url.pos, Pos { line: 1, column: 6 });
        assert_eq!(*http.url, "http://x");
    }
}
