//! Test harness: starts real servers (Tansu, the engine, SMTP, Slack recorder) on free loopback ports.

pub mod engine_process;
pub mod kafka;
pub mod tansu;
