//! End-to-end tests with real processes.
//!
//! `library`: every shipped runbook run through the executor against real
//! `sluice-engine` processes (embedded Kafka broker, fault injection), with
//! the effect checked from the engine's own metrics and state.

mod kafka_steps;
mod library;
mod multi_host;
mod notify_step;
mod replay;
mod run_store;
mod service_ha;
mod support;
mod up;

mod console;
mod slack_approvals;
mod vault;

mod engine_admin;
mod engine_delivery;
mod engine_limits;
mod engine_seed_scripts;
mod engine_support;
