//! Kafka consumer of the source topics: one consumer group, no auto-commit;
//! offsets are committed by the pipeline only after delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::EngineConfig;

/// Consumer context: remembers whether the group has handed this member an
/// assignment yet (its join completed).
#[derive(Debug, Default)]
pub struct GroupContext {
    joined: AtomicBool,
}

impl GroupContext {
    /// Whether the first rebalance (join) of this member completed.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.joined.store(true, Ordering::Relaxed);
                tracing::info!(
                    partitions = tpl.count(),
                    "Consumer group assignment received."
                );
            }
            Rebalance::Revoke(tpl) => {
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
    for e in assignment.elements() {
        let (topic, p) = (e.topic().to_owned(), e.partition());
        if let Ok((_, high)) =
            consumer.fetch_watermarks(&topic, p, std::time::Duration::from_secs(1))
            && high >= 0
        {
            let pos = positions.get(&(topic.clone(), p)).copied().unwrap_or(0);
            *lag.entry(topic).or_default() += (high - pos).max(0);
        } else {
            lag.entry(topic).or_default();
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
