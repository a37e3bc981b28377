//! `process.restart`: restart the engine processes of a supervised target one
//! at a time (rolling: each is back on `/health` before the next goes down),
//! or start instance 0 when none runs. A restart gives the process fresh
//! memory, which is what a suspected leak needs.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, default_ready_timeout, ready_timeout_schema, target_schema};
use crate::duration::Duration;
use crate::exec::context::StepCx;

pub const KIND: Kind = Kind {
    name: "process.restart",
    summary: "Rolling restart of a supervised target's engine processes.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<RestartConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {
                "target": target_schema(),
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
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
    #[serde(default)]
    pub drain: bool,
}

impl Action for RestartConfig {
    fn describe(&self) -> String {
        format!(
            "restart the engine processes of target `{}` one at a time{}; wait up to {} for each /health",
            self.target.name(),
            super::drain_note(self.drain),
            self.ready_timeout
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = self.target.name();
            let (sup, running) = super::running_of(cx, name)?;
            let mut indices: Vec<usize> = running.into_iter().map(|(i, _)| i).collect();
            if indices.is_empty() {
                indices.push(0);
            }
            let mut restarted: Vec<J> = Vec::new();
            for index in indices {
                let before = sup
                    .status(&crate::process::instance::instance_name(name, index))
                    .and_then(|s| s.pid);
                if before.is_some() {
                    super::stop_instance(cx, name, index, self.drain).await?;
                }
                let (mut inst, _) =
                    super::start_instance(cx, name, index, self.ready_timeout).await?;
                inst["previous_pid"] = json!(before);
                restarted.push(inst);
            }
            Ok(json!({"instances": restarted, "count": restarted.len()}))
        })
    }
}
