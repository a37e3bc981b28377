//! Browser sessions for the console: an API token is exchanged once
//! (`POST /api/v1/session`) for a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie, so page scripts never hold the token. A request
//! authenticated by the cookie that changes something must also carry the
//! session's CSRF token in `X-CSRF-Token` (returned by `POST`/`GET
//! /api/v1/session`, readable only by same-origin scripts). Bearer tokens keep
//! working unchanged for the CLI and other clients.
//!
//! Sessions are kept in memory only (at most [`MAX_SESSIONS`], each for
//! [`TTL`]); a restart of the service signs every browser out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use serde_json::json;

use super::auth::{Principal, TokenSet, constant_time_eq, digest};
use super::error::ApiError;

pub const PATH: &str = "/api/v1/session";
pub const COOKIE_NAME: &str = "sluice_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after sign-in.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first beyond that.
pub const MAX_SESSIONS: usize = 1000;

struct Session {
    principal: Principal,
    csrf: String,
    created: Instant,
}

/// The live sessions, keyed by the SHA-256 of their id (the id itself is
/// not kept, like the tokens).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.lock().len())
            .finish()
    }
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `principal`: its id and CSRF token.
    pub fn open(&self, principal: Principal) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let mut live = self.lock();
        live.retain(|_, s| s.created.elapsed() < TTL);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            live.remove(&oldest);
        }
        live.insert(
            digest(&id),
            Session {
                principal,
                csrf: csrf.clone(),
                created: Instant::now(),
            },
        );
        (id, csrf)
    }

    /// The principal and CSRF token of a live session id.
    pub fn find(&self, id: &str) -> Option<(Principal, String)> {
        let key = digest(id);
        let mut live = self.lock();
        match live.get(&key) {
            Some(s) if s.created.elapsed() < TTL => Some((s.principal.clone(), s.csrf.clone())),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.lock().remove(&digest(id));
    }
}

/// The session id in a request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Authenticates a request by its session cookie; for a method that changes
/// something, the `X-CSRF-Token` header must match the session's.
pub fn authenticate(
    tokens: &TokenSet,
    headers: &HeaderMap,
    mutating: bool,
) -> Result<Principal, ApiError> {
    let id = cookie(headers).ok_or(ApiError::Unauthorized)?;
    let (principal, csrf) = tokens.sessions.find(id).ok_or(ApiError::Unauthorized)?;
    if mutating {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(&digest(sent), &digest(&csrf)) {
            return Err(ApiError::CsrfToken);
        }
    }
    Ok(principal)
}

fn set_cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("hex and ascii")
}

fn who(p: &Principal, csrf: &str) -> serde_json::Value {
    json!({"signed_in": true, "name": p.name, "role": p.role, "csrf_token": csrf})
}

#[derive(serde::Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /api/v1/session {"token": …}`: a token becomes a session cookie.
pub async fn sign_in(
    State(tokens): State<std::sync::Arc<TokenSet>>,
    slot: Option<axum::Extension<super::audit::PrincipalSlot>>,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let principal = tokens.authenticate(Some(&format!("Bearer {}", body.token)))?;
    if let Some(axum::Extension(slot)) = slot {
        slot.set(principal.clone());
    }
    let (id, csrf) = tokens.sessions.open(principal.clone());
    let mut resp = Json(who(&principal, &csrf)).into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, set_cookie(&id, TTL.as_secs()));
    Ok(resp)
}

/// `GET /api/v1/session`: who the cookie signs in, and its CSRF token, or
/// `{"signed_in": false, "sign_in_required": …}`.
pub async fn show(
    State(tokens): State<std::sync::Arc<TokenSet>>,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    match cookie(&headers).and_then(|id| tokens.sessions.find(id)) {
        Some((p, csrf)) => Json(who(&p, &csrf)),
        // Whether reads need a sign-in (with no token configured they are open).
        None => Json(json!({"signed_in": false, "sign_in_required": !tokens.is_empty()})),
    }
}

/// `DELETE /api/v1/session`: signs out (needs the CSRF token too, so another
/// site cannot sign a user out).
pub async fn sign_out(
    State(tokens): State<std::sync::Arc<TokenSet>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&tokens, &headers, true)?;
    if let Some(id) = cookie(&headers) {
        tokens.sessions.close(id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(SET_COOKIE, set_cookie("", 0));
    Ok(resp)
}

pub fn router<S: Clone + Send + Sync + 'static>(
    tokens: std::sync::Arc<TokenSet>,
) -> axum::Router<S> {
    use axum::routing::post;
    axum::Router::new()
        .route(PATH, post(sign_in).get(show).delete(sign_out))
        .with_state(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Role;

    fn p() -> Principal {
        Principal {
            name: "alice".into(),
            role: Role::Operator,
        }
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_on_close() {
        let s = Sessions::default();
        let (id, csrf) = s.open(p());
        assert_ne!(id, csrf);
        assert_eq!(id.len(), 64);
        assert_eq!(s.find(&id), Some((p(), csrf)));
        assert_eq!(s.find("0000"), None);
        s.close(&id);
        assert_eq!(s.find(&id), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let first = s.open(p()).0;
        for _ in 0..MAX_SESSIONS {
            s.open(p());
        }
        assert_eq!(s.lock().len(), MAX_SESSIONS);
        assert_eq!(s.find(&first), None, "the oldest went first");
    }

    #[test]
    fn the_cookie_is_read_among_others_and_csrf_is_checked_on_changes() {
        let mut tokens = TokenSet::new();
        tokens.insert("t", "alice", Role::Operator);
        let (id, csrf) = tokens.sessions.open(p());
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            format!("a=b; {COOKIE_NAME}={id}; c=d").parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some(id.as_str()));
        assert_eq!(authenticate(&tokens, &h, false).unwrap(), p());
        assert!(matches!(
            authenticate(&tokens, &h, true),
            Err(ApiError::CsrfToken)
        ));
        h.insert(CSRF_HEADER, "wrong".parse().unwrap());
        assert!(matches!(
            authenticate(&tokens, &h, true),
            Err(ApiError::CsrfToken)
        ));
        h.insert(CSRF_HEADER, csrf.parse().unwrap());
        assert_eq!(authenticate(&tokens, &h, true).unwrap(), p());
    }
}
