//! `shell`: run a script with `/bin/sh -c`. Every templated value in `script`
//! is single-quoted, and a template where quoting cannot protect it is refused
//! at load time: inside quotes, comments, here-documents or arithmetic, after
//! a backslash, or unescaped (`{{{…}}}`). To pass values without any quoting
//! concerns use `env:` and `"$NAME"` in the script.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{Action, Kind, StepResult};
use crate::exec::context::StepCx;
use crate::runbook::template::{has_raw_output, unprotected_shell_template};
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
    if lenient {
        check_script(node, &config.script)?;
    }
    Ok(Box::new(config))
}

/// Refuses templates in a script (at `node.script`) that quoting cannot
/// protect: unescaped output, or a place inside quotes, comments,
/// here-documents or arithmetic.
pub fn check_script(node: &Node, script: &str) -> Result<(), DeError> {
    let at = node.get("script").map_or(node.pos, |n| n.pos);
    let raw = crate::runbook::template::compile(script)
        .map(|t| has_raw_output(&t))
        .unwrap_or(false);
    if raw {
        return Err(DeError::new(
            at,
            "`{{{…}}}` / `{{&…}}` (unquoted output) is not allowed in shell scripts",
        ));
    }
    if let Some((_, hazard)) = unprotected_shell_template(script) {
        return Err(DeError::new(at, hazard.message()));
    }
    Ok(())
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
