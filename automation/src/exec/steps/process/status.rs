//! `process.status`: what runs of a target and whether it is healthy —
//! locally each supervised instance with state, pid, restarts and admin URL;
//! on hosts each host's unit/service state; on Kubernetes the workload's
//! replicas. `running` and `healthy` count instances in every case.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, default_ready_timeout, hosts_schema, target_schema};
use crate::exec::context::StepCx;
use crate::target::{HostSelector, Op};

pub const KIND: Kind = Kind {
    name: "process.status",
    summary: "Report a target's instances (through its driver) and their health.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<StatusConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {"target": target_schema(), "hosts": hosts_schema()}
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    pub target: TargetRef,
    #[serde(default)]
    pub hosts: Option<HostSelector>,
}

impl Action for StatusConfig {
    fn describe(&self) -> String {
        format!(
            "report the instances of target `{}`{}",
            self.target.name(),
            super::hosts_note(self.hosts.as_ref())
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs(Op::Status, self.hosts.as_ref())
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(super::dispatch(
            cx,
            Op::Status,
            &self.target,
            self.hosts.as_ref(),
            default_ready_timeout(),
            false,
            None,
        ))
    }
}
