//! End-to-end tests with real processes.

mod kafka_steps;
mod notify;
mod run_store;
mod support;
