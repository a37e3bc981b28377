//! Target drivers: how a target's lifecycle is managed. `process.*` steps
//! name a target and an operation; the target's driver carries it out where
//! the target runs. One trait, [`Driver`], one file per driver, and one
//! registry, [`driver`]:
//!
//! | driver | section | where |
//! |---|---|---|
//! | `local` | `process:` | a child process `sluice serve` supervises |
//! | `ssh` | `ssh:` with `commands:` | argv commands on each inventory host |
//! | `systemd` | `systemd:` | `systemctl` here, or on each `ssh` host |
//! | `compose` | `compose:` | `docker compose` here, or on each `ssh` host |
//! | `kubernetes` | `kubernetes:` | a Deployment/StatefulSet through the API |
//!
//! What a driver can do is known from the config alone ([`cannot`]), so
//! `sluice validate` refuses a step its target's driver cannot carry out.
//! Readiness is the driver's own state plus the target's `health` path on
//! each instance's URL, so a target can be any service with an HTTP health
//! check, not only `sluice-engine`.

pub mod compose;
pub mod hosts;
pub mod kubernetes;
pub mod local;
pub mod remote;
pub mod ssh;
pub mod systemd;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration as StdDuration, Instant};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use crate::config::{Host, Target};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::exec::steps::{StepError, StepResult};

/// A lifecycle operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Restart,
    Scale,
    Status,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Restart => "restart",
            Op::Scale => "scale",
            Op::Status => "status",
        })
    }
}

/// Which hosts of an inventory a step acts on: `all` (default), a name or a
/// list of names, or labels every chosen host has (`{role: standby}`), like
/// Rundeck's node filters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum HostSelector {
    One(String),
    Names(Vec<String>),
    Labels(BTreeMap<String, String>),
}

impl HostSelector {
    /// `all`: every host, or the target itself when it has no inventory.
    pub fn is_all(&self) -> bool {
        matches!(self, HostSelector::One(n) if n == "all")
    }

    pub fn matches(&self, host: &Host) -> bool {
        match self {
            HostSelector::One(n) => n == "all" || *n == host.name.value,
            HostSelector::Names(names) => names.contains(&host.name.value),
            HostSelector::Labels(want) => want.iter().all(|(k, v)| host.labels.get(k) == Some(v)),
        }
    }

    /// Host names the selector names that the inventory lacks (labels name none).
    pub fn unknown<'a>(&'a self, hosts: &[Host]) -> Vec<&'a str> {
        let names: Vec<&str> = match self {
            HostSelector::One(n) if n != "all" => vec![n.as_str()],
            HostSelector::Names(v) => v.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        names
            .into_iter()
            .filter(|n| !hosts.iter().any(|h| h.name.value == *n))
            .collect()
    }
}

impl fmt::Display for HostSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSelector::One(n) => f.write_str(n),
            HostSelector::Names(v) => f.write_str(&v.join(", ")),
            HostSelector::Labels(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "hosts with {}", parts.join(", "))
            }
        }
    }
}

/// One lifecycle request, as a `process.*` step makes it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub target: &'a str,
    pub hosts: Option<&'a HostSelector>,
    /// How long a started instance may take to be ready.
    pub ready_timeout: Duration,
    /// Ask each instance to drain (`POST /admin/processing/drain`) before it stops.
    pub drain: bool,
}

/// What a scale wants, given how many run now: the count asked for and that
/// count bounded by the step's `min`/`max`.
pub type Want<'a> = &'a (dyn Fn(usize) -> (i64, usize) + Send + Sync);

/// A way of managing a target. Every method reports what it did as JSON
/// (the step's output) and leaves the target ready or says why not.
pub trait Driver: Send + Sync {
    /// Start what does not run and wait until it is ready.
    fn start<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult>;
    /// Stop what runs (draining first when asked).
    fn stop<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult>;
    /// Restart one instance at a time, each ready before the next goes down.
    fn restart<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>)
    -> BoxFuture<'a, StepResult>;
    /// Run `want(running).1` instances.
    fn scale<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
        want: Want<'a>,
    ) -> BoxFuture<'a, StepResult>;
    /// What runs, and whether it is healthy.
    fn status<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult>;
}

/// The driver of target `name` (the registry: one line per driver).
pub fn driver<'a>(name: &'a str, t: &'a Target) -> Result<Box<dyn Driver + 'a>, StepError> {
    Ok(match t.driver() {
        Some("local") => Box::new(local::Local),
        Some("ssh") => Box::new(hosts::PerHost::new(name, t, ssh::Commands::of(t)?)),
        Some("systemd") => Box::new(hosts::PerHost::new(name, t, systemd::Unit::of(t)?)),
        Some("compose") => Box::new(compose::ComposeDriver::new(name, t)?),
        Some("kubernetes") => Box::new(kubernetes::Workload::new(name, t)?),
        _ => return Err(StepError::permanent(unmanaged(name))),
    })
}

fn unmanaged(name: &str) -> String {
    format!(
        "target `{name}` has no `process`, `ssh`, `systemd`, `compose` or `kubernetes` section: nothing manages it"
    )
}

/// Why target `name`'s driver cannot do `op` (with a host selector other
/// than `all` when `selects_hosts`), from the config alone; `None` when it can.
pub fn cannot(name: &str, t: &Target, op: Op, selects_hosts: bool) -> Option<String> {
    let Some(kind) = t.driver() else {
        return Some(unmanaged(name));
    };
    let hosts = t.ssh.as_ref().map_or(0, |s| s.hosts.len());
    if selects_hosts && hosts == 0 {
        return Some(format!(
            "`hosts` selects hosts of an `ssh` inventory; target `{name}` ({kind} driver) has none"
        ));
    }
    match kind {
        "ssh" => {
            let c = t.ssh.as_ref().and_then(|s| s.commands.as_ref());
            let has = |f: fn(&crate::config::Commands) -> bool| c.is_some_and(f);
            let missing = match op {
                Op::Start => (!has(|c| c.start.is_some())).then_some("start"),
                Op::Stop => (!has(|c| c.stop.is_some())).then_some("stop"),
                Op::Status => (!has(|c| c.status.is_some())).then_some("status"),
                Op::Restart => {
                    (!has(|c| c.restart.is_some() || (c.start.is_some() && c.stop.is_some())))
                        .then_some("restart (or start and stop)")
                }
                Op::Scale => {
                    (!has(|c| c.start.is_some() && c.stop.is_some() && c.status.is_some()))
                        .then_some("start, stop and status")
                }
            };
            if let Some(m) = missing {
                return Some(format!(
                    "target `{name}` (ssh driver) cannot {op}: it needs `ssh.commands.{m}`, or a `systemd`/`compose` section"
                ));
            }
            if op == Op::Scale && hosts < 2 {
                return Some(format!(
                    "target `{name}` (ssh driver, one host) cannot scale: it scales across inventory hosts; list more hosts"
                ));
            }
            None
        }
        "systemd" if op == Op::Scale && hosts < 2 => Some(format!(
            "target `{name}` (systemd driver, {}) cannot scale: a unit runs once per host; list several `ssh.hosts`",
            if hosts == 0 {
                "this machine"
            } else {
                "one host"
            }
        )),
        _ => None,
    }
}

/// What every driver's scale reports.
pub fn scaled(
    requested: i64,
    replicas: usize,
    previous: usize,
    started: Vec<J>,
    stopped: Vec<J>,
    instances: Vec<J>,
) -> J {
    json!({
        "requested": requested,
        "replicas": replicas,
        "clamped": replicas as i64 != requested,
        "previous": previous,
        "started": started,
        "stopped": stopped,
        "instances": instances,
    })
}

/// How long [`wait_ready`] waits between looks.
const READY_POLL: StdDuration = StdDuration::from_millis(300);

/// GETs `url` + the target's health path once: `None` when the target has no health check.
pub async fn healthy(cx: &StepCx<'_>, t: &Target, url: &str) -> Option<bool> {
    if t.health.is_empty() {
        return None;
    }
    let mut req = cx
        .services
        .http
        .get(format!("{}{}", url.trim_end_matches('/'), t.health))
        .timeout(StdDuration::from_secs(2));
    if let Some(token) = &t.token {
        req = req.bearer_auth(token.expose());
    }
    Some(req.send().await.is_ok_and(|r| r.status().is_success()))
}

/// Polls `running` (the driver's own view) and the health URL until both
/// say ready, or `limit` passes (a transient error: it may come up later).
pub async fn wait_ready<'f>(
    cx: &StepCx<'_>,
    t: &Target,
    what: &str,
    url: Option<&str>,
    limit: Duration,
    mut running: impl FnMut() -> BoxFuture<'f, Result<bool, StepError>> + Send,
) -> Result<(), StepError> {
    let clock = Instant::now();
    loop {
        let up = running().await?;
        let health = match (up, url) {
            (true, Some(u)) => healthy(cx, t, u).await,
            _ => None,
        };
        if up && health != Some(false) {
            return Ok(());
        }
        if clock.elapsed() >= limit.std() {
            let why = if up {
                format!(
                    "{what} runs but {}{} did not answer 2xx",
                    url.unwrap_or(""),
                    t.health
                )
            } else {
                format!("{what} is not running")
            };
            return Err(StepError::transient(format!(
                "{why} within {limit} (ready_timeout)"
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// `POST {url}/admin/processing/drain` (sluice-engine's flush-and-commit), logged, never fatal.
pub async fn drain(cx: &StepCx<'_>, t: &Target, what: &str, url: &str) -> J {
    let mut req = cx
        .services
        .http
        .post(format!(
            "{}/admin/processing/drain",
            url.trim_end_matches('/')
        ))
        .json(&json!({}))
        .timeout(StdDuration::from_secs(120));
    if let Some(token) = &t.token {
        req = req.bearer_auth(token.expose());
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            cx.log(format!("drained {what}"));
            r.json().await.unwrap_or(J::Null)
        }
        Ok(r) => {
            cx.log(format!("drain of {what} answered {}", r.status()));
            J::Null
        }
        Err(e) => {
            cx.log(format!("drain of {what} failed: {e}"));
            J::Null
        }
    }
}

#[cfg(test)]
mod tests;
