//! The HTTP API of the automation service: bearer tokens with roles, an audit
//! log of every mutation, one error type, bounded bodies.

pub mod alertmanager;
pub mod audit;
pub mod auth;
pub mod console;
pub mod error;
pub mod openapi;
pub mod run_events;
pub mod service;
pub mod session;
pub mod signature;
pub mod slack;

pub use audit::{AuditEvent, AuditSink, JsonlAuditLog, MemoryAuditLog};
pub use auth::{Principal, Role, TokenSet};
pub use error::ApiError;

/// Largest request body any endpoint accepts (webhooks included).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
