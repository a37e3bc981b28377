//! One error type for every API handler. User errors carry details; internal
//! errors answer with a generic message and the real one is logged, never
//! sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Role;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this needs the {needed} role; the token has {have}")]
    Forbidden { needed: Role, have: Role },
    #[error("a change made with a console session needs that session's X-CSRF-Token header")]
    CsrfToken,
    /// Refused by a policy other than the role (an approval's approvers).
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Semantically invalid input: field → messages.
    #[error("invalid input")]
    Invalid(Vec<(String, String)>),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::CsrfToken | ApiError::NotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Invalid(fields) => json!({
                "error": "invalid input",
                "fields": fields.iter().map(|(f, m)| json!({"field": f, "message": m})).collect::<Vec<_>>(),
            }),
            ApiError::Internal(_) => json!({"error": "internal error"}),
            other => json!({"error": other.to_string()}),
        };
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::Internal(e) = self {
            // Picked up by the logging middleware; never serialized.
            resp.extensions_mut()
                .insert(InternalError(format!("{e:#}")));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// The real message of an internal error, carried in response extensions to
/// the middleware that logs it.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

/// Middleware: logs internal errors with the request they came from.
pub async fn log_internal_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if let Some(InternalError(msg)) = resp.extensions().get::<InternalError>() {
        tracing::error!(%method, %path, error = %msg, "Request failed.");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value, bool) {
        let resp = e.into_response();
        let status = resp.status();
        let has_internal = resp.extensions().get::<InternalError>().is_some();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap(),
            has_internal,
        )
    }

    #[tokio::test]
    async fn internal_errors_are_not_echoed() {
        let (status, json, logged) = body(ApiError::Internal(anyhow::anyhow!(
            "db password=hunter2 rejected"
        )))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json, json!({"error": "internal error"}));
        assert!(logged);
    }

    #[tokio::test]
    async fn invalid_input_lists_fields() {
        let (status, json, _) = body(ApiError::Invalid(vec![(
            "params.breaker".into(),
            "required".into(),
        )]))
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json["fields"][0]["field"], "params.breaker");
    }
}
