//! One pipeline worker: a consumer of the group, the queries on its
//! records, and a producer for their results. Single task; commands from the
//! admin API arrive on a channel and are handled between records.

mod delivery;
mod limit_wait;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::mpsc;

use super::{CleanupReport, Command, DrainReport, DrainWindows, ImportRefused, WorkerState};
use crate::config::{EngineConfig, LimitAction};
use crate::engine::{Engine, QueryFigures, WorkerStatus};
use crate::operator::aggregate::{LimitHit, Limits};
use crate::query::{Flow, OutputBatch, Query, QueryOptions, QueryStats, now_ms};
use crate::state::{PartitionOffset, StateDocument};
use crate::{sink, source, state};
use limit_wait::LimitWait;

/// One query as a worker runs it.
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

type TopicPartition = (String, i32);

pub(super) struct Worker {
    id: usize,
    pub(super) engine: Arc<Engine>,
    cfg: Arc<EngineConfig>,
    consumer: Arc<source::kafka::GroupConsumer>,
    producer: FutureProducer,
    slots: Vec<Slot>,
    by_topic: HashMap<String, Vec<usize>>,
    /// Next offset to read per partition.
    positions: HashMap<TopicPartition, i64>,
    committed: HashMap<TopicPartition, i64>,
    /// Records below these offsets are covered by imported state.
    skip_below: HashMap<TopicPartition, i64>,
    /// Records waiting for room under a resource limit (`on_limit: pause`).
    waiting: LimitWait,
    /// Source partitions assigned, per topic (as last told to the queries).
    assigned: HashMap<String, Vec<i32>>,
    pending_inputs: u64,
    consumed: u64,
    batch_started: Option<Instant>,
    drained: bool,
    /// `on_limit: pause` with `max_total_memory` exceeded.
    memory_paused: bool,
    over_total_memory: bool,
    paused: bool,
    stopping: bool,
    publishes: u64,
    /// Ages (ms since their Kafka timestamp) of the records processed since the last report.
    age_ms_sum: f64,
    age_n: u64,
    /// Until when the injected per-record delay keeps this worker busy.
    busy_until: Option<Instant>,
    kafka: KafkaHealth,
    last_commit: Instant,
    /// A stop waiting for the group: the reply, the deadline, and the
    /// assignment count to exceed first (a peer's departure to be rebalanced).
    stop_pending: Option<(tokio::sync::oneshot::Sender<()>, Instant, u64)>,
}

/// What the worker knows about its connection to the brokers.
#[derive(Debug, Default)]
struct KafkaHealth {
    last_message: Option<Instant>,
    last_error: Option<(Instant, String)>,
    metadata_ok: bool,
}

/// How long a consumer error counts against readiness when no record followed it.
const ERROR_MEMORY: Duration = Duration::from_secs(10);

/// How long a stop waits for a group join in progress to complete.
const JOIN_BEFORE_LEAVE: Duration = Duration::from_secs(15);

impl Worker {
    pub(super) fn new(
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
                partition_idle_ms: cfg.watermarks.partition_idle_timeout_ms,
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
            waiting: LimitWait::default(),
            assigned: HashMap::new(),
            pending_inputs: 0,
            consumed: 0,
            batch_started: None,
            drained: false,
            memory_paused: false,
            over_total_memory: false,
            paused: false,
            stopping: false,
            publishes: 0,
            age_ms_sum: 0.0,
            age_n: 0,
            busy_until: None,
            kafka: KafkaHealth::default(),
            stop_pending: None,
            last_commit: Instant::now(),
        })
    }

    pub(super) async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_report = Instant::now();
        let mut consumed_at_report = 0u64;
        let batch_size = self.cfg.processing.batch_size.value.max(1) as u64;
        let has_topics = !self.by_topic.is_empty();
        let consumer = self.consumer.clone();
        let mut stream = consumer.stream();
        self.engine.beat(self.id, "starting");
        // The queries are listed (with zero counts) from the start, not after a second.
        self.publish(0.0);
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
                    if let Some((_, deadline, after)) = &self.stop_pending
                        && ((self.consumer.context().settled()
                            && self.consumer.context().assigns() > *after)
                            || Instant::now() >= *deadline)
                        && let Some((reply, _, _)) = self.stop_pending.take()
                    {
                        self.stop(reply).await;
                        continue;
                    }
                    self.engine.beat(self.id, if self.should_pause() { "paused" } else { "consuming" });
                    self.track_assignment();
                    self.apply_pause();
                    let now = now_ms();
                    let idle = self.cfg.watermarks.idle_timeout_ms;
                    for s in &mut self.slots {
                        s.query.on_tick(now, idle, &mut s.batch);
                    }
                    self.check_limits();
                    let pending = self.has_outputs() || self.pending_inputs > 0;
                    if !pending || self.deliver_pending().await.is_some() {
                        self.commit_if_due();
                    }
                    if last_report.elapsed() >= Duration::from_secs(1) {
                        let secs = last_report.elapsed().as_secs_f64();
                        self.publish((self.consumed - consumed_at_report) as f64 / secs);
                        consumed_at_report = self.consumed;
                        last_report = Instant::now();
                    }
                }
                msg = stream.next(), if has_topics => {
                    let mut next = msg;
                    loop {
                        match next {
                            Some(Ok(m)) => {
                                let m = m.detach();
                                let payload = m.payload().unwrap_or(b"");
                                let at = m.timestamp().to_millis();
                                self.handle(m.topic(), m.partition(), m.offset(), at, payload, m.key()).await;
                                self.kafka.last_message = Some(Instant::now());
                            }
                            Some(Err(error)) => {
                                tracing::warn!(worker = self.id, %error, "Kafka consumer error.");
                                self.engine.metrics.errors_retryable.add(1);
                                self.kafka.last_error = Some((Instant::now(), error.to_string()));
                                break;
                            }
                            None => return Ok(()),
                        }
                        if self.pending_inputs >= batch_size || self.paused {
                            break;
                        }
                        // Take what is already fetched without waiting: under load
                        // batches fill up, when traffic is light results go out at once.
                        match stream.next().now_or_never() {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                    if self.deliver_pending().await.is_some() {
                        self.commit_if_due();
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
        produced_at_ms: Option<i64>,
        payload: &[u8],
        key: Option<&[u8]>,
    ) {
        if !self
            .assigned
            .get(topic)
            .is_some_and(|v| v.contains(&partition))
        {
            // First record of a new assignment: tell the queries before it counts.
            self.track_assignment();
        }
        let tp = (topic.to_owned(), partition);
        if self.skip_below.get(&tp).is_some_and(|s| offset < *s) {
            // Already covered by imported state.
            self.positions.insert(tp, offset + 1);
            return;
        }
        if let Some(f) = &self.engine.faults {
            self.busy(f.delay()).await;
        }
        if let Some(idx) = self.by_topic.get(topic) {
            for &i in idx {
                if self.waiting.holds_slot(i) {
                    // Keep this query's input in order behind the record waiting for room.
                    self.waiting.push(i, &tp, offset, payload, key);
                    continue;
                }
                let s = &mut self.slots[i];
                let t0 = Instant::now();
                let r = s
                    .query
                    .process(payload, key, Some((partition, offset)), &mut s.batch);
                s.exec_ns += t0.elapsed().as_nanos() as u64;
                s.exec_n += 1;
                match r {
                    Ok(Flow::Pause) => self.waiting.push(i, &tp, offset, payload, key),
                    Ok(Flow::Continue) => {}
                    Err(error) => {
                        tracing::debug!(query = %s.query.name, %error, "Record not processed.")
                    }
                }
            }
        }
        if !self.waiting.is_empty() && !self.paused {
            // Stop intake at once rather than at the next tick.
            self.apply_pause();
        }
        self.engine.metrics.records_processed.add(1);
        if let Some(at) = produced_at_ms {
            self.age_ms_sum += (now_ms() - at).max(0) as f64;
            self.age_n += 1;
        }
        self.positions.insert(tp, offset + 1);
        self.consumed += 1;
        self.pending_inputs += 1;
        self.batch_started.get_or_insert_with(Instant::now);
    }

    /// The injected per-record delay: `d` of this worker's time per record,
    /// slept in timer-sized pieces so that sub-millisecond delays add up to
    /// exactly `1/d` records per second when saturated (a sleep per record
    /// would round each one up to the timer's millisecond).
    async fn busy(&mut self, d: Duration) {
        if d.is_zero() {
            self.busy_until = None;
            return;
        }
        let now = Instant::now();
        // Idle time is not credit, a late wake-up is (up to a few ticks).
        let from = match self.busy_until {
            Some(t) if t + Duration::from_millis(5) > now => t,
            _ => now,
        };
        let until = from + d;
        self.busy_until = Some(until);
        if until > now + Duration::from_millis(1) {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    fn has_outputs(&self) -> bool {
        self.slots.iter().any(|s| !s.batch.is_empty())
    }

    fn should_pause(&self) -> bool {
        self.engine.maintenance() || self.drained || self.memory_paused || !self.waiting.is_empty()
    }

    fn apply_pause(&mut self) {
        let want = self.should_pause();
        // Re-applied every tick: a rebalance may hand us new, unpaused partitions.
        if want || self.paused {
            source::kafka::set_paused(&self.consumer, want);
        }
        self.paused = want;
    }

    /// Tells windowed queries which source partitions this worker owns now.
    fn track_assignment(&mut self) {
        let Ok(tpl) = self.consumer.assignment() else {
            return;
        };
        let mut now: HashMap<String, Vec<i32>> = HashMap::new();
        for e in tpl.elements() {
            now.entry(e.topic().to_owned())
                .or_default()
                .push(e.partition());
        }
        for v in now.values_mut() {
            v.sort_unstable();
        }
        if now == self.assigned {
            return;
        }
        let wall = now_ms();
        for (topic, idx) in &self.by_topic {
            let parts = now.get(topic).map(Vec::as_slice).unwrap_or(&[]);
            for &i in idx {
                self.slots[i].query.set_partitions(parts, wall);
            }
        }
        // Partitions handed to another member: their positions are no longer ours to commit.
        self.positions
            .retain(|(t, p), _| now.get(t).is_some_and(|v| v.contains(p)));
        self.assigned = now;
    }

    /// Limits across queries (`max_total_memory`) and records waiting for room.
    fn check_limits(&mut self) {
        let l = &self.cfg.resource_limits;
        let total: u64 = self.engine.operator_bytes();
        if total > l.max_total_memory.value {
            if !self.over_total_memory {
                // Counted once per crossing, not once per check.
                self.engine.metrics.violation("memory", 1);
                tracing::warn!(
                    operator_bytes = total,
                    limit = l.max_total_memory.value,
                    action = ?l.on_limit,
                    "Resource limit max_total_memory exceeded."
                );
            }
            self.over_total_memory = true;
            match l.on_limit {
                LimitAction::EvictOldest => {
                    if let Some(s) = self.slots.iter_mut().max_by_key(|s| s.query.state_size().1) {
                        s.query.emit_oldest(&mut s.batch);
                    }
                }
                LimitAction::Pause => self.memory_paused = true,
                LimitAction::RejectNewGroups => {}
            }
        } else {
            self.over_total_memory = false;
            self.memory_paused = false;
        }
        if !self.waiting.is_empty() {
            let slots = &mut self.slots;
            self.waiting.retry(|i, payload, key, origin| {
                let s = &mut slots[i];
                s.query.has_room()
                    && !matches!(
                        s.query
                            .process_held(payload, key, Some(origin), &mut s.batch),
                        Ok(Flow::Pause)
                    )
            });
        }
    }

    /// Delivers every pending result (retrying through the breaker); returns
    /// how many, or `None` when shutdown interrupted delivery: then nothing may
    /// be committed (the group re-reads those records after the restart).
    async fn deliver_pending(&mut self) -> Option<u64> {
        let Some(delivered) = self.deliver().await else {
            tracing::warn!(
                worker = self.id,
                "Shutdown interrupted delivery; offsets left uncommitted."
            );
            return None;
        };
        self.pending_inputs = 0;
        self.batch_started = None;
        Some(delivered)
    }

    /// Delivers every pending result, then commits now (drain, cleanup, stop).
    async fn deliver_and_commit(&mut self) -> u64 {
        let Some(delivered) = self.deliver_pending().await else {
            return 0;
        };
        self.commit();
        delivered
    }

    /// Commits when `processing.commit_interval_ms` has passed since the last commit.
    fn commit_if_due(&mut self) {
        let every = Duration::from_millis(self.cfg.processing.commit_interval_ms.max(10));
        if self.last_commit.elapsed() >= every {
            self.commit();
        }
    }

    /// The offset that may be committed per partition: the lowest of the next
    /// offset to read, the oldest offset held by an open window and the
    /// oldest record waiting for room.
    fn committable(&self) -> HashMap<TopicPartition, i64> {
        let mut out = HashMap::new();
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
            if let Some(w) = self.waiting.oldest(topic, *p) {
                off = off.min(w);
            }
            out.insert((topic.clone(), *p), off);
        }
        out
    }

    fn commit(&mut self) {
        self.last_commit = Instant::now();
        let to_commit: HashMap<TopicPartition, i64> = self
            .committable()
            .into_iter()
            .filter(|(k, off)| self.committed.get(k) != Some(off))
            .collect();
        match source::kafka::commit(&self.consumer, &to_commit) {
            Ok(()) => self.committed.extend(to_commit),
            Err(error) => {
                tracing::warn!(worker = self.id, %error, "Offset commit failed; will retry.");
                self.engine.metrics.errors_retryable.add(1);
            }
        }
    }

    /// Readiness of the Kafka side: the group join completed and no consumer
    /// error without a record since; without source topics, the brokers
    /// answer a metadata request.
    fn kafka_status(&mut self) -> (bool, Option<String>) {
        let recent_error = self
            .kafka
            .last_error
            .as_ref()
            .filter(|(at, _)| at.elapsed() < ERROR_MEMORY)
            .filter(|(at, _)| self.kafka.last_message.is_none_or(|m| m < *at));
        if let Some((_, e)) = recent_error {
            return (false, Some(e.clone()));
        }
        if !self.by_topic.is_empty() {
            return if self.consumer.context().joined() {
                (true, None)
            } else {
                (
                    false,
                    Some(format!(
                        "joining consumer group `{}` (no assignment yet)",
                        self.cfg.kafka.group_id
                    )),
                )
            };
        }
        if !self.kafka.metadata_ok || self.publishes.is_multiple_of(5) {
            self.kafka.metadata_ok = self
                .consumer
                .fetch_metadata(None, Duration::from_millis(500))
                .is_ok();
        }
        if self.kafka.metadata_ok {
            (true, None)
        } else {
            (false, Some("no answer from the brokers".into()))
        }
    }

    fn publish(&mut self, throughput: f64) {
        let m = &self.engine.metrics;
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
            for hit in [LimitHit::Groups, LimitHit::Memory, LimitHit::Windows] {
                let i = hit as usize;
                m.violation(
                    hit.label(),
                    d(st.violations_by_limit[i], s.reported.violations_by_limit[i]),
                );
            }
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
        let backlog = (self.publishes % 5 == 1).then(|| {
            source::kafka::lag_by_topic(&self.consumer, &self.positions)
                .into_iter()
                .collect()
        });
        m.report(self.id, throughput, self.age_ms_sum, self.age_n, backlog);
        self.age_ms_sum = 0.0;
        self.age_n = 0;
        let assigned: usize = self.assigned.values().map(Vec::len).sum();
        let (kafka_ok, kafka_error) = self.kafka_status();
        let waiting = self.waiting.len();
        self.engine.set_worker_status(
            self.id,
            WorkerStatus {
                assigned_partitions: assigned,
                kafka_ok,
                kafka_error,
                records_waiting_for_room: waiting,
            },
        );
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
            Command::Drain(windows, reply) => {
                let report = self.drain(windows).await;
                let _ = reply.send(report);
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
                let report = self.cleanup().await;
                let _ = reply.send(report);
            }
            Command::Stop(reply, peer_left) => {
                let ctx = self.consumer.context();
                // After a peer left, wait for one more assignment (the rebalance).
                let after = ctx.assigns().saturating_sub(u64::from(!peer_left));
                if self.by_topic.is_empty() || (ctx.settled() && ctx.assigns() > after) {
                    self.stop(reply).await;
                } else {
                    // Leaving a group in the middle of a join or rebalance leaves
                    // some brokers (Tansu 0.6) with a departed member and a group
                    // that never settles: let it settle first (bounded).
                    self.engine
                        .beat(self.id, "stopping: waiting for the group to settle");
                    self.stop_pending = Some((reply, Instant::now() + JOIN_BEFORE_LEAVE, after));
                }
            }
        }
    }

    /// Delivers and commits what is pending, then ends the worker loop.
    async fn stop(&mut self, reply: tokio::sync::oneshot::Sender<()>) {
        self.deliver_and_commit().await;
        let _ = self.producer.flush(Duration::from_secs(5));
        if !self.committed.is_empty() {
            let mut list = rdkafka::TopicPartitionList::new();
            for ((t, p), o) in &self.committed {
                let _ = list.add_partition_offset(t, *p, rdkafka::Offset::Offset(*o));
            }
            let _ = self
                .consumer
                .commit(&list, rdkafka::consumer::CommitMode::Sync);
        }
        self.stopping = true;
        let _ = reply.send(());
    }

    async fn drain(&mut self, windows: DrainWindows) -> DrainReport {
        let already_drained = self.drained;
        self.drained = true;
        self.apply_pause();
        let emitted =
            |slots: &[Slot]| -> u64 { slots.iter().map(|s| s.query.stats.windows_emitted).sum() };
        let before = emitted(&self.slots);
        if windows == DrainWindows::Emit {
            for s in &mut self.slots {
                s.query.flush(&mut s.batch);
            }
        }
        let windows_flushed = emitted(&self.slots) - before;
        let windows_kept = self
            .slots
            .iter()
            .map(|s| s.query.state_size().2 as u64)
            .sum();
        let records_pending = self.pending_inputs;
        self.engine.beat(self.id, "draining");
        let results_delivered = self.deliver_and_commit().await;
        DrainReport {
            already_drained,
            windows_flushed,
            windows_kept,
            results_delivered,
            records_pending,
            records_consumed: self.consumed,
            committed: offsets(&self.committed),
        }
    }

    async fn cleanup(&mut self) -> CleanupReport {
        let size = |slots: &[Slot]| -> (u64, u64, u64) {
            slots.iter().fold((0, 0, 0), |a, s| {
                let (g, b, _) = s.query.state_size();
                (a.0 + g, a.1 + b, a.2 + s.query.stats.windows_emitted)
            })
        };
        let before = size(&self.slots);
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
        let after = size(&self.slots);
        self.deliver_and_commit().await;
        CleanupReport {
            windows_closed: after.2 - before.2,
            groups_freed: before.0.saturating_sub(after.0),
            bytes_freed: before.1.saturating_sub(after.1),
        }
    }

    fn import(&mut self, doc: StateDocument) -> Result<(), ImportRefused> {
        if !self.should_pause() {
            return Err(ImportRefused::NotPaused);
        }
        let running: Vec<(String, String)> = self
            .slots
            .iter()
            .map(|s| (s.query.name.clone(), s.sql.clone()))
            .collect();
        state::check_compatible(&doc, &running)?;
        for s in &mut self.slots {
            let parts: Vec<&state::QueryState> = doc
                .queries
                .iter()
                .filter(|q| q.name == s.query.name)
                .collect();
            state::import_query(&mut s.query, &parts)?;
        }
        // Read on from the document's positions: records below them are in the
        // imported state; records this engine had read beyond them are read again.
        for p in &doc.positions {
            let tp = (p.topic.clone(), p.partition);
            self.skip_below.insert(tp.clone(), p.offset);
            if self
                .assigned
                .get(&p.topic)
                .is_some_and(|v| v.contains(&p.partition))
            {
                match self.consumer.seek(
                    &p.topic,
                    p.partition,
                    rdkafka::Offset::Offset(p.offset),
                    Duration::from_secs(5),
                ) {
                    Ok(()) => {
                        self.positions.insert(tp, p.offset);
                    }
                    Err(error) => tracing::warn!(
                        topic = %p.topic, partition = p.partition, %error,
                        "Could not seek to the imported position; records below it are skipped."
                    ),
                }
            }
        }
        // The next tick tells the queries their partitions again.
        self.assigned.clear();
        self.commit();
        Ok(())
    }
}

fn offsets(m: &HashMap<TopicPartition, i64>) -> Vec<PartitionOffset> {
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
