//! `runbook`: run another runbook (by name) with parameters, as a child run
//! recorded with its parent. Its outcome and step outputs become this step's output.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::exec::executor::{RunRequest, RunStatus, execute};
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "runbook",
    summary: "Run another runbook with parameters.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["name"],
            "properties": {
                "name": {"type": "string", "description": "Runbook name."},
                "params": {"type": "object"}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    pub name: At<String>,
    #[serde(default)]
    pub params: BTreeMap<String, J>,
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    Ok(Box::new(super::decode::<CallConfig>(node, lenient)?))
}

impl Action for CallConfig {
    fn describe(&self) -> String {
        format!(
            "run runbook `{}` with {}",
            self.name.value,
            serde_json::to_string(&self.params).unwrap_or_default()
        )
    }

    fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::Runbook, &self.name)]
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            if cx.run.depth + 1 > cx.limits().max_depth {
                return Err(StepError::permanent(format!(
                    "runbook calls nested deeper than {} (a runbook calling itself?)",
                    cx.limits().max_depth
                )));
            }
            let runbook = cx.services.runbook(&self.name).ok_or_else(|| {
                StepError::permanent(format!("unknown runbook `{}`", self.name.value))
            })?;
            let req = RunRequest {
                params: self.params.clone(),
                trigger: "runbook".into(),
                who: cx.run.who.clone(),
                parent_run: Some(cx.run.id.clone()),
                depth: cx.run.depth + 1,
                owner: cx.run.owner.clone(),
                ..RunRequest::default()
            };
            let outcome = execute(cx.services, runbook, req)
                .await
                .map_err(|e| StepError::permanent(format!("runbook `{}`: {e}", self.name.value)))?;
            cx.log(format!("child run {} {}", outcome.id, outcome.status));
            let out =
                json!({"run_id": outcome.id, "status": outcome.status, "steps": outcome.steps});
            match outcome.status {
                RunStatus::Succeeded => Ok(out),
                _ => Err(StepError::permanent(format!(
                    "runbook `{}` {}: {}",
                    self.name.value,
                    outcome.status,
                    outcome.error.unwrap_or_default()
                ))),
            }
        })
    }
}
