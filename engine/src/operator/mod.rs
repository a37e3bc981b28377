//! The operators a query is built from: WHERE ([`filter`]), the SELECT list
//! ([`project`]), window assignment ([`window`]) and grouped aggregation
//! ([`aggregate`]).

pub mod aggregate;
pub mod filter;
pub mod project;
pub mod window;
