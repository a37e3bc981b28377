//! Runs a runbook: resolves parameters, executes steps in order with the
//! common stages around each (if, timeout, retry, continue_on_error), records
//! every run and step, runs `on_failure` steps, sends run notifications.
//!
//! Durability contract (for resuming after a crash): a step's record is
//! written as `running` *before* the step executes and finished *after*. A run
//! found `running` with a `running` step after a restart was interrupted there;
//! the step may be re-run only if the model marks it `idempotent`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value as J, json};
use tracing::{info, warn};

use super::context::{RunState, Scope, Services, StepCx, StepLog};
use super::stage::{with_retry, with_timeout};
use super::steps::{Action, Failure, StepError};
use crate::runbook::model::{Runbook, Step};
use crate::runbook::params;
use crate::runbook::template::{Escape, truthy};
use crate::store::{NewRun, StepEnd, StepStart};

/// Step status written for steps cut off by a cancel or the run timeout.
pub const ABANDONED: &str = "abandoned";
use crate::yaml::{Node, Value};

/// Lifecycle of a run. Legal moves: Queued → Running; Running →
/// WaitingApproval ⇄ Running → Succeeded | Failed | Cancelled; Running |
/// WaitingApproval → Interrupted (found after a crash at a step that is not
/// safe to repeat); Queued → Cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting behind another run of the same guard key (`concurrency: queue`).
    Queued,
    Running,
    WaitingApproval,
    Succeeded,
    Failed,
    /// Stopped on request (API / CLI); `on_failure` steps ran.
    Cancelled,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::WaitingApproval => "waiting_approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub const ALL: [RunStatus; 7] = [
        Self::Queued,
        Self::Running,
        Self::WaitingApproval,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Interrupted,
    ];

    pub fn parse(s: &str) -> Option<RunStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Cancelled
                | RunStatus::Interrupted
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Shown by `--dry-run`: rendered, not executed.
    Planned,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Planned => "planned",
        }
    }
}

/// Asks a running run to stop; the executor hears it between and inside steps
/// (the current step's future is dropped, which kills its processes and aborts
/// its requests), runs `on_failure`, and records the run as cancelled.
#[derive(Debug, Clone)]
pub struct CancelHandle(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl CancelHandle {
    pub fn new() -> (CancelHandle, CancelSignal) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (CancelHandle(Arc::new(tx)), CancelSignal(rx))
    }

    /// Cancels on behalf of `who`; the first request wins.
    pub fn cancel(&self, who: &str) {
        self.0.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(who.to_string());
                true
            } else {
                false
            }
        });
    }
}

/// The receiving side of a [`CancelHandle`].
#[derive(Debug, Clone)]
pub struct CancelSignal(tokio::sync::watch::Receiver<Option<String>>);

impl CancelSignal {
    /// Resolves with who cancelled; never resolves if nobody does.
    pub async fn cancelled(&mut self) -> String {
        let who = match self.0.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match who {
            Some(who) => who,
            // The handle is gone: nobody can cancel any more.
            None => std::future::pending().await,
        }
    }
}

/// Step records of an interrupted run: steps that finished are not run again
/// (their outputs are restored into `steps.*`); the rest run.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub steps: BTreeMap<String, crate::store::StepRecord>,
}

/// What asked for a run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub params: BTreeMap<String, J>,
    /// `manual`, `schedule`, `alert`, `webhook`, `runbook` — recorded with the run.
    pub trigger: String,
    /// Who started it (user name, token name, `scheduler`).
    pub who: String,
    /// The alert that triggered it (labels, annotations, value, fingerprint).
    pub alert: Option<J>,
    /// The webhook body that triggered it.
    pub webhook: Option<J>,
    pub dry_run: bool,
    pub parent_run: Option<String>,
    pub depth: usize,
    /// The run record exists already (created by the service with its guard
    /// and claim): use this id and do not create another.
    pub id: Option<String>,
    /// Service instance that owns the run (recorded; child runs inherit it).
    pub owner: Option<String>,
    /// The scheduled time of the fire that started it (`run.scheduled_at`).
    pub scheduled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancel: Option<CancelSignal>,
    pub resume: Option<Resume>,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub id: String,
    pub status: RunStatus,
    /// `step: error` when the run failed.
    pub error: Option<String>,
    /// `steps.*` as templates saw them at the end.
    pub steps: J,
    /// Dry-run: what each step would do, in order.
    pub plan: Vec<PlannedStep>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStep {
    pub path: String,
    pub kind: String,
    pub what: String,
    pub inputs: J,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid parameters: {}", .0.join("; "))]
    InvalidParams(Vec<String>),
    #[error("run store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A failed step that stops the run.
#[derive(Debug, Clone)]
struct Stopped {
    path: String,
    error: String,
}

/// Unique run id: time-ordered, random suffix.
pub fn new_run_id() -> String {
    use rand::RngExt;
    let now = chrono::Utc::now();
    let suffix: u32 = rand::rng().random();
    format!("r{}-{:08x}", now.format("%Y%m%d%H%M%S%3f"), suffix)
}

/// Runs `runbook` to completion.
pub async fn execute(
    services: &Arc<Services>,
    runbook: Arc<Runbook>,
    req: RunRequest,
) -> Result<RunOutcome, RunError> {
    let preassigned = req.id.is_some();
    let id = req.id.clone().unwrap_or_else(new_run_id);
    let now = chrono::Utc::now();
    let base = json!({
        "runbook": {"name": runbook.name.value, "description": runbook.description},
        "run": {
            "id": id, "trigger": req.trigger, "who": req.who, "started_at": now.to_rfc3339(),
            "dry_run": req.dry_run, "resumed": req.resume.is_some(),
            "scheduled_at": req.scheduled_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "url": services.run_url(&id),
        },
        "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "alert": req.alert.clone().unwrap_or(J::Null),
        "webhook": req.webhook.clone().unwrap_or(J::Null),
        "targets": targets_json(services),
        "env": env_json(services),
        "secrets": secrets_json(services),
        "steps": {},
        "params": {},
    });
    let scope = Scope::new(base);
    let store = if req.dry_run {
        None
    } else {
        services.store.as_ref()
    };
    let params = match params::resolve(&runbook, &req.params, &|t| {
        scope.render(t, Escape::None).map_err(|e| e.0)
    }) {
        Ok(p) => p,
        Err(errors) => {
            // A service-created record must not stay `running`: say why it never started.
            if let (Some(store), true) = (store, preassigned) {
                let msg = services
                    .redactor
                    .text(&format!("invalid parameters: {}", errors.join("; ")));
                store
                    .finish_run(&id, RunStatus::Failed, Some(&msg), chrono::Utc::now())
                    .await?;
            }
            return Err(RunError::InvalidParams(errors));
        }
    };
    scope.set("params", J::Object(params.clone()));

    if let Some(store) = store {
        let recorded = services.redactor.json(J::Object(params));
        if preassigned {
            store.set_run_params(&id, &recorded).await?;
        } else {
            store
                .create_run(&NewRun {
                    parent: req.parent_run.as_deref(),
                    owner: req.owner.as_deref(),
                    ..NewRun::manual(&id, &runbook.name, &req.trigger, &req.who, &recorded, now)
                })
                .await?;
        }
    }
    if req.dry_run {
        tracing::debug!(runbook = %runbook.name.value, "Dry run.");
    } else {
        info!(run_id = %id, runbook = %runbook.name.value, trigger = %req.trigger, "Run started.");
    }
    let resumed = req.resume.is_some();
    let run = RunState {
        id: id.clone(),
        runbook: runbook.clone(),
        scope,
        dry_run: req.dry_run,
        depth: req.depth,
        who: req.who.clone(),
        owner: req.owner.clone(),
        resume: req.resume.map(Arc::new),
    };
    if !req.dry_run && !resumed {
        super::steps::notify::run_event(services, &run, "start", &runbook.notify.on_start, None)
            .await;
    }

    let mut plan = Vec::new();
    let body = run_steps(services, &run, &runbook.steps, &run.scope, "", &mut plan);
    let limited = async {
        match runbook.timeout {
            Some(limit) => match tokio::time::timeout(limit.std(), body).await {
                Ok(r) => r,
                Err(_) => Err(Stopped {
                    path: String::new(),
                    error: format!("run timed out after {limit}"),
                }),
            },
            None => body.await,
        }
    };
    let mut cancel = req.cancel.clone();
    let mut cancelled_by = None;
    let result = match cancel.as_mut() {
        Some(signal) => tokio::select! {
            r = limited => r,
            who = signal.cancelled() => {
                cancelled_by = Some(who.clone());
                Err(Stopped { path: String::new(), error: format!("cancelled by {who}") })
            }
        },
        None => limited.await,
    };
    if result.is_err()
        && let Some(store) = store
    {
        // Steps cut off by the run timeout or a cancel never finished by themselves.
        store.abandon_running_steps(&id, chrono::Utc::now()).await?;
    }

    let (status, error) = match &result {
        Ok(()) => (RunStatus::Succeeded, None),
        Err(stop) => {
            let msg = if stop.path.is_empty() {
                stop.error.clone()
            } else {
                format!("{}: {}", stop.path, stop.error)
            };
            let status = if cancelled_by.is_some() {
                RunStatus::Cancelled
            } else {
                RunStatus::Failed
            };
            (status, Some(services.redactor.text(&msg)))
        }
    };
    if let Err(stop) = &result
        && !runbook.on_failure.is_empty()
    {
        run.scope.set(
            "failed",
            json!({"step": stop.path, "error": services.redactor.text(&stop.error)}),
        );
        if let Err(again) = run_steps(
            services,
            &run,
            &runbook.on_failure,
            &run.scope,
            "on_failure.",
            &mut plan,
        )
        .await
        {
            warn!(run_id = %id, step = %again.path, error = %again.error, "on_failure step failed.");
        }
    }
    if let Some(store) = store {
        store
            .finish_run(&id, status, error.as_deref(), chrono::Utc::now())
            .await?;
    }
    if !req.dry_run {
        let channels = if status == RunStatus::Succeeded {
            &runbook.notify.on_success
        } else {
            &runbook.notify.on_failure
        };
        super::steps::notify::run_event(
            services,
            &run,
            status.as_str(),
            channels,
            error.as_ref().map(|e| format!("Error: {e}")).as_deref(),
        )
        .await;
    }
    if !req.dry_run {
        info!(run_id = %id, status = %status, "Run finished.");
    }
    let steps = run.scope.get("steps").unwrap_or(J::Null);
    Ok(RunOutcome {
        id,
        status,
        error,
        steps,
        plan,
    })
}

fn targets_json(services: &Services) -> J {
    J::Object(
        services
            .config
            .targets
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    json!({"name": name, "url": t.url.to_string()}),
                )
            })
            .collect(),
    )
}

fn env_json(services: &Services) -> J {
    J::Object(
        services
            .config
            .env
            .iter()
            .filter_map(|name| {
                std::env::var(name)
                    .ok()
                    .map(|v| (name.clone(), J::String(v)))
            })
            .collect(),
    )
}

fn secrets_json(services: &Services) -> J {
    J::Object(
        services
            .config
            .secrets
            .iter()
            .map(|(name, s)| (name.clone(), J::String(s.expose().to_string())))
            .collect(),
    )
}

/// Runs steps in order; stops at the first failure not covered by `continue_on_error`.
fn run_steps<'a>(
    services: &'a Arc<Services>,
    run: &'a RunState,
    steps: &'a [Step],
    scope: &'a Scope,
    prefix: &'a str,
    plan: &'a mut Vec<PlannedStep>,
) -> BoxFuture<'a, Result<(), Stopped>> {
    Box::pin(async move {
        for step in steps {
            run_step(services, run, step, scope, prefix, plan).await?;
        }
        Ok(())
    })
}

/// Runs child steps of `parallel` / `for_each` in `scope` (used by those kinds).
pub fn run_children<'a>(
    cx: &'a StepCx<'a>,
    scope: &'a Scope,
    prefix: String,
) -> BoxFuture<'a, Result<(), StepError>> {
    Box::pin(async move {
        let mut plan = Vec::new();
        run_steps(
            cx.services,
            cx.run,
            &cx.step.children,
            scope,
            &prefix,
            &mut plan,
        )
        .await
        .map_err(|s| StepError {
            failure: Failure::Permanent,
            message: format!("{}: {}", s.path, s.error),
        })
    })
}

/// Runs one child step (of `parallel`) in `scope`.
pub fn run_one<'a>(
    cx: &'a StepCx<'a>,
    step: &'a Step,
    scope: &'a Scope,
    prefix: String,
) -> BoxFuture<'a, Result<(), StepError>> {
    Box::pin(async move {
        let mut plan = Vec::new();
        run_step(cx.services, cx.run, step, scope, &prefix, &mut plan)
            .await
            .map_err(|s| StepError {
                failure: Failure::Permanent,
                message: format!("{}: {}", s.path, s.error),
            })
    })
}

async fn run_step(
    services: &Arc<Services>,
    run: &RunState,
    step: &Step,
    scope: &Scope,
    prefix: &str,
    plan: &mut Vec<PlannedStep>,
) -> Result<(), Stopped> {
    let path = format!("{prefix}{}", step.id.value);
    let id = step.id.as_str();
    let stop = |error: String| Stopped {
        path: path.clone(),
        error,
    };

    // Resuming after a crash: a step that finished keeps its result and is not run again.
    if let Some(rec) = run.resume.as_ref().and_then(|r| r.steps.get(&path)) {
        let attempts = rec.attempts;
        match rec.status.as_str() {
            "succeeded" => {
                scope.set_step(
                    id,
                    json!({"status": "succeeded", "output": rec.outputs, "attempts": attempts}),
                );
                report(
                    services,
                    run,
                    &path,
                    step,
                    StepStatus::Succeeded,
                    StdDuration::ZERO,
                    None,
                );
                return Ok(());
            }
            "failed" => {
                let error = rec.error.clone().unwrap_or_default();
                scope.set_step(
                    id,
                    json!({"status": "failed", "output": {}, "error": error, "attempts": attempts}),
                );
                report(
                    services,
                    run,
                    &path,
                    step,
                    StepStatus::Failed,
                    StdDuration::ZERO,
                    Some(&error),
                );
                return if step.continue_on_error {
                    Ok(())
                } else {
                    Err(stop(error))
                };
            }
            // Interrupted (`running`/`abandoned`): the service only resumes when it is safe to repeat.
            _ => {}
        }
    }

    if let Some(when) = &step.when {
        match scope.render(when, Escape::None) {
            Ok(v) if !truthy(&v) => {
                scope.set_step(id, json!({"status": "skipped", "output": {}}));
                report(
                    services,
                    run,
                    &path,
                    step,
                    StepStatus::Skipped,
                    StdDuration::ZERO,
                    None,
                );
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if run.dry_run => {
                plan.push(PlannedStep {
                    path: path.clone(),
                    kind: step.kind.name.into(),
                    what: format!("if: decided at run time ({e})"),
                    inputs: J::Null,
                });
            }
            Err(e) => {
                return fail_or_continue(services, run, step, scope, &path, format!("if: {e}"));
            }
        }
    }

    // Render the configuration, then type it (unless it had no template and was typed at load).
    let rendered = match &step.fixed {
        Some(_) => Ok(step.config.clone()),
        None => render_config(&step.config, step.kind.shell_fields, scope),
    };
    let inputs = match &rendered {
        Ok(node) => services.redactor.json(node.to_json()),
        Err(_) => J::Null,
    };
    let action: Result<Arc<dyn Action>, String> = match (&step.fixed, rendered) {
        (Some(a), _) => Ok(a.clone()),
        (None, Ok(node)) => (step.kind.parse)(step.kind.name, &node, false)
            .map(Arc::from)
            .map_err(|e| e.message),
        (None, Err(e)) => Err(e.0),
    };

    if run.dry_run {
        let what = match &action {
            Ok(a) => services.redactor.text(&a.describe()),
            Err(e) => format!("(rendered at run time: {e})"),
        };
        plan.push(PlannedStep {
            path: path.clone(),
            kind: step.kind.name.into(),
            what,
            inputs,
        });
        scope.set_step(id, json!({"status": "planned", "output": {}}));
        report(
            services,
            run,
            &path,
            step,
            StepStatus::Planned,
            StdDuration::ZERO,
            None,
        );
        if !step.children.is_empty() {
            let child_prefix = format!("{path}.");
            run_steps(services, run, &step.children, scope, &child_prefix, plan).await?;
        }
        return Ok(());
    }

    let action = match action {
        Ok(a) => a,
        Err(e) => return fail_or_continue(services, run, step, scope, &path, e),
    };

    let store = services.store.as_ref();
    let started = chrono::Utc::now();
    if let Some(store) = store {
        store
            .start_step(&StepStart {
                run_id: &run.id,
                path: &path,
                kind: step.kind.name,
                inputs: &inputs,
                started_at: started,
            })
            .await
            .map_err(|e| stop(format!("cannot record step start: {e}")))?;
    }
    if let Some(p) = &services.progress {
        p.step_started(&run.id, &path, step.kind.name);
    }
    let clock = Instant::now();
    let log = StepLog::new(services.limits.max_log_lines);
    let cx = StepCx {
        services,
        run,
        step,
        scope,
        path: &path,
        log: &log,
    };
    let limit = step.timeout.map(|d| d.std());
    // A rehearsal answers leaf steps from its mocks and does not wait out backoffs.
    let rehearsal = services.rehearsal.as_ref().filter(|_| !step.kind.nests);
    let retry = match (rehearsal, &step.retry) {
        (Some(_), Some(r)) => Some(crate::runbook::model::Retry {
            backoff: crate::duration::Duration::from_millis(0),
            max_backoff: crate::duration::Duration::from_millis(0),
            ..r.clone()
        }),
        (_, r) => r.clone(),
    };
    let (result, attempts) = with_retry(
        retry.as_ref(),
        |n| {
            let run: BoxFuture<'_, super::steps::StepResult> = match rehearsal {
                Some(r) => Box::pin(std::future::ready(r.answer(
                    &path,
                    step.kind.name,
                    n,
                    &inputs,
                ))),
                None => action.run(&cx),
            };
            with_timeout(limit, run)
        },
        |n, e, delay| {
            cx.log(format!(
                "attempt {n} failed ({:?}): {e}; retrying in {}",
                e.failure,
                crate::duration::Duration(delay)
            ))
        },
    )
    .await;
    let result = result.and_then(|out| {
        let size = serde_json::to_vec(&out).map_or(0, |v| v.len());
        if size > services.limits.max_output_bytes {
            Err(StepError::permanent(format!(
                "output of {size} bytes exceeds the limit of {} bytes",
                services.limits.max_output_bytes
            )))
        } else {
            Ok(out)
        }
    });
    let elapsed = clock.elapsed();
    let (status, output, error) = match &result {
        Ok(out) => (StepStatus::Succeeded, services.redactor.json_ref(out), None),
        Err(e) => (
            StepStatus::Failed,
            std::borrow::Cow::Owned(J::Null),
            Some(services.redactor.text(&e.message)),
        ),
    };
    if let Some(store) = store {
        store
            .finish_step(&StepEnd {
                run_id: &run.id,
                path: &path,
                status: status.as_str(),
                outputs: &output,
                logs: &log.take(),
                error: error.as_deref(),
                attempts,
                finished_at: chrono::Utc::now(),
            })
            .await
            .map_err(|e| stop(format!("cannot record step end: {e}")))?;
    }
    report_with(
        services,
        run,
        &path,
        step,
        status,
        elapsed,
        error.as_deref(),
        &inputs,
    );
    drop(output); // it borrows `result`, taken apart below
    // Outputs are visible to later templates unredacted: a step may pass a secret on deliberately.
    let (record, failure) = match result {
        Ok(out) => (
            json!({"status": "succeeded", "output": out, "attempts": attempts}),
            None,
        ),
        Err(e) => (
            json!({"status": "failed", "output": {}, "error": e.message, "attempts": attempts}),
            Some(e.message),
        ),
    };
    scope.set_step(id, record);
    match failure {
        Some(e) if !step.continue_on_error => Err(stop(e)),
        _ => Ok(()),
    }
}

/// Renders every string of a step's config; fields in `shell_fields` are shell-quoted.
pub fn render_config(
    config: &Node,
    shell_fields: &[&str],
    scope: &Scope,
) -> Result<Node, crate::runbook::template::TemplateError> {
    match &config.value {
        Value::Map(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let escape = if shell_fields.contains(&k.name.as_str()) {
                    Escape::Shell
                } else {
                    Escape::None
                };
                out.push((
                    k.clone(),
                    v.try_map_str(&mut |s, _| scope.render(s, escape))?,
                ));
            }
            Ok(Node::new(config.pos, Value::Map(out)))
        }
        _ => config.try_map_str(&mut |s, _| scope.render(s, Escape::None)),
    }
}

/// A step that could not even start (bad `if`, template, config).
fn fail_or_continue(
    services: &Arc<Services>,
    run: &RunState,
    step: &Step,
    scope: &Scope,
    path: &str,
    error: String,
) -> Result<(), Stopped> {
    let error = services.redactor.text(&error);
    scope.set_step(
        step.id.as_str(),
        json!({"status": "failed", "output": {}, "error": error}),
    );
    report(
        services,
        run,
        path,
        step,
        StepStatus::Failed,
        StdDuration::ZERO,
        Some(&error),
    );
    if step.continue_on_error {
        Ok(())
    } else {
        Err(Stopped {
            path: path.to_string(),
            error,
        })
    }
}

fn report(
    services: &Services,
    run: &RunState,
    path: &str,
    step: &Step,
    status: StepStatus,
    elapsed: StdDuration,
    error: Option<&str>,
) {
    report_with(services, run, path, step, status, elapsed, error, &J::Null);
}

#[allow(clippy::too_many_arguments)]
fn report_with(
    services: &Services,
    run: &RunState,
    path: &str,
    step: &Step,
    status: StepStatus,
    elapsed: StdDuration,
    error: Option<&str>,
    inputs: &J,
) {
    if let Some(p) = &services.progress {
        p.step_finished(&super::context::StepEvent {
            run_id: &run.id,
            runbook: &run.runbook.name.value,
            path,
            kind: step.kind.name,
            status: status.as_str(),
            elapsed,
            error,
            inputs,
        });
    }
}
