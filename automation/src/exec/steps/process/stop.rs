//! `process.stop`: stop every running engine process of a supervised target
//! (extra instances first, instance 0 last): SIGTERM — the engine delivers
//! and commits what is pending — then SIGKILL after the grace period. With
//! `drain: true` each one is drained through its admin API first.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, target_schema};
use crate::exec::context::StepCx;

pub const KIND: Kind = Kind {
    name: "process.stop",
    summary: "Stop every engine process of a supervised target.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<StopConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {
                "target": target_schema(),
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
    pub drain: bool,
}

impl Action for StopConfig {
    fn describe(&self) -> String {
        format!(
            "stop every engine process of target `{}`{}",
            self.target.name(),
            super::drain_note(self.drain)
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = self.target.name();
            let (_, running) = super::running_of(cx, name)?;
            let mut stopped: Vec<J> = Vec::new();
            for (index, _) in running.into_iter().rev() {
                stopped.push(super::stop_instance(cx, name, index, self.drain).await?);
            }
            if stopped.is_empty() {
                cx.log(format!("no engine process of `{name}` was running"));
            }
            Ok(json!({"stopped": stopped, "count": stopped.len()}))
        })
    }
}
