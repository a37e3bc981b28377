//! WHERE: a compiled predicate; NULL and FALSE both drop the record.

use crate::sql::expr::Expr;
use crate::value::Value;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    predicate: Option<Expr>,
}

impl Filter {
    pub fn new(predicate: Option<Expr>) -> Self {
        Self { predicate }
    }

    /// Whether the record in `row` passes.
    #[inline]
    pub fn passes(&self, row: &[Value<'_>]) -> bool {
        self.predicate.as_ref().is_none_or(|p| p.test(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::expr::BinOp;

    #[test]
    fn null_does_not_pass() {
        let f = Filter::new(Some(Expr::Binary(
            BinOp::Gt,
            Box::new(Expr::Column(0)),
            Box::new(Expr::Literal(Value::Int(1))),
        )));
        assert!(f.passes(&[Value::Int(2)]));
        assert!(!f.passes(&[Value::Int(1)]));
        assert!(!f.passes(&[Value::Null]));
        assert!(Filter::default().passes(&[]));
    }
}
