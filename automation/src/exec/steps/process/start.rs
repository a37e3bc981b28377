//! `process.start`: start a supervised target's engine (instance 0) unless it
//! runs, and wait until it answers `/health`.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, default_ready_timeout, ready_timeout_schema, target_schema};
use crate::duration::Duration;
use crate::exec::context::StepCx;

pub const KIND: Kind = Kind {
    name: "process.start",
    summary: "Start a supervised target's engine process and wait for /health.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<StartConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {"target": target_schema(), "ready_timeout": ready_timeout_schema()}
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartConfig {
    pub target: TargetRef,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
}

impl Action for StartConfig {
    fn describe(&self) -> String {
        format!(
            "start the engine process of target `{}` unless it runs; wait up to {} for /health",
            self.target.name(),
            self.ready_timeout
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let (instance, started) =
                super::start_instance(cx, self.target.name(), 0, self.ready_timeout).await?;
            Ok(json!({"started": started, "instance": instance}))
        })
    }
}
