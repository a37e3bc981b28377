//! `ssh`: run a command on the hosts of a target's `ssh` inventory — all of
//! them, or those `hosts:` selects — in parallel (at most
//! `max_concurrency` at once) or one after another. `command` is an argv:
//! every word reaches the remote program as one argument, whatever it holds.
//! `script` is a POSIX sh script for the remote login shell with the `shell`
//! step's rules: templated values are single-quoted, and a template where
//! quoting cannot protect it is refused at load time. Each host's exit code
//! and output land in `steps.<id>.output.hosts.<name>`; the step fails when
//! any host's exit code is not in `expect_exit`, after every host has run.

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value as J, json};

use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::target::HostSelector;
use crate::target::hosts::places;
use crate::target::remote::Line;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "ssh",
    summary: "Run a command on a target's ssh hosts; per-host results.",
    nests: false,
    shell_fields: &["script"],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {
                "target": {"type": "string", "description": "A target with an `ssh` inventory."},
                "hosts": super::process::hosts_schema(),
                "command": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Program and arguments; each word reaches the remote program as one argument."},
                "script": {"type": "string", "description": "POSIX sh script for the remote shell; `{{value}}` is inserted single-quoted."},
                "expect_exit": {"type": "array", "items": {"type": "integer"}, "description": "Accepted exit codes (default [0])."},
                "parallel": {"type": "boolean", "default": true, "description": "Run on the hosts at the same time (false: one after another, in inventory order)."},
                "max_concurrency": {"type": "integer", "minimum": 1, "description": "At most this many hosts at once."}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    pub target: At<String>,
    #[serde(default)]
    pub hosts: Option<HostSelector>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub expect_exit: Option<Vec<i32>>,
    #[serde(default = "yes")]
    pub parallel: bool,
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

fn yes() -> bool {
    true
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: SshConfig = super::decode(node, lenient)?;
    match (&c.command, &c.script) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(DeError::new(
                node.pos,
                "`ssh` needs exactly one of `command` (argv) and `script`",
            ));
        }
        (Some(argv), _) if argv.is_empty() || argv[0].is_empty() => {
            return Err(DeError::new(
                node.get("command").map_or(node.pos, |n| n.pos),
                "`command` needs at least the program",
            ));
        }
        (_, Some(script)) if lenient => super::shell::check_script(node, script)?,
        _ => {}
    }
    if c.max_concurrency == Some(0) {
        return Err(DeError::new(
            node.get("max_concurrency").map_or(node.pos, |n| n.pos),
            "`max_concurrency` must be at least 1",
        ));
    }
    Ok(Box::new(c))
}

impl SshConfig {
    fn line(&self) -> Line<'_> {
        match (&self.command, &self.script) {
            (Some(argv), _) => Line::Argv(argv),
            (_, Some(s)) => Line::Script(s),
            _ => Line::Argv(&[]),
        }
    }
}

impl Action for SshConfig {
    fn describe(&self) -> String {
        let what = match (&self.command, &self.script) {
            (Some(argv), _) => argv
                .iter()
                .map(|w| crate::runbook::template::shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
            (_, Some(s)) => format!("sh -c {}", crate::runbook::template::shell_quote(s.trim())),
            _ => String::new(),
        };
        format!(
            "on the ssh hosts of target `{}`{} ({}): {what}",
            self.target.value,
            self.hosts
                .as_ref()
                .map_or(String::new(), |h| format!(" ({h})")),
            if self.parallel {
                "in parallel"
            } else {
                "one at a time"
            }
        )
    }

    fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::SshHosts, &self.target).with_hosts(self.hosts.clone())]
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let name = &self.target.value;
            let t = cx
                .services
                .config
                .targets
                .get(name)
                .ok_or_else(|| StepError::permanent(format!("unknown target `{name}`")))?;
            if t.ssh.is_none() {
                return Err(StepError::permanent(format!(
                    "target `{name}` has no `ssh` inventory"
                )));
            }
            let places = places(name, t, self.hosts.as_ref())?;
            let width = if self.parallel {
                self.max_concurrency.unwrap_or(places.len()).max(1)
            } else {
                1
            };
            let line = self.line();
            type Ran<'p> = (
                &'p crate::target::hosts::Place<'p>,
                Result<super::exec::Finished, StepError>,
            );
            let runs: Vec<BoxFuture<'_, Ran<'_>>> = places
                .iter()
                .map(|p| {
                    Box::pin(async move { (p, p.runner.run(cx, line).await) })
                        as BoxFuture<'_, Ran<'_>>
                })
                .collect();
            let results: Vec<Ran<'_>> = futures::stream::iter(runs).buffered(width).collect().await;
            let accepted = self.expect_exit.as_deref().unwrap_or(&[0]);
            let mut hosts = Map::new();
            let mut failed: Vec<String> = Vec::new();
            let mut transient = true;
            for (p, r) in results {
                match r {
                    Ok(done) => {
                        super::exec::log_stderr(cx, &done.stderr, &format!("{}: ", p.name));
                        let ok = done.code.is_some_and(|c| accepted.contains(&c));
                        if !ok {
                            transient = false;
                            failed.push(format!(
                                "{}: exited with {}: {}",
                                p.name,
                                done.code
                                    .map_or("a signal".into(), |c| format!("status {c}")),
                                super::exec::last_line(&done.stderr)
                            ));
                        }
                        hosts.insert(
                            p.name.clone(),
                            json!({"exit_code": done.code, "stdout": done.stdout, "stderr": done.stderr, "ok": ok}),
                        );
                    }
                    Err(e) => {
                        transient &= e.failure == super::Failure::Transient;
                        failed.push(format!("{}: {e}", p.name));
                        hosts.insert(p.name.clone(), json!({"error": e.message, "ok": false}));
                    }
                }
            }
            if !failed.is_empty() {
                let msg = format!(
                    "failed on {} of {} host(s): {}",
                    failed.len(),
                    hosts.len(),
                    failed.join("; ")
                );
                return Err(if transient {
                    StepError::transient(msg)
                } else {
                    StepError::permanent(msg)
                });
            }
            let count = hosts.len();
            Ok(json!({"hosts": J::Object(hosts), "count": count}))
        })
    }
}
