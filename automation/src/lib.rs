//! Sluice automation: runbooks, alert rules on live metrics, schedules and the service.
//!
//! One module per concept; see docs/ for the user-facing reference.

pub mod api;
pub mod cli;
pub mod diagnostic;
pub mod dispatch;
pub mod http_client;
pub mod process;
pub mod schedule;
pub mod trigger;
