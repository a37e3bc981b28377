//! `process.stop`: stop a target everywhere it runs (or on the selected
//! hosts, all at once: a fence). Locally: extra instances first, instance 0
//! last, SIGTERM — the engine delivers and commits what is pending — then
//! SIGKILL after the grace period; elsewhere the driver's stop (`systemctl
//! stop`, `docker compose stop`, replicas 0). With `drain: true` each
//! instance is drained through its admin API first.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, default_ready_timeout, hosts_schema, target_schema};
use crate::exec::context::StepCx;
use crate::target::{HostSelector, Op};

pub const KIND: Kind = Kind {
    name: "process.stop",
    summary: "Stop a target (through its driver) wherever it runs.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<StopConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {
                "target": target_schema(),
                "hosts": hosts_schema(),
                "drain": {"type": "boolean", "default": false, "description": "POST /admin/processing/drain to each instance before stopping it."}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    pub target: TargetRef,
    #[serde(default)]
    pub hosts: Option<HostSelector>,
    #[serde(default)]
    pub drain: bool,
}

impl Action for StopConfig {
    fn describe(&self) -> String {
        format!(
            "stop target `{}`{} wherever it runs{}",
            self.target.name(),
            super::hosts_note(self.hosts.as_ref()),
            super::drain_note(self.drain)
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs(Op::Stop, self.hosts.as_ref())
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(super::dispatch(
            cx,
            Op::Stop,
            &self.target,
            self.hosts.as_ref(),
            default_ready_timeout(),
            self.drain,
            None,
        ))
    }
}
