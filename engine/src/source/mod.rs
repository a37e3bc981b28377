//! Where records come from. Kafka is the only source.

pub mod kafka;
