//! Where a driver's commands run: on this machine, or on an inventory host
//! through the system's OpenSSH client. A remote command line is the argv
//! with every word single-quoted, so nothing in it is parsed by the remote
//! shell; a timeout kills the local `ssh` (and so the session) whole.

use std::time::Duration as StdDuration;

use crate::config::{Host, Ssh};
use crate::exec::context::StepCx;
use crate::exec::steps::StepError;
use crate::exec::steps::exec::{Finished, spawn_bounded};
use crate::runbook::template::shell_quote;

/// The exit status OpenSSH's client uses for its own failures (connect, auth, host key).
pub const SSH_FAILED: i32 = 255;

/// Where a command runs.
#[derive(Debug, Clone, Copy)]
pub enum Runner<'a> {
    Local,
    Ssh { ssh: &'a Ssh, host: &'a Host },
}

/// What a remote command line says: argv words, or a script for the login shell.
#[derive(Debug, Clone, Copy)]
pub enum Line<'a> {
    Argv(&'a [String]),
    /// A POSIX sh script whose templated values are already quoted.
    Script(&'a str),
}

impl<'a> Runner<'a> {
    /// `host` for messages: `p1 (127.0.0.1:2201)` or `this machine`.
    pub fn label(&self) -> String {
        match self {
            Runner::Local => "this machine".to_string(),
            Runner::Ssh { ssh, host } => format!(
                "{} ({}:{})",
                host.name.value,
                host.address(),
                host.port.or(ssh.port).unwrap_or(22)
            ),
        }
    }

    /// The local argv that runs `line` here or there.
    pub fn argv(&self, line: Line<'_>) -> Vec<String> {
        let remote_line = || match line {
            Line::Argv(words) => words
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
            Line::Script(s) => s.to_string(),
        };
        match self {
            Runner::Local => match line {
                Line::Argv(words) => words.to_vec(),
                Line::Script(s) => vec!["/bin/sh".into(), "-c".into(), s.into()],
            },
            Runner::Ssh { ssh, host } => {
                let mut a = vec![ssh.program.clone()];
                if let Some(f) = &ssh.config_file {
                    a.extend(["-F".into(), f.display().to_string()]);
                }
                let strict = if ssh.accept_new_host_keys {
                    "accept-new"
                } else {
                    "yes"
                };
                let secs = ssh.connect_timeout.std().as_secs().max(1);
                for o in [
                    "BatchMode=yes".to_string(),
                    format!("StrictHostKeyChecking={strict}"),
                    format!("ConnectTimeout={secs}"),
                    // A connection that goes silent is given up in about 15 s.
                    "ServerAliveInterval=5".to_string(),
                    "ServerAliveCountMax=3".to_string(),
                    "LogLevel=ERROR".to_string(),
                ] {
                    a.extend(["-o".into(), o]);
                }
                if let Some(k) = &ssh.known_hosts {
                    a.extend(["-o".into(), format!("UserKnownHostsFile={}", k.display())]);
                }
                if let Some(id) = &ssh.identity_file {
                    a.extend([
                        "-i".into(),
                        id.display().to_string(),
                        "-o".into(),
                        "IdentitiesOnly=yes".into(),
                    ]);
                }
                if let Some(p) = host.port.or(ssh.port) {
                    a.extend(["-p".into(), p.to_string()]);
                }
                if let Some(u) = host.user.as_ref().or(ssh.user.as_ref()) {
                    a.extend(["-l".into(), u.value.clone()]);
                }
                a.extend(["--".into(), host.address().to_string(), remote_line()]);
                a
            }
        }
    }

    /// The longest one command may run here.
    fn limit(&self) -> Option<StdDuration> {
        match self {
            Runner::Local => None,
            Runner::Ssh { ssh, .. } => Some(ssh.command_timeout.std()),
        }
    }

    /// Runs `line` with bounded output; a command over its limit is killed.
    /// Only failing to run at all is an error: exit codes are the caller's.
    pub async fn run(&self, cx: &StepCx<'_>, line: Line<'_>) -> Result<Finished, StepError> {
        let argv = self.argv(line);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let max = cx.limits().max_output_bytes;
        let run = spawn_bounded(cmd, None, max, None);
        let done = match self.limit() {
            Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| {
                StepError::transient(format!(
                    "{}: the command did not finish within {}s (killed)",
                    self.label(),
                    limit.as_secs()
                ))
            })??,
            None => run.await?,
        };
        if matches!(self, Runner::Ssh { .. }) && done.code == Some(SSH_FAILED) {
            let why = crate::exec::steps::exec::last_line(&done.stderr).to_string();
            // A host key problem is configuration, not weather.
            let err = if why.contains("Host key verification failed")
                || why.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || why.contains("Permission denied")
            {
                StepError::permanent
            } else {
                StepError::transient
            };
            return Err(err(format!("ssh to {}: {why}", self.label())));
        }
        Ok(done)
    }

    /// Runs `line` and fails unless it exits 0.
    pub async fn check(&self, cx: &StepCx<'_>, line: Line<'_>) -> Result<Finished, StepError> {
        let done = self.run(cx, line).await?;
        match done.code {
            Some(0) => Ok(done),
            code => Err(StepError::permanent(format!(
                "{}: {} exited with {}: {}",
                self.label(),
                match line {
                    Line::Argv(w) => w.join(" "),
                    Line::Script(_) => "the script".to_string(),
                },
                code.map_or("a signal".to_string(), |c| format!("status {c}")),
                crate::exec::steps::exec::last_line(&done.stderr)
            ))),
        }
    }
}
