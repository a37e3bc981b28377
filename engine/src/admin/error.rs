//! One error type for the admin API. User errors carry details; internal
//! errors are logged where they are converted and answered generically.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::diagnostic::Diagnostic;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    /// Validation failed: every problem with its position.
    Invalid(Vec<Diagnostic>),
    Conflict(String),
    Unavailable(String),
    Unauthorized,
    Internal,
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "Admin request failed.");
        ApiError::Internal
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"error": m})),
            ApiError::Invalid(diags) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": "validation failed; the current configuration stays in force",
                    "problems": diags.iter().map(|d| json!({
                        "field": d.path, "line": d.line, "column": d.column, "message": d.message, "text": d.to_string(),
                    })).collect::<Vec<_>>(),
                }),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({"error": m})),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": m})),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or invalid bearer token"}),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error; see the engine log"}),
            ),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
