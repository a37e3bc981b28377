//! Sluice automation: runbooks, alert rules on live metrics, schedules and the service.
//!
//! One module per concept; see docs/ for the user-facing reference.

pub mod alert;
pub mod api;
pub mod cli;
pub mod config;
pub mod diagnostic;
pub mod dispatch;
pub mod duration;
pub mod exec;
pub mod gotmpl;
pub mod http_client;
pub mod notify;
pub mod process;
pub mod replay;
pub mod rules;
pub mod runbook;
pub mod schedule;
pub mod scrape;
pub mod secret;
pub mod service;
pub mod store;
pub mod target;
pub mod trigger;
pub mod yaml;
