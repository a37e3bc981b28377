//! `for_each`: run child steps once per item (`item`/`index`, or the name
//! given by `as`), at most `concurrency` iterations at once. Each iteration
//! has its own `steps.*`; the output lists them.

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::{Action, Kind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::exec::executor::run_children;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "for_each",
    summary: "Run child steps once per item (bounded concurrency).",
    nests: true,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["items", "steps"],
            "properties": {
                "items": {"description": "A list, or a string holding a JSON list (e.g. `{{json steps.x.output.body}}`)."},
                "as": {"type": "string", "default": "item"},
                "concurrency": {"type": "integer", "minimum": 1, "default": 1},
                "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}}
            }
        })
    },
};

/// Most iterations one `for_each` may run.
pub const MAX_ITEMS: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForEachConfig {
    pub items: J,
    #[serde(default = "default_as", rename = "as")]
    pub var: String,
    #[serde(default = "one")]
    pub concurrency: usize,
}

fn default_as() -> String {
    "item".to_string()
}
fn one() -> usize {
    1
}

/// Reserved names an iteration variable may not shadow.
const RESERVED: &[&str] = &[
    "params", "steps", "alert", "targets", "now", "run", "env", "secrets", "runbook", "failed",
    "webhook", "index",
];

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: ForEachConfig = super::decode(node, lenient)?;
    let at = |f: &str| node.get(f).map_or(node.pos, |n| n.pos);
    if crate::runbook::model::StepId::parse(&c.var).is_err() || RESERVED.contains(&c.var.as_str()) {
        return Err(DeError::new(
            at("as"),
            format!(
                "`as: {}` must be a plain name other than {}",
                c.var,
                RESERVED.join(", ")
            ),
        ));
    }
    if !lenient {
        items(&c.items).map_err(|m| DeError::new(at("items"), m))?;
        if c.concurrency == 0 {
            return Err(DeError::new(
                at("concurrency"),
                "`concurrency` must be at least 1",
            ));
        }
    } else if let J::String(s) = &c.items
        && !s.contains("{{")
    {
        items(&c.items).map_err(|m| DeError::new(at("items"), m))?;
    }
    Ok(Box::new(c))
}

fn items(v: &J) -> Result<Vec<J>, String> {
    let list = match v {
        J::Array(a) => a.clone(),
        J::String(s) => match serde_json::from_str::<J>(s) {
            Ok(J::Array(a)) => a,
            _ => {
                return Err(format!(
                    "`items` must be a list or a JSON list, got `{}`",
                    s.chars().take(60).collect::<String>()
                ));
            }
        },
        other => return Err(format!("`items` must be a list, got {other}")),
    };
    if list.len() > MAX_ITEMS {
        return Err(format!(
            "`items` has {} entries; the limit is {MAX_ITEMS}",
            list.len()
        ));
    }
    Ok(list)
}

impl Action for ForEachConfig {
    fn describe(&self) -> String {
        let n = items(&self.items)
            .map(|l| l.len().to_string())
            .unwrap_or_else(|_| "?".into());
        format!(
            "for each of {n} items as `{}` (concurrency {})",
            self.var, self.concurrency
        )
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let list = items(&self.items).map_err(StepError::permanent)?;
            let results: Vec<(usize, Result<J, StepError>)> =
                futures::stream::iter(list.into_iter().enumerate())
                    .map(|(i, item)| async move {
                        let scope = cx
                            .scope
                            .child(&[(self.var.as_str(), item), ("index", J::from(i))]);
                        scope.set("steps", cx.scope.get("steps").unwrap_or(json!({})));
                        let r = run_children(cx, &scope, format!("{}[{i}].", cx.path)).await;
                        (i, r.map(|()| scope.get("steps").unwrap_or(J::Null)))
                    })
                    .buffer_unordered(self.concurrency.max(1))
                    .collect()
                    .await;
            let mut ordered = results;
            ordered.sort_by_key(|(i, _)| *i);
            let mut outputs = Vec::new();
            let mut failures = Vec::new();
            for (i, r) in ordered {
                match r {
                    Ok(steps) => outputs.push(steps),
                    Err(e) => {
                        failures.push(format!("[{i}] {}", e.message));
                        outputs.push(J::Null);
                    }
                }
            }
            if failures.is_empty() {
                Ok(json!({"iterations": outputs}))
            } else {
                Err(StepError::permanent(failures.join("; ")))
            }
        })
    }
}
