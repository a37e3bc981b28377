//! The lifecycle of a target that runs once per host — a systemd unit or a
//! service started by `ssh.commands` — written once over [`HostOps`]: start
//! and stop act on every selected host at the same time (a fence of every
//! primary, a start of every standby), restart is rolling (one host at a
//! time, ready before the next goes down, stopping at the first failure),
//! and scale runs the service on the first N selected hosts of the
//! inventory, keeping those that already run. Without an `ssh` inventory the
//! one "host" is this machine.

use futures::future::{BoxFuture, join_all};
use serde_json::{Value as J, json};

use super::remote::Runner;
use super::{Driver, HostSelector, Request, Want, drain, healthy, wait_ready};
use crate::config::Target;
use crate::exec::context::StepCx;
use crate::exec::steps::{StepError, StepResult};

/// One place the service runs: a host of the inventory, or this machine.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    pub name: String,
    /// The name steps address this instance by: `target/host`, or the target's own.
    pub target: String,
    pub runner: Runner<'a>,
    /// The instance's URL there (health, drain), when the target has one.
    pub url: String,
}

/// What a driver does on one place.
pub trait HostOps: Send + Sync {
    /// The driver's name, for messages.
    fn kind(&self) -> &'static str;
    fn start<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>>;
    fn stop<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>>;
    /// Restart in place; `None` when the driver has no restart of its own (stop, then start).
    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> Option<BoxFuture<'a, Result<(), StepError>>>;
    /// Whether it runs there, with what the driver knows of it.
    fn state<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(bool, J), StepError>>;
}

/// A [`Driver`] over [`HostOps`] on each place of a target.
pub struct PerHost<'t, O> {
    name: &'t str,
    target: &'t Target,
    ops: O,
}

impl<'t, O: HostOps> PerHost<'t, O> {
    pub fn new(name: &'t str, target: &'t Target, ops: O) -> Self {
        PerHost { name, target, ops }
    }

    /// The places `req` selects, in inventory order.
    pub fn places(&self, req: &Request<'_>) -> Result<Vec<Place<'t>>, StepError> {
        places(self.name, self.target, req.hosts)
    }

    async fn describe(&self, cx: &StepCx<'_>, at: &Place<'_>) -> Result<J, StepError> {
        let (running, detail) = self.ops.state(cx, at).await?;
        let health = if running {
            healthy(cx, self.target, &at.url).await
        } else {
            None
        };
        Ok(place_json(at, running, health, detail))
    }

    async fn start_one(&self, cx: &StepCx<'_>, at: &Place<'_>, req: &Request<'_>) -> StepResult {
        let (running, _) = self.ops.state(cx, at).await?;
        if running {
            cx.log(format!("{}: {} already runs", at.name, self.ops.kind()));
        } else {
            self.ops.start(cx, at).await?;
            cx.log(format!("{}: started", at.name));
        }
        self.ready(cx, at, req).await?;
        let mut j = self.describe(cx, at).await?;
        j["started"] = J::Bool(!running);
        Ok(j)
    }

    async fn ready(
        &self,
        cx: &StepCx<'_>,
        at: &Place<'_>,
        req: &Request<'_>,
    ) -> Result<(), StepError> {
        let what = format!("`{}` on {}", self.name, at.runner.label());
        wait_ready(
            cx,
            self.target,
            &what,
            Some(&at.url),
            req.ready_timeout,
            || Box::pin(async move { Ok(self.ops.state(cx, at).await?.0) }),
        )
        .await
    }

    async fn stop_one(&self, cx: &StepCx<'_>, at: &Place<'_>, drain_first: bool) -> StepResult {
        let (running, _) = self.ops.state(cx, at).await?;
        let drained = if running && drain_first {
            drain(cx, self.target, &at.name, &at.url).await
        } else {
            J::Null
        };
        if running {
            self.ops.stop(cx, at).await?;
            cx.log(format!("{}: stopped", at.name));
        } else {
            cx.log(format!("{}: was not running", at.name));
        }
        let (still, detail) = self.ops.state(cx, at).await?;
        if still {
            return Err(StepError::permanent(format!(
                "{}: {} still runs after stop: {detail}",
                at.name,
                self.ops.kind()
            )));
        }
        let mut j = place_json(at, false, None, detail);
        j["stopped"] = J::Bool(running);
        if drain_first {
            j["drain"] = drained;
        }
        Ok(j)
    }

    async fn restart_one(&self, cx: &StepCx<'_>, at: &Place<'_>, req: &Request<'_>) -> StepResult {
        if req.drain && self.ops.state(cx, at).await?.0 {
            drain(cx, self.target, &at.name, &at.url).await;
        }
        match self.ops.restart(cx, at) {
            Some(f) => f.await?,
            None => {
                self.ops.stop(cx, at).await?;
                self.ops.start(cx, at).await?;
            }
        }
        cx.log(format!("{}: restarted", at.name));
        self.ready(cx, at, req).await?;
        self.describe(cx, at).await
    }
}

/// The places of `target` that `hosts` selects (every one without a selector).
pub fn places<'t>(
    name: &str,
    t: &'t Target,
    hosts: Option<&HostSelector>,
) -> Result<Vec<Place<'t>>, StepError> {
    let Some(ssh) = &t.ssh else {
        return Ok(vec![Place {
            name: "local".to_string(),
            target: name.to_string(),
            runner: Runner::Local,
            url: t.url.to_string(),
        }]);
    };
    if let Some(sel) = hosts {
        let unknown = sel.unknown(&ssh.hosts);
        if !unknown.is_empty() {
            return Err(StepError::permanent(format!(
                "target `{name}` has no host {}",
                unknown.join(", ")
            )));
        }
    }
    let chosen: Vec<Place<'t>> = ssh
        .hosts
        .iter()
        .filter(|h| hosts.is_none_or(|s| s.matches(h)))
        .map(|h| Place {
            name: h.name.value.clone(),
            target: format!("{name}/{}", h.name.value),
            runner: Runner::Ssh { ssh, host: h },
            url: t.host_url(h).to_string(),
        })
        .collect();
    if chosen.is_empty() {
        return Err(StepError::permanent(format!(
            "no host of target `{name}` matches {}",
            hosts.map_or("the selection".to_string(), |s| s.to_string())
        )));
    }
    Ok(chosen)
}

fn place_json(at: &Place<'_>, running: bool, healthy: Option<bool>, detail: J) -> J {
    let mut j = json!({
        "host": at.name,
        "target": at.target,
        "where": at.runner.label(),
        "url": at.url,
        "state": if running { "running" } else { "stopped" },
        "detail": detail,
    });
    if let Some(h) = healthy {
        j["healthy"] = J::Bool(h);
    }
    j
}

/// `{hosts: {name: …}, count, instances}` from per-place results, failing
/// with every failure named (transient only when every failure is).
pub fn gather(what: &str, results: Vec<(String, StepResult)>) -> StepResult {
    let mut hosts = serde_json::Map::new();
    let mut failed: Vec<String> = Vec::new();
    let mut transient = true;
    for (name, r) in results {
        match r {
            Ok(j) => {
                hosts.insert(name, j);
            }
            Err(e) => {
                transient &= e.failure == crate::exec::steps::Failure::Transient;
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    if !failed.is_empty() {
        let msg = format!(
            "{what} failed on {} host(s): {} (succeeded: {})",
            failed.len(),
            failed.join("; "),
            if hosts.is_empty() {
                "none".to_string()
            } else {
                hosts.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        );
        return Err(if transient {
            StepError::transient(msg)
        } else {
            StepError::permanent(msg)
        });
    }
    let count = hosts.len();
    let instances: Vec<J> = hosts.values().cloned().collect();
    Ok(json!({"hosts": hosts, "count": count, "instances": instances}))
}

impl<O: HostOps> Driver for PerHost<'_, O> {
    fn start<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let places = self.places(req)?;
            let results = join_all(
                places
                    .iter()
                    .map(|p| async move { (p.name.clone(), self.start_one(cx, p, req).await) }),
            )
            .await;
            gather("start", results)
        })
    }

    fn stop<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let places = self.places(req)?;
            let results =
                join_all(places.iter().map(|p| async move {
                    (p.name.clone(), self.stop_one(cx, p, req.drain).await)
                }))
                .await;
            gather("stop", results)
        })
    }

    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let places = self.places(req)?;
            let mut done = serde_json::Map::new();
            for p in &places {
                match self.restart_one(cx, p, req).await {
                    Ok(j) => {
                        done.insert(p.name.clone(), j);
                    }
                    Err(e) => {
                        let before: Vec<&String> = done.keys().collect();
                        return Err(StepError {
                            failure: e.failure,
                            message: format!(
                                "rolling restart stopped at {}: {e} (restarted before it: {}; not touched: {})",
                                p.name,
                                if before.is_empty() {
                                    "none".to_string()
                                } else {
                                    before
                                        .iter()
                                        .map(|s| s.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                },
                                places
                                    .iter()
                                    .skip_while(|q| q.name != p.name)
                                    .skip(1)
                                    .map(|q| q.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                }
            }
            let count = done.len();
            let instances: Vec<J> = done.values().cloned().collect();
            Ok(
                json!({"hosts": done, "count": count, "instances": instances, "order": places.iter().map(|p| &p.name).collect::<Vec<_>>()}),
            )
        })
    }

    fn scale<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
        want: Want<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let places = self.places(req)?;
            let states = join_all(places.iter().map(|p| self.ops.state(cx, p))).await;
            let mut running: Vec<bool> = Vec::new();
            for s in states {
                running.push(s?.0);
            }
            let previous = running.iter().filter(|r| **r).count();
            let (requested, bounded) = want(previous);
            let replicas = bounded.min(places.len());
            if replicas < bounded {
                cx.log(format!(
                    "{bounded} instances wanted; target `{}` has {} selected host(s)",
                    self.name,
                    places.len()
                ));
            }
            let mut started = Vec::new();
            let mut stopped = Vec::new();
            // Scale in: the last running hosts in inventory order go first.
            let mut excess = previous.saturating_sub(replicas);
            for (p, up) in places.iter().zip(&running).rev() {
                if excess == 0 {
                    break;
                }
                if *up {
                    stopped.push(self.stop_one(cx, p, req.drain).await?);
                    excess -= 1;
                }
            }
            // Scale out: the first hosts not running yet, each ready before the next.
            let mut missing = replicas.saturating_sub(previous);
            for (p, up) in places.iter().zip(&running) {
                if missing == 0 {
                    break;
                }
                if !*up {
                    started.push(self.start_one(cx, p, req).await?);
                    missing -= 1;
                }
            }
            // What runs now, for checks on each instance that follow.
            let mut now = Vec::new();
            for p in &places {
                let j = self.describe(cx, p).await?;
                if j["state"] == "running" {
                    now.push(j);
                }
            }
            Ok(super::scaled(
                requested, replicas, previous, started, stopped, now,
            ))
        })
    }

    fn status<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let places = self.places(req)?;
            let results = join_all(
                places
                    .iter()
                    .map(|p| async move { (p.name.clone(), self.describe(cx, p).await) }),
            )
            .await;
            let mut j = gather("status", results)?;
            let hosts = j["hosts"].as_object().cloned().unwrap_or_default();
            let running = hosts.values().filter(|h| h["state"] == "running").count();
            let healthy = hosts.values().filter(|h| h["healthy"] == true).count();
            j["running"] = json!(running);
            j["healthy"] = json!(healthy);
            Ok(j)
        })
    }
}
