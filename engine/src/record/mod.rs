//! JSON records in and out: [`decode`] reads only the fields a query uses,
//! [`encode`] writes results straight into an output buffer.

pub mod decode;
pub mod encode;

pub use decode::{DecodeError, FieldIndex, decode_into};
pub use encode::{JsonWriter, write_value};

use crate::value::Value;

/// Turns an empty buffer of one lifetime into an empty buffer of another,
/// keeping its allocation (std collects a same-layout `into_iter().map()` in place).
pub fn recycle<'b>(mut v: Vec<Value<'_>>) -> Vec<Value<'b>> {
    v.clear();
    v.into_iter().map(|_| Value::Null).collect()
}
