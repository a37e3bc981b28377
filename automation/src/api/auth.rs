//! Bearer-token authentication with three roles. Tokens are compared as
//! SHA-256 digests in constant time, so neither their content nor their
//! length leaks through timing, and the plain tokens are not kept in memory
//! after start-up.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// What a token may do. Ordered: each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read runbooks, runs, alerts, schedules.
    Viewer,
    /// Also trigger, approve, reject and cancel runs; manage silences.
    Operator,
    /// Also reload configuration and flip the kill switch.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// Who made a request, as established by its token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The configured tokens.
#[derive(Default)]
pub struct TokenSet {
    entries: Vec<([u8; 32], Principal)>,
    /// Console sign-ins made with these tokens.
    pub sessions: super::session::Sessions,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field(
                "principals",
                &self.entries.iter().map(|(_, p)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TokenSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token for `name` with `role`.
    pub fn insert(&mut self, token: &str, name: impl Into<String>, role: Role) {
        self.entries.push((
            digest(token),
            Principal {
                name: name.into(),
                role,
            },
        ));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Resolves an `Authorization` header value to a principal.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let presented = digest(token);
        // Scan every entry so the time taken does not depend on which matched.
        let mut found = None;
        for (d, principal) in &self.entries {
            if constant_time_eq(d, &presented) {
                found = Some(principal);
            }
        }
        found.cloned().ok_or(ApiError::Unauthorized)
    }
}

/// SHA-256 of a token (or session id): what is kept and compared.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// State for [`require`]: the tokens and the least role the routes need.
#[derive(Clone)]
pub struct Requirement {
    pub tokens: Arc<TokenSet>,
    pub role: Role,
    /// With no token configured at all, viewer routes are open (like
    /// Prometheus's API); mutations still need a token.
    pub open_reads: bool,
}

impl From<crate::config::Role> for Role {
    fn from(r: crate::config::Role) -> Role {
        match r {
            crate::config::Role::Viewer => Role::Viewer,
            crate::config::Role::Operator => Role::Operator,
            crate::config::Role::Admin => Role::Admin,
        }
    }
}

/// Middleware: 401 without a valid token (or console session cookie), 403
/// with one whose role is too low, or for a cookie-authenticated change
/// without its CSRF token; otherwise the [`Principal`] is put in the
/// request's extensions.
pub async fn require(
    State(req_state): State<Requirement>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if req_state.open_reads && req_state.role == Role::Viewer && req_state.tokens.is_empty() {
        req.extensions_mut().insert(Principal {
            name: "anonymous".into(),
            role: Role::Viewer,
        });
        return next.run(req).await;
    }
    let who = if header.is_none() && super::session::cookie(req.headers()).is_some() {
        let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        super::session::authenticate(&req_state.tokens, req.headers(), mutating)
    } else {
        req_state.tokens.authenticate(header)
    };
    match who {
        Ok(principal) => {
            if let Some(slot) = req.extensions().get::<super::audit::PrincipalSlot>() {
                slot.set(principal.clone());
            }
            if principal.role < req_state.role {
                return ApiError::Forbidden {
                    needed: req_state.role,
                    have: principal.role,
                }
                .into_response();
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request as HttpRequest, StatusCode};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn tokens() -> Arc<TokenSet> {
        let mut t = TokenSet::new();
        t.insert("view-token", "grafana", Role::Viewer);
        t.insert("op-token", "alice", Role::Operator);
        t.insert("admin-token", "root", Role::Admin);
        Arc::new(t)
    }

    fn app() -> Router {
        let t = tokens();
        let layer = |role| {
            axum::middleware::from_fn_with_state(
                Requirement {
                    tokens: Arc::clone(&t),
                    role,
                    open_reads: false,
                },
                require,
            )
        };
        Router::new()
            .route(
                "/read",
                get(|axum::Extension(p): axum::Extension<Principal>| async move { p.name }),
            )
            .route_layer(layer(Role::Viewer))
            .merge(
                Router::new()
                    .route("/trigger", post(|| async { "ok" }))
                    .route_layer(layer(Role::Operator)),
            )
    }

    async fn call(method: &str, uri: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = HttpRequest::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn missing_or_wrong_token_is_401() {
        assert_eq!(call("GET", "/read", None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            call("GET", "/read", Some("nope")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call("GET", "/read", Some("")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn roles_are_ordered() {
        assert_eq!(
            call("GET", "/read", Some("view-token")).await,
            (StatusCode::OK, "grafana".into())
        );
        assert_eq!(
            call("GET", "/read", Some("admin-token")).await,
            (StatusCode::OK, "root".into())
        );
        let (status, body) = call("POST", "/trigger", Some("view-token")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("operator"), "{body}");
        assert_eq!(
            call("POST", "/trigger", Some("op-token")).await.0,
            StatusCode::OK
        );
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let shown = format!("{:?}", tokens());
        assert!(!shown.contains("op-token"), "{shown}");
        assert!(shown.contains("alice"));
    }
}
