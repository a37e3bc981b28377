//! Driver `local`: engine processes a `sluice serve` supervisor runs on this
//! machine (`targets.<name>.process`). How the N instances of one target
//! get their names, admin ports and configs is [`crate::process::instance`]'s
//! job; this file starts one instance and waits for its health, stops one
//! (optionally draining it first), and carries out each operation on them.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value as J, json};

use super::{Driver, Request, Want};
use crate::config::Target;
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::exec::steps::{StepError, StepResult};
use crate::process::instance::{self, InstanceError};
use crate::process::{ProcessState, ProcessStatus, Supervisor, SupervisorError};

/// The local supervisor as a [`Driver`].
pub struct Local;

/// Running instances of one target with their index, lowest first.
pub type Running = Vec<(usize, ProcessStatus)>;

/// The supervisor and the indices of the running instances of a supervised target.
pub fn running_of<'a>(
    cx: &'a StepCx<'a>,
    name: &str,
) -> Result<(&'a Arc<Supervisor>, Running), StepError> {
    target(cx, name)?;
    let sup = supervisor(cx)?;
    Ok((sup, running_now(sup, name)))
}

/// The supervisor, or a clear error where there is none.
pub fn supervisor<'a>(cx: &'a StepCx<'a>) -> Result<&'a Arc<Supervisor>, StepError> {
    cx.services.supervisor.as_ref().ok_or_else(|| {
        StepError::permanent(
            "process.* steps need a process supervisor: run them under `sluice serve` or `sluice up` (a one-shot `sluice run` supervises nothing)",
        )
    })
}

pub fn target<'a>(cx: &'a StepCx<'a>, name: &str) -> Result<&'a Target, StepError> {
    let t = cx.target(name)?;
    instance::process_of(name, t).map_err(instance_error)?;
    Ok(t)
}

pub fn instance_error(e: InstanceError) -> StepError {
    StepError::permanent(e.to_string())
}

/// Running (or restarting) instances of `target`, by index.
pub fn running_now(sup: &Supervisor, target: &str) -> Running {
    let mut out: Running = sup
        .list()
        .into_iter()
        .filter(|s| matches!(s.state, ProcessState::Running | ProcessState::Restarting))
        .filter_map(|s| instance::instance_index(target, &s.name).map(|i| (i, s)))
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out
}

/// One instance as steps report it.
pub fn instance_json(
    name: &str,
    t: &Target,
    index: usize,
    status: Option<&ProcessStatus>,
    healthy: Option<bool>,
) -> J {
    let url = instance::instance_url(name, t, index)
        .map(|u| instance::base(&u))
        .unwrap_or_default();
    let mut j = json!({
        "index": index,
        "name": instance::instance_name(name, index),
        "url": url,
        "state": status.map_or(J::String("stopped".into()), |s| json!(s.state)),
        "pid": status.and_then(|s| s.pid),
        "restarts": status.map_or(0, |s| s.restarts),
        "last_exit": status.and_then(|s| s.last_exit.clone()),
    });
    if let Some(h) = healthy {
        j["healthy"] = J::Bool(h);
    }
    j
}

fn authed(t: &Target, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match &t.token {
        Some(token) => req.bearer_auth(token.expose()),
        None => req,
    }
}

/// GET the health path of an instance once (`true` without one).
pub async fn healthy(cx: &StepCx<'_>, t: &Target, base: &str) -> bool {
    super::healthy(cx, t, base).await.unwrap_or(true)
}

/// The embedded broker address of instance 0 (`pipeline.brokers` of `/admin/threads`).
async fn bootstrap_of(cx: &StepCx<'_>, name: &str, t: &Target) -> Option<String> {
    let url = format!("{}/admin/threads", t.url);
    let req = authed(
        t,
        cx.services.http.get(url).timeout(StdDuration::from_secs(5)),
    );
    let body: J = req.send().await.ok()?.json().await.ok()?;
    let brokers = body.pointer("/pipeline/brokers")?.as_str()?.to_string();
    cx.log(format!("instance 0 of `{name}` uses brokers {brokers}"));
    (!brokers.is_empty()).then_some(brokers)
}

/// Starts instance `index` of `name` unless it runs, then waits for `/health`.
/// Returns the instance and whether it was started by this call.
pub async fn start_instance(
    cx: &StepCx<'_>,
    name: &str,
    index: usize,
    ready_timeout: Duration,
) -> Result<(J, bool), StepError> {
    let sup = supervisor(cx)?;
    let t = target(cx, name)?;
    let supervised = instance::instance_name(name, index);
    let base = instance::instance_url(name, t, index)
        .map(|u| instance::base(&u))
        .map_err(instance_error)?;
    let bootstrap = if index > 0 {
        bootstrap_of(cx, name, t).await
    } else {
        None
    };
    let spec = instance::spec(name, t, index, bootstrap.as_deref()).map_err(instance_error)?;
    let log_path = spec.log.clone();
    let started = match sup.start(spec) {
        Ok(st) => {
            cx.log(format!(
                "started {supervised} (pid {})",
                st.pid.map_or("?".into(), |p| p.to_string())
            ));
            true
        }
        Err(SupervisorError::AlreadyRunning(_)) => {
            cx.log(format!("{supervised} is already running"));
            false
        }
        Err(e) => return Err(StepError::permanent(e.to_string())),
    };
    let clock = Instant::now();
    loop {
        if healthy(cx, t, &base).await {
            break;
        }
        let st = sup.status(&supervised);
        if let Some(s) = &st
            && s.state == ProcessState::Failed
        {
            return Err(StepError::permanent(format!(
                "{supervised} exited and was not restarted ({}); log: {}",
                s.last_exit.as_deref().unwrap_or("unknown exit"),
                log_path
                    .as_ref()
                    .map_or("-".into(), |p| p.display().to_string())
            )));
        }
        if clock.elapsed() >= ready_timeout.std() {
            return Err(StepError::transient(format!(
                "{supervised} did not answer {base}/health within {ready_timeout}; log: {}",
                log_path
                    .as_ref()
                    .map_or("-".into(), |p| p.display().to_string())
            )));
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    let st = sup.status(&supervised);
    Ok((
        instance_json(name, t, index, st.as_ref(), Some(true)),
        started,
    ))
}

/// Stops instance `index` of `name`; with `drain`, asks it to flush and commit first.
pub async fn stop_instance(
    cx: &StepCx<'_>,
    name: &str,
    index: usize,
    drain: bool,
) -> Result<J, StepError> {
    let sup = supervisor(cx)?;
    let t = target(cx, name)?;
    let supervised = instance::instance_name(name, index);
    let mut drained = J::Null;
    if drain {
        let base = instance::instance_url(name, t, index)
            .map(|u| instance::base(&u))
            .map_err(instance_error)?;
        let req = authed(
            t,
            cx.services
                .http
                .post(format!("{base}/admin/processing/drain"))
                .json(&json!({}))
                .timeout(StdDuration::from_secs(120)),
        );
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                drained = r.json().await.unwrap_or(J::Null);
                cx.log(format!("drained {supervised}"));
            }
            Ok(r) => cx.log(format!("drain of {supervised} answered {}", r.status())),
            Err(e) => cx.log(format!("drain of {supervised} failed: {e}")),
        }
    }
    let st = sup
        .stop(&supervised)
        .await
        .map_err(|e| StepError::permanent(e.to_string()))?;
    cx.log(format!(
        "stopped {supervised} ({})",
        st.last_exit.as_deref().unwrap_or("-")
    ));
    let mut j = instance_json(name, t, index, Some(&st), None);
    if drain {
        j["drain"] = drained;
    }
    Ok(j)
}

impl Driver for Local {
    fn start<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let (instance, started) = start_instance(cx, req.target, 0, req.ready_timeout).await?;
            Ok(json!({"started": started, "instance": instance, "instances": [instance]}))
        })
    }

    fn stop<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = req.target;
            let (_, running) = running_of(cx, name)?;
            let mut stopped: Vec<J> = Vec::new();
            for (index, _) in running.into_iter().rev() {
                stopped.push(stop_instance(cx, name, index, req.drain).await?);
            }
            if stopped.is_empty() {
                cx.log(format!("no engine process of `{name}` was running"));
            }
            Ok(json!({"stopped": stopped, "count": stopped.len()}))
        })
    }

    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = req.target;
            let (sup, running) = running_of(cx, name)?;
            let mut indices: Vec<usize> = running.into_iter().map(|(i, _)| i).collect();
            if indices.is_empty() {
                indices.push(0);
            }
            let mut restarted: Vec<J> = Vec::new();
            for index in indices {
                let before = sup
                    .status(&instance::instance_name(name, index))
                    .and_then(|s| s.pid);
                if before.is_some() {
                    stop_instance(cx, name, index, req.drain).await?;
                }
                let (mut inst, _) = start_instance(cx, name, index, req.ready_timeout).await?;
                inst["previous_pid"] = json!(before);
                restarted.push(inst);
            }
            Ok(json!({"instances": restarted, "count": restarted.len()}))
        })
    }

    fn scale<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
        want: Want<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = req.target;
            let (sup, running) = running_of(cx, name)?;
            let previous = running.len();
            let (requested, replicas) = want(previous);
            let mut started: Vec<J> = Vec::new();
            let mut stopped: Vec<J> = Vec::new();
            for (index, _) in running.into_iter().rev() {
                if index >= replicas {
                    stopped.push(stop_instance(cx, name, index, req.drain).await?);
                }
            }
            for index in 0..replicas {
                let (inst, new) = start_instance(cx, name, index, req.ready_timeout).await?;
                if new {
                    started.push(inst);
                }
            }
            let t = target(cx, name)?;
            let instances: Vec<J> = running_now(sup, name)
                .iter()
                .map(|(i, st)| instance_json(name, t, *i, Some(st), None))
                .collect();
            Ok(super::scaled(
                requested, replicas, previous, started, stopped, instances,
            ))
        })
    }

    fn status<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = req.target;
            let (_, running) = running_of(cx, name)?;
            let t = target(cx, name)?;
            let mut instances: Vec<J> = Vec::new();
            let mut healthy_count = 0;
            for (index, st) in running {
                let base = instance::instance_url(name, t, index)
                    .map(|u| instance::base(&u))
                    .map_err(instance_error)?;
                let ok = healthy(cx, t, &base).await;
                healthy_count += usize::from(ok);
                instances.push(instance_json(name, t, index, Some(&st), Some(ok)));
            }
            Ok(json!({
                "running": instances.len(),
                "healthy": healthy_count,
                "instances": instances,
            }))
        })
    }
}
