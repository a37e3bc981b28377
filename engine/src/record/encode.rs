//! Writes result rows as compact JSON objects straight into a byte buffer;
//! the `{"name":` prefixes are escaped once when the query is built.

use crate::value::Value;

/// Writes rows with a fixed list of column names.
#[derive(Debug, Clone)]
pub struct JsonWriter {
    prefixes: Vec<Vec<u8>>,
}

impl JsonWriter {
    pub fn new(names: &[String]) -> Self {
        let prefixes = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut p = Vec::with_capacity(n.len() + 4);
                p.push(if i == 0 { b'{' } else { b',' });
                escape_str(&mut p, n);
                p.push(b':');
                p
            })
            .collect();
        Self { prefixes }
    }

    /// Writes one object whose column `i` is `values(i)`.
    #[inline]
    pub fn write_row<'v>(&self, out: &mut Vec<u8>, mut value: impl FnMut(usize) -> Value<'v>) {
        if self.prefixes.is_empty() {
            out.extend_from_slice(b"{}");
            return;
        }
        for (i, prefix) in self.prefixes.iter().enumerate() {
            out.extend_from_slice(prefix);
            write_value(out, &value(i));
        }
        out.push(b'}');
    }
}

/// Appends one value as JSON (non-finite floats become `null`).
#[inline]
pub fn write_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            out.extend_from_slice(zmij::Buffer::new().format_finite(*f).as_bytes())
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => escape_str(out, s),
    }
}

/// Appends `s` as a JSON string literal.
#[inline]
pub fn escape_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_compact_json() {
        let w = JsonWriter::new(&["a".into(), "q\"".into(), "f".into(), "n".into()]);
        let vals = [
            Value::Int(-3),
            Value::Str("x\"y\n".into()),
            Value::Float(1.5),
            Value::Float(f64::NAN),
        ];
        let mut out = Vec::new();
        w.write_row(&mut out, |i| vals[i].clone());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#"{"a":-3,"q\"":"x\"y\n","f":1.5,"n":null}"#);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["f"], 1.5);
    }
}
