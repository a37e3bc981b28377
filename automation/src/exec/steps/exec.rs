//! `exec`: run a program with arguments (argv, no shell: templated values are
//! single arguments, never parsed). Also the process runner `shell` uses: the
//! child gets its own process group, and the whole group is killed when the
//! step is cancelled (timeout) — grandchildren included.

use std::collections::BTreeMap;
use std::process::Stdio;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Action, Kind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "exec",
    summary: "Run a program with arguments (no shell).",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["argv"],
            "properties": {
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Program and arguments."},
                "cwd": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "stdin": {"type": "string"},
                "expect_exit": {"type": "array", "items": {"type": "integer"}, "description": "Accepted exit codes (default [0])."}
            }
        })
    },
};

/// A program to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub expect_exit: Option<Vec<i32>>,
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let config: ExecConfig = super::decode(node, lenient)?;
    if config.argv.is_empty() || config.argv[0].is_empty() {
        return Err(DeError::new(
            node.get("argv").map_or(node.pos, |n| n.pos),
            "`argv` needs at least the program",
        ));
    }
    Ok(Box::new(config))
}

impl Action for ExecConfig {
    fn describe(&self) -> String {
        let words: Vec<String> = self
            .argv
            .iter()
            .map(|a| crate::runbook::template::shell_quote(a))
            .collect();
        format!("run {}", words.join(" "))
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new(&self.argv[0]);
            cmd.args(&self.argv[1..]);
            run_process(
                cx,
                cmd,
                self.cwd.as_deref(),
                &self.env,
                self.stdin.as_deref(),
                self.expect_exit.as_deref(),
            )
            .await
        })
    }
}

/// Kills the child's whole process group when dropped (step finished, failed or cancelled).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take()
            && let Ok(pgid) = i32::try_from(pid)
        {
            // SAFETY: kill(2) with a negative pid signals the process group we created; no memory involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// What a finished program left: its exit code (`None`: killed by a signal) and output.
#[derive(Debug, Clone)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Spawns a prepared command in its own process group (killed whole when
/// this future is dropped, so a step's timeout reaps grandchildren too),
/// feeds `stdin`, and captures at most `max` bytes of each stream; the first
/// stream over the limit ends it at once. The program dies with the
/// service (parent-death signal): after a crash a resumed step must not run
/// beside its own orphan. With `record`, the process group id is recorded
/// on the step, so a takeover after a crash can stop it.
pub async fn spawn_bounded(
    mut cmd: tokio::process::Command,
    stdin: Option<&str>,
    max: usize,
    record: Option<&StepCx<'_>>,
) -> Result<Finished, StepError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    // (The death signal follows the spawning thread, a long-lived runtime worker.)
    #[cfg(target_os = "linux")]
    // SAFETY: only prctl, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| StepError::permanent(format!("cannot start program: {e}")))?;
    let guard = GroupGuard(child.id());
    if let (Some(cx), Some(pid)) = (record, child.id())
        && let Some(store) = &cx.services.store
        && !cx.run.dry_run
        && let Err(e) = store
            .set_step_pgid(&cx.run.id, cx.path, i64::from(pid))
            .await
    {
        cx.log(format!("could not record the process group: {e}"));
    }
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        let input = input.to_string();
        tokio::spawn(async move {
            let _ = pipe.write_all(input.as_bytes()).await;
        });
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (out, err) = tokio::try_join!(read_bounded(stdout, max), read_bounded(stderr, max))
        .map_err(|()| {
            StepError::permanent(format!(
                "program output exceeds the output limit of {max} bytes (process group killed)"
            ))
        })?;
    let status = child
        .wait()
        .await
        .map_err(|e| StepError::transient(format!("waiting for program: {e}")))?;
    drop(guard); // Reap stragglers left in the group.
    Ok(Finished {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Runs a prepared command in its own process group with bounded output capture.
pub async fn run_process(
    cx: &StepCx<'_>,
    mut cmd: tokio::process::Command,
    cwd: Option<&str>,
    env: &BTreeMap<String, String>,
    stdin: Option<&str>,
    expect_exit: Option<&[i32]>,
) -> StepResult {
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.envs(env);
    let done = spawn_bounded(cmd, stdin, cx.limits().max_output_bytes, Some(cx)).await?;
    log_stderr(cx, &done.stderr, "");
    let accepted = expect_exit.unwrap_or(&[0]);
    let Finished {
        code,
        stdout,
        stderr,
    } = done;
    let output = json!({"exit_code": code, "stdout": stdout, "stderr": stderr});
    match code {
        Some(c) if accepted.contains(&c) => Ok(output),
        Some(c) => Err(StepError::permanent(format!(
            "exited with status {c}: {}",
            last_line(&stderr)
        ))),
        None => Err(StepError::permanent("killed by a signal")),
    }
}

/// The last 20 lines of a program's stderr into the step log, each prefixed.
pub fn log_stderr(cx: &StepCx<'_>, stderr: &str, prefix: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    for line in &lines[lines.len().saturating_sub(20)..] {
        cx.log(format!("{prefix}stderr: {line}"));
    }
}

/// The last line of a program's stderr, for an error message.
pub fn last_line(stderr: &str) -> &str {
    stderr.trim().lines().last().unwrap_or("")
}

async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, max: usize) -> Result<Vec<u8>, ()> {
    let Some(mut pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(buf),
            Ok(n) => {
                if buf.len() + n > max {
                    return Err(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
