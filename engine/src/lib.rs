//! sluice-engine: a streaming SQL engine over Kafka with an operational surface
//! (circuit breakers, resource manager, watermarks, admin API, metrics).
//!
//! One module per concept: [`config`], [`sql`], [`operator`], [`watermark`],
//! [`query`] (one running query), [`record`] (JSON in/out).

pub mod admin;
pub mod circuit_breaker;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diagnostic;
pub mod embedded;
pub mod engine;
pub mod exposition;
pub mod fault;
pub mod history;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod query;
pub mod record;
pub mod resources;
pub mod run;
pub mod sink;
pub mod source;
pub mod sql;
pub mod state;
pub mod value;
pub mod watermark;
