//! Driver `systemd`: a unit managed with `systemctl` on this machine or on
//! each `ssh` host. `systemctl start/stop/restart` wait for the job to
//! finish (no `--no-block`); the unit's state comes from `systemctl show
//! --property=…`, whose `Key=Value` lines are stable for scripts (unlike
//! `status`); ready means `ActiveState=active` and the health URL answering.

use futures::future::BoxFuture;
use serde_json::{Map, Value as J};

use super::hosts::{HostOps, Place};
use super::remote::Line;
use crate::config::Target;
use crate::exec::context::StepCx;
use crate::exec::steps::StepError;

/// Properties read for a unit's state.
pub const PROPERTIES: &str = "ActiveState,SubState,MainPID,NRestarts,Result,UnitFileState";

/// One unit of a target.
pub struct Unit<'t>(&'t crate::config::Systemd);

impl<'t> Unit<'t> {
    pub fn of(t: &'t Target) -> Result<Self, StepError> {
        t.systemd
            .as_ref()
            .map(Unit)
            .ok_or_else(|| StepError::permanent("this target has no `systemd` section"))
    }

    /// `systemctl [--user] VERB… UNIT`.
    pub fn argv(&self, verb: &[&str]) -> Vec<String> {
        let s = self.0;
        let mut a = s.systemctl.clone();
        if s.user_manager {
            a.push("--user".into());
        }
        a.extend(verb.iter().map(|v| v.to_string()));
        a.push(s.unit.value.clone());
        a
    }

    async fn call(&self, cx: &StepCx<'_>, at: &Place<'_>, verb: &str) -> Result<(), StepError> {
        let argv = self.argv(&[verb]);
        at.runner.check(cx, Line::Argv(&argv)).await.map(|_| ())
    }
}

/// `Key=Value` lines of `systemctl show` as a JSON object.
pub fn parse_show(text: &str) -> Map<String, J> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), J::String(v.trim().to_string())))
        .collect()
}

impl HostOps for Unit<'_> {
    fn kind(&self) -> &'static str {
        "the unit"
    }

    fn start<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(self.call(cx, at, "start"))
    }

    fn stop<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(self.call(cx, at, "stop"))
    }

    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> Option<BoxFuture<'a, Result<(), StepError>>> {
        Some(Box::pin(self.call(cx, at, "restart")))
    }

    fn state<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        at: &'a Place<'a>,
    ) -> BoxFuture<'a, Result<(bool, J), StepError>> {
        Box::pin(async move {
            let argv = self.argv(&["show", &format!("--property={PROPERTIES}")]);
            let done = at.runner.check(cx, Line::Argv(&argv)).await?;
            let props = parse_show(&done.stdout);
            let active = props.get("ActiveState").and_then(J::as_str) == Some("active");
            Ok((active, J::Object(props)))
        })
    }
}
