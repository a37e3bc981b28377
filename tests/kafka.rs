//! Kafka client helpers for tests, against any broker (Tansu in the e2e
//! tests): produce records, read a topic from the beginning without a
//! consumer group (no rebalancing delays).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// One message read back.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Option<String>,
    pub payload: String,
    pub partition: i32,
    pub offset: i64,
}

impl Msg {
    /// The payload as JSON (panics with the payload when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.payload))
    }
}

/// A producer with `acks=all`.
pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()?)
}

/// Produces `(key, payload)` records to `topic`, all in flight at once;
/// returns when every one is acknowledged.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    records: &[(String, String)],
) -> anyhow::Result<()> {
    let mut inflight = Vec::with_capacity(records.len());
    for (k, v) in records {
        let mut tries = 0;
        loop {
            match p.send_result(FutureRecord::to(topic).key(k).payload(v)) {
                Ok(f) => {
                    inflight.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tries < 1000 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e).context("produce"),
            }
        }
    }
    for f in inflight {
        f.await
            .context("producer dropped")?
            .map_err(|(e, _)| e)
            .context("produce")?;
    }
    Ok(())
}

/// Reads every message `topic` holds, from the beginning: until no new
/// message arrived for a second (the broker's high watermarks are not used:
/// Tansu's ListOffsets can lag behind what a fetch returns).
pub fn read_all(brokers: &str, topic: &str, limit: Duration) -> anyhow::Result<Vec<Msg>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-tests-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&c, topic)? {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + limit;
    let quiet = Duration::from_secs(1);
    let mut last_new = Instant::now();
    let mut out = Vec::new();
    while last_new.elapsed() < quiet {
        anyhow::ensure!(
            Instant::now() < deadline,
            "read_all({topic}): still reading after {limit:?} ({} messages)",
            out.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_new = Instant::now();
                out.push(Msg {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                });
            }
            Some(Err(e)) => anyhow::bail!("read {topic}: {e}"),
            None => {}
        }
    }
    Ok(out)
}

/// Polls `read_all` until `done(messages)` holds or `limit` passes; returns the last read.
pub async fn read_until(
    brokers: &str,
    topic: &str,
    limit: Duration,
    done: impl Fn(&[Msg]) -> bool,
) -> anyhow::Result<Vec<Msg>> {
    let deadline = Instant::now() + limit;
    loop {
        let b = brokers.to_owned();
        let t = topic.to_owned();
        let msgs = tokio::task::spawn_blocking(move || read_all(&b, &t, Duration::from_secs(20)))
            .await??;
        if done(&msgs) || Instant::now() >= deadline {
            return Ok(msgs);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The offsets group `group` has committed for `topic`, per partition.
pub fn committed(brokers: &str, group: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&c, topic)? {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// The partition ids of `topic`.
fn partitions(c: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
