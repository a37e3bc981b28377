//! End-to-end tests with real processes.

mod engine_admin;
mod engine_delivery;
mod engine_limits;
mod engine_seed_scripts;
mod engine_support;
