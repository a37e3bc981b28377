//! `kafka.check`, `kafka.lag`, `kafka.reset_offsets` through rdkafka on a
//! cluster named in sluice.yaml. Resetting a group's offsets is refused while
//! the group has live members (they would overwrite the reset), unless
//! `force`. `force` skips only Sluice's own check (useful when the members
//! listed are consumers that died and have not timed out yet): a Kafka broker
//! itself refuses to move the offsets of a group that is really active, and
//! the step then fails saying so.

use std::time::Duration as StdDuration;

use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
use crate::config::KafkaCluster;
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

fn schema_of(extra: J) -> J {
    let mut props = json!({
        "cluster": {"type": "string", "description": "Cluster name from sluice.yaml `kafka`."},
        "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "timeout": {"type": "string", "default": "10s", "description": "Broker request timeout."}
    });
    if let (Some(p), J::Object(e)) = (props.as_object_mut(), extra) {
        p.extend(e);
    }
    json!({"type": "object", "additionalProperties": false, "required": ["cluster", "topics"], "properties": props})
}

pub const CHECK: Kind = Kind {
    name: "kafka.check",
    summary: "Check that the brokers answer and the topics exist.",
    nests: false,
    shell_fields: &[],
    parse: parse_check,
    schema: |_| schema_of(json!({})),
};

pub const LAG: Kind = Kind {
    name: "kafka.lag",
    summary: "Consumer-group lag per partition; fails above `max_lag`.",
    nests: false,
    shell_fields: &[],
    parse: parse_lag,
    schema: |_| {
        schema_of(
            json!({"group": {"type": "string"}, "max_lag": {"type": "integer", "minimum": 0}}),
        )
    },
};

pub const RESET_OFFSETS: Kind = Kind {
    name: "kafka.reset_offsets",
    summary: "Move a consumer group's offsets to earliest, latest or a time.",
    nests: false,
    shell_fields: &[],
    parse: parse_reset,
    schema: |_| {
        schema_of(json!({
            "group": {"type": "string"},
            "to": {"type": "string", "enum": ["earliest", "latest", "timestamp"]},
            "timestamp": {"type": "string", "description": "RFC 3339 time or epoch milliseconds (with `to: timestamp`)."},
            "force": {"type": "boolean", "default": false, "description": "Skip the live-member check (for brokers that cannot list groups, such as the embedded mock cluster); when the broker refuses a standalone commit, commit as a short-lived group member."}
        }))
    },
};

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub cluster: At<String>,
    pub topics: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagConfig {
    pub cluster: At<String>,
    pub group: String,
    pub topics: Vec<String>,
    #[serde(default)]
    pub max_lag: Option<i64>,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetTo {
    Earliest,
    Latest,
    Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfig {
    pub cluster: At<String>,
    pub group: String,
    pub topics: Vec<String>,
    pub to: ResetTo,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn need_topics(node: &Node, topics: &[String]) -> Result<(), DeError> {
    if topics.is_empty() {
        return Err(DeError::new(
            node.get("topics").map_or(node.pos, |n| n.pos),
            "`topics` needs at least one topic",
        ));
    }
    Ok(())
}

fn parse_check(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: CheckConfig = super::decode(node, lenient)?;
    need_topics(node, &c.topics)?;
    Ok(Box::new(c))
}

fn parse_lag(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: LagConfig = super::decode(node, lenient)?;
    need_topics(node, &c.topics)?;
    Ok(Box::new(c))
}

fn parse_reset(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: ResetConfig = super::decode(node, lenient)?;
    need_topics(node, &c.topics)?;
    match (c.to, &c.timestamp) {
        (ResetTo::Timestamp, None) => {
            return Err(DeError::new(node.pos, "`to: timestamp` needs `timestamp`"));
        }
        (ResetTo::Timestamp, Some(ts)) if !ts.contains("{{") => {
            parse_timestamp(ts)
                .map_err(|m| DeError::new(node.get("timestamp").map_or(node.pos, |n| n.pos), m))?;
        }
        (ResetTo::Earliest | ResetTo::Latest, Some(_)) => {
            return Err(DeError::new(
                node.get("timestamp").map_or(node.pos, |n| n.pos),
                "`timestamp` only applies to `to: timestamp`",
            ));
        }
        _ => {}
    }
    Ok(Box::new(c))
}

fn parse_timestamp(ts: &str) -> Result<i64, String> {
    if let Ok(ms) = ts.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(ts.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("invalid timestamp `{ts}` (RFC 3339 or epoch ms): {e}"))
}

fn cluster<'a>(cx: &'a StepCx<'_>, name: &str) -> Result<&'a KafkaCluster, StepError> {
    cx.services.config.kafka.get(name).ok_or_else(|| {
        StepError::permanent(format!(
            "unknown kafka cluster `{name}` (define it under `kafka:` in sluice.yaml)"
        ))
    })
}

fn consumer(cluster: &KafkaCluster, group: Option<&str>) -> Result<BaseConsumer, StepError> {
    create(consumer_config(cluster, group.unwrap_or("sluice-inspect")))
}

fn consumer_config(cluster: &KafkaCluster, group: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &cluster.brokers)
        .set("enable.auto.commit", "false")
        .set("group.id", group);
    for (k, v) in &cluster.properties {
        cfg.set(k, v.expose());
    }
    cfg
}

fn create(cfg: ClientConfig) -> Result<BaseConsumer, StepError> {
    cfg.create()
        .map_err(|e| StepError::permanent(format!("kafka client: {e}")))
}

/// Commits `offsets` for `group`. Kafka accepts a commit without membership
/// for a group with no members; a broker that insists on membership
/// (librdkafka's mock cluster answers `UnknownMemberId`) gets it from a
/// short-lived member that joins, is assigned the partitions, commits, leaves.
fn commit_offsets(
    standalone: &BaseConsumer,
    cluster: &KafkaCluster,
    group: &str,
    topics: &[String],
    offsets: &TopicPartitionList,
    timeout: StdDuration,
    force: bool,
) -> Result<(), StepError> {
    use rdkafka::error::RDKafkaErrorCode as Code;
    match standalone.commit(offsets, CommitMode::Sync) {
        Ok(()) => return Ok(()),
        // Without `force`, a refusal means the group is active: say so, never push through.
        Err(e) if !force => return Err(refused_or(e, group)),
        Err(e)
            if matches!(
                e.rdkafka_error_code(),
                Some(Code::UnknownMemberId | Code::IllegalGeneration)
            ) =>
        {
            // A broker that lists the group with members means it is really
            // active: even forced, Sluice does not push offsets under it. Only
            // a broker that refuses standalone commits of an idle group (or
            // cannot list groups, like the embedded mock cluster) gets the
            // commit through a short-lived membership.
            let live = standalone
                .fetch_group_list(Some(group), timeout.min(StdDuration::from_secs(5)))
                .map(|l| l.groups().iter().map(|g| g.members().len()).sum::<usize>())
                .unwrap_or(0);
            if live > 0 {
                return Err(refused_or(e, group));
            }
        }
        Err(e) => return Err(kerr("commit")(e)),
    }
    let mut cfg = consumer_config(cluster, group);
    // Should it not leave cleanly, the group waits this long, not 45 s.
    cfg.set("session.timeout.ms", "6000");
    let member = create(cfg)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    member.subscribe(&names).map_err(kerr("subscribe"))?;
    let deadline = std::time::Instant::now() + timeout.max(StdDuration::from_secs(30));
    loop {
        let _ = member.poll(StdDuration::from_millis(100));
        if member.assignment().is_ok_and(|a| a.count() > 0) {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(StepError::transient(format!(
                "kafka commit: joining group `{group}` to commit took too long"
            )));
        }
    }
    let result = member
        .commit(offsets, CommitMode::Sync)
        .map_err(kerr("commit"));
    member.unsubscribe();
    // Closing (on drop) sends LeaveGroup, so the engines rejoin at once.
    drop(member);
    result
}

/// rdkafka calls block; run them off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::permanent(format!("kafka task: {e}")))?
}

fn kerr(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> StepError + '_ {
    move |e| StepError::transient(format!("kafka {what}: {e}"))
}

/// Partition count per topic; missing topics are an error.
fn partitions(
    c: &BaseConsumer,
    topics: &[String],
    timeout: StdDuration,
) -> Result<Vec<(String, i32)>, StepError> {
    let md = c.fetch_metadata(None, timeout).map_err(kerr("metadata"))?;
    let mut out = Vec::new();
    for t in topics {
        let topic = md
            .topics()
            .iter()
            .find(|m| m.name() == t)
            .filter(|m| m.error().is_none() && !m.partitions().is_empty())
            .ok_or_else(|| StepError::permanent(format!("topic `{t}` does not exist")))?;
        out.push((t.clone(), topic.partitions().len() as i32));
    }
    Ok(out)
}

impl Action for CheckConfig {
    fn describe(&self) -> String {
        format!(
            "check kafka `{}` topics {}",
            self.cluster.value,
            self.topics.join(", ")
        )
    }
    fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::Kafka, &self.cluster)]
    }
    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let cl = cluster(cx, &self.cluster)?.clone();
            let topics = self.topics.clone();
            let timeout = self.timeout.std();
            blocking(move || {
                let c = consumer(&cl, None)?;
                let md = c.fetch_metadata(None, timeout).map_err(kerr("metadata"))?;
                let brokers = md.brokers().len();
                let parts = partitions(&c, &topics, timeout)?;
                let topics: serde_json::Map<String, J> = parts
                    .into_iter()
                    .map(|(t, n)| (t, json!({"partitions": n})))
                    .collect();
                Ok(json!({"brokers": brokers, "topics": topics}))
            })
            .await
        })
    }
}

/// Committed offset and high watermark of every partition of `topics` for `group`.
fn lag_of(
    c: &BaseConsumer,
    topics: &[String],
    timeout: StdDuration,
) -> Result<(i64, Vec<J>), StepError> {
    let parts = partitions(c, topics, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for (t, n) in &parts {
        for p in 0..*n {
            tpl.add_partition(t, p);
        }
    }
    let committed = c
        .committed_offsets(tpl, timeout)
        .map_err(kerr("committed offsets"))?;
    let mut total = 0;
    let mut rows = Vec::new();
    for e in committed.elements() {
        let (low, high) = c
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .map_err(kerr("watermarks"))?;
        let pos = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        let lag = (high - pos).max(0);
        total += lag;
        rows.push(json!({"topic": e.topic(), "partition": e.partition(), "committed": e.offset().to_raw(), "high": high, "lag": lag}));
    }
    Ok((total, rows))
}

impl Action for LagConfig {
    fn describe(&self) -> String {
        format!(
            "lag of group `{}` on {} (kafka `{}`)",
            self.group,
            self.topics.join(", "),
            self.cluster.value
        )
    }
    fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::Kafka, &self.cluster)]
    }
    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let cl = cluster(cx, &self.cluster)?.clone();
            let (group, topics, timeout, max) = (
                self.group.clone(),
                self.topics.clone(),
                self.timeout.std(),
                self.max_lag,
            );
            blocking(move || {
                let c = consumer(&cl, Some(&group))?;
                let (total, rows) = lag_of(&c, &topics, timeout)?;
                if let Some(max) = max
                    && total > max
                {
                    return Err(StepError::permanent(format!(
                        "group `{group}` lags {total} records (max {max})"
                    )));
                }
                Ok(json!({"group": group, "total_lag": total, "partitions": rows}))
            })
            .await
        })
    }
}

/// A commit the broker refused because the group is active (Kafka moves the
/// offsets of a group only while it has no members) is a permanent failure
/// with that explanation; anything else is a transient broker error.
fn refused_or(e: rdkafka::error::KafkaError, group: &str) -> StepError {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e.rdkafka_error_code() {
        Some(
            code @ (Code::UnknownMemberId | Code::IllegalGeneration | Code::RebalanceInProgress),
        ) => StepError::permanent(format!(
            "the broker refused to move the offsets of group `{group}` ({code:?}): it only resets a group without live members; stop the consumers first"
        )),
        _ => kerr("commit")(e),
    }
}

impl Action for ResetConfig {
    fn describe(&self) -> String {
        let to = match self.to {
            ResetTo::Earliest => "earliest".to_string(),
            ResetTo::Latest => "latest".to_string(),
            ResetTo::Timestamp => format!("time {}", self.timestamp.as_deref().unwrap_or("?")),
        };
        format!(
            "reset offsets of group `{}` on {} to {to} (kafka `{}`)",
            self.group,
            self.topics.join(", "),
            self.cluster.value
        )
    }
    fn refs(&self) -> Vec<Ref> {
        vec![Ref::new(RefKind::Kafka, &self.cluster)]
    }
    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let cl = cluster(cx, &self.cluster)?.clone();
            let c = self.clone();
            let ts = match &self.timestamp {
                Some(t) => Some(parse_timestamp(t).map_err(StepError::permanent)?),
                None => None,
            };
            blocking(move || {
                let timeout = c.timeout.std();
                let consumer = consumer(&cl, Some(&c.group))?;
                // `force` skips the check (and works on brokers that cannot list groups).
                let members: usize = if c.force {
                    0
                } else {
                    let groups = consumer.fetch_group_list(Some(&c.group), timeout).map_err(kerr("group list"))?;
                    groups.groups().iter().map(|g| g.members().len()).sum()
                };
                if members > 0 {
                    return Err(StepError::permanent(format!(
                        "group `{}` has {members} live member(s); stop the consumers first (or set `force: true`)",
                        c.group
                    )));
                }
                let parts = partitions(&consumer, &c.topics, timeout)?;
                let mut target = TopicPartitionList::new();
                let mut rows = Vec::new();
                let mut by_time = TopicPartitionList::new();
                for (t, n) in &parts {
                    for p in 0..*n {
                        let (low, high) = consumer.fetch_watermarks(t, p, timeout).map_err(kerr("watermarks"))?;
                        match c.to {
                            ResetTo::Earliest => {
                                target.add_partition_offset(t, p, Offset::Offset(low)).map_err(kerr("offsets"))?;
                            }
                            ResetTo::Latest => {
                                target.add_partition_offset(t, p, Offset::Offset(high)).map_err(kerr("offsets"))?;
                            }
                            ResetTo::Timestamp => {
                                by_time.add_partition_offset(t, p, Offset::Offset(ts.unwrap_or(0))).map_err(kerr("offsets"))?;
                            }
                        }
                        rows.push((t.clone(), p, high));
                    }
                }
                if c.to == ResetTo::Timestamp {
                    let found = consumer.offsets_for_times(by_time, timeout).map_err(kerr("offsets for times"))?;
                    for e in found.elements() {
                        // No record at or after the time: the end of the partition.
                        let high = rows.iter().find(|(t, p, _)| t == e.topic() && *p == e.partition()).map_or(0, |r| r.2);
                        let off = match e.offset() {
                            Offset::Offset(o) => o,
                            _ => high,
                        };
                        target.add_partition_offset(e.topic(), e.partition(), Offset::Offset(off)).map_err(kerr("offsets"))?;
                    }
                }
                commit_offsets(&consumer, &cl, &c.group, &c.topics, &target, timeout, c.force)?;
                let out: Vec<J> = target
                    .elements()
                    .iter()
                    .map(|e| json!({"topic": e.topic(), "partition": e.partition(), "offset": e.offset().to_raw()}))
                    .collect();
                Ok(json!({"group": c.group, "partitions": out, "forced": c.force}))
            })
            .await
        })
    }
}
