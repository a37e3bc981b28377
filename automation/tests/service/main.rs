//! `sluice serve` in-process: the API, triggers and guards, reload, schedules.
//! Process-level durability and high-availability tests (kill -9, two
//! instances on PostgreSQL) live in the workspace `tests/` crate.

mod api;
mod console;
mod durability;
mod ecosystem;
mod harness;
mod triggers;
