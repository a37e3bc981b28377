//! Driver `ssh`: a service started and stopped by the commands in
//! `ssh.commands`, run as argv on each inventory host. `status` decides
//! whether it runs there: exit 0 runs, any other status does not (LSB init
//! scripts answer 3 for stopped).

use futures::future::BoxFuture;
use serde_json::json;

use super::hosts::{HostOps, Place};
use super::remote::Line;
use crate::config::Target;
use crate::exec::context::StepCx;
use crate::exec::steps::StepError;

/// The lifecycle commands of a plain ssh target.
pub struct Commands<'t>(&'t crate::config::Commands);

impl<'t> Commands<'t> {
    pub fn of(t: &'t Target) -> Result<Self, StepError> {
        t.ssh
            .as_ref()
            .and_then(|s| s.commands.as_ref())
            .map(Commands)
            .ok_or_else(|| StepError::permanent("this ssh target has no `ssh.commands`"))
    }

    fn argv(&self, which: &str, argv: &'t Option<Vec<String>>) -> Result<&'t [String], StepError> {
        argv.as_deref().ok_or_else(|| {
            StepError::permanent(format!("`ssh.commands.{which}` is not configured"))
        })
    }
}

impl HostOps for Commands<'_> {
    fn kind(&self) -> &'static str {
        "the service"
    }

    fn start<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let argv = self.argv("start", &self.0.start)?;
            at.runner.check(cx, Line::Argv(argv)).await.map(|_| ())
        })
    }

    fn stop<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let argv = self.argv("stop", &self.0.stop)?;
            at.runner.check(cx, Line::Argv(argv)).await.map(|_| ())
        })
    }

    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> Option<BoxFuture<'a, Result<(), StepError>>> {
        let argv = self.0.restart.as_deref()?;
        Some(Box::pin(async move {
            at.runner.check(cx, Line::Argv(argv)).await.map(|_| ())
        }))
    }

    fn state<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(bool, serde_json::Value), StepError>> {
        Box::pin(async move {
            let argv = self.argv("status", &self.0.status)?;
            let done = at.runner.run(cx, Line::Argv(argv)).await?;
            Ok((
                done.code == Some(0),
                json!({"status_exit": done.code, "stdout": done.stdout.trim()}),
            ))
        })
    }
}
