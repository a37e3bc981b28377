//! `process.restart`: rolling restart of a target — one instance (or host)
//! at a time, each ready again before the next goes down, stopping at the
//! first that does not come back — or a start when nothing runs locally. On
//! Kubernetes, a rollout restart waited on. A restart gives the process
//! fresh memory, which is what a suspected leak needs.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, default_ready_timeout, hosts_schema, ready_timeout_schema, target_schema};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::target::{HostSelector, Op};

pub const KIND: Kind = Kind {
    name: "process.restart",
    summary: "Rolling restart of a target (through its driver), each instance ready before the next.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<RestartConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {
                "target": target_schema(),
                "hosts": hosts_schema(),
                "ready_timeout": ready_timeout_schema(),
                "drain": {"type": "boolean", "default": false, "description": "Drain each instance before stopping it."}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    pub target: TargetRef,
    #[serde(default)]
    pub hosts: Option<HostSelector>,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    #[serde(default)]
    pub drain: bool,
}

impl Action for RestartConfig {
    fn describe(&self) -> String {
        format!(
            "restart target `{}`{} one instance at a time{}; wait up to {} for each to be ready",
            self.target.name(),
            super::hosts_note(self.hosts.as_ref()),
            super::drain_note(self.drain),
            self.ready_timeout
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs(Op::Restart, self.hosts.as_ref())
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(super::dispatch(
            cx,
            Op::Restart,
            &self.target,
            self.hosts.as_ref(),
            self.ready_timeout,
            self.drain,
            None,
        ))
    }
}
