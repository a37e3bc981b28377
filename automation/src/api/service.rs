//! The service's HTTP API (`fn router(service) -> Router`): runbooks, runs,
//! approvals, cancel, alerts, silences, schedules, queries, reload, the kill
//! switch and the audit log, behind bearer tokens with roles; webhook hooks
//! and the Alertmanager receiver with their senders' own secrets. Every
//! mutation is audited (refused ones too); bodies are bounded.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::alertmanager::{AlertEventSink, WebhookAuth, WebhookIntake, WebhookSecret};
use super::audit::{AuditSink, PrincipalSlot, audit};
use super::auth::{Principal, Requirement, Role, require};
use super::error::{ApiError, log_internal_errors};
use super::signature::{HookAuth, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::alert::AlertEvent;
use crate::exec::executor::{RunError, RunRequest, execute};
use crate::service::runner::{CancelResult, Decision, Submission};
use crate::service::{KILL_SWITCH, Service, alerts};
use crate::store::{RunFilter, SilenceRecord, StoreError};

type Svc = State<Arc<Service>>;

pub(super) fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NoSuchRun(id) => ApiError::NotFound(format!("run `{id}`")),
        StoreError::NoPendingApproval(id) => {
            ApiError::Conflict(format!("run `{id}` has no approval waiting for a decision"))
        }
        e @ (StoreError::NotAnApprover { .. } | StoreError::SelfApproval { .. }) => {
            ApiError::NotAllowed(e.to_string())
        }
        other => ApiError::Internal(other.into()),
    }
}

/// Alerts from the Alertmanager webhook go to the service's alert handling.
struct ServiceSink(Arc<Service>);

impl AlertEventSink for ServiceSink {
    fn publish(&self, ev: AlertEvent) {
        alerts::on_event(&self.0, ev);
    }
}

/// The whole API.
pub fn router(svc: Arc<Service>) -> Router {
    let layer = |role: Role| {
        axum::middleware::from_fn_with_state(
            Requirement {
                tokens: svc.tokens.clone(),
                role,
                open_reads: true,
            },
            require,
        )
    };
    let viewer = Router::new()
        .route("/api/v1/runbooks", get(list_runbooks))
        .route("/api/v1/runbooks/{name}", get(show_runbook))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/runs/{id}/events", get(super::run_events::events))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/rules", get(list_rules))
        .route("/api/v1/silences", get(list_silences))
        .route("/api/v1/schedules", get(list_schedules))
        .route("/api/v1/query", get(query))
        .route("/api/v1/status", get(status))
        .route("/api/v1/decisions", get(list_decisions))
        .route_layer(layer(Role::Viewer));
    let operator = Router::new()
        .route("/api/v1/runbooks/{name}/runs", post(trigger_run))
        .route("/api/v1/runs/{id}/approve", post(approve))
        .route("/api/v1/runs/{id}/reject", post(reject))
        .route("/api/v1/runs/{id}/cancel", post(cancel))
        .route("/api/v1/silences", post(create_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route_layer(layer(Role::Operator));
    let admin = Router::new()
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/kill-switch", put(kill_switch))
        .route("/api/v1/audit", get(audit_log))
        .route_layer(layer(Role::Admin));
    let intake = Arc::new(WebhookIntake {
        events: Arc::new(ServiceSink(svc.clone())),
        auth: match &svc.config.alerting.webhook {
            Some(h) => match (&h.token, &h.hmac) {
                (Some(t), _) => WebhookAuth::Bearer(WebhookSecret::new(t.expose())),
                (_, Some(k)) => WebhookAuth::Hmac(WebhookSecret::new(k.expose())),
                _ => WebhookAuth::None,
            },
            None => WebhookAuth::None,
        },
        max_body_bytes: super::MAX_BODY_BYTES,
    });
    let public = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .route("/api/v1/hooks/{name}", post(hook))
        .route(super::slack::PATH, post(super::slack::interactions));
    let sink: Arc<dyn AuditSink> = svc.audit.clone();
    Router::new()
        .merge(viewer)
        .merge(operator)
        .merge(admin)
        .merge(public)
        .merge(super::console::router())
        .merge(super::session::router(svc.tokens.clone()))
        .with_state(svc)
        .merge(super::alertmanager::router(intake))
        .layer(DefaultBodyLimit::max(super::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(sink, audit))
        .layer(axum::middleware::from_fn(log_internal_errors))
}

async fn ready(State(svc): Svc) -> Response {
    let store = svc.store.ping().await;
    let files = svc.library_read().files();
    let invalid: Vec<&str> = files
        .iter()
        .filter(|f| !f.valid)
        .map(|f| f.path.as_str())
        .collect();
    let ok = store.is_ok() && !svc.is_stopping();
    let body = json!({
        "ready": ok,
        "checks": {
            "store": {"ok": store.is_ok(), "backend": svc.store.backend(), "error": store.err().map(|e| e.to_string())},
            "files": {"ok": invalid.is_empty(), "invalid": invalid, "note": "invalid files keep their previous version; they do not make the service unready"},
            "stopping": svc.is_stopping(),
            "kill_switch": svc.runner.guards.kill_switch(),
        }
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(svc): Svc) -> Response {
    alerts::refresh_metrics(&svc);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        svc.metrics.render(),
    )
        .into_response()
}

fn runbook_summary(rb: &crate::service::library::LoadedRunbook) -> J {
    let r = &rb.runbook;
    json!({
        "name": r.name.value,
        "description": r.description,
        "file": rb.path.display().to_string(),
        "loaded_at": rb.loaded_at.to_rfc3339(),
        "triggers": r.triggers.iter().map(|t| trigger_json(&t.value)).collect::<Vec<_>>(),
        "steps": r.steps.len(),
    })
}

fn trigger_json(t: &crate::runbook::model::Trigger) -> J {
    use crate::runbook::model::Trigger;
    match t {
        Trigger::Alert {
            name,
            labels,
            matchers,
            on_resolved,
        } => json!({
            "alert": name.value, "labels": labels, "on_resolved": on_resolved,
            "matchers": matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        }),
        Trigger::Schedule {
            cron,
            timezone,
            catch_up,
        } => json!({"schedule": cron.as_str(), "timezone": timezone.name(), "catch_up": catch_up}),
        Trigger::Webhook { name } => json!({"webhook": name.value}),
        Trigger::Manual => json!("manual"),
    }
}

async fn list_runbooks(State(svc): Svc) -> Json<J> {
    let lib = svc.library_read();
    Json(json!({
        "runbooks": lib.runbooks().map(|r| runbook_summary(r)).collect::<Vec<_>>(),
        "files": lib.files(),
        "last_reload": lib.last_reload,
    }))
}

async fn show_runbook(State(svc): Svc, Path(name): Path<String>) -> Result<Json<J>, ApiError> {
    let lib = svc.library_read();
    let rb = lib
        .runbook(&name)
        .ok_or_else(|| ApiError::NotFound(format!("runbook `{name}`")))?;
    let r = &rb.runbook;
    let mut out = runbook_summary(&rb);
    out["status"] = json!(lib.status_of(&name));
    out["guards"] = json!({
        "concurrency": r.guards.concurrency,
        "cooldown": r.guards.cooldown.map(|d| d.to_string()),
        "max_runs": r.guards.max_runs.as_ref().map(|m| json!({"count": m.count, "window": m.window.to_string()})),
        "scope": r.guards.scope.as_ref().map(|s| s.value.clone()),
    });
    out["params"] = J::Object(
        r.params
            .iter()
            .map(|p| {
                (
                    p.name.value.clone(),
                    json!({"type": p.spec.ty, "required": p.spec.required, "default": p.spec.default.as_ref().map(|d| d.value.clone()), "description": p.spec.description}),
                )
            })
            .collect(),
    );
    out["steps"] = json!(
        r.all_steps()
            .iter()
            .map(|s| json!({"id": s.id.value.as_str(), "kind": s.kind.name, "idempotent": s.idempotent, "line": s.pos.line}))
            .collect::<Vec<_>>()
    );
    out["graph"] = json!({"steps": step_tree(&r.steps), "on_failure": step_tree(&r.on_failure)});
    out["source"] = json!(rb.text);
    Ok(Json(out))
}

/// The steps as a tree (nesting of `parallel` / `for_each`), with what
/// changes their flow: `if`, retries, timeouts, `continue_on_error`.
fn step_tree(steps: &[crate::runbook::model::Step]) -> J {
    J::Array(
        steps
            .iter()
            .map(|s| {
                json!({
                    "id": s.id.value.as_str(),
                    "kind": s.kind.name,
                    "line": s.pos.line,
                    "name": s.name,
                    "if": s.when.as_ref().map(|w| w.value.clone()),
                    "retry": s.retry.as_ref().map(|r| r.attempts),
                    "timeout": s.timeout.map(|t| t.to_string()),
                    "continue_on_error": s.continue_on_error,
                    "children": step_tree(&s.children),
                })
            })
            .collect(),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default)]
    params: serde_json::Map<String, J>,
    #[serde(default)]
    dry_run: bool,
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn params_error(errors: Vec<String>) -> ApiError {
    ApiError::Invalid(
        errors
            .into_iter()
            .map(|m| ("params".to_string(), m))
            .collect(),
    )
}

async fn trigger_run(
    State(svc): Svc,
    Path(name): Path<String>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: TriggerBody = json_body(&body)?;
    let rb = svc
        .library_read()
        .runbook(&name)
        .ok_or_else(|| ApiError::NotFound(format!("runbook `{name}`")))?;
    let params: BTreeMap<String, J> = body.params.into_iter().collect();
    // A dry run renders everything and changes nothing; it also checks the parameters.
    let plan = execute(
        &svc.runner.services,
        rb.runbook.clone(),
        RunRequest {
            params: params.clone(),
            trigger: "manual".into(),
            who: who.name.clone(),
            dry_run: true,
            ..RunRequest::default()
        },
    )
    .await;
    let plan = match plan {
        Ok(p) => p,
        Err(RunError::InvalidParams(errors)) => return Err(params_error(errors)),
        Err(e) => return Err(ApiError::Internal(e.into())),
    };
    if body.dry_run {
        return Ok(
            Json(json!({"dry_run": true, "runbook": name, "plan": plan.plan})).into_response(),
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("api:{name}:{k}"));
    let out = svc
        .runner
        .submit(Submission {
            runbook: rb,
            params,
            trigger: "manual".into(),
            who: who.name,
            alert: None,
            webhook: None,
            scheduled_at: None,
            scope: None,
            fingerprint: None,
            claim: key,
        })
        .await;
    submitted(&svc, out)
}

fn submitted(svc: &Service, out: crate::service::runner::Outcome) -> Result<Response, ApiError> {
    let url = out.run_id.as_ref().map(|id| format!("/api/v1/runs/{id}"));
    let code = match out.decision {
        Decision::Started | Decision::Queued => StatusCode::ACCEPTED,
        Decision::Deduplicated => StatusCode::OK,
        Decision::Error => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "{}",
                out.detail.unwrap_or_default()
            )));
        }
        _ => StatusCode::CONFLICT,
    };
    let _ = svc;
    Ok((
        code,
        Json(json!({"decision": out.decision, "run_id": out.run_id, "detail": out.detail, "url": url})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    runbook: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    fingerprint: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    limit: Option<i64>,
}

/// An RFC 3339 instant from a query parameter.
fn instant(field: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::Invalid(vec![(
                        field.into(),
                        format!("`{s}` is not an RFC 3339 time: {e}"),
                    )])
                })
        })
        .transpose()
}

async fn list_runs(State(svc): Svc, Query(q): Query<RunsQuery>) -> Result<Json<J>, ApiError> {
    if let Some(s) = &q.status
        && crate::exec::executor::RunStatus::parse(s).is_none()
    {
        return Err(ApiError::Invalid(vec![(
            "status".into(),
            format!("unknown status `{s}`"),
        )]));
    }
    if let Some(fp) = &q.fingerprint
        && (fp.is_empty() || !fp.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::Invalid(vec![(
            "fingerprint".into(),
            format!("`{fp}` is not an alert fingerprint (hex)"),
        )]));
    }
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let bad = || {
                ApiError::Invalid(vec![(
                    "cursor".into(),
                    format!("`{c}` is not a `next` value of this listing"),
                )])
            };
            let (t, id) = c.split_once('|').ok_or_else(bad)?;
            let t = DateTime::parse_from_rfc3339(t).map_err(|_| bad())?;
            Some((t.with_timezone(&Utc), id.to_string()))
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let runs = svc
        .store
        .find_runs(&RunFilter {
            runbook: q.runbook.filter(|s| !s.is_empty()),
            status: q.status.filter(|s| !s.is_empty()),
            trigger: q.trigger.filter(|s| !s.is_empty()),
            fingerprint: q.fingerprint,
            since: instant("since", &q.since)?,
            until: instant("until", &q.until)?,
            after,
            limit,
        })
        .await
        .map_err(store_err)?;
    // A full page may have more after it.
    let next = (runs.len() as i64 == limit)
        .then(|| runs.last())
        .flatten()
        .map(|r| format!("{}|{}", r.started_at, r.id));
    Ok(Json(json!({ "runs": runs, "next": next })))
}

async fn show_run(State(svc): Svc, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    Ok(Json(super::run_events::document(&svc, &id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    comment: Option<String>,
}

async fn decide(
    svc: &Service,
    id: &str,
    approve: bool,
    who: &Principal,
    body: &Bytes,
) -> Result<Json<J>, ApiError> {
    let body: DecisionBody = json_body(body)?;
    let paths = svc
        .store
        .decide(id, approve, &who.name, body.comment.as_deref())
        .await
        .map_err(store_err)?;
    Ok(Json(json!({
        "run_id": id,
        "decision": if approve { "approved" } else { "rejected" },
        "by": who.name,
        "steps": paths,
    })))
}

async fn approve(
    State(svc): Svc,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<J>, ApiError> {
    decide(&svc, &id, true, &who, &body).await
}

async fn reject(
    State(svc): Svc,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<J>, ApiError> {
    decide(&svc, &id, false, &who, &body).await
}

async fn cancel(
    State(svc): Svc,
    Path(id): Path<String>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    let result = svc.runner.cancel(&id, &who.name).await.map_err(store_err)?;
    let code = match result {
        CancelResult::AlreadyFinished { .. } => StatusCode::CONFLICT,
        _ => StatusCode::ACCEPTED,
    };
    Ok((code, Json(json!({"run_id": id, "cancel": result}))).into_response())
}

/// Every rule group with its rules as written (expression, `for`, labels),
/// each alerting rule's pending and firing alerts, and the group's last
/// evaluation (when, how long, which rules failed and why).
async fn list_rules(State(svc): Svc) -> Json<J> {
    use crate::alert::AlertState;
    use crate::alert::group::GroupRule;
    let groups: Vec<J> = svc
        .rules
        .groups()
        .iter()
        .map(|g| {
            let g = g.lock().unwrap_or_else(|p| p.into_inner());
            let errors = g.last_eval.as_ref().map(|e| e.errors.clone()).unwrap_or_default();
            let rules: Vec<J> = g
                .rules
                .iter()
                .map(|r| {
                    let error = errors.iter().find(|(n, _)| n == r.name()).map(|(_, e)| e.clone());
                    match r {
                        GroupRule::Alerting(a) => {
                            let count = |st: AlertState| a.active_alerts().filter(|x| x.state == st).count();
                            json!({
                                "type": "alerting", "name": a.name, "expr": a.expr.to_string(),
                                "for": crate::duration::Duration::from_millis(a.for_ms.max(0) as u64).to_string(),
                                "labels": a.labels, "annotations": a.annotations,
                                "pending": count(AlertState::Pending), "firing": count(AlertState::Firing),
                                "health": if error.is_some() { "err" } else { "ok" }, "last_error": error,
                            })
                        }
                        GroupRule::Recording(rr) => json!({
                            "type": "recording", "name": rr.name, "expr": rr.expr.to_string(), "labels": rr.labels,
                            "health": if error.is_some() { "err" } else { "ok" }, "last_error": error,
                        }),
                    }
                })
                .collect();
            json!({
                "name": g.name, "file": g.file, "interval_ms": g.interval_ms,
                "last_evaluation": g.last_eval.as_ref().and_then(|e| DateTime::<Utc>::from_timestamp_millis(e.at_ms)).map(|t| t.to_rfc3339()),
                "evaluation_ms": g.last_eval.as_ref().map(|e| e.took_ms),
                "rules": rules,
            })
        })
        .collect();
    Json(json!({ "groups": groups }))
}

async fn list_alerts(State(svc): Svc) -> Json<J> {
    let fmt_ms =
        |ms: i64| chrono::DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339());
    let external = &svc.config.alerting.external_labels;
    let mut out: Vec<J> = svc
        .rules
        .alerts()
        .into_iter()
        .filter(|(_, a)| a.state != crate::alert::AlertState::Inactive)
        .map(|(group, a)| {
            let mut labels = external.clone();
            labels.extend(a.labels.clone());
            let fp = crate::alert::fingerprint(&labels);
            json!({
                "name": labels.get("alertname"),
                "state": a.state,
                "labels": labels,
                "annotations": a.annotations,
                "value": if a.value.is_finite() { json!(a.value) } else { json!(a.value.to_string()) },
                "active_since": fmt_ms(a.active_at_ms),
                "firing_since": a.fired_at_ms.and_then(fmt_ms),
                "fingerprint": fp,
                "handled": svc.runner.is_handled(&fp),
                "source": {"type": "rule", "group": group},
            })
        })
        .collect();
    for ev in svc
        .external_alerts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
    {
        out.push(json!({
            "name": ev.name,
            "state": "firing",
            "labels": ev.labels,
            "annotations": ev.annotations,
            "active_since": fmt_ms(ev.since_ms),
            "fingerprint": ev.fingerprint,
            "handled": svc.runner.is_handled(&ev.fingerprint),
            "source": ev.source,
        }));
    }
    Json(json!({ "alerts": out }))
}

/// Silences from the store (shared by every instance, and kept whether or
/// not this instance sends notifications), expired ones for a day.
async fn list_silences(State(svc): Svc) -> Result<Json<J>, ApiError> {
    let now = Utc::now();
    let list: Vec<J> = svc
        .store
        .silences(now - chrono::Duration::days(1))
        .await
        .map_err(store_err)?
        .into_iter()
        .rev()
        .map(|s| {
            let state = crate::service::notifier::silence_of(&s).map(|x| x.state(now));
            json!({
                "id": s.id,
                "matchers": s.matchers,
                "starts_at": s.starts_at.to_rfc3339(),
                "ends_at": s.ends_at.to_rfc3339(),
                "created_by": s.created_by,
                "comment": s.comment,
                "state": state,
            })
        })
        .collect();
    Ok(Json(
        json!({ "silences": list, "maintenance_windows": svc.windows.status(now) }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    #[serde(default)]
    matchers: Vec<String>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    comment: String,
}

async fn create_silence(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: SilenceBody = json_body(&body)?;
    let mut problems = Vec::new();
    let now = Utc::now();
    let parse_t = |field: &str, s: &Option<String>, problems: &mut Vec<(String, String)>| {
        s.as_ref().and_then(|s| match alerts::parse_time(s) {
            Some(t) => Some(t),
            None => {
                problems.push((field.to_string(), format!("`{s}` is not an RFC 3339 time")));
                None
            }
        })
    };
    let starts = parse_t("starts_at", &b.starts_at, &mut problems).unwrap_or(now);
    let ends = match (&b.ends_at, &b.duration) {
        (Some(_), Some(_)) => {
            problems.push((
                "duration".into(),
                "give `ends_at` or `duration`, not both".into(),
            ));
            None
        }
        (Some(_), None) => parse_t("ends_at", &b.ends_at, &mut problems),
        (None, Some(d)) => match d.parse::<crate::duration::Duration>() {
            Ok(d) => chrono::Duration::from_std(d.std()).ok().map(|d| starts + d),
            Err(e) => {
                problems.push(("duration".into(), e.to_string()));
                None
            }
        },
        (None, None) => {
            problems.push((
                "ends_at".into(),
                "a silence needs `ends_at` or `duration`".into(),
            ));
            None
        }
    };
    for (i, m) in b.matchers.iter().enumerate() {
        if let Err(e) = crate::dispatch::Matcher::parse(m) {
            problems.push((format!("matchers[{i}]"), e.to_string()));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let id = {
        use rand::RngExt;
        format!("s{:016x}", rand::rng().random::<u64>())
    };
    let rec = SilenceRecord {
        id: id.clone(),
        matchers: b.matchers,
        starts_at: starts,
        ends_at: ends.unwrap_or(now),
        created_by: who.name.clone(),
        comment: b.comment,
    };
    let silence = crate::service::notifier::silence_of(&rec)
        .ok_or_else(|| ApiError::BadRequest("invalid matchers".into()))?;
    // Validate as the dispatcher would before storing anything.
    let mut probe = crate::dispatch::Silences::new();
    probe
        .upsert(silence.clone())
        .map_err(|e| ApiError::Invalid(vec![("matchers".into(), e.to_string())]))?;
    svc.store.upsert_silence(&rec).await.map_err(store_err)?;
    if let Some(d) = &svc.dispatcher {
        let _ = d
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .silences
            .upsert(silence);
    }
    Ok((StatusCode::CREATED, Json(json!({"id": id, "silence": rec}))).into_response())
}

async fn expire_silence(State(svc): Svc, Path(id): Path<String>) -> Result<Json<J>, ApiError> {
    let now = Utc::now();
    let existing = svc
        .store
        .silences(chrono::DateTime::<Utc>::MIN_UTC)
        .await
        .map_err(store_err)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "silence `{id}` (silences from sluice.yaml cannot be expired here)"
            ))
        })?;
    let mut rec = existing;
    if rec.ends_at > now {
        rec.ends_at = now;
        if rec.starts_at > now {
            rec.starts_at = now;
        }
    }
    svc.store.upsert_silence(&rec).await.map_err(store_err)?;
    if let Some(d) = &svc.dispatcher {
        let _ = d
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .silences
            .expire(&id, now);
    }
    Ok(Json(json!({"id": id, "expired_at": now.to_rfc3339()})))
}

async fn list_schedules(State(svc): Svc) -> Result<Json<J>, ApiError> {
    let fires = svc.store.schedule_fires().await.map_err(store_err)?;
    let now = svc.clock.now();
    let list: Vec<J> = svc
        .library_read()
        .schedules()
        .iter()
        .map(|t| {
            let e = &t.entry;
            json!({
                "id": e.id,
                "runbook": t.runbook.name(),
                "cron": e.schedule.expr(),
                "timezone": e.schedule.tz().name(),
                "catch_up": e.catch_up,
                "next": e.schedule.upcoming(now, 3).iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
                "last_fire": fires.get(&e.id).map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    Ok(Json(json!({"now": now.to_rfc3339(), "schedules": list})))
}

#[derive(Debug, Deserialize)]
struct QueryParams {
    query: String,
    time: Option<f64>,
}

async fn query(State(svc): Svc, Query(q): Query<QueryParams>) -> Response {
    let Some(local) = &svc.runner.services.local_query else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            Json(
                json!({"status": "error", "errorType": "unavailable", "error": "no local metrics"}),
            ),
        )
            .into_response();
    };
    let t_ms = q
        .time
        .map(|t| (t * 1000.0) as i64)
        .unwrap_or_else(|| Utc::now().timestamp_millis());
    match local.query(&q.query, t_ms) {
        Ok(data) => Json(json!({"status": "success", "data": data})).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "errorType": "bad_data", "error": e})),
        )
            .into_response(),
    }
}

async fn status(State(svc): Svc) -> Result<Json<J>, ApiError> {
    let instances = svc.store.instances().await.map_err(store_err)?;
    let scrapes: Vec<J> = svc
        .scrape_reports
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, r)| json!({"target": name, "up": r.up, "samples": r.samples, "error": r.error, "duration_ms": r.duration.as_millis()}))
        .collect();
    let lib = svc.library_read();
    Ok(Json(json!({
        "instance": svc.instance,
        "started_at": svc.started_at.to_rfc3339(),
        "instances": instances,
        "kill_switch": svc.runner.guards.kill_switch(),
        "store": svc.store.backend(),
        "active_runs": svc.runner.active_runs(),
        "runbooks": lib.runbooks().count(),
        "invalid_files": lib.files().iter().filter(|f| !f.valid).count(),
        "last_reload": lib.last_reload,
        "scrape": scrapes,
        "maintenance_windows": svc.windows.status(svc.clock.now()),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

async fn reload(State(svc): Svc) -> Result<Json<J>, ApiError> {
    let s = svc.clone();
    let report = tokio::task::spawn_blocking(move || s.reload())
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(json!(report)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillSwitchBody {
    on: bool,
}

async fn kill_switch(
    State(svc): Svc,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<J>, ApiError> {
    let b: KillSwitchBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid JSON body: {e} (expected {{\"on\": true|false}})"
        ))
    })?;
    svc.store
        .set_state(KILL_SWITCH, if b.on { "on" } else { "off" }, &who.name)
        .await
        .map_err(store_err)?;
    svc.set_kill_switch_local(b.on);
    tracing::warn!(by = %who.name, on = b.on, "Kill switch changed.");
    Ok(Json(json!({"kill_switch": b.on, "by": who.name})))
}

#[derive(Debug, Deserialize)]
struct DecisionsQuery {
    runbook: Option<String>,
    limit: Option<usize>,
}

async fn list_decisions(State(svc): Svc, Query(q): Query<DecisionsQuery>) -> Json<J> {
    let limit = q
        .limit
        .unwrap_or(100)
        .min(crate::service::decisions::CAPACITY);
    Json(json!({
        "decisions": svc.runner.decisions.recent(limit, q.runbook.as_deref()),
        "capacity": crate::service::decisions::CAPACITY,
    }))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit_log(State(svc): Svc, Query(q): Query<AuditQuery>) -> Json<J> {
    Json(json!({"events": svc.audit.recent(q.limit.unwrap_or(100).min(1000))}))
}

async fn hook(
    State(svc): Svc,
    Path(name): Path<String>,
    slot: Option<Extension<PrincipalSlot>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(cfg) = svc.config.hooks.get(&name) else {
        return Err(ApiError::NotFound(format!("hook `{name}`")));
    };
    let auth = match (&cfg.token, &cfg.hmac) {
        (Some(t), _) => HookAuth::Token(t.expose().to_string()),
        (_, Some(k)) => HookAuth::Hmac(k.expose().to_string()),
        _ => return Err(ApiError::Unauthorized),
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    auth.verify(
        h(header::AUTHORIZATION.as_str()),
        h(SIGNATURE_HEADER),
        h(TIMESTAMP_HEADER),
        &body,
        Utc::now().timestamp(),
    )?;
    let principal = format!("hook:{name}");
    if let Some(Extension(slot)) = slot {
        slot.set(Principal {
            name: principal.clone(),
            role: Role::Operator,
        });
    }
    let payload: J = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let runbooks = svc.library_read().hook_runbooks(&name).to_vec();
    if runbooks.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no runbook in effect has a `webhook: {name}` trigger"
        )));
    }
    let delivery = ["idempotency-key", "x-request-id", "x-github-delivery"]
        .iter()
        .find_map(|k| h(k))
        .map(str::to_string);
    let params: BTreeMap<String, J> = payload
        .get("params")
        .and_then(J::as_object)
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    let mut results = Vec::new();
    for rb in runbooks {
        let scope = alerts::guard_scope(&rb.runbook, &J::Null, "");
        let out = svc
            .runner
            .submit(Submission {
                runbook: rb.clone(),
                params: params.clone(),
                trigger: "webhook".into(),
                who: principal.clone(),
                alert: None,
                webhook: Some(payload.clone()),
                scheduled_at: None,
                scope: Some(scope),
                fingerprint: None,
                claim: delivery
                    .as_ref()
                    .map(|d| format!("hook:{name}:{}:{d}", rb.name())),
            })
            .await;
        results.push(json!({"runbook": rb.name(), "decision": out.decision, "run_id": out.run_id, "detail": out.detail}));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"hook": name, "runs": results})),
    )
        .into_response())
}
