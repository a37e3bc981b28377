//! `engine.*`: typed calls of the engine admin API on a named target from
//! sluice.yaml (its URL and bearer token). One table lists every call; each
//! call accepts only the fields it uses.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::http::{Expect, check_status, send};
use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Put,
}

/// One admin API call.
#[derive(Debug)]
pub struct Call {
    pub name: &'static str,
    verb: Verb,
    pub path: &'static str,
    /// Fields besides `target` and `expect` this call accepts.
    fields: &'static [&'static str],
    pub summary: &'static str,
}

const fn call(
    name: &'static str,
    verb: Verb,
    path: &'static str,
    fields: &'static [&'static str],
    summary: &'static str,
) -> Call {
    Call {
        name,
        verb,
        path,
        fields,
        summary,
    }
}

/// The engine admin API, as DESIGN.md lists it.
pub static CALLS: &[Call] = &[
    call("engine.health", Verb::Get, "/health", &[], "Liveness."),
    call(
        "engine.ready",
        Verb::Get,
        "/ready",
        &[],
        "Readiness with per-check detail.",
    ),
    call(
        "engine.circuit_breaker.reset",
        Verb::Post,
        "/admin/circuit-breaker/reset",
        &["name"],
        "Force a breaker closed (all when `name` is absent).",
    ),
    call(
        "engine.circuit_breaker.reset_all",
        Verb::Post,
        "/admin/circuit-breaker/reset-all",
        &[],
        "Force every breaker closed.",
    ),
    call(
        "engine.circuit_breaker.stats",
        Verb::Get,
        "/admin/circuit-breaker/monthly-stats",
        &[],
        "Open/close counts and time open.",
    ),
    call(
        "engine.resources.get",
        Verb::Get,
        "/admin/resources",
        &[],
        "Resource manager state.",
    ),
    call(
        "engine.resources.utilization",
        Verb::Get,
        "/admin/resources/utilization",
        &[],
        "Resource utilization.",
    ),
    call(
        "engine.resources.analysis",
        Verb::Get,
        "/admin/resources/analysis",
        &[],
        "Resource usage analysis.",
    ),
    call(
        "engine.resources.recommendations",
        Verb::Get,
        "/admin/resources/recommendations",
        &[],
        "Limit recommendations.",
    ),
    call(
        "engine.resources.cleanup",
        Verb::Post,
        "/admin/resources/cleanup",
        &[],
        "Evict expired operator state now.",
    ),
    call(
        "engine.config.get",
        Verb::Get,
        "/admin/config",
        &[],
        "Read the running configuration.",
    ),
    call(
        "engine.config.patch",
        Verb::Put,
        "/admin/config",
        &["patch"],
        "Apply a JSON merge-patch (validated by the engine).",
    ),
    call(
        "engine.config.reload",
        Verb::Post,
        "/admin/config/reload",
        &[],
        "Reload the config file; the engine keeps the old one on error.",
    ),
    call(
        "engine.processing.restart",
        Verb::Post,
        "/admin/processing/restart",
        &[],
        "Rebuild the processing pipeline.",
    ),
    call(
        "engine.drain",
        Verb::Post,
        "/admin/processing/drain",
        &[],
        "Stop consuming, flush, commit, report.",
    ),
    call(
        "engine.maintenance.enable",
        Verb::Post,
        "/admin/maintenance/enable",
        &[],
        "Pause intake; stay healthy.",
    ),
    call(
        "engine.maintenance.disable",
        Verb::Post,
        "/admin/maintenance/disable",
        &[],
        "Resume intake.",
    ),
    call(
        "engine.state.export",
        Verb::Get,
        "/admin/state/export",
        &[],
        "Versioned JSON of operator state and offsets.",
    ),
    call(
        "engine.state.import",
        Verb::Post,
        "/admin/state/import",
        &["state", "file"],
        "Import state (`state` JSON or `file` path).",
    ),
    call(
        "engine.queries.performance",
        Verb::Get,
        "/admin/queries/performance",
        &[],
        "Per-query performance.",
    ),
    call(
        "engine.threads",
        Verb::Get,
        "/admin/threads",
        &[],
        "Processing threads.",
    ),
    call(
        "engine.version",
        Verb::Get,
        "/admin/version",
        &[],
        "Engine version.",
    ),
    call(
        "engine.performance.weekly_report",
        Verb::Get,
        "/admin/performance/weekly-report",
        &[],
        "Weekly performance report.",
    ),
    call(
        "engine.performance.update_baselines",
        Verb::Post,
        "/admin/performance/update-baselines",
        &[],
        "Update performance baselines.",
    ),
    call(
        "engine.metrics.cleanup",
        Verb::Post,
        "/admin/metrics/cleanup",
        &["older_than"],
        "Drop metric history older than `older_than` (e.g. 7d).",
    ),
    call(
        "engine.metrics.export",
        Verb::Get,
        "/admin/metrics/export",
        &["days"],
        "Export metric history of the last `days`.",
    ),
];

pub fn kinds() -> Vec<Kind> {
    CALLS
        .iter()
        .map(|c| Kind {
            name: c.name,
            summary: c.summary,
            nests: false,
            shell_fields: &[],
            parse,
            schema,
        })
        .collect()
}

fn lookup(name: &str) -> &'static Call {
    CALLS.iter().find(|c| c.name == name).unwrap_or(&CALLS[0])
}

fn schema(name: &'static str) -> J {
    let c = lookup(name);
    let mut props = serde_json::Map::new();
    props.insert(
        "target".into(),
        json!({"type": "string", "description": "Engine name from sluice.yaml `targets`."}),
    );
    props.insert("hosts".into(), json!({"description": "Call every selected host of the target's `ssh` inventory (`all`, a name, a list, or labels); `all` on a target without one calls the target itself. Output: `hosts.<name>` per host.", "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "object", "additionalProperties": {"type": "string"}}]}));
    props.insert("expect".into(), json!({"description": "Accepted status codes (default: any 2xx).", "oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}));
    for f in c.fields {
        let s = match *f {
            "name" => json!({"type": "string", "description": "Breaker name."}),
            "patch" => {
                json!({"type": "object", "description": "JSON merge-patch of the engine config."})
            }
            "state" => json!({"description": "State document (JSON, or a string holding JSON)."}),
            "file" => json!({"type": "string", "description": "Path of a JSON state file."}),
            "older_than" => json!({"type": "string", "description": "Age such as `7d`."}),
            "days" => json!({"type": "integer", "minimum": 1}),
            _ => json!({}),
        };
        props.insert((*f).into(), s);
    }
    json!({"type": "object", "additionalProperties": false, "required": ["target"], "properties": props, "description": c.summary})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFields {
    target: At<String>,
    #[serde(default)]
    hosts: Option<crate::target::HostSelector>,
    #[serde(default)]
    expect: Option<Expect>,
    #[serde(default)]
    name: Option<At<String>>,
    #[serde(default)]
    patch: Option<At<J>>,
    #[serde(default)]
    state: Option<At<J>>,
    #[serde(default)]
    file: Option<At<String>>,
    #[serde(default)]
    older_than: Option<At<String>>,
    #[serde(default)]
    days: Option<At<u32>>,
}

#[derive(Debug)]
struct EngineCall {
    call: &'static Call,
    f: EngineFields,
}

fn parse(name: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let call = lookup(name);
    let f: EngineFields = super::decode(node, lenient)?;
    let given: [(&str, Option<crate::yaml::Pos>); 6] = [
        ("name", f.name.as_ref().map(|v| v.pos)),
        ("patch", f.patch.as_ref().map(|v| v.pos)),
        ("state", f.state.as_ref().map(|v| v.pos)),
        ("file", f.file.as_ref().map(|v| v.pos)),
        ("older_than", f.older_than.as_ref().map(|v| v.pos)),
        ("days", f.days.as_ref().map(|v| v.pos)),
    ];
    for (field, pos) in given {
        if let Some(pos) = pos
            && !call.fields.contains(&field)
        {
            let allowed = if call.fields.is_empty() {
                "only `target` and `expect`".to_string()
            } else {
                format!("`{}`", call.fields.join("`, `"))
            };
            return Err(DeError::new(
                pos,
                format!("`{name}` does not take `{field}` (it takes {allowed})"),
            ));
        }
    }
    if name == "engine.config.patch" && f.patch.is_none() {
        return Err(DeError::new(
            node.pos,
            "`engine.config.patch` needs `patch`",
        ));
    }
    if name == "engine.state.import" && (f.state.is_some() == f.file.is_some()) {
        return Err(DeError::new(
            node.pos,
            "`engine.state.import` needs exactly one of `state` or `file`",
        ));
    }
    if let Some(age) = &f.older_than
        && !age.contains("{{")
        && let Err(e) = age.parse::<crate::duration::Duration>()
    {
        return Err(DeError::new(age.pos, e.to_string()));
    }
    Ok(Box::new(EngineCall { call, f }))
}

impl Action for EngineCall {
    fn describe(&self) -> String {
        let verb = match self.call.verb {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
        };
        format!(
            "{verb} {} on target `{}`",
            self.call.path, self.f.target.value
        )
    }

    fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::Target, &self.f.target).with_hosts(self.f.hosts.clone())]
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let target = cx.target(&self.f.target)?;
            let Some(sel) = self.f.hosts.as_ref().filter(|_| target.ssh.is_some()) else {
                return self.call_at(cx, target, &target.url.to_string()).await;
            };
            let places = crate::target::hosts::places(&self.f.target, target, Some(sel))?;
            let results =
                futures::future::join_all(places.iter().map(|p| async move {
                    (p.name.clone(), self.call_at(cx, target, &p.url).await)
                }))
                .await;
            crate::target::hosts::gather(self.call.name, results)
        })
    }
}

impl EngineCall {
    /// The call against one instance at `base`.
    async fn call_at(
        &self,
        cx: &StepCx<'_>,
        target: &crate::config::Target,
        base: &str,
    ) -> StepResult {
        {
            let url = format!("{}{}", base.trim_end_matches('/'), self.call.path);
            let method = match self.call.verb {
                Verb::Get => reqwest::Method::GET,
                Verb::Post => reqwest::Method::POST,
                Verb::Put => reqwest::Method::PUT,
            };
            let mut req = cx.services.http.request(method, &url);
            if let Some(token) = &target.token {
                req = req.bearer_auth(token.expose());
            }
            if let Some(age) = &self.f.older_than {
                req = req.query(&[("older_than", age.value.as_str())]);
            }
            if let Some(days) = &self.f.days {
                req = req.query(&[("days", days.value)]);
            }
            if let Some(name) = &self.f.name {
                req = req.json(&json!({"name": name.value}));
            } else if self.call.verb != Verb::Get
                && self.f.patch.is_none()
                && self.f.state.is_none()
                && self.f.file.is_none()
            {
                // Admin POSTs take JSON; an empty object keeps strict servers happy.
                req = req.json(&json!({}));
            }
            if let Some(patch) = &self.f.patch {
                req = req.json(&json_value(&patch.value)?);
            }
            if let Some(state) = &self.f.state {
                req = req.json(&json_value(&state.value)?);
            }
            if let Some(file) = &self.f.file {
                let text = tokio::fs::read(&file.value).await.map_err(|e| {
                    StepError::permanent(format!("cannot read state file `{}`: {e}", file.value))
                })?;
                let state: J = serde_json::from_slice(&text).map_err(|e| {
                    StepError::permanent(format!("state file `{}` is not JSON: {e}", file.value))
                })?;
                req = req.json(&state);
            }
            cx.log(format!(
                "{} {url}",
                self.describe().split(' ').next().unwrap_or("")
            ));
            let out = send(cx, req).await?;
            check_status(&out, self.f.expect.as_ref())?;
            Ok(out)
        }
    }
}

/// A JSON value, or a string holding JSON (what `{{json …}}` renders).
fn json_value(v: &J) -> Result<J, StepError> {
    match v {
        J::String(s) => {
            serde_json::from_str(s).map_err(|e| StepError::permanent(format!("expected JSON: {e}")))
        }
        other => Ok(other.clone()),
    }
}
