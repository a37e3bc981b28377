//! Driver `compose`: a service of a docker compose project, here or on each
//! `ssh` host. Start is `up -d --no-deps SERVICE` (creates what is missing,
//! leaves the other services alone), stop `stop SERVICE`, restart `restart
//! SERVICE`, scale `up -d --no-deps --scale SERVICE=N SERVICE`; state comes
//! from `ps --all --format json SERVICE` (one JSON object per line in
//! compose ≥ 2.21, a JSON array before), counting containers whose `State`
//! is `running`.

use futures::future::BoxFuture;
use serde_json::{Value as J, json};

use super::hosts::{HostOps, PerHost, Place};
use super::remote::Line;
use super::{Driver, Request, Want};
use crate::config::Target;
use crate::exec::context::StepCx;
use crate::exec::steps::{StepError, StepResult};

/// One compose service.
pub struct Service<'t>(&'t crate::config::Compose);

impl Service<'_> {
    /// `docker compose [-p P] [-f F…] [--project-directory D] ARGS… SERVICE`.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let c = self.0;
        let mut a = c.command.clone();
        a.extend(["-p".to_string(), c.project.value.clone()]);
        for f in &c.files {
            a.extend(["-f".to_string(), f.clone()]);
        }
        if let Some(d) = &c.project_dir {
            a.extend(["--project-directory".to_string(), d.clone()]);
        }
        a.extend(args.iter().map(|s| s.to_string()));
        a.push(c.service.value.clone());
        a
    }

    async fn call(&self, cx: &StepCx<'_>, at: &Place<'_>, args: &[&str]) -> Result<(), StepError> {
        let argv = self.argv(args);
        at.runner.check(cx, Line::Argv(&argv)).await.map(|_| ())
    }

    /// The service's containers there: `(running, all)` with their JSON.
    async fn containers(&self, cx: &StepCx<'_>, at: &Place<'_>) -> Result<(usize, J), StepError> {
        let argv = self.argv(&["ps", "--all", "--format", "json"]);
        let done = at.runner.check(cx, Line::Argv(&argv)).await?;
        let list = parse_ps(&done.stdout).map_err(|e| {
            StepError::permanent(format!("{}: cannot read `compose ps` output: {e}", at.name))
        })?;
        let running = list
            .iter()
            .filter(|c| c["State"].as_str() == Some("running"))
            .count();
        Ok((running, J::Array(list)))
    }
}

/// `compose ps --format json`: JSON lines (≥ 2.21) or one JSON array (before).
pub fn parse_ps(text: &str) -> Result<Vec<J>, serde_json::Error> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if t.starts_with('[') {
        return serde_json::from_str(t);
    }
    t.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

impl HostOps for Service<'_> {
    fn kind(&self) -> &'static str {
        "the compose service"
    }

    fn start<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(self.call(cx, at, &["up", "-d", "--no-deps"]))
    }

    fn stop<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(self.call(cx, at, &["stop"]))
    }

    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> Option<BoxFuture<'a, Result<(), StepError>>> {
        Some(Box::pin(self.call(cx, at, &["restart"])))
    }

    fn state<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(bool, J), StepError>> {
        Box::pin(async move {
            let (running, list) = self.containers(cx, at).await?;
            Ok((running > 0, json!({"running": running, "containers": list})))
        })
    }
}

/// The compose driver: per-host start/stop/restart/status, and a scale of
/// the service's container count on each selected host.
pub struct ComposeDriver<'t> {
    name: &'t str,
    target: &'t Target,
    hosts: PerHost<'t, Service<'t>>,
}

impl<'t> ComposeDriver<'t> {
    pub fn new(name: &'t str, t: &'t Target) -> Result<Self, StepError> {
        let c = t
            .compose
            .as_ref()
            .ok_or_else(|| StepError::permanent("this target has no `compose` section"))?;
        Ok(ComposeDriver {
            name,
            target: t,
            hosts: PerHost::new(name, t, Service(c)),
        })
    }

    fn service(&self) -> Service<'t> {
        Service(self.target.compose.as_ref().expect("checked in new"))
    }
}

impl Driver for ComposeDriver<'_> {
    fn start<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        self.hosts.start(cx, req)
    }
    fn stop<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        self.hosts.stop(cx, req)
    }
    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
    ) -> BoxFuture<'a, StepResult> {
        self.hosts.restart(cx, req)
    }
    fn status<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        self.hosts.status(cx, req)
    }

    fn scale<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
        want: Want<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let svc = self.service();
            let mut out = serde_json::Map::new();
            for at in self.hosts.places(req)? {
                let (previous, _) = svc.containers(cx, &at).await?;
                let (requested, replicas) = want(previous);
                let n = format!("{}={replicas}", svc.0.service.value);
                svc.call(cx, &at, &["up", "-d", "--no-deps", "--scale", &n])
                    .await?;
                let what = format!("`{}` on {}", self.name, at.runner.label());
                let (svc_ref, at_ref) = (&svc, &at);
                super::wait_ready(
                    cx,
                    self.target,
                    &what,
                    Some(&at.url),
                    req.ready_timeout,
                    || {
                        Box::pin(
                            async move { Ok(svc_ref.containers(cx, at_ref).await?.0 == replicas) },
                        )
                    },
                )
                .await?;
                let (_, list) = svc.containers(cx, &at).await?;
                cx.log(format!(
                    "{}: {previous} -> {replicas} container(s)",
                    at.name
                ));
                out.insert(
                    at.name.clone(),
                    json!({"requested": requested, "replicas": replicas, "clamped": replicas as i64 != requested, "previous": previous, "containers": list}),
                );
            }
            // One host is the common case: its figures at the top level too.
            let mut j = if out.len() == 1 {
                out.values().next().cloned().unwrap_or(J::Null)
            } else {
                json!({})
            };
            j["hosts"] = J::Object(out);
            Ok(j)
        })
    }
}
