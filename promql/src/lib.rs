//! PromQL evaluation with Prometheus 3 semantics over `promql-parser`'s AST,
//! and the in-memory, Gorilla-compressed time-series store it reads from.
