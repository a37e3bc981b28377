//! `process.status`: the supervised engine processes of a target, each with
//! state, pid, restarts, admin URL and whether `/health` answers.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::super::{Action, Kind, Ref, StepResult};
use super::{TargetRef, target_schema};
use crate::exec::context::StepCx;

pub const KIND: Kind = Kind {
    name: "process.status",
    summary: "State and health of a supervised target's engine processes.",
    nests: false,
    shell_fields: &[],
    parse: super::parse_as::<StatusConfig>,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {"target": target_schema()}
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    pub target: TargetRef,
}

impl Action for StatusConfig {
    fn describe(&self) -> String {
        format!(
            "report the engine processes of target `{}`",
            self.target.name()
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = self.target.name();
            let (_, running) = super::running_of(cx, name)?;
            let t = super::target(cx, name)?;
            let mut instances: Vec<J> = Vec::new();
            let mut healthy_count = 0;
            for (index, st) in running {
                let base = crate::process::instance::instance_url(name, t, index)
                    .map(|u| crate::process::instance::base(&u))
                    .map_err(super::instance_error)?;
                let ok = super::healthy(cx, &base).await;
                healthy_count += usize::from(ok);
                instances.push(super::instance_json(name, t, index, Some(&st), Some(ok)));
            }
            Ok(json!({
                "running": instances.len(),
                "healthy": healthy_count,
                "instances": instances,
            }))
        })
    }
}
