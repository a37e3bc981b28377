//! sluice-engine: a streaming SQL engine over Kafka with an operational surface
//! (circuit breakers, resource manager, watermarks, admin API, metrics).
//!
//! One module per concept: [`config`], [`sql`], [`operator`], [`watermark`],
//! [`query`] (one running query), [`record`] (JSON in/out).

pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod operator;
pub mod query;
pub mod record;
pub mod sql;
pub mod value;
pub mod watermark;
