//! Lints: runbooks that are valid but dangerous. `sluice validate` prints
//! them as warnings; `sluice validate --strict` fails on them (for CI).
//!
//! - a remote command (`ssh` step) without a step or runbook `timeout`;
//! - a destructive step (`process.stop`, `process.scale`, `restore`,
//!   `cleanup`, `kafka.reset_offsets`) in a runbook an alert or a webhook
//!   starts, with neither an `approval` before it nor a `cooldown`/`max_runs`
//!   guard (a schedule fires at a bounded rate; a manual run has a person);
//! - a fence — `process.stop` of one target followed by `process.start` of
//!   another, as in a failover — whose failure either ends the run before the
//!   takeover (no `continue_on_error`) or is never looked at afterwards (no
//!   later `if`/template reads `steps.<id>.status` or `.error`).

use super::model::{Runbook, Step, Trigger};
use crate::yaml::DeError;

fn target_of(s: &Step) -> Option<&str> {
    s.config.get("target").and_then(|n| n.as_str())
}

/// Whether any step after `index` reads the outcome of step `id`.
fn outcome_read(steps: &[&Step], index: usize, id: &str) -> bool {
    let needles = [format!("steps.{id}.status"), format!("steps.{id}.error")];
    steps[index + 1..].iter().any(|s| {
        let text = format!(
            "{} {}",
            s.when.as_ref().map_or("", |w| w.value.as_str()),
            s.config.to_json()
        );
        needles.iter().any(|n| text.contains(n.as_str()))
    })
}

/// Kinds that destroy or stop something.
pub const DESTRUCTIVE: &[&str] = &[
    "process.stop",
    "process.scale",
    "restore",
    "cleanup",
    "kafka.reset_offsets",
];

/// Every lint of `rb`, each at the step it is about.
pub fn lint(rb: &Runbook) -> Vec<DeError> {
    let mut out = Vec::new();
    let steps = rb.all_steps();
    let automatic = rb
        .triggers
        .iter()
        .any(|t| matches!(t.value, Trigger::Alert { .. } | Trigger::Webhook { .. }));
    let guarded = rb.guards.cooldown.is_some() || rb.guards.max_runs.is_some();
    if automatic && !guarded {
        let mut approved = false;
        for s in &steps {
            if s.kind.name == "approval" {
                approved = true;
            } else if DESTRUCTIVE.contains(&s.kind.name) && !approved {
                out.push(DeError::new(
                    s.kind_pos,
                    format!(
                        "lint: `{}` ({}) runs on an alert or webhook with no `approval` before it and no `cooldown`/`max_runs` guard: a flapping alert would repeat it",
                        s.id.value, s.kind.name
                    ),
                ));
            }
        }
    }
    for (i, s) in steps.iter().enumerate() {
        let id = s.id.value.to_string();
        if s.kind.name == "ssh" && s.timeout.is_none() && rb.timeout.is_none() {
            out.push(DeError::new(
                s.kind_pos,
                format!(
                    "lint: step `{id}` runs a remote command without a `timeout` (only the target's ssh.command_timeout bounds it)"
                ),
            ));
        }
        if s.kind.name != "process.stop" {
            continue;
        }
        let Some(fenced) = target_of(s) else { continue };
        let takeover = steps[i + 1..]
            .iter()
            .find(|t| t.kind.name == "process.start" && target_of(t).is_some_and(|n| n != fenced));
        let Some(takeover) = takeover else { continue };
        let other = target_of(takeover).unwrap_or_default();
        if !s.continue_on_error {
            out.push(DeError::new(
                s.kind_pos,
                format!(
                    "lint: fence `{id}` (stop `{fenced}` before `{other}` starts) ends the run when a host cannot be reached; set `continue_on_error: true` and look at `steps.{id}.status`"
                ),
            ));
        } else if !outcome_read(&steps, i, &id) {
            out.push(DeError::new(
                s.kind_pos,
                format!(
                    "lint: fence `{id}` may fail silently: no later step reads `steps.{id}.status` before `{other}` takes over"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn lints(yaml: &str) -> Vec<String> {
        let rb = super::super::load_str(Path::new("l.yaml"), yaml).expect("valid");
        super::lint(&rb)
            .into_iter()
            .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.column, e.message))
            .collect()
    }

    #[test]
    fn fences_must_be_allowed_to_fail_and_be_looked_at() {
        let bare = "name: f\nsteps:\n  - id: fence\n    process.stop: {target: a}\n  - id: up\n    process.start: {target: b}\n";
        let l = lints(bare);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("4:5: lint: fence `fence`"), "{l:?}");
        let unread = bare.replace(
            "process.stop: {target: a}",
            "process.stop: {target: a}\n    continue_on_error: true",
        );
        assert!(lints(&unread)[0].contains("may fail silently"));
        let read = unread.replace(
            "  - id: up\n",
            "  - id: warn\n    if: '{{eq steps.fence.status \"failed\"}}'\n    sleep: 0s\n  - id: up\n",
        );
        assert!(lints(&read).is_empty(), "{:?}", lints(&read));
        // Stopping and starting the same target is a restart, not a fence.
        let same =
            "name: f\nsteps:\n  - process.stop: {target: a}\n  - process.start: {target: a}\n";
        assert!(lints(same).is_empty());
    }

    #[test]
    fn destructive_steps_started_by_alerts_need_an_approval_or_a_guard() {
        let y = "name: d\ntriggers:\n  - alert: DiskFilling\nsteps:\n  - id: wipe\n    cleanup: {root: /var/tmp/x, older_than: 1d}\n";
        let l = lints(y);
        assert!(
            l[0].starts_with("6:5: lint: `wipe` (cleanup) runs on an alert"),
            "{l:?}"
        );
        let guarded = y.replace("steps:", "guards: {cooldown: 1h}\nsteps:");
        assert!(lints(&guarded).is_empty());
        let asked = y.replace(
            "steps:\n",
            "steps:\n  - id: ok\n    approval: {message: wipe?}\n",
        );
        assert!(lints(&asked).is_empty(), "{:?}", lints(&asked));
        let scheduled = y.replace("alert: DiskFilling", "schedule: '0 3 * * *'");
        assert!(lints(&scheduled).is_empty());
    }

    #[test]
    fn remote_commands_need_a_timeout() {
        let y = "name: r\nsteps:\n  - id: df\n    ssh: {target: t, command: [df]}\n";
        assert!(lints(y)[0].contains("without a `timeout`"));
        let y =
            "name: r\nsteps:\n  - id: df\n    ssh: {target: t, command: [df]}\n    timeout: 1m\n";
        assert!(lints(y).is_empty());
    }
}
