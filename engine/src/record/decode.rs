//! Decodes a JSON object into the slots a query reads. Unreferenced keys are
//! skipped with `IgnoredAny`; strings without escapes borrow from the input.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::value::Value;

/// The field names a query reads; slot `i` holds field `i`.
#[derive(Debug, Clone)]
pub struct FieldIndex {
    names: Vec<Box<str>>,
}

impl FieldIndex {
    pub fn new(names: &[String]) -> Self {
        Self {
            names: names.iter().map(|n| n.as_str().into()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    #[inline]
    fn slot(&self, key: &str) -> Option<usize> {
        // Queries read a handful of fields: a length-first linear scan beats hashing.
        self.names
            .iter()
            .position(|n| n.len() == key.len() && n.as_bytes() == key.as_bytes())
    }
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON record: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// Fills `slots` (resized to the index) from the JSON object in `input`;
/// missing fields are NULL.
pub fn decode_into<'de>(
    input: &'de [u8],
    index: &FieldIndex,
    slots: &mut Vec<Value<'de>>,
) -> Result<(), DecodeError> {
    slots.clear();
    slots.resize(index.len(), Value::Null);
    let mut de = serde_json::Deserializer::from_slice(input);
    RecordSeed { index, slots }.deserialize(&mut de)?;
    de.end()?;
    Ok(())
}

struct RecordSeed<'s, 'de> {
    index: &'s FieldIndex,
    slots: &'s mut Vec<Value<'de>>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(KeySeed(self.index))? {
            match slot {
                Some(i) => self.slots[i] = map.next_value_seed(ValueSeed)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Resolves a key to its slot without allocating.
struct KeySeed<'s>(&'s FieldIndex);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.slot(v))
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(i64::try_from(v)
            .map(Value::Int)
            .unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(Value::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }
    // Nested objects and arrays are kept as their JSON text.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value<'de>, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Value::Str(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Value<'de>, A::Error> {
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Value::Str(Cow::Owned(v.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_indexed_fields_and_borrows_plain_strings() {
        let index = FieldIndex::new(&["b".into(), "s".into(), "missing".into()]);
        let input = br#"{"a":{"deep":[1,2]},"b":2.5,"s":"plain","e":"x\ny"}"#;
        let mut slots = Vec::new();
        decode_into(input, &index, &mut slots).unwrap();
        assert_eq!(slots[0], Value::Float(2.5));
        assert!(matches!(&slots[1], Value::Str(Cow::Borrowed("plain"))));
        assert_eq!(slots[2], Value::Null);
    }

    #[test]
    fn escaped_strings_and_nested_values_are_owned() {
        let index = FieldIndex::new(&["e".into(), "n".into()]);
        let mut slots = Vec::new();
        decode_into(br#"{"e":"x\ny","n":{"k":[1]}}"#, &index, &mut slots).unwrap();
        assert_eq!(slots[0], Value::Str("x\ny".into()));
        assert_eq!(slots[1], Value::Str(r#"{"k":[1]}"#.into()));
    }

    #[test]
    fn rejects_non_objects_and_trailing_garbage() {
        let index = FieldIndex::new(&["a".into()]);
        let mut slots = Vec::new();
        assert!(decode_into(b"[1]", &index, &mut slots).is_err());
        assert!(decode_into(br#"{"a":1} x"#, &index, &mut slots).is_err());
    }
}
