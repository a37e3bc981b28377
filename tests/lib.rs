//! Test harness: starts real servers (the engine, its embedded Kafka broker,
//! SMTP, a Slack recorder) on free loopback ports, and runs the shipped
//! runbooks through the library's executor against them.

pub mod engine;
pub mod net;
pub mod notify;
pub mod sluice;
pub mod world;
