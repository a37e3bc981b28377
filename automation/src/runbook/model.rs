//! The runbook model: what one YAML file says, decoded into types that cannot
//! hold invalid values (durations, cron lines, step ids, known step kinds).
//!
//! Decoding collects every problem it finds (each with a position) instead of
//! stopping at the first; [`decode`] returns the runbook only when there were none.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::duration::Duration;
use crate::exec::steps::{self, Action, Kind};
use crate::yaml::de::{At, did_you_mean, unknown_message};
use crate::yaml::{self, DeError, Node, Pos, Value};

/// One runbook file.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Unique name (`[a-z0-9][a-z0-9_.-]*`).
    pub name: At<String>,
    pub description: String,
    pub triggers: Vec<At<Trigger>>,
    pub guards: Guards,
    /// Parameters in declaration order.
    pub params: Vec<Param>,
    pub steps: Vec<Step>,
    /// Rollback / cleanup steps run when the run fails; they see `failed.step` and `failed.error`.
    pub on_failure: Vec<Step>,
    pub notify: Notify,
    /// Limit for the whole run.
    pub timeout: Option<Duration>,
}

/// What starts a runbook.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A firing alert with this name whose labels match.
    Alert {
        name: At<String>,
        /// Labels the alert must have with exactly these values.
        labels: BTreeMap<String, String>,
        /// Alertmanager matchers (`severity=~"critical|page"`, `env!="dev"`).
        matchers: Vec<crate::dispatch::Matcher>,
        on_resolved: bool,
    },
    /// A cron schedule.
    Schedule {
        cron: Box<CronExpr>,
        timezone: chrono_tz::Tz,
        catch_up: CatchUp,
    },
    /// `POST /api/v1/hooks/{name}`.
    Webhook { name: At<String> },
    /// By hand (CLI or API). Every runbook can be run by hand; this documents intent.
    Manual,
}

/// What to do with schedule fires missed while the service was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    #[default]
    Skip,
    Once,
}

/// A cron line with POSIX crontab semantics (5 fields, optional seconds,
/// `@daily`…, Sunday 0 or 7, day-of-month OR day-of-week).
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    cron: croner::Cron,
}

impl CronExpr {
    pub fn parse(source: &str) -> Result<Self, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build();
        parser
            .parse(source)
            .map(|cron| CronExpr {
                source: source.to_string(),
                cron,
            })
            .map_err(|e| format!("invalid cron line `{source}`: {e}"))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.source)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Limits on when a runbook may act.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// Another run of this runbook (per alert fingerprint / target) is active: `skip`, `queue` or `allow`.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Minimum time between runs for one alert fingerprint / target.
    #[serde(default)]
    pub cooldown: Option<Duration>,
    /// Beyond this many runs in the window, escalate instead of acting.
    #[serde(default)]
    pub max_runs: Option<MaxRuns>,
    /// Who to tell when a guard stops a run.
    #[serde(default)]
    pub escalate: Option<Escalate>,
    /// What the guards count per: a template such as `{{alert.labels.instance}}`
    /// or `{{params.target}}` (default: the alert fingerprint for alert
    /// triggers, the whole runbook otherwise).
    #[serde(default)]
    pub scope: Option<At<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    #[default]
    Skip,
    Queue,
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxRuns {
    pub count: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    pub channels: Vec<At<String>>,
    #[serde(default)]
    pub text: Option<At<String>>,
}

/// Channels told about the run's progress.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    #[serde(default)]
    pub on_start: Vec<At<String>>,
    #[serde(default)]
    pub on_success: Vec<At<String>>,
    #[serde(default)]
    pub on_failure: Vec<At<String>>,
    #[serde(default)]
    pub on_approval: Vec<At<String>>,
}

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: At<String>,
    pub spec: ParamSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type", default)]
    pub ty: ParamType,
    pub description: Option<String>,
    /// Used when the parameter is not given; may be a template (e.g. `{{alert.labels.name}}`).
    pub default: Option<At<serde_json::Value>>,
    /// The run is refused when a required parameter is missing and has no default.
    #[serde(default)]
    pub required: bool,
    /// Regular expression a string value must match entirely.
    pub pattern: Option<At<String>>,
    /// Bounds for `int` and `float`.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Allowed values for `enum`.
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    #[default]
    String,
    Int,
    Float,
    Bool,
    Duration,
    Enum,
}

/// A step id: letters, digits, `_`; starts with a letter or `_` (usable in `steps.<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct StepId(String);

impl StepId {
    pub fn parse(s: &str) -> Result<StepId, String> {
        let mut chars = s.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 64;
        if ok {
            Ok(StepId(s.to_string()))
        } else {
            Err(format!(
                "invalid step id `{s}`: use letters, digits and `_`, starting with a letter (at most 64)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which failures a retry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// Network errors, HTTP 5xx/429, broker errors: things that may pass by themselves.
    Transient,
    /// The step's own timeout.
    Timeout,
    /// Any failure.
    Any,
}

/// Retry policy: exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts including the first (≥ 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubles each time.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// Upper bound of a delay.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Randomise each delay between half and all of it.
    #[serde(default = "yes")]
    pub jitter: bool,
    /// Which failures to retry.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::Transient, RetryOn::Timeout]
}

/// One step: common control fields plus exactly one kind with its configuration.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: At<StepId>,
    /// Where the step starts in the file.
    pub pos: Pos,
    pub kind: &'static Kind,
    pub kind_pos: Pos,
    /// The kind's configuration as written (templates not yet rendered); without `steps` for nesting kinds.
    pub config: Node,
    /// The configuration decoded once at load when it holds no template.
    pub fixed: Option<Arc<dyn Action>>,
    pub name: Option<String>,
    /// Template; the step runs only when it renders truthy (not "", "false", "0", "null", "no").
    pub when: Option<At<String>>,
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    pub continue_on_error: bool,
    /// Safe to run again if interrupted (the service resumes such steps after a crash).
    pub idempotent: bool,
    /// Nested steps of `parallel` and `for_each`.
    pub children: Vec<Step>,
}

/// Keys every step accepts besides its kind.
pub const STEP_FIELDS: &[&str] = &[
    "id",
    "name",
    "if",
    "timeout",
    "retry",
    "continue_on_error",
    "idempotent",
];

/// Top-level keys of a runbook.
pub const RUNBOOK_FIELDS: &[&str] = &[
    "name",
    "description",
    "triggers",
    "guards",
    "params",
    "steps",
    "on_failure",
    "notify",
    "timeout",
];

impl Runbook {
    /// Every step, nested ones included, in file order.
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                walk(&s.children, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        walk(&self.on_failure, &mut out);
        out
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| *p.name == name)
    }

    pub fn has_alert_trigger(&self) -> bool {
        self.triggers
            .iter()
            .any(|t| matches!(t.value, Trigger::Alert { .. }))
    }
}

/// Whether an alert's `labels` carry every label `want` names with its
/// value and satisfy every matcher: what an `alert:` trigger asks of an alert.
pub fn alert_wanted(
    want: &BTreeMap<String, String>,
    matchers: &[crate::dispatch::Matcher],
    labels: &BTreeMap<String, String>,
) -> bool {
    want.iter().all(|(k, v)| labels.get(k) == Some(v)) && matchers.iter().all(|m| m.matches(labels))
}

/// Problems found while decoding, in file order.
pub type Problems = Vec<DeError>;

/// Decodes a runbook from its YAML tree, collecting every problem.
pub fn decode(root: &Node) -> Result<Runbook, Problems> {
    match decode_partial(root) {
        (Some(rb), p) if p.is_empty() => Ok(rb),
        (_, p) => Err(p),
    }
}

/// Decodes as much as possible: the runbook holds every part that decoded
/// (so later checks can still run on it) and the problems list the rest.
pub fn decode_partial(root: &Node) -> (Option<Runbook>, Problems) {
    let mut p = Problems::new();
    let Value::Map(entries) = &root.value else {
        return (
            None,
            vec![DeError::new(
                root.pos,
                format!("a runbook must be a mapping, found {}", root.kind()),
            )],
        );
    };
    let mut name = None;
    let mut description = String::new();
    let mut triggers = Vec::new();
    let mut guards = Guards::default();
    let mut params = Vec::new();
    let mut steps_node = None;
    let mut on_failure_node = None;
    let mut notify = Notify::default();
    let mut timeout = None;

    for (key, node) in entries {
        match key.name.as_str() {
            "name" => match yaml::from_node::<At<String>>(node, false) {
                Ok(n) if valid_name(&n) => name = Some(n),
                Ok(n) => p.push(DeError::new(
                    n.pos,
                    format!(
                        "invalid runbook name `{}`: use lowercase letters, digits, `-`, `_`, `.`",
                        *n
                    ),
                )),
                Err(e) => p.push(e),
            },
            "description" => keep(&mut p, yaml::from_node(node, false), &mut description),
            "triggers" => triggers = decode_triggers(node, &mut p),
            "guards" => keep(&mut p, yaml::from_node(node, false), &mut guards),
            "params" => params = decode_params(node, &mut p),
            "steps" => steps_node = Some(node),
            "on_failure" => on_failure_node = Some(node),
            "notify" => keep(&mut p, yaml::from_node(node, false), &mut notify),
            "timeout" => match yaml::from_node::<Duration>(node, false) {
                Ok(d) => timeout = Some(d),
                Err(e) => p.push(e),
            },
            other => p.push(DeError::new(
                key.pos,
                unknown_message("field", other, RUNBOOK_FIELDS),
            )),
        }
    }
    if name.is_none() && !p.iter().any(|e| e.message.contains("runbook name")) {
        p.push(DeError::new(root.pos, "missing field `name`"));
    }
    let mut counter = 0;
    let steps = match steps_node {
        Some(node) => decode_steps(node, &mut counter, &mut p),
        None => {
            p.push(DeError::new(root.pos, "missing field `steps`"));
            Vec::new()
        }
    };
    let on_failure = on_failure_node
        .map(|n| decode_steps(n, &mut counter, &mut p))
        .unwrap_or_default();
    if let Some(max) = &guards.max_runs
        && max.count == 0
    {
        p.push(DeError::new(
            root.get("guards").map_or(root.pos, |g| g.pos),
            "`max_runs.count` must be at least 1",
        ));
    }
    p.sort_by_key(|e| e.pos);
    let name = name.unwrap_or_else(|| At::new(root.pos, String::new()));
    (
        Some(Runbook {
            name,
            description,
            triggers,
            guards,
            params,
            steps,
            on_failure,
            notify,
            timeout,
        }),
        p,
    )
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && n.len() <= 128
}

fn keep<T>(p: &mut Problems, r: Result<T, DeError>, slot: &mut T) {
    match r {
        Ok(v) => *slot = v,
        Err(e) => p.push(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSpec {
    alert: Option<At<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    matchers: Vec<At<String>>,
    #[serde(default)]
    on_resolved: bool,
    schedule: Option<At<String>>,
    timezone: Option<At<String>>,
    catch_up: Option<CatchUp>,
    webhook: Option<At<String>>,
    manual: Option<bool>,
}

fn decode_triggers(node: &Node, p: &mut Problems) -> Vec<At<Trigger>> {
    let Value::Seq(items) = &node.value else {
        p.push(DeError::new(
            node.pos,
            format!("`triggers` must be a list, found {}", node.kind()),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if item.as_str() == Some("manual") {
            out.push(At::new(item.pos, Trigger::Manual));
            continue;
        }
        let spec: TriggerSpec = match yaml::from_node(item, false) {
            Ok(s) => s,
            Err(e) => {
                p.push(e);
                continue;
            }
        };
        let kinds = [
            spec.alert.is_some(),
            spec.schedule.is_some(),
            spec.webhook.is_some(),
            spec.manual.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            p.push(DeError::new(
                item.pos,
                "a trigger needs exactly one of `alert`, `schedule`, `webhook`, `manual`",
            ));
            continue;
        }
        let stray = |p: &mut Problems, field: &str, allowed_with: &str| {
            p.push(DeError::new(
                item.get(field).map_or(item.pos, |n| n.pos),
                format!("`{field}` only applies to `{allowed_with}` triggers"),
            ))
        };
        if spec.alert.is_none()
            && (!spec.labels.is_empty() || !spec.matchers.is_empty() || spec.on_resolved)
        {
            stray(
                p,
                if !spec.labels.is_empty() {
                    "labels"
                } else if !spec.matchers.is_empty() {
                    "matchers"
                } else {
                    "on_resolved"
                },
                "alert",
            );
        }
        let mut matchers = Vec::new();
        for m in &spec.matchers {
            match crate::dispatch::Matcher::parse(m) {
                Ok(parsed) => matchers.push(parsed),
                Err(e) => p.push(DeError::new(m.pos, e.to_string())),
            }
        }
        if spec.schedule.is_none() && (spec.timezone.is_some() || spec.catch_up.is_some()) {
            stray(
                p,
                if spec.timezone.is_some() {
                    "timezone"
                } else {
                    "catch_up"
                },
                "schedule",
            );
        }
        let trigger = if let Some(name) = spec.alert {
            Trigger::Alert {
                name,
                labels: spec.labels,
                matchers,
                on_resolved: spec.on_resolved,
            }
        } else if let Some(line) = spec.schedule {
            let cron = match CronExpr::parse(&line) {
                Ok(c) => c,
                Err(m) => {
                    p.push(DeError::new(line.pos, m));
                    continue;
                }
            };
            let timezone = match &spec.timezone {
                None => chrono_tz::Tz::UTC,
                Some(tz) => match tz.parse::<chrono_tz::Tz>() {
                    Ok(tz) => tz,
                    Err(_) => {
                        p.push(DeError::new(
                            tz.pos,
                            format!(
                                "unknown time zone `{}` (use an IANA name like `Europe/Paris`)",
                                tz.value
                            ),
                        ));
                        continue;
                    }
                },
            };
            Trigger::Schedule {
                cron: Box::new(cron),
                timezone,
                catch_up: spec.catch_up.unwrap_or_default(),
            }
        } else if let Some(name) = spec.webhook {
            Trigger::Webhook { name }
        } else {
            Trigger::Manual
        };
        out.push(At::new(item.pos, trigger));
    }
    out
}

fn decode_params(node: &Node, p: &mut Problems) -> Vec<Param> {
    let Value::Map(entries) = &node.value else {
        p.push(DeError::new(
            node.pos,
            format!(
                "`params` must be a mapping of name to spec, found {}",
                node.kind()
            ),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, spec_node) in entries {
        if StepId::parse(&key.name).is_err() {
            p.push(DeError::new(
                key.pos,
                format!(
                    "invalid parameter name `{}`: use letters, digits and `_`",
                    key.name
                ),
            ));
            continue;
        }
        match yaml::from_node::<ParamSpec>(spec_node, false) {
            Ok(spec) => {
                check_param_spec(&spec, spec_node, p);
                out.push(Param {
                    name: At::new(key.pos, key.name.clone()),
                    spec,
                });
            }
            Err(e) => p.push(e),
        }
    }
    out
}

fn check_param_spec(spec: &ParamSpec, node: &Node, p: &mut Problems) {
    let at = |f: &str| node.get(f).map_or(node.pos, |n| n.pos);
    if spec.ty == ParamType::Enum && spec.values.is_empty() {
        p.push(DeError::new(node.pos, "an `enum` parameter needs `values`"));
    }
    if spec.ty != ParamType::Enum && !spec.values.is_empty() {
        p.push(DeError::new(
            at("values"),
            "`values` only applies to `type: enum`",
        ));
    }
    if (spec.min.is_some() || spec.max.is_some())
        && !matches!(spec.ty, ParamType::Int | ParamType::Float)
    {
        p.push(DeError::new(
            at(if spec.min.is_some() { "min" } else { "max" }),
            "`min`/`max` only apply to `int` and `float`",
        ));
    }
    if let Some(pattern) = &spec.pattern
        && let Err(e) = regex::Regex::new(pattern)
    {
        let msg = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        p.push(DeError::new(pattern.pos, format!("invalid pattern: {msg}")));
    }
    // A literal default must itself be valid (templated defaults are checked at run time).
    if let Some(default) = &spec.default
        && !matches!(&default.value, serde_json::Value::String(s) if s.contains("{{"))
        && let Err(m) = crate::runbook::params::coerce("default", spec, &default.value)
    {
        p.push(DeError::new(default.pos, m));
    }
}

fn decode_steps(node: &Node, counter: &mut usize, p: &mut Problems) -> Vec<Step> {
    let Value::Seq(items) = &node.value else {
        p.push(DeError::new(
            node.pos,
            format!("steps must be a list, found {}", node.kind()),
        ));
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| decode_step(item, counter, p))
        .collect()
}

fn decode_step(node: &Node, counter: &mut usize, p: &mut Problems) -> Option<Step> {
    *counter += 1;
    let Value::Map(entries) = &node.value else {
        p.push(DeError::new(
            node.pos,
            format!("a step must be a mapping, found {}", node.kind()),
        ));
        return None;
    };
    let before = p.len();
    let mut id = None;
    let mut name = None;
    let mut when = None;
    let mut timeout = None;
    let mut retry = None;
    let mut continue_on_error = false;
    let mut idempotent = false;
    let mut kind: Option<(&'static Kind, &yaml::Key, &Node)> = None;
    for (key, value) in entries {
        match key.name.as_str() {
            "id" => match yaml::from_node::<At<String>>(value, false) {
                Ok(s) => match StepId::parse(&s) {
                    Ok(sid) => id = Some(At::new(s.pos, sid)),
                    Err(m) => p.push(DeError::new(s.pos, m)),
                },
                Err(e) => p.push(e),
            },
            "name" => name = keep_opt(p, yaml::from_node(value, false)),
            "if" => when = keep_opt(p, yaml::from_node(value, false)),
            "timeout" => timeout = keep_opt(p, yaml::from_node(value, false)),
            "retry" => {
                retry = keep_opt::<Retry>(p, yaml::from_node(value, false));
                if retry.as_ref().is_some_and(|r| r.attempts == 0) {
                    p.push(DeError::new(
                        value.pos,
                        "`retry.attempts` must be at least 1",
                    ));
                }
            }
            "continue_on_error" => {
                continue_on_error = keep_opt(p, yaml::from_node(value, false)).unwrap_or(false)
            }
            "idempotent" => {
                idempotent = keep_opt(p, yaml::from_node(value, false)).unwrap_or(false)
            }
            other => match steps::lookup(other) {
                Some(k) => {
                    if let Some((prev, _, _)) = kind {
                        p.push(DeError::new(
                            key.pos,
                            format!(
                                "a step has exactly one kind, found `{}` and `{other}`",
                                prev.name
                            ),
                        ));
                    } else {
                        kind = Some((k, key, value));
                    }
                }
                None => {
                    let names = steps::names();
                    let msg = match did_you_mean(
                        other,
                        STEP_FIELDS
                            .iter()
                            .copied()
                            .chain(names.iter().map(String::as_str)),
                    ) {
                        Some(best) => {
                            format!("unknown step kind or field `{other}`, did you mean `{best}`?")
                        }
                        None => format!(
                            "unknown step kind or field `{other}` (see `sluice schema` for step kinds)"
                        ),
                    };
                    p.push(DeError::new(key.pos, msg));
                }
            },
        }
    }
    let Some((kind, kind_key, config)) = kind else {
        if p.len() == before {
            p.push(DeError::new(
                node.pos,
                "a step needs a kind, e.g. `http:`, `exec:`, `engine.drain:`",
            ));
        }
        return None;
    };
    // Nesting kinds carry their child steps under `steps:`; the rest of their config is theirs.
    let mut children = Vec::new();
    let config = if kind.nests {
        let mut rest = Vec::new();
        if let Value::Map(entries) = &config.value {
            for (k, v) in entries {
                if k.name == "steps" {
                    children = decode_steps(v, counter, p);
                } else {
                    rest.push((k.clone(), v.clone()));
                }
            }
        }
        if config.get("steps").is_none() {
            p.push(DeError::new(
                config.pos,
                format!("`{}` needs `steps`", kind.name),
            ));
        }
        Node::new(config.pos, Value::Map(rest))
    } else {
        config.clone()
    };
    let mut fixed = None;
    match (kind.parse)(kind.name, &config, true) {
        Ok(action) => {
            let mut templated = false;
            config.for_each_str(&mut |s, _| templated |= s.contains("{{"));
            if !templated {
                fixed = Some(Arc::from(action));
            }
        }
        Err(e) => p.push(e),
    }
    let id = id.unwrap_or_else(|| At::new(node.pos, StepId(format!("step_{counter}"))));
    (p.len() == before).then(|| Step {
        id,
        pos: node.pos,
        kind,
        kind_pos: kind_key.pos,
        config,
        fixed,
        name,
        when,
        timeout,
        retry,
        continue_on_error,
        idempotent,
        children,
    })
}

fn keep_opt<T>(p: &mut Problems, r: Result<T, DeError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            p.push(e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Runbook, Problems> {
        decode(&yaml::parse(text).unwrap())
    }

    #[test]
    fn decodes_a_full_runbook() {
        let rb = load(
            "name: cb-reset\ntriggers:\n  - alert: CircuitBreakerOpen\n    labels: {severity: critical}\n  - schedule: '0 2 * * 0'\n    timezone: Europe/Paris\n  - manual\nguards:\n  concurrency: queue\n  cooldown: 10m\n  max_runs: {count: 3, window: 1h}\nparams:\n  n: {type: int, default: 3, min: 1}\nsteps:\n  - id: pause\n    sleep: 10ms\n    retry: {attempts: 2}\n",
        )
        .unwrap();
        assert_eq!(*rb.name, "cb-reset");
        assert_eq!(rb.triggers.len(), 3);
        assert_eq!(rb.guards.cooldown, Some(Duration::from_secs(600)));
        assert_eq!(rb.steps[0].kind.name, "sleep");
        assert!(rb.steps[0].fixed.is_some());
        assert_eq!(rb.steps[0].retry.as_ref().unwrap().attempts, 2);
    }

    #[test]
    fn collects_every_problem() {
        let errs = load("name: x\nstpes: []\nsteps:\n  - id: a\n    slep: 1s\n  - id: b\n    sleep: 5parsecs\ntimeout: soon\n").unwrap_err();
        let got: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.pos, e.message))
            .collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!(got[0], "2:1: unknown field `stpes`, did you mean `steps`?");
        assert_eq!(
            got[1],
            "5:5: unknown step kind or field `slep`, did you mean `sleep`?"
        );
        assert!(
            got[2].starts_with("7:12: invalid duration `5parsecs`"),
            "{}",
            got[2]
        );
        assert!(
            got[3].starts_with("8:10: invalid duration `soon`"),
            "{}",
            got[3]
        );
    }

    #[test]
    fn invalid_cron_points_at_the_line() {
        let errs = load("name: x\ntriggers:\n  - schedule: '61 * * * *'\nsteps: []\n").unwrap_err();
        assert_eq!(
            errs[0].pos,
            Pos {
                line: 3,
                column: 15
            }
        );
        assert!(
            errs[0].message.starts_with("invalid cron line"),
            "{}",
            errs[0].message
        );
    }
}
