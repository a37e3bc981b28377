//! The SELECT list: evaluates output expressions and writes the JSON row,
//! plus the message key taken from a chosen output column.

use crate::record::JsonWriter;
use crate::sql::OutputColumn;
use crate::sql::expr::Expr;
use crate::value::Value;

#[derive(Debug, Clone)]
pub struct Projection {
    exprs: Vec<Expr>,
    writer: JsonWriter,
    key_column: Option<usize>,
}

impl Projection {
    /// `key_column` is an index into `outputs`.
    pub fn new(outputs: &[OutputColumn], key_column: Option<usize>) -> Self {
        let names: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
        Self {
            exprs: outputs.iter().map(|o| o.expr.clone()).collect(),
            writer: JsonWriter::new(&names),
            key_column,
        }
    }

    /// Writes the output row for `row` into `out`.
    #[inline]
    pub fn write(&self, row: &[Value<'_>], out: &mut Vec<u8>) {
        self.writer.write_row(out, |i| self.exprs[i].eval(row));
    }

    /// Writes the key column's text into `out`; false when no key column is set.
    pub fn write_key(&self, row: &[Value<'_>], out: &mut Vec<u8>) -> bool {
        match self.key_column {
            Some(k) => {
                out.extend_from_slice(self.exprs[k].eval(row).to_text().as_bytes());
                true
            }
            None => false,
        }
    }
}
