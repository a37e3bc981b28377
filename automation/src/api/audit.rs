//! The audit log: every mutating request (who, what, when, from where, and the
//! outcome) is recorded, whether it succeeded or was refused.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::auth::Principal;

/// One audited mutation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    /// Principal name, or `anonymous` when the request had no valid token.
    pub who: String,
    pub role: Option<String>,
    /// `METHOD /path` (the query string is left out: it may carry secrets).
    pub what: String,
    /// Peer address of the connection.
    pub from: Option<String>,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Where audit events go. Writes must not be lost silently: an error is logged.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: &AuditEvent) -> std::io::Result<()>;
}

/// Appends one JSON object per line to a file. Each line is written at once
/// (a crash of the process loses nothing: it is in the kernel); the disk is
/// synced in groups every [`SYNC_EVERY`] by a background thread, so a burst of
/// webhook deliveries does not pay one fsync each. A power loss can lose at
/// most the last [`SYNC_EVERY`] of lines.
pub struct JsonlAuditLog {
    path: PathBuf,
    inner: Arc<Shared>,
}

struct Shared {
    file: Mutex<std::fs::File>,
    dirty: std::sync::atomic::AtomicBool,
}

/// How often written audit lines are synced to disk.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl JsonlAuditLog {
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let inner = Arc::new(Shared {
            file: Mutex::new(file),
            dirty: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("audit-sync".into())
            .spawn(move || {
                // Ends when the log is dropped.
                while let Some(shared) = weak.upgrade() {
                    shared.sync();
                    drop(shared);
                    std::thread::sleep(SYNC_EVERY);
                }
            })?;
        Ok(Self { path, inner })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Shared {
    fn sync(&self) {
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, "Audit log sync failed.");
            }
        }
    }
}

impl Drop for JsonlAuditLog {
    fn drop(&mut self) {
        self.inner.sync();
    }
}

impl AuditSink for JsonlAuditLog {
    fn record(&self, event: &AuditEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        let mut file = self.inner.file.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line: O_APPEND keeps concurrent lines whole.
        file.write_all(&line)?;
        self.inner
            .dirty
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

/// Keeps events in memory (tests, and the API's recent-audit view).
#[derive(Default)]
pub struct MemoryAuditLog {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditLog {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl AuditSink for MemoryAuditLog {
    fn record(&self, event: &AuditEvent) -> std::io::Result<()> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
        Ok(())
    }
}

/// Middleware: records every request that is not a read (GET, HEAD, OPTIONS).
/// Layer it outside the auth middleware so refused attempts are recorded too;
/// the principal is read from the response's request extensions via a marker.
pub async fn audit(State(sink): State<Arc<dyn AuditSink>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let what = format!("{} {}", req.method(), req.uri().path());
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.to_string());
    let slot = PrincipalSlot::default();
    let mut req = req;
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    let principal = slot.get();
    let event = AuditEvent {
        at: Utc::now(),
        who: principal
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |p| p.name.clone()),
        role: principal.map(|p| p.role.to_string()),
        what,
        from,
        status: resp.status().as_u16(),
    };
    if let Err(e) = sink.record(&event) {
        tracing::error!(error = %e, what = %event.what, "Audit log write failed.");
    }
    resp
}

/// Shared slot through which the auth middleware tells the audit middleware
/// who the caller was (request extensions do not flow back out).
#[derive(Clone, Default)]
pub struct PrincipalSlot(Arc<Mutex<Option<Principal>>>);

impl PrincipalSlot {
    pub fn set(&self, p: Principal) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }
    pub fn get(&self) -> Option<Principal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::{Requirement, Role, TokenSet, require};
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app(sink: Arc<MemoryAuditLog>) -> Router {
        let mut tokens = TokenSet::new();
        tokens.insert("op-token", "alice", Role::Operator);
        let req = Requirement {
            tokens: Arc::new(tokens),
            role: Role::Operator,
            open_reads: false,
        };
        let sink: Arc<dyn AuditSink> = sink;
        Router::new()
            .route("/runs", post(|| async { "started" }))
            .route("/runs", get(|| async { "list" }))
            .route_layer(axum::middleware::from_fn_with_state(req, require))
            .layer(axum::middleware::from_fn_with_state(sink, audit))
    }

    async fn send(app: Router, method: &str, token: Option<&str>) -> u16 {
        let mut req = HttpRequest::builder().method(method).uri("/runs?secret=x");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        app.oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn mutations_are_recorded_with_who_and_outcome_reads_are_not() {
        let sink = Arc::new(MemoryAuditLog::default());
        assert_eq!(
            send(app(Arc::clone(&sink)), "POST", Some("op-token")).await,
            200
        );
        assert_eq!(send(app(Arc::clone(&sink)), "POST", None).await, 401);
        assert_eq!(
            send(app(Arc::clone(&sink)), "GET", Some("op-token")).await,
            200
        );
        let events = sink.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].who, "alice");
        assert_eq!(events[0].role.as_deref(), Some("operator"));
        assert_eq!(events[0].what, "POST /runs");
        assert_eq!(events[0].status, 200);
        assert_eq!(events[1].who, "anonymous");
        assert_eq!(events[1].status, 401);
    }

    #[test]
    fn jsonl_log_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = JsonlAuditLog::open(dir.path().join("audit/audit.jsonl")).unwrap();
        for i in 0..3 {
            log.record(&AuditEvent {
                at: Utc::now(),
                who: format!("u{i}"),
                role: None,
                what: "POST /x".into(),
                from: None,
                status: 200,
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        let parsed: Vec<AuditEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[2].who, "u2");
    }
}
