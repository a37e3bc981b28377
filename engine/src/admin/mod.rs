//! The admin HTTP API (axum): `/health`, `/ready`, `/metrics` open; every
//! `/admin/*` path behind the bearer token when `admin.token` is set; request
//! bodies bounded by `admin.max_body_bytes`. Paths follow DESIGN.md exactly.

mod error;
mod routes;
#[cfg(test)]
mod tests;

pub use error::ApiError;

/// Helpers shared with the sampler.
pub mod routes_support {
    /// Refreshes the gauges read from the OS.
    pub fn refresh(engine: &crate::engine::Engine, cpu_percent: Option<f64>) {
        super::routes::refresh_resource_gauges(engine, cpu_percent);
    }
}

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;

/// The whole admin router.
pub fn app(engine: Arc<Engine>) -> Router {
    let limit = engine.config().admin.max_body_bytes;
    let mut admin = Router::new()
        .route("/admin/circuit-breaker/reset", post(routes::breaker_reset))
        .route(
            "/admin/circuit-breaker/reset-all",
            post(routes::breaker_reset_all),
        )
        .route(
            "/admin/circuit-breaker/monthly-stats",
            get(routes::breaker_monthly_stats),
        )
        .route("/admin/resources", get(routes::resources))
        .route(
            "/admin/resources/utilization",
            get(routes::resources_utilization),
        )
        .route("/admin/resources/analysis", get(routes::resources_analysis))
        .route(
            "/admin/resources/recommendations",
            get(routes::resources_recommendations),
        )
        .route("/admin/resources/cleanup", post(routes::resources_cleanup))
        .route(
            "/admin/config",
            get(routes::config_get).put(routes::config_put),
        )
        .route("/admin/config/reload", post(routes::config_reload))
        .route(
            "/admin/processing/restart",
            post(routes::processing_restart),
        )
        .route("/admin/processing/drain", post(routes::processing_drain))
        .route(
            "/admin/maintenance/enable",
            post(routes::maintenance_enable),
        )
        .route(
            "/admin/maintenance/disable",
            post(routes::maintenance_disable),
        )
        .route("/admin/state/export", get(routes::state_export))
        .route("/admin/state/import", post(routes::state_import))
        .route(
            "/admin/queries/performance",
            get(routes::queries_performance),
        )
        .route("/admin/threads", get(routes::threads))
        .route("/admin/version", get(routes::version))
        .route(
            "/admin/performance/weekly-report",
            get(routes::weekly_report),
        )
        .route(
            "/admin/performance/update-baselines",
            post(routes::update_baselines),
        )
        .route("/admin/metrics/cleanup", post(routes::metrics_cleanup))
        .route("/admin/metrics/export", get(routes::metrics_export));
    if engine.faults.is_some() {
        admin = admin.route(
            "/admin/fault-injection",
            get(routes::faults_get)
                .post(routes::faults_set)
                .delete(routes::faults_clear),
        );
    }
    let admin = admin.layer(middleware::from_fn_with_state(
        engine.clone(),
        require_token,
    ));
    Router::new()
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .merge(admin)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}

/// Bearer-token check for `/admin/*` (constant-time comparison).
async fn require_token(State(engine): State<Arc<Engine>>, req: Request, next: Next) -> Response {
    let cfg = engine.config();
    if let Some(token) = &cfg.admin.token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(engine))
        .with_graceful_shutdown(shutdown)
        .await
}
