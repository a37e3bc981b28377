//! `shell`: run a script with `/bin/sh -c`. Every templated value in `script`
//! is single-quoted, and a template inside quotes is refused at load time
//! (quotes would make the added quoting useless). To pass values without any
//! quoting concerns use `env:` and `"$NAME"` in the script.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{Action, Kind, StepResult};
use crate::exec::context::StepCx;
use crate::runbook::template::template_inside_shell_quotes;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "shell",
    summary: "Run a shell script; templated values are shell-quoted.",
    nests: false,
    shell_fields: &["script"],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["script"],
            "properties": {
                "script": {"type": "string", "description": "POSIX sh script; `{{value}}` is inserted single-quoted."},
                "shell": {"type": "string", "default": "/bin/sh"},
                "cwd": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "expect_exit": {"type": "array", "items": {"type": "integer"}}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellConfig {
    pub script: String,
    #[serde(default = "default_shell")]
    pub shell: String,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub expect_exit: Option<Vec<i32>>,
}

fn default_shell() -> String {
    "/bin/sh".to_string()
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let config: ShellConfig = super::decode(node, lenient)?;
    // Only the raw (unrendered) script can be checked; rendered scripts hold quoted values.
    if lenient && template_inside_shell_quotes(&config.script).is_some() {
        return Err(DeError::new(
            node.get("script").map_or(node.pos, |n| n.pos),
            "a template inside quotes in a shell script is not protected by quoting; write `{{value}}` outside quotes (it is quoted for you) or pass it through `env:`",
        ));
    }
    if lenient && config.script.contains("{{{") {
        return Err(DeError::new(
            node.get("script").map_or(node.pos, |n| n.pos),
            "`{{{…}}}` (unquoted output) is not allowed in shell scripts",
        ));
    }
    Ok(Box::new(config))
}

impl Action for ShellConfig {
    fn describe(&self) -> String {
        format!(
            "{} -c {}",
            self.shell,
            crate::runbook::template::shell_quote(self.script.trim())
        )
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new(&self.shell);
            cmd.arg("-c").arg(&self.script);
            super::exec::run_process(
                cx,
                cmd,
                self.cwd.as_deref(),
                &self.env,
                None,
                self.expect_exit.as_deref(),
            )
            .await
        })
    }
}
