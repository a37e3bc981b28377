//! `process.*`: start, stop, restart, scale and inspect the engine processes
//! Sluice supervises for a target (`targets.<name>.process` in sluice.yaml).
//! How the N instances of one target get their names, admin ports and
//! configs is [`crate::process::instance`]'s job; this module holds what the
//! kinds share: finding the supervisor, starting one instance and waiting for
//! its `/health`, stopping one (optionally draining it first), and describing
//! the running instances.

pub mod restart;
pub mod scale;
pub mod start;
pub mod status;
pub mod stop;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use serde::Deserialize;
use serde_json::{Value as J, json};

use super::{Action, Ref, RefKind, StepError};
use crate::config::Target;
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::process::instance::{self, InstanceError};
use crate::process::{ProcessState, ProcessStatus, Supervisor, SupervisorError};
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

/// How long a started instance may take to answer `/health` (default).
pub fn default_ready_timeout() -> Duration {
    Duration::from_secs(60)
}

/// JSON Schema of the `target` field every `process.*` kind has.
pub fn target_schema() -> J {
    json!({"type": "string", "description": "A target from sluice.yaml `targets` that has a `process:` section."})
}

pub fn ready_timeout_schema() -> J {
    json!({"type": "string", "default": "60s", "description": "How long a started instance may take to answer /health."})
}

/// The supervised target a step acts on.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct TargetRef(pub At<String>);

impl TargetRef {
    pub fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::SupervisedTarget, &self.0)]
    }
    pub fn name(&self) -> &str {
        &self.0.value
    }
}

/// Parses a `process.*` config: a plain struct, decoded with positions.
pub fn parse_as<T>(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError>
where
    T: Action + serde::de::DeserializeOwned + 'static,
{
    Ok(Box::new(super::decode::<T>(node, lenient)?))
}

/// `" (drain each first)"` when draining, for `describe()`.
pub fn drain_note(drain: bool) -> &'static str {
    if drain { " (drain each first)" } else { "" }
}

/// Running instances of one target with their index, lowest first.
pub type Running = Vec<(usize, ProcessStatus)>;

/// The supervisor and the indices of the running instances of a supervised target.
pub fn running_of<'a>(
    cx: &'a StepCx<'a>,
    name: &str,
) -> Result<(&'a Arc<Supervisor>, Running), StepError> {
    target(cx, name)?;
    let sup = supervisor(cx)?;
    Ok((sup, running(sup, name)))
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
pub fn running(sup: &Supervisor, target: &str) -> Running {
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

/// GET `/health` of an instance once.
pub async fn healthy(cx: &StepCx<'_>, base: &str) -> bool {
    cx.services
        .http
        .get(format!("{base}/health"))
        .timeout(StdDuration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
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
        if healthy(cx, &base).await {
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
