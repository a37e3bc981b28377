//! PromQL evaluation with Prometheus 3 semantics over `promql-parser`'s AST,
//! and the in-memory, Gorilla-compressed time-series store it reads from.
//!
//! - [`value`]: labels, samples, series, result values, staleness markers.
//! - [`storage::Queryable`]: what the evaluator reads through.
//! - [`tsdb::MemStorage`]: the in-memory head (compressed chunks, retention).
//! - [`eval::Evaluator`]: instant and range evaluation; [`eval::check_supported`].
//! - [`promqltest`]: runner for Prometheus' promqltest script format.

mod aggregate;
mod binary;
pub mod eval;
mod functions;
pub mod promqltest;
pub mod storage;
pub mod tsdb;
pub mod value;

pub use eval::{EvalError, Evaluator, check_supported};
pub use storage::Queryable;
pub use tsdb::MemStorage;
pub use value::{Labels, STALE_NAN, Sample, Series, Value, is_stale};

/// Parses a PromQL expression (re-export of `promql_parser::parser::parse`).
pub fn parse(expr: &str) -> Result<promql_parser::parser::Expr, String> {
    promql_parser::parser::parse(expr)
}
