//! `process.*`: start, stop, restart, scale and inspect a target's
//! instances. Each kind names a target and an operation; the target's driver
//! ([`crate::target`]: local supervisor, ssh hosts, systemd, compose,
//! Kubernetes) carries it out. This module holds what the kinds share: the
//! target and host-selector fields and the dispatch.

pub mod restart;
pub mod scale;
pub mod start;
pub mod status;
pub mod stop;

use serde::Deserialize;
use serde_json::{Value as J, json};

use super::{Action, Ref, RefKind, StepError, StepResult};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::target::{self, HostSelector, Op, Request, Want};
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

/// How long a started instance may take to answer `/health` (default).
pub fn default_ready_timeout() -> Duration {
    Duration::from_secs(60)
}

/// JSON Schema of the `target` field every `process.*` kind has.
pub fn target_schema() -> J {
    json!({"type": "string", "description": "A target from sluice.yaml `targets` with a driver: `process:` (local), `ssh:`, `systemd:`, `compose:` or `kubernetes:`."})
}

pub fn ready_timeout_schema() -> J {
    json!({"type": "string", "default": "60s", "description": "How long a started instance may take to be ready (driver state plus the target's `health` path)."})
}

/// JSON Schema of `hosts`, the host selector of targets with an `ssh` inventory.
pub fn hosts_schema() -> J {
    json!({
        "description": "Which hosts of the target's `ssh.hosts` to act on: `all` (default), a host name, a list of names, or labels every chosen host has (`{role: standby}`).",
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "string"}}
        ]
    })
}

/// The managed target a step acts on.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct TargetRef(pub At<String>);

impl TargetRef {
    /// A reference validation checks against the target's driver.
    pub fn refs(&self, op: Op, hosts: Option<&HostSelector>) -> Vec<Ref> {
        vec![
            Ref::new(
                RefKind::Managed {
                    op,
                    hosts: hosts.is_some(),
                },
                &self.0,
            )
            .with_hosts(hosts.cloned()),
        ]
    }
    pub fn name(&self) -> &str {
        &self.0.value
    }
}

/// ` on hosts …` for `describe()`.
pub fn hosts_note(hosts: Option<&HostSelector>) -> String {
    hosts.map_or(String::new(), |h| format!(" on {h}"))
}

/// Carries out `op` through the target's driver.
pub async fn dispatch(
    cx: &StepCx<'_>,
    op: Op,
    target: &TargetRef,
    hosts: Option<&HostSelector>,
    ready_timeout: Duration,
    drain: bool,
    want: Option<Want<'_>>,
) -> StepResult {
    let name = target.name();
    let t = cx.services.config.targets.get(name).ok_or_else(|| {
        StepError::permanent(format!(
            "unknown target `{name}` (define it under `targets:` in sluice.yaml)"
        ))
    })?;
    if let Some(why) = target::cannot(name, t, op, hosts.is_some_and(|h| !h.is_all())) {
        return Err(StepError::permanent(why));
    }
    let driver = target::driver(name, t)?;
    let req = Request {
        target: name,
        hosts,
        ready_timeout,
        drain,
    };
    match op {
        Op::Start => driver.start(cx, &req).await,
        Op::Stop => driver.stop(cx, &req).await,
        Op::Restart => driver.restart(cx, &req).await,
        Op::Status => driver.status(cx, &req).await,
        Op::Scale => {
            let want = want.ok_or_else(|| StepError::permanent("scale without a count"))?;
            driver.scale(cx, &req, want).await
        }
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
