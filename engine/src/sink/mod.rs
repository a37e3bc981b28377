//! Where results go. Kafka is the only sink.

pub mod kafka;
