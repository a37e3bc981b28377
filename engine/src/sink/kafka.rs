//! Kafka producer of query results: `acks=all`, bounded delivery time.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureProducer;

use crate::config::EngineConfig;

/// Creates the producer; `acks=all` and the delivery timeout are enforced.
pub fn producer(cfg: &EngineConfig, brokers: &str) -> KafkaResult<FutureProducer> {
    let mut c = ClientConfig::new();
    c.set("linger.ms", "5");
    c.set("socket.timeout.ms", "10000");
    c.set(
        "queue.buffering.max.messages",
        cfg.processing.queue_size.max(1000).to_string(),
    );
    for (k, v) in &cfg.kafka.producer {
        c.set(k, &v.0);
    }
    c.set("bootstrap.servers", brokers);
    c.set("acks", "all");
    c.set(
        "message.timeout.ms",
        cfg.processing.timeout_ms.max(1000).to_string(),
    );
    c.create()
}
