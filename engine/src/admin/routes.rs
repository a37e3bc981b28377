//! Handlers of the admin API, one per DESIGN.md path.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::circuit_breaker::BreakerState;
use crate::engine::Engine;
use crate::pipeline::{DrainWindows, ImportRefused};
use crate::state::{ImportError, STATE_VERSION, StateDocument};
use crate::{config, exposition, history, resources};

type Shared = State<Arc<Engine>>;
type ApiResult = Result<Json<Value>, ApiError>;

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// Refreshes the gauges that come from the OS (RSS, CPU, memory share).
pub fn refresh_resource_gauges(engine: &Engine, cpu_percent: Option<f64>) {
    let m = &engine.metrics;
    let rss = resources::process_rss_bytes().unwrap_or(0) as f64;
    let operator = engine.operator_bytes() as f64;
    let ballast = engine
        .faults
        .as_ref()
        .map(|f| f.ballast_bytes())
        .unwrap_or(0) as f64;
    m.memory_process.set(rss);
    m.memory_operator.set(operator);
    m.memory_ballast.set(ballast);
    let total = rss.max(operator + ballast);
    m.memory_total.set(total);
    m.memory_peak.set_max(total);
    let limit = engine
        .config()
        .resource_limits
        .max_total_memory
        .value
        .max(1) as f64;
    m.memory_percent.set((operator + ballast) / limit * 100.0);
    if let Some(cpu) = cpu_percent {
        m.cpu_percent.set(cpu);
    }
}

pub async fn health(State(e): Shared) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "timestamp": now(),
        "uptime_seconds": e.started.elapsed().as_secs(),
        "maintenance": e.maintenance(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn ready(State(e): Shared) -> Response {
    let status = e.status();
    let breaker = e.breaker.snapshot();
    refresh_resource_gauges(&e, None);
    let mem_pct = e.metrics.memory_percent.get();
    let kafka_ok = status.running && status.kafka_ok;
    let kafka_detail = if !status.running {
        "pipeline not running".to_owned()
    } else if let (false, Some(err)) = (status.kafka_ok, &status.kafka_error) {
        err.clone()
    } else if !status.kafka_ok {
        "connecting".to_owned()
    } else {
        format!(
            "{} worker(s), {} partition(s) assigned, brokers {}",
            status.workers, status.assigned_partitions, status.brokers
        )
    };
    let cb_ok = breaker.state != BreakerState::Open;
    let res_ok = mem_pct < 100.0;
    // Maintenance and drain pause intake on purpose: the engine stays ready
    // (the seed's deploy_config.sh reloads and checks /ready while in
    // maintenance), and the check says that intake is paused and why.
    let maint = e.maintenance();
    let (intake, why) = if maint {
        (
            "paused",
            "maintenance mode: intake paused (POST /admin/maintenance/disable resumes)",
        )
    } else if status.drained {
        (
            "paused",
            "drained: intake paused (POST /admin/maintenance/disable or /admin/processing/restart resumes)",
        )
    } else if status.records_waiting_for_room > 0 {
        (
            "paused",
            "resource limit reached (on_limit: pause): intake paused until state shrinks",
        )
    } else {
        ("running", "off")
    };
    let checks = json!({
        "kafka": {"ok": kafka_ok, "detail": kafka_detail},
        "circuit_breakers": {"ok": cb_ok, "detail": format!("{}: {}", breaker.name, breaker.state)},
        "resources": {"ok": res_ok, "detail": format!("operator memory at {mem_pct:.1}% of max_total_memory")},
        "maintenance": {"ok": true, "enabled": maint, "detail": why},
    });
    let all = kafka_ok && cb_ok && res_ok;
    let body = json!({
        "status": if all { "ready" } else { "not_ready" },
        "intake": intake,
        "checks": checks,
        "timestamp": now(),
    });
    let code = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub async fn metrics(State(e): Shared) -> Response {
    refresh_resource_gauges(&e, None);
    let text = e.metrics.render(&[e.breaker.snapshot()]);
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], text).into_response()
}

#[derive(Debug, Deserialize, Default)]
pub struct NameParam {
    name: Option<String>,
}

pub async fn breaker_reset(State(e): Shared, Query(q): Query<NameParam>, body: Bytes) -> ApiResult {
    let from_body: Option<String> = if body.is_empty() {
        None
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))?;
        v.get("name").and_then(Value::as_str).map(str::to_owned)
    };
    let name = q.name.or(from_body);
    match name.as_deref() {
        None | Some("sink") | Some("all") => {
            let before = e.breaker.reset();
            Ok(Json(
                json!({"reset": [{"name": e.breaker.name, "previous_state": before.to_string(), "state": "closed"}]}),
            ))
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "unknown circuit breaker `{other}` (known: sink)"
        ))),
    }
}

pub async fn breaker_reset_all(State(e): Shared) -> ApiResult {
    let before = e.breaker.reset();
    Ok(Json(
        json!({"reset": [{"name": e.breaker.name, "previous_state": before.to_string(), "state": "closed"}]}),
    ))
}

pub async fn breaker_monthly_stats(State(e): Shared) -> ApiResult {
    let since = Utc::now() - Duration::days(30);
    let snap = e.breaker.snapshot();
    let transitions = e.breaker.transitions_since(since);
    let opened = transitions
        .iter()
        .filter(|t| t.to == BreakerState::Open)
        .count();
    Ok(Json(json!({
        "period": {"from": since.to_rfc3339(), "to": now()},
        "breakers": [{
            "name": snap.name,
            "state": snap.state,
            "times_opened": opened,
            "times_opened_since_start": snap.times_opened,
            "total_open_seconds": snap.total_open_seconds,
            "failures_total": snap.failures_total,
            "successes_total": snap.successes_total,
            "rejected_calls_total": snap.rejected_total,
            "last_transitions": transitions.iter().rev().take(20).collect::<Vec<_>>(),
        }],
    })))
}

fn resource_figures(e: &Engine) -> Value {
    let cfg = e.config();
    let l = &cfg.resource_limits;
    let queries = e.query_figures();
    let (sys_total, sys_avail) = resources::system_memory().unwrap_or((0, 0));
    json!({
        "process": {
            "rss_bytes": resources::process_rss_bytes(),
            "cpu_seconds": resources::process_cpu_seconds(),
            "cpu_percent": e.metrics.cpu_percent.get(),
            "threads": resources::threads().len(),
        },
        "system": {"memory_total_bytes": sys_total, "memory_available_bytes": sys_avail},
        "operator_state": {
            "total_bytes": e.operator_bytes(),
            "queries": queries.iter().map(|q| json!({
                "name": q.name, "bytes": q.state_bytes, "groups": q.groups, "open_windows": q.open_windows,
            })).collect::<Vec<_>>(),
        },
        "memory_ballast_bytes": e.faults.as_ref().map(|f| f.ballast_bytes()).unwrap_or(0),
        "limits": {
            "max_total_memory": l.max_total_memory.value,
            "max_operator_memory": l.max_operator_memory.value,
            "max_windows_per_key": l.max_windows_per_key.value,
            "max_aggregation_groups": l.max_aggregation_groups.value,
            "on_limit": l.on_limit,
        },
        "violations": *e.metrics.violations.lock().unwrap_or_else(|p| p.into_inner()),
    })
}

pub async fn resources(State(e): Shared) -> ApiResult {
    refresh_resource_gauges(&e, None);
    Ok(Json(resource_figures(&e)))
}

pub async fn resources_utilization(State(e): Shared) -> ApiResult {
    refresh_resource_gauges(&e, None);
    let cfg = e.config();
    let l = &cfg.resource_limits;
    let queries = e.query_figures();
    let per_query: Vec<Value> = queries
        .iter()
        .map(|q| {
            json!({
                "name": q.name,
                "memory_percent": q.state_bytes as f64 / l.max_operator_memory.value.max(1) as f64 * 100.0,
                "groups_percent": q.groups as f64 / l.max_aggregation_groups.value.max(1) as f64 * 100.0,
                "windows_percent": q.open_windows as f64 / l.max_windows_per_key.value.max(1) as f64 * 100.0,
            })
        })
        .collect();
    Ok(Json(json!({
        "memory_percent": e.metrics.memory_percent.get(),
        "cpu_percent": e.metrics.cpu_percent.get(),
        "queries": per_query,
        "timestamp": now(),
    })))
}

pub async fn resources_analysis(State(e): Shared) -> ApiResult {
    refresh_resource_gauges(&e, None);
    let h = e
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .summary(Duration::days(7));
    let queries = e.query_figures();
    let total: u64 = queries.iter().map(|q| q.state_bytes).sum();
    let largest = queries.iter().max_by_key(|q| q.state_bytes);
    Ok(Json(json!({
        "current": resource_figures(&e),
        "last_7_days": h,
        "largest_operator": largest.map(|q| json!({
            "name": q.name, "bytes": q.state_bytes,
            "share_percent": if total > 0 { q.state_bytes as f64 / total as f64 * 100.0 } else { 0.0 },
        })),
        "timestamp": now(),
    })))
}

pub async fn resources_recommendations(State(e): Shared) -> ApiResult {
    refresh_resource_gauges(&e, None);
    let cfg = e.config();
    let l = &cfg.resource_limits;
    let mut recs = Vec::new();
    let mem = e.metrics.memory_percent.get();
    if mem > 80.0 {
        recs.push(json!({"resource": "memory", "severity": "warning",
            "advice": format!("operator state uses {mem:.0}% of max_total_memory; raise resource_limits.max_total_memory or shorten windows")}));
    }
    for q in e.query_figures() {
        if q.groups as f64 > 0.8 * l.max_aggregation_groups.value as f64 {
            recs.push(json!({"resource": "groups", "query": q.name, "severity": "warning",
                "advice": format!("{} groups of max {}; raise max_aggregation_groups or reduce key cardinality", q.groups, l.max_aggregation_groups.value)}));
        }
        if q.late_dropped > 0 {
            recs.push(json!({"resource": "watermarks", "query": q.name, "severity": "info",
                "advice": format!("{} late records dropped; consider a larger watermarks.max_out_of_orderness_ms", q.late_dropped)}));
        }
    }
    let violations = e.metrics.violations_total();
    if violations > 0 {
        recs.push(json!({"resource": "limits", "severity": "warning",
            "advice": format!("{violations} resource limit violations so far; see /admin/resources")}));
    }
    if let Some((total, avail)) = resources::system_memory()
        && l.max_total_memory.value > avail
    {
        recs.push(json!({"resource": "memory", "severity": "warning",
            "advice": format!("max_total_memory ({}) exceeds available system memory ({avail} of {total})", l.max_total_memory.value)}));
    }
    if e.metrics.cpu_percent.get() > 85.0 {
        recs.push(json!({"resource": "cpu", "severity": "warning",
            "advice": "CPU near one core's capacity; add engine processes to the consumer group or raise processing.parallelism"}));
    }
    Ok(Json(json!({"recommendations": recs, "timestamp": now()})))
}

async fn with_pipeline<T>(
    e: &Arc<Engine>,
    f: impl AsyncFnOnce(&crate::pipeline::Pipeline) -> anyhow::Result<T>,
) -> Result<T, ApiError> {
    let guard = e.pipeline.lock().await;
    let p = guard
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the pipeline is not running".into()))?;
    f(p).await
        .map_err(|err| ApiError::Unavailable(format!("{err:#}")))
}

pub async fn resources_cleanup(State(e): Shared) -> ApiResult {
    let before = e.operator_bytes();
    let r = with_pipeline(&e, async |p| p.cleanup().await).await?;
    Ok(Json(
        json!({"cleanup": r, "operator_bytes_before": before, "timestamp": now()}),
    ))
}

pub async fn config_get(State(e): Shared) -> ApiResult {
    Ok(Json(e.config().to_public_json()))
}

pub async fn config_put(State(e): Shared, body: Bytes) -> ApiResult {
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("invalid JSON: {err}")))?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object (a merge patch)".into(),
        ));
    }
    let new = config::apply_patch(&e.config(), &patch)
        .map_err(|err| ApiError::Invalid(err.diagnostics))?;
    let restarted = e.apply_config(new).await?;
    Ok(Json(
        json!({"applied": true, "pipeline_restarted": restarted, "config": e.config().to_public_json()}),
    ))
}

pub async fn config_reload(State(e): Shared) -> ApiResult {
    let Some(path) = e.config_path.clone() else {
        return Err(ApiError::Conflict(
            "the engine was started without --config; nothing to reload".into(),
        ));
    };
    let new = config::load_file(&path).map_err(|err| ApiError::Invalid(err.diagnostics))?;
    let restarted = e.apply_config(new).await?;
    Ok(Json(
        json!({"reloaded": path.display().to_string(), "pipeline_restarted": restarted}),
    ))
}

pub async fn processing_restart(State(e): Shared) -> ApiResult {
    e.restart_pipeline().await?;
    Ok(Json(
        json!({"restarted": true, "status": e.status(), "timestamp": now()}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct DrainParams {
    windows: Option<DrainWindows>,
}

pub async fn processing_drain(
    State(e): Shared,
    params: Result<Query<DrainParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = params
        .map_err(|err| ApiError::BadRequest(format!("{err}; `windows` is `emit` or `keep`")))?;
    let windows = q.windows.unwrap_or(e.config().processing.drain_windows);
    let r = with_pipeline(&e, async |p| p.drain(windows).await).await?;
    Ok(Json(json!({
        "drained": true,
        "windows": windows,
        "report": r,
        "intake": "paused (POST /admin/maintenance/disable or /admin/processing/restart resumes)",
        "timestamp": now(),
    })))
}

pub async fn maintenance_enable(State(e): Shared) -> ApiResult {
    let was = e.set_maintenance(true);
    tracing::info!("Maintenance mode enabled.");
    Ok(Json(
        json!({"maintenance": true, "was_enabled": was, "intake": "paused", "timestamp": now()}),
    ))
}

pub async fn maintenance_disable(State(e): Shared) -> ApiResult {
    let was = e.set_maintenance(false);
    if e.status().drained {
        with_pipeline(&e, async |p| p.resume().await).await?;
    }
    tracing::info!("Maintenance mode disabled.");
    Ok(Json(
        json!({"maintenance": false, "was_enabled": was, "intake": "running", "timestamp": now()}),
    ))
}

pub async fn state_export(State(e): Shared) -> ApiResult {
    let s = with_pipeline(&e, async |p| p.export().await).await?;
    let doc = StateDocument {
        version: STATE_VERSION,
        engine_version: env!("CARGO_PKG_VERSION").to_owned(),
        exported_at: now(),
        group_id: e.config().kafka.group_id.clone(),
        queries: s.queries,
        positions: s.positions,
        committed: s.committed,
    };
    Ok(Json(
        serde_json::to_value(doc).map_err(anyhow::Error::from)?,
    ))
}

pub async fn state_import(State(e): Shared, body: Bytes) -> ApiResult {
    let doc: StateDocument = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("not a state document: {err}")))?;
    let windows: usize = doc.queries.iter().map(|q| q.windows.len()).sum();
    match with_pipeline(&e, async |p| p.import(doc).await).await? {
        Ok(()) => Ok(Json(
            json!({"imported": true, "windows": windows, "timestamp": now()}),
        )),
        Err(ImportRefused::Document(ImportError::Version { found })) => Err(ApiError::BadRequest(
            ImportError::Version { found }.to_string(),
        )),
        Err(refused) => Err(ApiError::Conflict(refused.to_string())),
    }
}

pub async fn queries_performance(State(e): Shared) -> ApiResult {
    Ok(Json(
        json!({"queries": e.query_figures(), "timestamp": now()}),
    ))
}

/// A worker silent for longer than this is reported as stalled.
const STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn threads(State(e): Shared) -> ApiResult {
    let threads: Vec<Value> = resources::threads()
        .into_iter()
        .map(|(tid, name, st)| json!({"tid": tid, "name": name, "state": st}))
        .collect();
    let status = e.status();
    let workers: Vec<Value> = e
        .heartbeats()
        .into_iter()
        .map(|(id, hb)| {
            let silent = hb.at.elapsed();
            json!({
                "worker": id,
                "activity": hb.activity,
                "last_heartbeat_seconds_ago": silent.as_secs_f64(),
                "stalled": status.running && silent > STALL_AFTER,
            })
        })
        .collect();
    let stalled = workers.iter().any(|w| w["stalled"] == true);
    Ok(Json(json!({
        "count": threads.len(),
        "threads": threads,
        "workers": workers,
        "stalled_workers": stalled,
        "pipeline": status,
        "timestamp": now(),
    })))
}

pub async fn version() -> Json<Value> {
    Json(json!({
        "name": "sluice-engine",
        "version": env!("CARGO_PKG_VERSION"),
        "state_format_version": STATE_VERSION,
        "librdkafka": rdkafka::util::get_rdkafka_version().1,
    }))
}

pub async fn weekly_report(State(e): Shared) -> ApiResult {
    let h = e.history.lock().unwrap_or_else(|p| p.into_inner());
    let week = h.summary(Duration::days(7));
    let baselines = h.baselines.clone();
    let comparison = baselines.as_ref().map(|b| {
        let pct = |now: f64, base: f64| {
            if base > 0.0 {
                (now - base) / base * 100.0
            } else {
                0.0
            }
        };
        json!({
            "throughput_change_percent": pct(week.mean_throughput, b.mean_throughput),
            "p99_latency_change_percent": pct(week.p99_latency_seconds, b.p99_latency_seconds),
            "memory_change_percent": pct(week.mean_memory_bytes, b.mean_memory_bytes),
            "cpu_change_percent": pct(week.mean_cpu_percent, b.mean_cpu_percent),
        })
    });
    let breaker = e.breaker.snapshot();
    Ok(Json(json!({
        "period_days": 7,
        "summary": week,
        "baselines": baselines,
        "compared_to_baselines": comparison,
        "circuit_breaker": {"times_opened": breaker.times_opened, "total_open_seconds": breaker.total_open_seconds},
        "queries": e.query_figures(),
        "generated_at": now(),
    })))
}

pub async fn update_baselines(State(e): Shared) -> ApiResult {
    let b = e
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .update_baselines();
    Ok(Json(json!({"baselines": b})))
}

#[derive(Debug, Deserialize)]
pub struct CleanupParams {
    older_than: Option<String>,
}

pub async fn metrics_cleanup(State(e): Shared, Query(q): Query<CleanupParams>) -> ApiResult {
    let spec = q.older_than.unwrap_or_else(|| "7d".into());
    let age = history::parse_age(&spec).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "older_than `{spec}` is not a duration like 7d, 12h, 30m"
        ))
    })?;
    let mut h = e.history.lock().unwrap_or_else(|p| p.into_inner());
    let removed = h.cleanup(age);
    Ok(Json(
        json!({"removed_samples": removed, "remaining_samples": h.len(), "older_than": spec}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ExportParams {
    days: Option<u32>,
}

pub async fn metrics_export(State(e): Shared, Query(q): Query<ExportParams>) -> ApiResult {
    let days = q.days.unwrap_or(30).min(3660);
    let samples = e
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .since(Duration::days(days as i64));
    Ok(Json(
        json!({"days": days, "count": samples.len(), "samples": samples, "exported_at": now()}),
    ))
}

pub async fn faults_get(State(e): Shared) -> ApiResult {
    let f = e
        .faults
        .as_ref()
        .ok_or(ApiError::Unavailable("fault injection disabled".into()))?;
    Ok(Json(
        serde_json::to_value(f.status()).map_err(anyhow::Error::from)?,
    ))
}

pub async fn faults_set(State(e): Shared, body: Bytes) -> ApiResult {
    let f = e
        .faults
        .as_ref()
        .ok_or(ApiError::Unavailable("fault injection disabled".into()))?;
    let req: crate::fault::FaultRequest = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("invalid fault request: {err}")))?;
    f.apply(&req).map_err(ApiError::BadRequest)?;
    tracing::warn!(request = ?req, "Fault injection changed.");
    Ok(Json(
        serde_json::to_value(f.status()).map_err(anyhow::Error::from)?,
    ))
}

pub async fn faults_clear(State(e): Shared) -> ApiResult {
    let f = e
        .faults
        .as_ref()
        .ok_or(ApiError::Unavailable("fault injection disabled".into()))?;
    f.clear();
    Ok(Json(
        serde_json::to_value(f.status()).map_err(anyhow::Error::from)?,
    ))
}
