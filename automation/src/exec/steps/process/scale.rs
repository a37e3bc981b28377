//! `process.scale`: run exactly `replicas` instances of a target (or the
//! running count changed `by` N), clamped into `[min, max]`. Locally,
//! scaling out starts the missing engine processes in index order, each on
//! `/health` before the next; scaling in drains (by default) and stops the
//! highest indices first, so instance 0 — the target's own URL — is the last
//! to go and never goes below `min` (at least 1). Across `ssh` hosts the
//! count is of hosts running the service, in inventory order; compose sets
//! `--scale`, Kubernetes the replicas. Kafka rebalances the partitions.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::super::{Action, Kind, Ref, StepError, StepResult};
use super::{TargetRef, default_ready_timeout, hosts_schema, ready_timeout_schema, target_schema};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::target::{HostSelector, Op};
use crate::yaml::de::At;
use crate::yaml::{DeError, Node, Pos};

pub const KIND: Kind = Kind {
    name: "process.scale",
    summary: "Run N instances of a target (through its driver; one consumer group).",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["target"],
            "properties": {
                "target": target_schema(),
                "hosts": hosts_schema(),
                "replicas": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}], "description": "Wanted number of engine processes (clamped into [min, max])."},
                "by": {"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "Instead of `replicas`: change the running count by this much (+1 scales out by one, -1 in)."},
                "min": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}], "default": 1},
                "max": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 64}, {"type": "string"}], "default": 8},
                "drain": {"type": "boolean", "default": true, "description": "Drain an instance before stopping it on scale-in."},
                "ready_timeout": ready_timeout_schema()
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    pub target: TargetRef,
    #[serde(default)]
    pub hosts: Option<HostSelector>,
    #[serde(default)]
    pub replicas: Option<At<i64>>,
    #[serde(default)]
    pub by: Option<At<i64>>,
    #[serde(default = "one")]
    pub min: At<i64>,
    #[serde(default = "eight")]
    pub max: At<i64>,
    #[serde(default = "yes")]
    pub drain: bool,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Duration,
}

fn one() -> At<i64> {
    At::new(Pos::UNKNOWN, 1)
}
fn eight() -> At<i64> {
    At::new(Pos::UNKNOWN, 8)
}
fn yes() -> bool {
    true
}

/// More engine processes than this on one machine is a typo, not a plan.
const HARD_MAX: i64 = 64;

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: ScaleConfig = super::super::decode(node, lenient)?;
    let templated = |field: &str| {
        node.get(field)
            .and_then(Node::as_str)
            .is_some_and(|s| s.contains("{{"))
    };
    if !templated("min") && c.min.value < 1 {
        return Err(DeError::new(c.min.pos, "`min` must be at least 1"));
    }
    if !templated("max") && !(1..=HARD_MAX).contains(&c.max.value) {
        return Err(DeError::new(
            c.max.pos,
            format!("`max` must be within 1..={HARD_MAX}"),
        ));
    }
    if !templated("min") && !templated("max") && c.min.value > c.max.value {
        return Err(DeError::new(
            c.min.pos,
            format!("`min` ({}) is above `max` ({})", c.min.value, c.max.value),
        ));
    }
    if c.replicas.is_some() == c.by.is_some() {
        return Err(DeError::new(
            node.pos,
            "`process.scale` needs exactly one of `replicas` or `by`",
        ));
    }
    if let Some(r) = &c.replicas
        && !templated("replicas")
        && r.value < 0
    {
        return Err(DeError::new(r.pos, "`replicas` cannot be negative"));
    }
    Ok(Box::new(c))
}

impl ScaleConfig {
    /// The wanted count given `running` instances: `replicas`, or `running + by`.
    pub fn wanted(&self, running: usize) -> i64 {
        match (&self.replicas, &self.by) {
            (Some(r), _) => r.value,
            (_, Some(by)) => running as i64 + by.value,
            _ => running as i64,
        }
    }

    /// `(replicas, clamped)`: `want` within `[min, max]`.
    pub fn bounded(&self, want: i64) -> (usize, bool) {
        let hi = self.max.value.clamp(1, HARD_MAX);
        let lo = self.min.value.clamp(1, hi);
        let got = want.clamp(lo, hi);
        (got as usize, got != want)
    }
}

impl Action for ScaleConfig {
    fn describe(&self) -> String {
        format!(
            "scale target `{}`{} to {} instance(s) within [{}, {}]{}",
            self.target.name(),
            super::hosts_note(self.hosts.as_ref()),
            match (&self.replicas, &self.by) {
                (Some(r), _) => r.value.to_string(),
                (_, Some(by)) => format!("the running count {:+}", by.value),
                _ => "?".into(),
            },
            self.min.value,
            self.max.value,
            if self.drain {
                ", draining removed ones"
            } else {
                ""
            }
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.target.refs(Op::Scale, self.hosts.as_ref())
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            if self.min.value > self.max.value {
                return Err(StepError::permanent(format!(
                    "`min` ({}) is above `max` ({})",
                    self.min.value, self.max.value
                )));
            }
            let want = |running: usize| {
                let want = self.wanted(running);
                let (replicas, clamped) = self.bounded(want);
                if clamped {
                    cx.log(format!(
                        "{want} replicas requested; bounded to {replicas} by [{}, {}]",
                        self.min.value, self.max.value
                    ));
                }
                (want, replicas)
            };
            super::dispatch(
                cx,
                Op::Scale,
                &self.target,
                self.hosts.as_ref(),
                self.ready_timeout,
                self.drain,
                Some(&want),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_yaml(yaml: &str) -> Result<Box<dyn Action>, DeError> {
        let node = crate::yaml::parse(yaml).unwrap();
        parse("process.scale", &node, false)
    }

    fn scale(yaml: &str) -> ScaleConfig {
        let node = crate::yaml::parse(yaml).unwrap();
        super::super::super::decode(&node, false).unwrap()
    }

    #[test]
    fn replicas_or_by_exactly_once_and_bounds_that_make_sense() {
        let err = |y: &str| parse_yaml(y).err().map(|e| e.message).unwrap_or_default();
        assert!(err("{target: p}").contains("exactly one of `replicas` or `by`"));
        assert!(err("{target: p, replicas: 2, by: 1}").contains("exactly one"));
        assert!(err("{target: p, replicas: -1}").contains("cannot be negative"));
        assert!(err("{target: p, replicas: 1, min: 0}").contains("at least 1"));
        assert!(err("{target: p, replicas: 1, max: 65}").contains("within 1..=64"));
        assert!(err("{target: p, replicas: 1, min: 3, max: 2}").contains("is above `max`"));
        assert!(parse_yaml("{target: p, by: -1}").is_ok());
    }

    #[test]
    fn wanted_counts_are_clamped_into_min_max() {
        let s = scale("{target: p, by: 2, min: 1, max: 3}");
        assert_eq!(s.wanted(2), 4);
        assert_eq!(s.bounded(4), (3, true));
        let s = scale("{target: p, by: -5, min: 2, max: 4}");
        assert_eq!(s.bounded(s.wanted(3)), (2, true));
        let s = scale("{target: p, replicas: 3}");
        assert_eq!(s.bounded(s.wanted(1)), (3, false));
        assert_eq!(s.bounded(0), (1, true), "never below one process");
    }
}
