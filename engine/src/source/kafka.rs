//! Kafka consumer of the source topics: one consumer group, no auto-commit;
//! offsets are committed by the pipeline only after delivery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::EngineConfig;

/// Consumer context: whether the group has handed this member an
/// assignment yet (its join completed), and, from librdkafka's statistics,
/// whether its group membership is settled (join state `steady`).
#[derive(Debug, Default)]
pub struct GroupContext {
    joined: AtomicBool,
    /// Holds an assignment now: cleared by a revoke until the next assign.
    assigned: AtomicBool,
    /// Assignments received so far.
    assigns: std::sync::atomic::AtomicU64,
    stats_seen: AtomicBool,
    steady_since: Mutex<Option<Instant>>,
}

/// How long the join state must have been `steady` to count as settled.
const SETTLED_AFTER: Duration = Duration::from_millis(1500);

impl GroupContext {
    /// How many assignments this member has received (a rebalance adds one).
    pub fn assigns(&self) -> u64 {
        self.assigns.load(Ordering::Relaxed)
    }

    /// Whether the first rebalance (join) of this member completed.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// Whether leaving the group now is safe: joined, and (when statistics
    /// are on) no rebalance in progress for a moment.
    pub fn settled(&self) -> bool {
        if !self.joined() || !self.assigned.load(Ordering::Relaxed) {
            return false;
        }
        if !self.stats_seen.load(Ordering::Relaxed) {
            return true;
        }
        self.steady_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() >= SETTLED_AFTER)
    }
}

/// The consumer group join state in a librdkafka statistics document
/// (`"join_state": "steady"`).
fn join_state(stats: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"join_state\"";
    let mut at = stats.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    while stats
        .get(at)
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b':')
    {
        at += 1;
    }
    if stats.get(at) != Some(&b'"') {
        return None;
    }
    at += 1;
    let len = stats[at..].iter().position(|&b| b == b'"')?;
    Some(&stats[at..at + len])
}

impl ClientContext for GroupContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let Some(state) = join_state(statistics) else {
            tracing::trace!("Consumer statistics without a group join state.");
            return;
        };
        tracing::trace!(join_state = %String::from_utf8_lossy(state), "Consumer statistics.");
        self.stats_seen.store(true, Ordering::Relaxed);
        let mut since = self.steady_since.lock().unwrap_or_else(|p| p.into_inner());
        if state == b"steady" {
            since.get_or_insert_with(Instant::now);
        } else {
            *since = None;
        }
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.joined.store(true, Ordering::Relaxed);
                self.assigned.store(true, Ordering::Relaxed);
                self.assigns.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    partitions = tpl.count(),
                    "Consumer group assignment received."
                );
            }
            Rebalance::Revoke(tpl) => {
                // A rebalance is under way whatever the last statistics said.
                self.assigned.store(false, Ordering::Relaxed);
                *self.steady_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(
                    partitions = tpl.count(),
                    "Consumer group partitions revoked."
                );
            }
            Rebalance::Error(error) => tracing::warn!(%error, "Consumer group rebalance failed."),
        }
    }
}

/// The engine's group consumer.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// Creates the group consumer. User properties are applied first, then the
/// ones the engine's delivery guarantee depends on.
pub fn consumer(cfg: &EngineConfig, brokers: &str) -> KafkaResult<GroupConsumer> {
    let mut c = ClientConfig::new();
    c.set("auto.offset.reset", "earliest");
    c.set("session.timeout.ms", "6000");
    c.set("max.poll.interval.ms", "300000");
    c.set("socket.timeout.ms", "10000");
    // Read by GroupContext to leave the group only when it is settled.
    c.set("statistics.interval.ms", "1000");
    for (k, v) in &cfg.kafka.consumer {
        c.set(k, &v.0);
    }
    c.set("bootstrap.servers", brokers);
    c.set("group.id", &cfg.kafka.group_id);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.create_with_context(GroupContext::default())
}

/// Commits `next offset to read` per (topic, partition).
pub fn commit(
    consumer: &GroupConsumer,
    positions: &HashMap<(String, i32), i64>,
) -> KafkaResult<()> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in positions {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, CommitMode::Async)
}

/// Lag per topic: high watermark (asked of the broker, short timeout) minus position.
pub fn lag_by_topic(
    consumer: &GroupConsumer,
    positions: &HashMap<(String, i32), i64>,
) -> HashMap<String, i64> {
    let mut lag: HashMap<String, i64> = HashMap::new();
    let Ok(assignment) = consumer.assignment() else {
        return lag;
    };
    // Where the consumer stands on partitions it has not processed from yet
    // (just assigned): counting those from offset 0 would report a partition's
    // whole history as lag after every rebalance. Before its first fetch the
    // position is unknown and the partition counts no lag (a consumer that never
    // fetches shows as stopped processing, not as lag).
    let fetched = consumer.position().ok();
    for e in assignment.elements() {
        let (topic, p) = (e.topic().to_owned(), e.partition());
        let pos = positions.get(&(topic.clone(), p)).copied().or_else(|| {
            fetched
                .as_ref()?
                .find_partition(&topic, p)
                .and_then(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => Some(o),
                    _ => None,
                })
        });
        let entry = lag.entry(topic.clone()).or_default();
        if let Some(pos) = pos
            && let Ok((_, high)) =
                consumer.fetch_watermarks(&topic, p, std::time::Duration::from_secs(1))
            && high >= 0
        {
            *entry += (high - pos).max(0);
        }
    }
    lag
}

/// Pauses or resumes every assigned partition (maintenance, open breaker, drain).
pub fn set_paused(consumer: &GroupConsumer, paused: bool) {
    if let Ok(assignment) = consumer.assignment()
        && assignment.count() > 0
    {
        let result = if paused {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
        if let Err(error) = result {
            tracing::warn!(%error, paused, "Could not change consumer pause state.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_join_state_from_statistics() {
        // As librdkafka 2.12 writes it.
        let stats = br#"{"name":"c", "cgrp": { "state": "up", "stateage": 997, "join_state": "wait-join", "rebalance_age": 0 }}"#;
        assert_eq!(join_state(stats), Some(&b"wait-join"[..]));
        assert_eq!(join_state(br#"{"name":"p"}"#), None);
        let ctx = GroupContext::default();
        assert!(!ctx.settled(), "not joined");
        ctx.joined.store(true, Ordering::Relaxed);
        assert!(!ctx.settled(), "joined, then revoked");
        ctx.assigned.store(true, Ordering::Relaxed);
        assert!(ctx.settled(), "assigned, no statistics: settled");
        ctx.stats_raw(stats);
        assert!(!ctx.settled(), "rebalancing");
        ctx.stats_raw(br#"{"cgrp":{"join_state":"steady"}}"#);
        assert!(!ctx.settled(), "steady only just now");
        *ctx.steady_since.lock().unwrap() = Some(Instant::now() - SETTLED_AFTER);
        assert!(ctx.settled());
    }
}
