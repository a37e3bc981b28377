//! `parallel`: run child steps at the same time, at most `max_concurrency`
//! at once. Fails when any child fails (after all have finished).

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{Action, Kind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::exec::executor::run_one;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "parallel",
    summary: "Run child steps concurrently (bounded).",
    nests: true,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["steps"],
            "properties": {
                "max_concurrency": {"type": "integer", "minimum": 1, "default": 4},
                "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelConfig {
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
}

fn default_concurrency() -> usize {
    4
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: ParallelConfig = super::decode(node, lenient)?;
    if c.max_concurrency == 0 && !lenient {
        return Err(DeError::new(
            node.pos,
            "`max_concurrency` must be at least 1",
        ));
    }
    Ok(Box::new(c))
}

impl Action for ParallelConfig {
    fn describe(&self) -> String {
        format!(
            "run child steps in parallel (at most {} at once)",
            self.max_concurrency
        )
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let prefix = format!("{}.", cx.path);
            let runs: Vec<_> = cx
                .step
                .children
                .iter()
                .map(|child| run_one(cx, child, cx.scope, prefix.clone()))
                .collect();
            let results: Vec<Result<(), StepError>> = futures::stream::iter(runs)
                .buffer_unordered(self.max_concurrency.max(1))
                .collect()
                .await;
            let failed: Vec<String> = results
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.message)
                .collect();
            let children: Vec<&str> = cx.step.children.iter().map(|s| s.id.as_str()).collect();
            if failed.is_empty() {
                Ok(json!({"steps": children}))
            } else {
                Err(StepError::permanent(failed.join("; ")))
            }
        })
    }
}
