//! `sleep`: wait a fixed time (`sleep: 30s`). `sleep: 0s` is the no-op step.

use futures::future::BoxFuture;
use serde_json::json;

use super::{Action, Kind, StepResult};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "sleep",
    summary: "Wait a fixed time, e.g. `sleep: 30s`.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| json!({"type": "string", "description": "How long, e.g. `30s`, `5m`.", "pattern": "^([0-9]+(ms|s|m|h|d|w))+$|\\{\\{"}),
};

#[derive(Debug)]
struct Sleep(Duration);

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    if lenient && node.as_str().is_some_and(|s| s.contains("{{")) {
        return Ok(Box::new(Sleep(Duration::default())));
    }
    Ok(Box::new(Sleep(super::decode(node, lenient)?)))
}

impl Action for Sleep {
    fn describe(&self) -> String {
        format!("sleep {}", self.0)
    }

    fn run<'a>(&'a self, _cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            if !self.0.std().is_zero() {
                tokio::time::sleep(self.0.std()).await;
            }
            Ok(json!({"slept_ms": self.0.std().as_millis() as u64}))
        })
    }
}
