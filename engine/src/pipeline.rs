//! The data path: workers that consume source topics, run the queries and
//! deliver results, and the [`Pipeline`] that starts, commands and stops them.
//!
//! Delivery guarantee (at-least-once): a worker commits an offset only after
//! every result derived from the records below it was acknowledged by the
//! broker (`acks=all`), and never past the oldest record still held in an
//! open window. After a crash, the group resumes from the last commit and
//! re-derives what was not yet delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{EngineConfig, LimitAction};
use crate::engine::{Engine, QueryFigures};
use crate::operator::aggregate::Limits;
use crate::query::{Flow, OutputBatch, Query, QueryOptions, QueryStats, now_ms};
use crate::state::{PartitionOffset, QueryState, StateDocument};
use crate::{sink, source, state};

/// What a drain did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    pub windows_flushed: u64,
    pub results_delivered: u64,
    pub records_processed: u64,
    pub committed: Vec<PartitionOffset>,
}

impl DrainReport {
    fn merge(&mut self, o: DrainReport) {
        self.windows_flushed += o.windows_flushed;
        self.results_delivered += o.results_delivered;
        self.records_processed += o.records_processed;
        self.committed.extend(o.committed);
    }
}

/// What a cleanup freed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    pub windows_closed: u64,
    pub groups_freed: u64,
    pub bytes_freed: u64,
}

/// A worker's part of a state export.
#[derive(Debug, Clone, Default)]
pub struct WorkerState {
    pub queries: Vec<QueryState>,
    pub positions: Vec<PartitionOffset>,
    pub committed: Vec<PartitionOffset>,
}

enum Command {
    Drain(oneshot::Sender<DrainReport>),
    Resume(oneshot::Sender<()>),
    Export(oneshot::Sender<WorkerState>),
    Import(Box<StateDocument>, oneshot::Sender<Result<(), String>>),
    Cleanup(oneshot::Sender<CleanupReport>),
    Stop(oneshot::Sender<()>),
}

struct WorkerHandle {
    tx: mpsc::Sender<Command>,
    join: JoinHandle<()>,
}

/// The running workers.
pub struct Pipeline {
    workers: Vec<WorkerHandle>,
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Pipeline {
    /// Starts `processing.parallelism` workers on `brokers`.
    pub fn start(engine: &Arc<Engine>, brokers: &str) -> anyhow::Result<Self> {
        let cfg = engine.config();
        let mut workers = Vec::new();
        engine
            .queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for id in 0..cfg.processing.parallelism.value.max(1) {
            let mut worker = Worker::new(id, engine.clone(), cfg.clone(), brokers)?;
            let (tx, rx) = mpsc::channel(16);
            let join = tokio::spawn(async move {
                if let Err(error) = worker.run(rx).await {
                    tracing::error!(
                        worker = id,
                        error = format!("{error:#}"),
                        "Pipeline worker stopped."
                    );
                    worker.engine.metrics.errors_fatal.add(1);
                    worker.engine.update_status(|s| {
                        s.kafka_ok = false;
                        s.kafka_error = Some(format!("{error:#}"));
                    });
                }
            });
            workers.push(WorkerHandle { tx, join });
        }
        engine.update_status(|s| {
            s.running = true;
            s.workers = workers.len();
            s.brokers = brokers.to_owned();
            s.drained = false;
        });
        tracing::info!(
            workers = workers.len(),
            queries = cfg.queries.len(),
            "Pipeline started."
        );
        Ok(Self { workers })
    }

    async fn ask<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Command) -> anyhow::Result<Vec<T>> {
        let mut replies = Vec::new();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            w.tx.send(make(tx))
                .await
                .context("a pipeline worker has stopped")?;
            replies.push(rx);
        }
        let mut out = Vec::new();
        for rx in replies {
            out.push(
                tokio::time::timeout(COMMAND_TIMEOUT, rx)
                    .await
                    .context("pipeline worker did not answer in time (sink blocked?)")?
                    .context("a pipeline worker has stopped")?,
            );
        }
        Ok(out)
    }

    /// Stops intake, flushes every open window, delivers, commits.
    pub async fn drain(&self) -> anyhow::Result<DrainReport> {
        let mut total = DrainReport::default();
        for r in self.ask(Command::Drain).await? {
            total.merge(r);
        }
        Ok(total)
    }

    /// Resumes intake after a drain.
    pub async fn resume(&self) -> anyhow::Result<()> {
        self.ask(Command::Resume).await.map(|_| ())
    }

    pub async fn export(&self) -> anyhow::Result<WorkerState> {
        let mut total = WorkerState::default();
        for s in self.ask(Command::Export).await? {
            total.queries.extend(s.queries);
            total.positions.extend(s.positions);
            total.committed.extend(s.committed);
        }
        Ok(total)
    }

    /// Imports into the first worker (state of all workers is merged on export).
    pub async fn import(&self, doc: StateDocument) -> anyhow::Result<Result<(), String>> {
        let Some(first) = self.workers.first() else {
            return Ok(Err("no workers".into()));
        };
        let (tx, rx) = oneshot::channel();
        first
            .tx
            .send(Command::Import(Box::new(doc), tx))
            .await
            .context("pipeline worker stopped")?;
        Ok(tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .context("worker did not answer")??)
    }

    pub async fn cleanup(&self) -> anyhow::Result<CleanupReport> {
        let mut total = CleanupReport::default();
        for r in self.ask(Command::Cleanup).await? {
            total.windows_closed += r.windows_closed;
            total.groups_freed += r.groups_freed;
            total.bytes_freed += r.bytes_freed;
        }
        Ok(total)
    }

    /// Delivers what is pending, commits, and stops every worker.
    pub async fn stop(self) {
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            if w.tx.send(Command::Stop(tx)).await.is_ok() {
                let _ = tokio::time::timeout(COMMAND_TIMEOUT, rx).await;
            }
        }
        for w in self.workers {
            w.join.abort();
            let _ = w.join.await;
        }
    }
}

struct Slot {
    query: Query,
    sql: String,
    source: String,
    sink: String,
    batch: OutputBatch,
    reported: QueryStats,
    exec_ns: u64,
    exec_n: u64,
}

struct Worker {
    id: usize,
    engine: Arc<Engine>,
    cfg: Arc<EngineConfig>,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    slots: Vec<Slot>,
    by_topic: HashMap<String, Vec<usize>>,
    positions: HashMap<(String, i32), i64>,
    committed: HashMap<(String, i32), i64>,
    skip_below: HashMap<(String, i32), i64>,
    pending_inputs: u64,
    batch_started: Option<Instant>,
    drained: bool,
    limit_paused: bool,
    paused: bool,
    stopping: bool,
    publishes: u64,
}

impl Worker {
    fn new(
        id: usize,
        engine: Arc<Engine>,
        cfg: Arc<EngineConfig>,
        brokers: &str,
    ) -> anyhow::Result<Self> {
        let consumer =
            Arc::new(source::kafka::consumer(&cfg, brokers).context("create Kafka consumer")?);
        let producer = sink::kafka::producer(&cfg, brokers).context("create Kafka producer")?;
        let limits = &cfg.resource_limits;
        let mut slots = Vec::new();
        let mut by_topic: HashMap<String, Vec<usize>> = HashMap::new();
        for q in &cfg.queries {
            let plan = crate::sql::plan(&q.sql.value)
                .map_err(|e| anyhow::anyhow!("query {}: {e}", q.name.value))?;
            let opts = QueryOptions {
                out_of_orderness_ms: cfg.watermarks.out_of_orderness_ms(&q.source_topic.value),
                late_data: cfg.watermarks.late_data,
                limits: Limits {
                    max_groups: limits.max_aggregation_groups.value,
                    max_bytes: limits.max_operator_memory.value,
                    max_windows: limits.max_windows_per_key.value,
                    on_limit: limits.on_limit,
                },
                key_column: q.key_column.as_ref().map(|k| k.value.clone()),
            };
            by_topic
                .entry(q.source_topic.value.clone())
                .or_default()
                .push(slots.len());
            slots.push(Slot {
                query: Query::new(q.name.value.clone(), plan, opts),
                sql: q.sql.value.clone(),
                source: q.source_topic.value.clone(),
                sink: q.sink_topic.value.clone(),
                batch: OutputBatch::default(),
                reported: QueryStats::default(),
                exec_ns: 0,
                exec_n: 0,
            });
        }
        let topics: Vec<&str> = by_topic.keys().map(String::as_str).collect();
        if !topics.is_empty() {
            consumer
                .subscribe(&topics)
                .context("subscribe to source topics")?;
        }
        Ok(Self {
            id,
            engine,
            cfg,
            consumer,
            producer,
            slots,
            by_topic,
            positions: HashMap::new(),
            committed: HashMap::new(),
            skip_below: HashMap::new(),
            pending_inputs: 0,
            batch_started: None,
            drained: false,
            limit_paused: false,
            paused: false,
            stopping: false,
            publishes: 0,
        })
    }

    async fn run(&mut self, mut commands: mpsc::Receiver<Command>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_report = Instant::now();
        let mut processed_at_report = 0u64;
        let batch_size = self.cfg.processing.batch_size.value.max(1) as u64;
        let commit_every = Duration::from_millis(self.cfg.processing.commit_interval_ms.max(10));
        let has_topics = !self.by_topic.is_empty();
        let mut processed_total = 0u64;
        let consumer = self.consumer.clone();
        let mut stream = consumer.stream();
        loop {
            if self.stopping {
                return Ok(());
            }
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => return Ok(()),
                },
                _ = tick.tick() => {
                    self.apply_pause();
                    let now = now_ms();
                    let idle = self.cfg.watermarks.idle_timeout_ms;
                    for s in &mut self.slots {
                        s.query.on_tick(now, idle, &mut s.batch);
                    }
                    self.check_limits();
                    let due = self.batch_started.is_some_and(|t| t.elapsed() >= commit_every);
                    if due || self.has_outputs() {
                        self.deliver_and_commit().await;
                    }
                    if last_report.elapsed() >= Duration::from_secs(1) {
                        let secs = last_report.elapsed().as_secs_f64();
                        self.publish((processed_total - processed_at_report) as f64 / secs);
                        processed_at_report = processed_total;
                        last_report = Instant::now();
                    }
                }
                msg = stream.next(), if has_topics => {
                    match msg {
                        Some(Ok(m)) => {
                            let m = m.detach();
                            let payload = m.payload().unwrap_or(b"");
                            self.handle(m.topic(), m.partition(), m.offset(), payload, m.key()).await;
                            processed_total += 1;
                            self.engine.update_status(|s| s.kafka_ok = true);
                            if self.pending_inputs >= batch_size {
                                self.deliver_and_commit().await;
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(worker = self.id, %error, "Kafka consumer error.");
                            self.engine.metrics.errors_retryable.add(1);
                            self.engine.update_status(|s| {
                                s.kafka_ok = false;
                                s.kafka_error = Some(error.to_string());
                            });
                        }
                        None => return Ok(()),
                    }
                }
            }
        }
    }

    async fn handle(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: &[u8],
        key: Option<&[u8]>,
    ) {
        let tp = (topic.to_owned(), partition);
        if self.skip_below.get(&tp).is_some_and(|s| offset < *s) {
            // Already covered by imported state.
            self.positions.insert(tp, offset + 1);
            return;
        }
        if let Some(f) = &self.engine.faults {
            let d = f.delay();
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
        if let Some(idx) = self.by_topic.get(topic) {
            for &i in idx {
                let s = &mut self.slots[i];
                let t0 = Instant::now();
                let r = s
                    .query
                    .process(payload, key, Some((partition, offset)), &mut s.batch);
                s.exec_ns += t0.elapsed().as_nanos() as u64;
                s.exec_n += 1;
                match r {
                    Ok(Flow::Pause) => self.limit_paused = true,
                    Ok(Flow::Continue) => {}
                    Err(error) => {
                        tracing::debug!(query = %s.query.name, %error, "Record not processed.")
                    }
                }
            }
        }
        self.engine.metrics.records_processed.add(1);
        self.positions.insert(tp, offset + 1);
        self.pending_inputs += 1;
        self.batch_started.get_or_insert_with(Instant::now);
    }

    fn has_outputs(&self) -> bool {
        self.slots.iter().any(|s| !s.batch.is_empty())
    }

    fn should_pause(&self) -> bool {
        self.engine.maintenance() || self.drained || self.limit_paused
    }

    fn apply_pause(&mut self) {
        let want = self.should_pause();
        // Re-applied every tick: a rebalance may hand us new, unpaused partitions.
        if want || self.paused {
            source::kafka::set_paused(&self.consumer, want);
        }
        self.paused = want;
    }

    /// Frees state when limits were hit: resumes a limit pause once state shrank.
    fn check_limits(&mut self) {
        let l = &self.cfg.resource_limits;
        let total: u64 = self.engine.operator_bytes();
        if total > l.max_total_memory.value {
            self.engine.metrics.violation("memory", 1);
            if l.on_limit == LimitAction::EvictOldest {
                if let Some(s) = self.slots.iter_mut().max_by_key(|s| s.query.state_size().1) {
                    s.query.emit_oldest(&mut s.batch);
                }
            } else if l.on_limit == LimitAction::Pause {
                self.limit_paused = true;
            }
        } else if self.limit_paused {
            let fits = self.slots.iter().all(|s| {
                let (groups, bytes, _) = s.query.state_size();
                groups < l.max_aggregation_groups.value && bytes < l.max_operator_memory.value
            });
            if fits {
                self.limit_paused = false;
            }
        }
    }

    /// Delivers every pending result (retrying through the breaker) and then commits.
    async fn deliver_and_commit(&mut self) -> u64 {
        let delivered = self.deliver().await;
        self.commit();
        self.pending_inputs = 0;
        self.batch_started = None;
        delivered
    }

    async fn deliver(&mut self) -> u64 {
        let started = Instant::now();
        let batch_age = self.batch_started.map(|t| t.elapsed()).unwrap_or_default();
        let mut todo: Vec<(usize, usize)> = Vec::new();
        for (si, s) in self.slots.iter().enumerate() {
            todo.extend((0..s.batch.len()).map(|ri| (si, ri)));
        }
        let total = todo.len() as u64;
        let timeout = Duration::from_millis(self.cfg.processing.timeout_ms.max(1000) + 5000);
        let mut attempt = 0u32;
        while !todo.is_empty() {
            // While the breaker is open nothing is sent, consumed or committed.
            while !self.engine.breaker.allow() {
                source::kafka::set_paused(&self.consumer, true);
                self.paused = true;
                let wait = self
                    .engine
                    .breaker
                    .retry_in()
                    .clamp(Duration::from_millis(20), Duration::from_millis(250));
                tokio::time::sleep(wait).await;
                if self.engine.is_shutting_down() {
                    return 0;
                }
            }
            let mut failed = Vec::new();
            let mut inflight: Vec<((usize, usize), DeliveryFuture)> = Vec::new();
            for (si, ri) in todo.drain(..) {
                if self
                    .engine
                    .faults
                    .as_ref()
                    .is_some_and(|f| f.sink_should_fail())
                {
                    self.engine.breaker.record_failure();
                    self.engine.metrics.errors_retryable.add(1);
                    failed.push((si, ri));
                    continue;
                }
                let s = &self.slots[si];
                let r = &s.batch.records[ri];
                let mut rec = FutureRecord::to(&s.sink).payload(s.batch.payload(r));
                if let Some(k) = s.batch.key(r) {
                    rec = rec.key(k);
                }
                match self.producer.send_result(rec) {
                    Ok(f) => inflight.push(((si, ri), f)),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Local queue full: wait for what is in flight, retry this one next round.
                        failed.push((si, ri));
                    }
                    Err((error, _)) => {
                        tracing::warn!(%error, "Sink rejected a message.");
                        self.engine.breaker.record_failure();
                        self.engine.metrics.errors_retryable.add(1);
                        failed.push((si, ri));
                    }
                }
            }
            let results = futures::future::join_all(
                inflight
                    .into_iter()
                    .map(|(idx, f)| async move { (idx, tokio::time::timeout(timeout, f).await) }),
            )
            .await;
            for (idx, res) in results {
                match res {
                    Ok(Ok(Ok(_))) => self.engine.breaker.record_success(),
                    Ok(Ok(Err((error, _)))) => {
                        tracing::warn!(%error, "Sink delivery failed; will retry.");
                        self.engine.breaker.record_failure();
                        self.engine.metrics.errors_retryable.add(1);
                        failed.push(idx);
                    }
                    _ => {
                        self.engine.breaker.record_failure();
                        self.engine.metrics.errors_retryable.add(1);
                        failed.push(idx);
                    }
                }
            }
            todo = failed;
            if !todo.is_empty() {
                attempt += 1;
                let backoff = Duration::from_millis((25u64 << attempt.min(5)).min(1000));
                tokio::time::sleep(backoff).await;
                if self.engine.is_shutting_down() && attempt > 20 {
                    return 0;
                }
            }
        }
        for s in &mut self.slots {
            s.batch.clear();
        }
        if total > 0 || self.pending_inputs > 0 {
            let m = &self.engine.metrics;
            m.results_produced.add(total);
            m.latency_batch_ms
                .set(started.elapsed().as_secs_f64() * 1000.0);
            m.record_latency.observe_n(
                (batch_age + started.elapsed()).as_secs_f64(),
                self.pending_inputs,
            );
        }
        total
    }

    /// Commits, per partition, the lowest of: next offset to read, and the
    /// oldest offset still held by an open window.
    fn commit(&mut self) {
        let mut to_commit = HashMap::new();
        for ((topic, p), pos) in &self.positions {
            let mut off = *pos;
            if let Some(idx) = self.by_topic.get(topic) {
                for &i in idx {
                    for (hp, ho) in self.slots[i].query.offset_holds() {
                        if hp == *p {
                            off = off.min(ho);
                        }
                    }
                }
            }
            let key = (topic.clone(), *p);
            if self.committed.get(&key) != Some(&off) {
                to_commit.insert(key, off);
            }
        }
        match source::kafka::commit(&self.consumer, &to_commit) {
            Ok(()) => self.committed.extend(to_commit),
            Err(error) => {
                tracing::warn!(worker = self.id, %error, "Offset commit failed; will retry.");
                self.engine.metrics.errors_retryable.add(1);
            }
        }
    }

    fn publish(&mut self, throughput: f64) {
        let m = &self.engine.metrics;
        m.throughput.set(throughput);
        let now = now_ms();
        let mut lag_max: f64 = 0.0;
        let mut figures = Vec::new();
        for s in &mut self.slots {
            let st = s.query.stats.clone();
            let d = |a: u64, b: u64| a.saturating_sub(b);
            m.records_failed
                .add(d(st.records_failed, s.reported.records_failed));
            m.late_dropped
                .add(d(st.late_dropped, s.reported.late_dropped));
            m.late_processed
                .add(d(st.late_processed, s.reported.late_processed));
            let violations = d(st.limit_violations, s.reported.limit_violations);
            m.violation(
                if s.query.is_windowed() {
                    "groups"
                } else {
                    "memory"
                },
                violations,
            );
            s.reported = st.clone();
            let kind = if s.query.is_windowed() {
                "windowing"
            } else {
                "filter"
            };
            let mean_us = if s.exec_n > 0 {
                s.exec_ns as f64 / s.exec_n as f64 / 1000.0
            } else {
                0.0
            };
            if s.exec_n > 0 {
                m.set_query_time(kind, mean_us / 1000.0);
            }
            s.exec_ns = 0;
            s.exec_n = 0;
            if s.query.is_windowed() {
                lag_max = lag_max.max(s.query.watermark().lag_seconds(now));
            }
            let (groups, bytes, windows) = s.query.state_size();
            figures.push(QueryFigures {
                name: s.query.name.clone(),
                query_type: kind,
                source_topic: s.source.clone(),
                sink_topic: s.sink.clone(),
                records_in: st.records_in,
                records_filtered_out: st.records_filtered_out,
                records_failed: st.records_failed,
                results_produced: st.results_produced,
                late_dropped: st.late_dropped,
                late_processed: st.late_processed,
                limit_violations: st.limit_violations,
                windows_emitted: st.windows_emitted,
                open_windows: windows,
                groups,
                state_bytes: bytes,
                mean_exec_us: mean_us,
                watermark_ms: s.query.watermark().current(),
            });
        }
        m.watermark_lag.set(lag_max);
        let exec: Vec<f64> = figures
            .iter()
            .filter(|f| f.mean_exec_us > 0.0)
            .map(|f| f.mean_exec_us)
            .collect();
        if !exec.is_empty() {
            m.latency_record_ms.set(exec.iter().sum::<f64>() / 1000.0);
        }
        self.publishes += 1;
        if self.publishes % 5 == 1 {
            for (topic, lag) in source::kafka::lag_by_topic(&self.consumer, &self.positions) {
                m.set_backlog(&topic, lag);
            }
        }
        let assigned = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.engine
            .update_status(|s| s.assigned_partitions = assigned);
        let mut q = self
            .engine
            .queries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for f in figures {
            q.insert((self.id, f.name.clone()), f);
        }
    }

    async fn command(&mut self, c: Command) {
        match c {
            Command::Drain(reply) => {
                self.drained = true;
                self.apply_pause();
                let windows_before: u64 = self
                    .slots
                    .iter()
                    .map(|s| s.query.stats.windows_emitted)
                    .sum();
                for s in &mut self.slots {
                    s.query.flush(&mut s.batch);
                }
                let windows_after: u64 = self
                    .slots
                    .iter()
                    .map(|s| s.query.stats.windows_emitted)
                    .sum();
                let records = self.pending_inputs;
                let delivered = self.deliver_and_commit().await;
                let _ = reply.send(DrainReport {
                    windows_flushed: windows_after - windows_before,
                    results_delivered: delivered,
                    records_processed: records,
                    committed: offsets(&self.committed),
                });
                self.engine.update_status(|s| s.drained = true);
            }
            Command::Resume(reply) => {
                self.drained = false;
                self.apply_pause();
                self.engine.update_status(|s| s.drained = false);
                let _ = reply.send(());
            }
            Command::Export(reply) => {
                let queries = self
                    .slots
                    .iter()
                    .map(|s| state::export_query(&s.query, &s.sql))
                    .collect();
                let _ = reply.send(WorkerState {
                    queries,
                    positions: offsets(&self.positions),
                    committed: offsets(&self.committed),
                });
            }
            Command::Import(doc, reply) => {
                let _ = reply.send(self.import(*doc));
            }
            Command::Cleanup(reply) => {
                let before: (u64, u64, u64) = self.slots.iter().fold((0, 0, 0), |a, s| {
                    let (g, b, _) = s.query.state_size();
                    (a.0 + g, a.1 + b, a.2 + s.query.stats.windows_emitted)
                });
                let now = now_ms();
                for s in &mut self.slots {
                    s.query.emit_closed(&mut s.batch);
                    // State of quiet sources: treat event time as following the wall clock.
                    s.query.on_tick(
                        now,
                        self.cfg.watermarks.idle_timeout_ms.max(1),
                        &mut s.batch,
                    );
                }
                let after: (u64, u64, u64) = self.slots.iter().fold((0, 0, 0), |a, s| {
                    let (g, b, _) = s.query.state_size();
                    (a.0 + g, a.1 + b, a.2 + s.query.stats.windows_emitted)
                });
                self.deliver_and_commit().await;
                let _ = reply.send(CleanupReport {
                    windows_closed: after.2 - before.2,
                    groups_freed: before.0.saturating_sub(after.0),
                    bytes_freed: before.1.saturating_sub(after.1),
                });
            }
            Command::Stop(reply) => {
                self.deliver_and_commit().await;
                let _ = self.producer.flush(Duration::from_secs(5));
                let tpl: HashMap<(String, i32), i64> = self.committed.clone();
                if !tpl.is_empty() {
                    let mut list = rdkafka::TopicPartitionList::new();
                    for ((t, p), o) in &tpl {
                        let _ = list.add_partition_offset(t, *p, rdkafka::Offset::Offset(*o));
                    }
                    let _ = self
                        .consumer
                        .commit(&list, rdkafka::consumer::CommitMode::Sync);
                }
                self.stopping = true;
                let _ = reply.send(());
            }
        }
    }

    fn import(&mut self, doc: StateDocument) -> Result<(), String> {
        if !self.should_pause() {
            return Err("enable maintenance mode (or drain) before importing state".into());
        }
        let running: Vec<(String, String)> = self
            .slots
            .iter()
            .map(|s| (s.query.name.clone(), s.sql.clone()))
            .collect();
        state::check_compatible(&doc, &running).map_err(|e| e.to_string())?;
        for qs in &doc.queries {
            if let Some(s) = self.slots.iter_mut().find(|s| s.query.name == qs.name) {
                state::import_query(&mut s.query, qs).map_err(|e| e.to_string())?;
            }
        }
        for p in &doc.positions {
            self.skip_below
                .insert((p.topic.clone(), p.partition), p.offset);
        }
        Ok(())
    }
}

fn offsets(m: &HashMap<(String, i32), i64>) -> Vec<PartitionOffset> {
    let mut v: Vec<PartitionOffset> = m
        .iter()
        .map(|((t, p), o)| PartitionOffset {
            topic: t.clone(),
            partition: *p,
            offset: *o,
        })
        .collect();
    v.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    v
}
