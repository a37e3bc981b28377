//! The engine's YAML configuration. Every field is documented here and has a
//! default, so an empty file is a valid (embedded, query-less) engine.
//! Loading and checking live in [`load`]; positions in the file in [`position`].

mod load;
mod patch;
mod position;

pub use load::{ConfigError, check_file, load_file, load_str};
pub use patch::{apply_patch, merge_patch};
pub use position::path_at;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::{Location, Spanned};

/// A value with the position it was read from (unknown for defaults and JSON input).
pub type Pos<T> = Spanned<T>;

fn pos<T>(value: T) -> Pos<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

/// The whole engine configuration (`--config FILE`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Limits on the memory held by operator state.
    pub resource_limits: ResourceLimits,
    /// When and how expired operator state is cleaned up.
    pub memory_management: MemoryManagement,
    /// Batching, parallelism and commit cadence of the data path.
    pub processing: Processing,
    /// The breaker around the sink.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Brokers, consumer group, librdkafka properties, demo data.
    pub kafka: KafkaConfig,
    /// Event-time watermarks and late data.
    pub watermarks: WatermarkConfig,
    /// Continuous queries, each from a source topic to a sink topic.
    pub queries: Vec<QueryConfig>,
    /// The admin HTTP API (health, metrics, /admin/*).
    pub admin: AdminConfig,
}

/// What to do when a new group or window would exceed a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// Drop the record that would create the new group (counted as failed).
    #[default]
    RejectNewGroups,
    /// Emit and evict the oldest open window to make room.
    EvictOldest,
    /// Pause intake until cleanup or window closes free memory.
    Pause,
}

/// Limits on operator state (bytes are estimates of the state's heap size).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceLimits {
    /// Upper bound for all operator state together, in bytes. Default 4 GiB.
    pub max_total_memory: Pos<u64>,
    /// Upper bound for one query's state, in bytes. Default 1 GiB.
    pub max_operator_memory: Pos<u64>,
    /// Most open windows one group key may have at once (HOP windows overlap). Default 10000.
    pub max_windows_per_key: Pos<u64>,
    /// Most groups one query may hold across its open windows. Default 50000.
    pub max_aggregation_groups: Pos<u64>,
    /// What happens at a limit: `reject_new_groups`, `evict_oldest` or `pause`.
    pub on_limit: LimitAction,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_total_memory: pos(4 << 30),
            max_operator_memory: pos(1 << 30),
            max_windows_per_key: pos(10_000),
            max_aggregation_groups: pos(50_000),
            on_limit: LimitAction::default(),
        }
    }
}

/// Cleanup of expired state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryManagement {
    /// Fraction of `max_total_memory` (0 < x ≤ 1) at which cleanup runs early. Default 0.8.
    pub gc_threshold: Pos<f64>,
    /// Seconds between periodic cleanups. Default 300.
    pub cleanup_interval: Pos<u64>,
    /// Seconds of metric history kept for reports and `/admin/metrics/export`. Default 3600.
    pub history_retention: u64,
}

impl Default for MemoryManagement {
    fn default() -> Self {
        Self {
            gc_threshold: pos(0.8),
            cleanup_interval: pos(300),
            history_retention: 3600,
        }
    }
}

/// The data path's cadence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processing {
    /// Records handled between delivery checks. Default 1000.
    pub batch_size: Pos<usize>,
    /// Worker count: consumers in this process sharing the group's partitions. Default 1.
    pub parallelism: Pos<usize>,
    /// Upper bound for `parallelism` (changes above it are refused). Default 8.
    pub max_parallelism: Pos<usize>,
    /// Produced-but-unacknowledged messages allowed before intake waits. Default 10000.
    pub queue_size: usize,
    /// Milliseconds a sink delivery may take before it counts as failed. Default 30000.
    pub timeout_ms: u64,
    /// Milliseconds between offset commits (after delivery). Default 1000.
    pub commit_interval_ms: u64,
    /// What `POST /admin/processing/drain` does with open windows unless the
    /// request says otherwise: `emit` them now (partial results) or `keep`
    /// them (offsets stay below their records; a restart rebuilds them). Default `emit`.
    pub drain_windows: crate::pipeline::DrainWindows,
}

impl Default for Processing {
    fn default() -> Self {
        Self {
            batch_size: pos(1000),
            parallelism: pos(1),
            max_parallelism: pos(8),
            queue_size: 10_000,
            timeout_ms: 30_000,
            commit_interval_ms: 1000,
            drain_windows: crate::pipeline::DrainWindows::Emit,
        }
    }
}

/// Breaker around the sink: opens after `failure_threshold` consecutive failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the breaker. Default 10.
    pub failure_threshold: Pos<u32>,
    /// Seconds the breaker stays open before a half-open probe. Default 60.
    pub timeout_seconds: u64,
    /// Seconds a half-open probe period may last before the breaker reopens. Default 30.
    pub recovery_timeout: u64,
    /// Consecutive successes in half-open that close the breaker. Default 3.
    pub success_threshold: Pos<u32>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: pos(10),
            timeout_seconds: 60,
            recovery_timeout: 30,
            success_threshold: pos(3),
        }
    }
}

/// A librdkafka property value; YAML numbers and booleans are passed as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Property(pub String);

impl<'de> Deserialize<'de> for Property {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Property;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Property, E> {
                Ok(Property(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Property {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Kafka connection and client properties.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port,…` of the brokers, or `embedded` for an in-process mock cluster.
    pub brokers: Pos<String>,
    /// Consumer group shared by every engine process running these queries.
    pub group_id: String,
    /// librdkafka consumer properties passed through (`fetch.min.bytes`, …).
    pub consumer: BTreeMap<String, Property>,
    /// librdkafka producer properties passed through; `acks` is always `all`.
    pub producer: BTreeMap<String, Property>,
    /// Partitions of each topic created in the embedded cluster. Default 3.
    pub embedded_partitions: i32,
    /// Built-in demo data generator (useful with `brokers: embedded`).
    pub demo: DemoConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: pos("embedded".to_owned()),
            group_id: "sluice-engine".to_owned(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
            embedded_partitions: 3,
            demo: DemoConfig::default(),
        }
    }
}

/// Kind of demo records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DemoKind {
    /// `{"order_id","customer_id","product","quantity","price","status","ts"}`
    #[default]
    Orders,
    /// `{"trade_id","symbol","side","qty","price","venue","ts"}`
    Trades,
}

/// Demo data generator writing JSON records to a topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Whether the generator runs. Default false.
    pub enabled: bool,
    /// `orders` or `trades`.
    pub kind: DemoKind,
    /// Topic written to. Default `orders`.
    pub topic: String,
    /// Records per second. Default 100.
    pub rate_per_second: Pos<u32>,
    /// Distinct keys (customers / symbols). Default 100.
    pub keys: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            kind: DemoKind::Orders,
            topic: "orders".to_owned(),
            rate_per_second: pos(100),
            keys: 100,
        }
    }
}

/// What happens to a record whose window has already closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LateData {
    /// Discard it (counted in `sluice_late_data_dropped_total`).
    #[default]
    Drop,
    /// Aggregate it into a late update of its window, emitted at the next
    /// watermark advance (counted in `sluice_late_data_processed_total`).
    Process,
}

/// Event-time watermarks: watermark = max event time seen − allowed out-of-orderness.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkConfig {
    /// Allowed out-of-orderness in milliseconds for every source. Default 5000.
    pub max_out_of_orderness_ms: u64,
    /// Per-source-topic overrides of `max_out_of_orderness_ms`.
    pub sources: BTreeMap<String, u64>,
    /// `drop` or `process` late records.
    pub late_data: LateData,
    /// Milliseconds without input after which the watermark advances with the
    /// wall clock, so the last windows of a quiet source still close. 0 = never. Default 0.
    pub idle_timeout_ms: u64,
    /// Milliseconds without a record after which one source partition stops
    /// holding the watermark back (the watermark follows the slowest active
    /// partition). 0 = never. Default 10000.
    pub partition_idle_timeout_ms: u64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            max_out_of_orderness_ms: 5000,
            sources: BTreeMap::new(),
            late_data: LateData::Drop,
            idle_timeout_ms: 0,
            partition_idle_timeout_ms: 10_000,
        }
    }
}

impl WatermarkConfig {
    /// The out-of-orderness bound of one source topic.
    pub fn out_of_orderness_ms(&self, topic: &str) -> u64 {
        self.sources
            .get(topic)
            .copied()
            .unwrap_or(self.max_out_of_orderness_ms)
    }
}

/// One continuous query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Unique name (metrics label, state export key).
    pub name: Pos<String>,
    /// `SELECT … FROM source …`; the FROM name is informational, `source_topic` is read.
    pub sql: Pos<String>,
    /// Topic the records come from.
    pub source_topic: Pos<String>,
    /// Topic the results go to.
    pub sink_topic: Pos<String>,
    /// Output column whose value becomes the message key; absent = keep the
    /// input key (stateless queries) or use the GROUP BY key (aggregates).
    #[serde(default)]
    pub key_column: Option<Pos<String>>,
}

/// The admin HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address. Default `127.0.0.1:8080`.
    pub listen: Pos<String>,
    /// Bearer token required on `/admin/*` when set.
    pub token: Option<Secret>,
    /// Largest accepted request body in bytes. Default 1 MiB.
    pub max_body_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: pos("127.0.0.1:8080".to_owned()),
            token: None,
            max_body_bytes: 1 << 20,
        }
    }
}

/// A secret: never shown by Debug or Display.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl EngineConfig {
    /// The config as JSON with secrets masked (for `GET /admin/config`).
    pub fn to_public_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(tok) = v.pointer_mut("/admin/token")
            && !tok.is_null()
        {
            *tok = serde_json::Value::String("***".into());
        }
        v
    }
}
