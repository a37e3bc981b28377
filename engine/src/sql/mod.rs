//! Continuous SQL: parsing ([`parse`]), planning into compiled expressions
//! ([`plan`]) and the expressions themselves ([`expr`]).

pub mod expr;
pub mod parse;
pub mod plan;

pub use plan::{AggFunc, Aggregate, OutputColumn, QueryPlan, WindowKind, WindowPlan, plan};

use std::fmt;

/// Why a query cannot run, with its position inside the SQL text when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub message: String,
    /// 1-based (line, column) inside the SQL text.
    pub position: Option<(usize, usize)>,
}

impl PlanError {
    pub fn new(message: impl Into<String>, position: Option<(usize, usize)>) -> Self {
        Self {
            message: message.into(),
            position,
        }
    }

    /// An error located at an AST node.
    pub fn at(message: impl Into<String>, node: &impl sqlparser::ast::Spanned) -> Self {
        Self::new(message, parse::position_of(node))
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{} (at SQL {l}:{c})", self.message),
            None => f.write_str(&self.message),
        }
    }
}
