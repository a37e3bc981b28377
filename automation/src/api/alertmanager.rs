//! Alertmanager-compatible alert intake: `POST /api/v1/alerts/webhook` takes
//! Alertmanager's webhook payload (version 4; unknown fields ignored) and
//! publishes each alert as the same [`AlertEvent`] internal rules produce.
//!
//! Auth is optional: a bearer token (Alertmanager's `http_config.authorization`)
//! or an HMAC-SHA256 of the raw body in `X-Sluice-Signature: sha256=<hex>`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::alert::{AlertEvent, AlertEventKind, AlertSource, fingerprint};

/// Path the router serves.
pub const WEBHOOK_PATH: &str = "/api/v1/alerts/webhook";
/// Header carrying the HMAC signature.
pub const SIGNATURE_HEADER: &str = "x-sluice-signature";

/// Alertmanager's webhook body (`notify/webhook` `Message`, version 4).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a webhook message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// A shared secret; never shown by Debug.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(s: impl Into<String>) -> Self {
        WebhookSecret(s.into())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How deliveries authenticate.
#[derive(Debug, Clone)]
pub enum WebhookAuth {
    /// Anyone on the network may post (loopback-only deployments).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(WebhookSecret),
    /// `X-Sluice-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    Hmac(WebhookSecret),
}

/// Where received alerts go: the service's alert handling, or a broadcast channel.
pub trait AlertEventSink: Send + Sync {
    fn publish(&self, ev: AlertEvent);
}

impl AlertEventSink for broadcast::Sender<AlertEvent> {
    fn publish(&self, ev: AlertEvent) {
        // No subscriber is not an error.
        let _ = self.send(ev);
    }
}

/// State of the intake endpoint.
#[derive(Clone)]
pub struct WebhookIntake {
    pub events: Arc<dyn AlertEventSink>,
    pub auth: WebhookAuth,
    /// Largest accepted body in bytes.
    pub max_body_bytes: usize,
}

/// Errors of the endpoint; the body says what is wrong without echoing secrets.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("invalid webhook payload: {0}")]
    Payload(String),
    #[error("unsupported webhook payload version {0:?} (want \"4\")")]
    Version(String),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match self {
            WebhookError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebhookError::Payload(_) => StatusCode::BAD_REQUEST,
            WebhookError::Version(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_auth(auth: &WebhookAuth, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
    match auth {
        WebhookAuth::None => Ok(()),
        WebhookAuth::Bearer(token) => {
            let given = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(WebhookError::Unauthorized)?;
            if constant_time_eq(given.as_bytes(), token.0.as_bytes()) {
                Ok(())
            } else {
                Err(WebhookError::Unauthorized)
            }
        }
        WebhookAuth::Hmac(key) => {
            let sig = headers
                .get(SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("sha256="))
                .and_then(|h| hex::decode(h).ok())
                .ok_or(WebhookError::Unauthorized)?;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.0.as_bytes())
                .map_err(|_| WebhookError::Unauthorized)?;
            mac.update(body);
            mac.verify_slice(&sig)
                .map_err(|_| WebhookError::Unauthorized)
        }
    }
}

/// RFC 3339 to Unix ms; Go's zero time (`0001-01-01T00:00:00Z`) means "unset".
fn parse_time(s: Option<&str>) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s?).ok()?;
    (t.timestamp() > 0).then(|| t.timestamp_millis())
}

/// Turns a webhook message into alert events, one per alert.
pub fn message_events(msg: &WebhookMessage, now_ms: i64) -> Result<Vec<AlertEvent>, WebhookError> {
    if msg.version != "4" {
        return Err(WebhookError::Version(msg.version.clone()));
    }
    msg.alerts
        .iter()
        .map(|a| {
            let kind = match a.status.as_str() {
                "firing" => AlertEventKind::Firing,
                "resolved" => AlertEventKind::Resolved,
                other => {
                    return Err(WebhookError::Payload(format!(
                        "alert status {other:?} is neither firing nor resolved"
                    )));
                }
            };
            let fp = if a.fingerprint.is_empty() {
                fingerprint(&a.labels)
            } else {
                a.fingerprint.clone()
            };
            Ok(AlertEvent {
                kind,
                name: a.labels.get("alertname").cloned().unwrap_or_default(),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: None,
                fingerprint: fp,
                since_ms: parse_time(a.starts_at.as_deref()).unwrap_or(now_ms),
                ended_ms: if kind == AlertEventKind::Resolved {
                    parse_time(a.ends_at.as_deref()).or(Some(now_ms))
                } else {
                    None
                },
                at_ms: now_ms,
                generator_url: (!a.generator_url.is_empty()).then(|| a.generator_url.clone()),
                source: AlertSource::Webhook {
                    receiver: msg.receiver.clone(),
                },
            })
        })
        .collect()
}

async fn receive(
    State(intake): State<Arc<WebhookIntake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    check_auth(&intake.auth, &headers, &body)?;
    let msg: WebhookMessage =
        serde_json::from_slice(&body).map_err(|e| WebhookError::Payload(e.to_string()))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let events = message_events(&msg, now_ms)?;
    let count = events.len();
    for ev in events {
        intake.events.publish(ev);
    }
    tracing::debug!(receiver = %msg.receiver, alerts = count, status = %msg.status, "Alertmanager webhook received.");
    Ok(axum::Json(serde_json::json!({ "accepted": count })).into_response())
}

/// The intake router: `POST /api/v1/alerts/webhook`, bounded body.
pub fn router(intake: Arc<WebhookIntake>) -> Router {
    let limit = intake.max_body_bytes;
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(intake)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const PAYLOAD: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0, "status": "firing",
      "receiver": "sluice", "groupLabels": {"alertname": "X"}, "commonLabels": {}, "commonAnnotations": {},
      "externalURL": "http://am:9093", "somethingNew": {"ignored": true},
      "alerts": [
        {"status": "firing", "labels": {"alertname": "X", "job": "engine"}, "annotations": {"summary": "s"},
         "startsAt": "2026-01-02T03:04:05.678Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prom/graph", "fingerprint": "abc123", "extra": 1},
        {"status": "resolved", "labels": {"alertname": "Y"}, "annotations": {},
         "startsAt": "2026-01-02T03:00:00Z", "endsAt": "2026-01-02T03:05:00Z"}
      ]
    }"#;

    fn intake(auth: WebhookAuth) -> (Arc<WebhookIntake>, broadcast::Receiver<AlertEvent>) {
        let (tx, rx) = broadcast::channel(16);
        (
            Arc::new(WebhookIntake {
                events: Arc::new(tx),
                auth,
                max_body_bytes: 4096,
            }),
            rx,
        )
    }

    async fn post(app: Router, body: &str, headers: &[(&str, String)]) -> StatusCode {
        let mut req = Request::post(WEBHOOK_PATH).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        app.oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn payload_becomes_events() {
        let (i, mut rx) = intake(WebhookAuth::None);
        assert_eq!(post(router(i), PAYLOAD, &[]).await, StatusCode::OK);
        let a = rx.try_recv().unwrap();
        assert_eq!(
            (a.kind, a.name.as_str(), a.fingerprint.as_str()),
            (AlertEventKind::Firing, "X", "abc123")
        );
        assert_eq!(a.since_ms, 1_767_323_045_678);
        assert_eq!(a.ended_ms, None);
        assert_eq!(
            a.source,
            AlertSource::Webhook {
                receiver: "sluice".into()
            }
        );
        let b = rx.try_recv().unwrap();
        assert_eq!(b.kind, AlertEventKind::Resolved);
        assert_eq!(b.fingerprint, fingerprint(&b.labels));
        assert_eq!(b.ended_ms, Some(1_767_323_100_000));
    }

    #[tokio::test]
    async fn bearer_auth() {
        let (i, mut rx) = intake(WebhookAuth::Bearer(WebhookSecret::new("s3cret")));
        let app = router(i);
        assert_eq!(
            post(app.clone(), PAYLOAD, &[]).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(
                app.clone(),
                PAYLOAD,
                &[("authorization", "Bearer nope".into())]
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
        assert!(
            rx.try_recv().is_err(),
            "rejected deliveries publish nothing"
        );
        assert_eq!(
            post(app, PAYLOAD, &[("authorization", "Bearer s3cret".into())]).await,
            StatusCode::OK
        );
        assert!(rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn hmac_auth() {
        let (i, _rx) = intake(WebhookAuth::Hmac(WebhookSecret::new("k")));
        let app = router(i);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
        mac.update(PAYLOAD.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            post(app.clone(), PAYLOAD, &[(SIGNATURE_HEADER, sig)]).await,
            StatusCode::OK
        );
        assert_eq!(
            post(app, PAYLOAD, &[(SIGNATURE_HEADER, "sha256=00".into())]).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn bad_bodies_are_rejected() {
        let (i, _rx) = intake(WebhookAuth::None);
        let app = router(i);
        assert_eq!(post(app.clone(), "{", &[]).await, StatusCode::BAD_REQUEST);
        assert_eq!(
            post(app.clone(), &PAYLOAD.replace("\"4\"", "\"3\""), &[]).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let huge = format!(
            "{{\"version\":\"4\",\"status\":\"firing\",\"pad\":\"{}\"}}",
            "x".repeat(8192)
        );
        assert_eq!(post(app, &huge, &[]).await, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let auth = WebhookAuth::Bearer(WebhookSecret::new("s3cret"));
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
