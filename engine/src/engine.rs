//! The running engine: current config, metrics, the sink breaker, faults,
//! maintenance flag and the pipeline. Shared by the pipeline workers and the
//! admin API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::circuit_breaker::{BreakerSettings, CircuitBreaker};
use crate::config::EngineConfig;
use crate::embedded::EmbeddedCluster;
use crate::fault::FaultInjector;
use crate::history::History;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Name of the breaker around the Kafka sink.
pub const SINK_BREAKER: &str = "sink";

/// Live figures of one query, published by its worker.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryFigures {
    pub name: String,
    pub query_type: &'static str,
    pub source_topic: String,
    pub sink_topic: String,
    pub records_in: u64,
    pub records_filtered_out: u64,
    pub records_failed: u64,
    pub results_produced: u64,
    pub late_dropped: u64,
    pub late_processed: u64,
    pub limit_violations: u64,
    pub windows_emitted: u64,
    pub open_windows: usize,
    pub groups: u64,
    pub state_bytes: u64,
    pub mean_exec_us: f64,
    pub watermark_ms: Option<i64>,
}

/// What one pipeline worker reports about itself (every second).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerStatus {
    pub assigned_partitions: usize,
    pub kafka_ok: bool,
    pub kafka_error: Option<String>,
    pub records_waiting_for_room: usize,
}

/// What the pipeline reports about itself; the Kafka figures sum up the workers'.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineStatus {
    pub running: bool,
    pub workers: usize,
    pub brokers: String,
    pub kafka_ok: bool,
    pub kafka_error: Option<String>,
    pub assigned_partitions: usize,
    pub drained: bool,
    pub restarts: u64,
    /// Records held back under `on_limit: pause`, waiting for room.
    pub records_waiting_for_room: usize,
}

/// The last sign of life of one pipeline worker.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub at: Instant,
    /// What the worker was doing (`consuming`, `paused`, `delivering`, …).
    pub activity: &'static str,
}

pub struct Engine {
    config: RwLock<Arc<EngineConfig>>,
    pub config_path: Option<PathBuf>,
    pub metrics: Metrics,
    pub breaker: CircuitBreaker,
    pub faults: Option<FaultInjector>,
    maintenance: AtomicBool,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    status: Mutex<PipelineStatus>,
    worker_status: Mutex<BTreeMap<usize, WorkerStatus>>,
    /// (worker, query) → figures.
    pub queries: Mutex<BTreeMap<(usize, String), QueryFigures>>,
    pub history: Mutex<History>,
    /// worker id → last heartbeat.
    heartbeats: Mutex<BTreeMap<usize, Heartbeat>>,
    pub pipeline: tokio::sync::Mutex<Option<Pipeline>>,
    pub embedded: Mutex<Option<EmbeddedCluster>>,
    shutdown: watch::Sender<bool>,
}

impl Engine {
    pub fn new(
        config: EngineConfig,
        config_path: Option<PathBuf>,
        fault_injection: bool,
    ) -> Arc<Self> {
        let breaker =
            CircuitBreaker::new(SINK_BREAKER, BreakerSettings::from(&config.circuit_breaker));
        let retention = config.memory_management.history_retention;
        Arc::new(Self {
            config: RwLock::new(Arc::new(config)),
            config_path,
            metrics: Metrics::default(),
            breaker,
            faults: fault_injection.then(FaultInjector::default),
            maintenance: AtomicBool::new(false),
            started_at: Utc::now(),
            started: Instant::now(),
            status: Mutex::new(PipelineStatus::default()),
            worker_status: Mutex::new(BTreeMap::new()),
            queries: Mutex::new(BTreeMap::new()),
            history: Mutex::new(History::new(retention)),
            heartbeats: Mutex::new(BTreeMap::new()),
            pipeline: tokio::sync::Mutex::new(None),
            embedded: Mutex::new(None),
            shutdown: watch::channel(false).0,
        })
    }

    pub fn config(&self) -> Arc<EngineConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the config (already validated); settings that apply live are applied.
    pub fn set_config(&self, config: EngineConfig) {
        self.breaker
            .reconfigure(BreakerSettings::from(&config.circuit_breaker));
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_retention(config.memory_management.history_retention);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance.load(Ordering::Relaxed)
    }

    pub fn set_maintenance(&self, on: bool) -> bool {
        self.metrics.maintenance.set(if on { 1.0 } else { 0.0 });
        self.maintenance.swap(on, Ordering::Relaxed)
    }

    pub fn status(&self) -> PipelineStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let workers = self.worker_status.lock().unwrap_or_else(|p| p.into_inner());
        s.assigned_partitions = workers.values().map(|w| w.assigned_partitions).sum();
        s.records_waiting_for_room = workers.values().map(|w| w.records_waiting_for_room).sum();
        s.kafka_ok =
            s.running && workers.len() == s.workers && workers.values().all(|w| w.kafka_ok);
        s.kafka_error = workers.values().find_map(|w| w.kafka_error.clone());
        s
    }

    /// A worker's own figures (replacing its previous report).
    pub fn set_worker_status(&self, worker: usize, status: WorkerStatus) {
        self.worker_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker, status);
    }

    /// Forgets the workers' reports (a new pipeline starts).
    pub fn clear_worker_status(&self) {
        self.worker_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn update_status(&self, f: impl FnOnce(&mut PipelineStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn query_figures(&self) -> Vec<QueryFigures> {
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Operator state bytes across all workers.
    pub fn operator_bytes(&self) -> u64 {
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|q| q.state_bytes)
            .sum()
    }

    /// A worker reports that it is alive and what it is doing.
    pub fn beat(&self, worker: usize, activity: &'static str) {
        self.heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                worker,
                Heartbeat {
                    at: Instant::now(),
                    activity,
                },
            );
    }

    pub fn heartbeats(&self) -> BTreeMap<usize, Heartbeat> {
        self.heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn clear_heartbeats(&self) {
        self.heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Which parts of a config change need the pipeline rebuilt.
pub fn needs_restart(old: &EngineConfig, new: &EngineConfig) -> bool {
    let j = |c: &EngineConfig| {
        serde_json::json!([
            c.queries,
            c.kafka,
            c.processing,
            c.watermarks,
            c.resource_limits
        ])
    };
    j(old) != j(new)
}

impl Engine {
    /// The brokers the pipeline connects to (starting the embedded cluster if configured).
    pub fn brokers(&self) -> anyhow::Result<String> {
        let cfg = self.config();
        if cfg.kafka.brokers.value != "embedded" {
            return Ok(cfg.kafka.brokers.value.clone());
        }
        let mut emb = self.embedded.lock().unwrap_or_else(|p| p.into_inner());
        if emb.is_none() {
            let mut topics: Vec<String> = Vec::new();
            for q in &cfg.queries {
                topics.push(q.source_topic.value.clone());
                topics.push(q.sink_topic.value.clone());
            }
            if cfg.kafka.demo.enabled {
                topics.push(cfg.kafka.demo.topic.clone());
            }
            topics.sort();
            topics.dedup();
            *emb = Some(EmbeddedCluster::start(
                &topics,
                cfg.kafka.embedded_partitions,
            )?);
        }
        Ok(emb
            .as_ref()
            .map(|e| e.bootstrap_servers().to_owned())
            .unwrap_or_default())
    }

    /// Starts the pipeline from the current config.
    pub async fn start_pipeline(self: &Arc<Self>) -> anyhow::Result<()> {
        let brokers = self.brokers()?;
        let mut guard = self.pipeline.lock().await;
        if let Some(old) = guard.take() {
            old.stop().await;
        }
        *guard = Some(Pipeline::start(self, &brokers)?);
        Ok(())
    }

    /// Stops (delivering and committing what is pending) and starts again.
    pub async fn restart_pipeline(self: &Arc<Self>) -> anyhow::Result<()> {
        self.update_status(|s| s.restarts += 1);
        self.start_pipeline().await
    }

    /// Stops the pipeline for good (shutdown).
    pub async fn stop_pipeline(&self) {
        if let Some(p) = self.pipeline.lock().await.take() {
            p.stop().await;
        }
        self.update_status(|s| s.running = false);
    }

    /// Applies a validated config; restarts the pipeline when the data path changed.
    pub async fn apply_config(self: &Arc<Self>, new: EngineConfig) -> anyhow::Result<bool> {
        let restart = needs_restart(&self.config(), &new);
        self.set_config(new);
        if restart {
            self.restart_pipeline().await?;
        }
        Ok(restart)
    }
}
