//! sluice-engine: a streaming SQL engine over Kafka with an operational surface
//! (circuit breakers, resource manager, watermarks, admin API, metrics).
