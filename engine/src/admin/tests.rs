//! Router tests with `tower::ServiceExt::oneshot` (no network).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::config::{self, EngineConfig};
use crate::engine::Engine;

fn engine(yaml: &str, faults: bool) -> Arc<Engine> {
    let cfg: EngineConfig = config::load_str("test.yaml", yaml).unwrap();
    Engine::new(cfg, None, faults)
}

async fn call(
    e: &Arc<Engine>,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = super::app(e.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn admin_paths_need_the_token_when_configured() {
    let e = engine("admin:\n  token: s3cret\n", false);
    for (m, p) in [
        ("GET", "/admin/config"),
        ("POST", "/admin/maintenance/enable"),
        ("GET", "/admin/version"),
    ] {
        let (status, body) = call(&e, m, p, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {p}: {body}");
        let (status, _) = call(&e, m, p, Some("wrong"), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(!e.maintenance(), "a rejected call must not act");
    let (status, body) = call(&e, "GET", "/admin/config", Some("s3cret"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("\"token\":\"***\""),
        "token must be masked: {body}"
    );
    assert!(!body.contains("s3cret"));
    // Health, readiness and metrics stay open for probes and scrapers.
    assert_eq!(call(&e, "GET", "/health", None, "").await.0, StatusCode::OK);
    assert_eq!(
        call(&e, "GET", "/metrics", None, "").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bodies_are_bounded() {
    let e = engine("admin:\n  max_body_bytes: 64\n", false);
    let big = format!(
        "{{\"processing\": {{\"batch_size\": 5}}, \"pad\": \"{}\"}}",
        "x".repeat(200)
    );
    let (status, _) = call(&e, "PUT", "/admin/config", None, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn bad_config_put_keeps_the_old_config() {
    let e = engine("", false);
    let (status, body) = call(
        &e,
        "PUT",
        "/admin/config",
        None,
        r#"{"resource_limits": {"max_total_memory": 10}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["problems"][0]["field"],
        "resource_limits.max_operator_memory"
    );
    assert_eq!(e.config().resource_limits.max_total_memory.value, 4 << 30);
    let (status, _) = call(&e, "PUT", "/admin/config", None, "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A valid live-only change applies without a pipeline restart.
    let (status, body) = call(
        &e,
        "PUT",
        "/admin/config",
        None,
        r#"{"circuit_breaker": {"failure_threshold": 4}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(e.config().circuit_breaker.failure_threshold.value, 4);
    assert!(body.contains("\"pipeline_restarted\":false"), "{body}");
}

#[tokio::test]
async fn maintenance_keeps_health_green_and_readiness_says_why() {
    let e = engine("", false);
    let (status, _) = call(&e, "POST", "/admin/maintenance/enable", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call(&e, "GET", "/health", None, "").await.0, StatusCode::OK);
    let (_, body) = call(&e, "GET", "/ready", None, "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["intake"], "paused");
    assert_eq!(v["checks"]["maintenance"]["enabled"], true);
    assert_eq!(
        v["checks"]["maintenance"]["ok"], true,
        "maintenance is not a failure"
    );
    assert!(
        v["checks"]["maintenance"]["detail"]
            .as_str()
            .unwrap()
            .contains("intake paused")
    );
    // Not ready here because no pipeline runs, and it says so.
    assert_eq!(v["status"], "not_ready");
    assert!(
        v["checks"]["kafka"]["detail"]
            .as_str()
            .unwrap()
            .contains("not running")
    );
    let (_, metrics) = call(&e, "GET", "/metrics", None, "").await;
    assert!(metrics.contains("sluice_maintenance_mode 1\n"));
}

#[tokio::test]
async fn drain_rejects_an_unknown_window_policy() {
    let e = engine("", false);
    let (status, body) = call(
        &e,
        "POST",
        "/admin/processing/drain?windows=later",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("emit"), "{body}");
}

#[tokio::test]
async fn breaker_reset_by_name_and_all() {
    let e = engine("circuit_breaker:\n  failure_threshold: 1\n", false);
    e.breaker.record_failure();
    let (_, metrics) = call(&e, "GET", "/metrics", None, "").await;
    assert!(
        metrics.contains("sluice_circuit_breaker_state{name=\"sink\"} 1\n"),
        "{metrics}"
    );
    let (status, body) = call(
        &e,
        "POST",
        "/admin/circuit-breaker/reset?name=sink",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"previous_state\":\"open\""), "{body}");
    let (status, _) = call(
        &e,
        "POST",
        "/admin/circuit-breaker/reset",
        None,
        r#"{"name":"nope"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    e.breaker.record_failure();
    let (status, _) = call(&e, "POST", "/admin/circuit-breaker/reset-all", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let (_, stats) = call(&e, "GET", "/admin/circuit-breaker/monthly-stats", None, "").await;
    let v: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["breakers"][0]["times_opened"], 2);
}

#[tokio::test]
async fn fault_injection_exists_only_with_the_flag() {
    let off = engine("", false);
    assert_eq!(
        call(&off, "POST", "/admin/fault-injection", None, "{}")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let on = engine("", true);
    let (status, body) = call(
        &on,
        "POST",
        "/admin/fault-injection",
        None,
        r#"{"sink_failures": 3, "memory_ballast_mb": 2}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"sink_failures_remaining\":3"));
    let (_, res) = call(&on, "GET", "/admin/resources", None, "").await;
    assert!(res.contains("\"memory_ballast_bytes\":2097152"), "{res}");
    let (status, _) = call(
        &on,
        "POST",
        "/admin/fault-injection",
        None,
        r#"{"bogus": 1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&on, "DELETE", "/admin/fault-injection", None, "")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reports_and_metric_history() {
    let e = engine("", false);
    for (m, p) in [
        ("GET", "/admin/resources"),
        ("GET", "/admin/resources/utilization"),
        ("GET", "/admin/resources/analysis"),
        ("GET", "/admin/resources/recommendations"),
        ("GET", "/admin/queries/performance"),
        ("GET", "/admin/threads"),
        ("GET", "/admin/version"),
        ("GET", "/admin/performance/weekly-report"),
        ("POST", "/admin/performance/update-baselines"),
        ("POST", "/admin/metrics/cleanup?older_than=7d"),
        ("GET", "/admin/metrics/export?days=30"),
    ] {
        let (status, body) = call(&e, m, p, None, "").await;
        assert_eq!(status, StatusCode::OK, "{m} {p}: {body}");
        assert!(
            serde_json::from_str::<Value>(&body).is_ok(),
            "{p} returns JSON"
        );
    }
    let (status, _) = call(
        &e,
        "POST",
        "/admin/metrics/cleanup?older_than=soon",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Without a running pipeline, pipeline operations say so.
    let (status, body) = call(&e, "POST", "/admin/processing/drain", None, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = call(&e, "POST", "/admin/config/reload", None, "").await;
    assert_eq!(status, StatusCode::CONFLICT);
}
