//! Semantic checks of a decoded runbook, pure (no I/O): duplicate step ids,
//! templates that do not compile or read variables that cannot exist at that
//! point, references to unknown targets/channels/clusters/runbooks/alerts, and
//! PromQL that does not parse. Every problem carries its position.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Runbook, Step, Trigger};
use super::template;
use crate::config::Config;
use crate::exec::steps::{Ref, RefKind};
use crate::yaml::de::{At, did_you_mean};
use crate::yaml::{DeError, Node, Pos};

/// What the runbook is checked against. `None` skips that kind of check.
#[derive(Default, Clone, Copy)]
pub struct Known<'a> {
    pub config: Option<&'a Config>,
    /// Names of all runbooks (for `runbook` steps).
    pub runbooks: Option<&'a BTreeSet<String>>,
    /// Names of alerts defined by rule files (for `alert` triggers).
    pub alerts: Option<&'a BTreeSet<String>>,
}

/// Variables templates may read at the top level.
pub const ROOTS: &[&str] = &[
    "params", "steps", "alert", "webhook", "targets", "env", "secrets", "now", "run", "runbook",
    "failed",
];

/// Fields of `steps.<id>`.
pub const STEP_FIELDS: &[&str] = &["output", "status", "error", "attempts"];

/// What a template may see at one place in the runbook.
#[derive(Clone)]
struct Scope<'a> {
    rb: &'a Runbook,
    known: Known<'a>,
    /// Steps finished before this point.
    visible: BTreeSet<String>,
    /// All step ids (to tell "runs later" from "does not exist").
    all: &'a BTreeSet<String>,
    failed: bool,
    loop_vars: Vec<String>,
}

pub fn validate(rb: &Runbook, known: Known<'_>) -> Vec<DeError> {
    let mut p = Vec::new();
    let steps = rb.all_steps();
    let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
    for s in &steps {
        if let Some(first) = seen.get(s.id.as_str()) {
            p.push(DeError::new(
                s.id.pos,
                format!(
                    "duplicate step id `{}` (first at line {})",
                    s.id.value, first.line
                ),
            ));
        } else {
            seen.insert(s.id.as_str(), s.id.pos);
        }
    }
    let all: BTreeSet<String> = steps.iter().map(|s| s.id.value.to_string()).collect();
    let scope = Scope {
        rb,
        known,
        visible: BTreeSet::new(),
        all: &all,
        failed: false,
        loop_vars: Vec::new(),
    };

    for param in &rb.params {
        if let Some(default) = &param.spec.default
            && let serde_json::Value::String(text) = &default.value
        {
            // Defaults are rendered before other parameters exist.
            let mut s = scope.clone();
            s.visible.clear();
            check_template(text, default.pos, &s, &mut p);
        }
    }
    let mut visible = walk(&rb.steps, scope.clone(), &mut p);
    let mut on_failure_scope = scope.clone();
    on_failure_scope.visible = std::mem::take(&mut visible);
    on_failure_scope.failed = true;
    walk(&rb.on_failure, on_failure_scope, &mut p);

    let n = &rb.notify;
    for ch in n
        .on_start
        .iter()
        .chain(&n.on_success)
        .chain(&n.on_failure)
        .chain(&n.on_approval)
    {
        check_ref(&Ref::new(RefKind::Channel, ch), known, &mut p);
    }
    if let Some(esc) = &rb.guards.escalate {
        for ch in &esc.channels {
            check_ref(&Ref::new(RefKind::Channel, ch), known, &mut p);
        }
        if let Some(text) = &esc.text {
            check_template(text, text.pos, &scope, &mut p);
        }
    }
    if let Some(alerts) = known.alerts {
        for t in &rb.triggers {
            if let Trigger::Alert { name, .. } = &t.value
                && !alerts.contains(name.as_str())
            {
                p.push(unknown_ref(
                    "alert",
                    name,
                    alerts.iter().map(String::as_str),
                ));
            }
        }
    }
    p.sort_by_key(|e| e.pos);
    p
}

/// Checks steps in order; returns the ids visible after them.
fn walk(steps: &[Step], mut scope: Scope<'_>, p: &mut Vec<DeError>) -> BTreeSet<String> {
    for step in steps {
        check_step(step, &scope, p);
        scope.visible.insert(step.id.value.to_string());
        // A parallel step's children write the shared `steps`; a for_each's live per iteration.
        if step.kind.name == crate::exec::steps::parallel::KIND.name {
            scope
                .visible
                .extend(step.children.iter().map(|c| c.id.value.to_string()));
        }
    }
    scope.visible
}

fn check_step(step: &Step, scope: &Scope<'_>, p: &mut Vec<DeError>) {
    if let Some(when) = &step.when {
        check_template(when, when.pos, scope, p);
    }
    check_node_templates(&step.config, scope, p);
    // A config that does not decode was already reported while decoding.
    if let Ok(action) = (step.kind.parse)(step.kind.name, &step.config, true) {
        {
            for r in action.refs() {
                check_ref(&r, scope.known, p);
            }
            for q in action.promql() {
                if !q.contains("{{")
                    && let Err(e) = promql_parser::parser::parse(&q)
                {
                    p.push(DeError::new(q.pos, format!("invalid PromQL: {e}")));
                }
            }
        }
    }
    if step.children.is_empty() {
        return;
    }
    let mut inner = scope.clone();
    if step.kind.name == "for_each" {
        let var = step
            .config
            .get("as")
            .and_then(Node::as_str)
            .unwrap_or("item");
        inner.loop_vars.push(var.to_string());
        inner.loop_vars.push("index".to_string());
        walk(&step.children, inner, p);
    } else {
        // Parallel children run together: none may read a sibling.
        for child in &step.children {
            check_step(child, &inner, p);
        }
    }
}

fn check_node_templates(node: &Node, scope: &Scope<'_>, p: &mut Vec<DeError>) {
    node.for_each_str(&mut |s, pos| {
        if s.contains("{{") {
            check_template(s, pos, scope, p);
        }
    });
}

fn check_template(text: &str, pos: Pos, scope: &Scope<'_>, p: &mut Vec<DeError>) {
    if !text.contains("{{") {
        return;
    }
    let t = match template::compile(text) {
        Ok(t) => t,
        Err(e) => {
            p.push(DeError::new(pos, e.0));
            return;
        }
    };
    for var in template::variables(&t) {
        if let Err(msg) = check_var(&var.path, scope) {
            p.push(DeError::new(pos, msg));
        }
    }
}

fn check_var(path: &[String], scope: &Scope<'_>) -> Result<(), String> {
    let Some(root) = path.first() else {
        return Ok(());
    };
    let second = path.get(1).map(String::as_str);
    let rb = scope.rb;
    match root.as_str() {
        "params" => match second {
            Some(name) if rb.param(name).is_none() => {
                let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
                Err(match did_you_mean(name, names.iter().copied()) {
                    Some(best) => format!("unknown parameter `{name}` in template, did you mean `{best}`?"),
                    None => format!("unknown parameter `{name}` in template (declare it under `params:`)"),
                })
            }
            _ => Ok(()),
        },
        "steps" => {
            let Some(id) = second else { return Ok(()) };
            if !scope.visible.contains(id) {
                return Err(if scope.all.contains(id) {
                    format!("`steps.{id}` is not available here: step `{id}` has not run yet at this point")
                } else {
                    match did_you_mean(id, scope.visible.iter().map(String::as_str)) {
                        Some(best) => format!("unknown step `{id}` in template, did you mean `{best}`?"),
                        None => format!("unknown step `{id}` in template"),
                    }
                });
            }
            match path.get(2) {
                Some(field) if !STEP_FIELDS.contains(&field.as_str()) => Err(format!(
                    "`steps.{id}.{field}` does not exist: use `steps.{id}.output.{field}` (fields: {})",
                    STEP_FIELDS.join(", ")
                )),
                _ => Ok(()),
            }
        }
        "alert" if !rb.has_alert_trigger() => {
            Err("`alert` is only set when an alert triggers the runbook (add an `alert:` trigger)".into())
        }
        "webhook" if !rb.triggers.iter().any(|t| matches!(t.value, Trigger::Webhook { .. })) => {
            Err("`webhook` is only set when a webhook triggers the runbook (add a `webhook:` trigger)".into())
        }
        "failed" if !scope.failed => Err("`failed` is only set in `on_failure` steps".into()),
        "targets" | "env" | "secrets" => {
            let (Some(cfg), Some(name)) = (scope.known.config, second) else { return Ok(()) };
            let names: Vec<&str> = match root.as_str() {
                "targets" => cfg.target_names().collect(),
                "env" => cfg.env.iter().map(String::as_str).collect(),
                _ => cfg.secrets.keys().map(String::as_str).collect(),
            };
            if names.contains(&name) {
                Ok(())
            } else {
                let section = if root == "env" { "`env:` allow-list" } else { root.as_str() };
                Err(format!("`{root}.{name}` is not defined in sluice.yaml ({section})"))
            }
        }
        r if ROOTS.contains(&r) || scope.loop_vars.iter().any(|v| v == r) => Ok(()),
        other => {
            let candidates: Vec<&str> = ROOTS.iter().copied().chain(scope.loop_vars.iter().map(String::as_str)).collect();
            Err(match did_you_mean(other, candidates.iter().copied()) {
                Some(best) => format!("unknown variable `{other}` in template, did you mean `{best}`?"),
                None => format!("unknown variable `{other}` in template (known: {})", candidates.join(", ")),
            })
        }
    }
}

fn check_ref(r: &Ref, known: Known<'_>, p: &mut Vec<DeError>) {
    if r.name.contains("{{") {
        return;
    }
    if let (RefKind::Managed { .. } | RefKind::SshHosts, Some(c)) = (r.kind, known.config)
        && let Some(t) = c.targets.get(r.name.as_str())
    {
        let refused = match r.kind {
            RefKind::Managed { op, hosts } => crate::target::cannot(&r.name.value, t, op, hosts),
            _ => t.ssh.is_none().then(|| {
                format!(
                    "target `{}` has no `ssh` inventory; the `ssh` step runs commands on a target's `ssh.hosts`",
                    r.name.value
                )
            }),
        };
        if let Some(why) = refused {
            p.push(DeError::new(r.name.pos, why));
        } else if let (Some(sel), Some(ssh)) = (&r.hosts, &t.ssh) {
            let unknown = sel.unknown(&ssh.hosts);
            if !unknown.is_empty() {
                let names = ssh.hosts.iter().map(|h| h.name.value.as_str());
                p.push(unknown_ref(
                    &format!("host of target `{}`", r.name.value),
                    &At::new(r.name.pos, unknown[0].to_string()),
                    names,
                ));
            } else if !ssh.hosts.iter().any(|h| sel.matches(h)) {
                p.push(DeError::new(
                    r.name.pos,
                    format!("no host of target `{}` matches {sel}", r.name.value),
                ));
            }
        }
        return;
    }
    if let (RefKind::Target, Some(c), Some(sel)) = (r.kind, known.config, &r.hosts)
        && let Some(t) = c.targets.get(r.name.as_str())
    {
        match &t.ssh {
            Some(ssh) => {
                if let Some(bad) = sel.unknown(&ssh.hosts).first() {
                    let names = ssh.hosts.iter().map(|h| h.name.value.as_str());
                    p.push(unknown_ref(
                        &format!("host of target `{}`", r.name.value),
                        &At::new(r.name.pos, bad.to_string()),
                        names,
                    ));
                }
            }
            None if !sel.is_all() => p.push(DeError::new(
                r.name.pos,
                format!(
                    "target `{}` has no `ssh` inventory to select hosts from (only `hosts: all` fits it)",
                    r.name.value
                ),
            )),
            None => {}
        }
        return;
    }
    let names: Vec<&str> = match (r.kind, known.config) {
        (RefKind::Target, Some(c)) => c.target_names().collect(),
        (RefKind::Managed { .. } | RefKind::SshHosts, Some(c)) => {
            c.targets.keys().map(String::as_str).collect()
        }
        (RefKind::Channel, Some(c)) => c.channels.keys().map(String::as_str).collect(),
        (RefKind::Kafka, Some(c)) => c.kafka.keys().map(String::as_str).collect(),
        (RefKind::Runbook, _) => match known.runbooks {
            Some(r) => r.iter().map(String::as_str).collect(),
            None => return,
        },
        (_, None) => return,
    };
    if !names.contains(&r.name.as_str()) {
        p.push(unknown_ref(&r.kind.to_string(), &r.name, names.into_iter()));
    }
}

fn unknown_ref<'a>(
    what: &str,
    name: &At<String>,
    candidates: impl Iterator<Item = &'a str>,
) -> DeError {
    let candidates: Vec<&str> = candidates.collect();
    let msg = match did_you_mean(name, candidates.iter().copied()) {
        Some(best) => format!("unknown {what} `{}`, did you mean `{best}`?", name.value),
        None if candidates.is_empty() => {
            format!("unknown {what} `{}` (none are defined)", name.value)
        }
        None => format!(
            "unknown {what} `{}` (defined: {})",
            name.value,
            candidates.join(", ")
        ),
    };
    DeError::new(name.pos, msg)
}
