//! `process.start`: start a target unless it runs (locally: instance 0; on
//! ssh/systemd/compose hosts: every selected host; Kubernetes: scale a
//! stopped workload back up), and wait until it is ready.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, default_ready_timeout, hosts_schema, ready_timeout_schema, target_schema};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::target::{HostSelector, Op};

pub const KIND: Kind = Kind {
    name: "process.start",
    summary: "Start a target (through its driver) and wait until it is ready.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<StartConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {"target": target_schema(), "hosts": hosts_schema(), "ready_timeout": ready_timeout_schema()}
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartConfig {
    pub target: TargetRef,
    #[serde(default)]
    pub hosts: Option<HostSelector>,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
}

impl Action for StartConfig {
    fn describe(&self) -> String {
        format!(
            "start target `{}`{} unless it runs; wait up to {} until ready",
            self.target.name(),
            super::hosts_note(self.hosts.as_ref()),
            self.ready_timeout
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs(Op::Start, self.hosts.as_ref())
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(super::dispatch(
            cx,
            Op::Start,
            &self.target,
            self.hosts.as_ref(),
            self.ready_timeout,
            false,
            None,
        ))
    }
}
