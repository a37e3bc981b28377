//! The data path: workers that consume source topics, run the queries and
//! deliver results ([`worker`]), and the [`Pipeline`] that
//! starts, commands and stops them.
//!
//! Delivery guarantee (at-least-once): a worker commits an offset only after
//! every result derived from the records below it was acknowledged by the
//! broker (`acks=all`), and never past the oldest record still held in an
//! open window or waiting for room under a resource limit. After a crash, the
//! group resumes from the last commit and re-derives what was not yet
//! delivered.

mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::engine::{Engine, WorkerStatus};
use crate::state::{PartitionOffset, QueryState, StateDocument};
use worker::Worker;

/// What happens to open windows when the pipeline is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DrainWindows {
    /// Emit every open window now (partial results), then commit past their records.
    #[default]
    Emit,
    /// Keep open windows unemitted; offsets stay committed below their records,
    /// so after a restart the windows are rebuilt from Kafka and close normally.
    Keep,
}

/// What a drain did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    /// Whether intake was already drained before this call (nothing more to do).
    pub already_drained: bool,
    pub windows_flushed: u64,
    pub windows_kept: u64,
    /// Results delivered (acknowledged by the broker) by this drain.
    pub results_delivered: u64,
    /// Input records consumed since the last delivery, covered by this drain.
    pub records_pending: u64,
    /// Input records consumed by this pipeline since it started.
    pub records_consumed: u64,
    /// Offsets committed to the consumer group after the drain.
    pub committed: Vec<PartitionOffset>,
}

impl DrainReport {
    fn merge(&mut self, o: DrainReport) {
        self.already_drained &= o.already_drained;
        self.windows_flushed += o.windows_flushed;
        self.windows_kept += o.windows_kept;
        self.results_delivered += o.results_delivered;
        self.records_pending += o.records_pending;
        self.records_consumed += o.records_consumed;
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

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportRefused {
    #[error("enable maintenance mode (or drain) before importing state")]
    NotPaused,
    #[error(
        "state can be imported into one worker only; set processing.parallelism to 1 \
         (PUT /admin/config), import, then scale out"
    )]
    SeveralWorkers,
    #[error(transparent)]
    Document(#[from] crate::state::ImportError),
}

enum Command {
    Drain(DrainWindows, oneshot::Sender<DrainReport>),
    Resume(oneshot::Sender<()>),
    Export(oneshot::Sender<WorkerState>),
    Import(
        Box<StateDocument>,
        oneshot::Sender<Result<(), ImportRefused>>,
    ),
    Cleanup(oneshot::Sender<CleanupReport>),
    /// Deliver, commit and end; `true`: another member of the group has just
    /// left, so first take part in the rebalance that starts.
    Stop(oneshot::Sender<()>, bool),
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
        engine.clear_heartbeats();
        engine.clear_worker_status();
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
                    worker.engine.set_worker_status(
                        id,
                        WorkerStatus {
                            kafka_error: Some(format!("worker stopped: {error:#}")),
                            ..WorkerStatus::default()
                        },
                    );
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

    /// Stops intake, handles open windows per `windows`, delivers, commits.
    pub async fn drain(&self, windows: DrainWindows) -> anyhow::Result<DrainReport> {
        let mut total = DrainReport {
            already_drained: true,
            ..DrainReport::default()
        };
        for r in self.ask(|tx| Command::Drain(windows, tx)).await? {
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

    /// Imports a state document (one worker only: state is not split by partition).
    pub async fn import(&self, doc: StateDocument) -> anyhow::Result<Result<(), ImportRefused>> {
        let [only] = self.workers.as_slice() else {
            return Ok(Err(ImportRefused::SeveralWorkers));
        };
        let (tx, rx) = oneshot::channel();
        only.tx
            .send(Command::Import(Box::new(doc), tx))
            .await
            .context("pipeline worker stopped")?;
        tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .context("worker did not answer")?
            .context("pipeline worker stopped")
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
    ///
    /// One worker at a time, each gone (its consumer closed, so it has left
    /// the group) before the next is asked; the next first takes part in the
    /// rebalance that departure starts, so no member leaves mid-rebalance.
    pub async fn stop(self) {
        for (i, w) in self.workers.into_iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            if w.tx.send(Command::Stop(tx, i > 0)).await.is_ok() {
                let _ = tokio::time::timeout(COMMAND_TIMEOUT, rx).await;
            }
            let mut join = w.join;
            if tokio::time::timeout(COMMAND_TIMEOUT, &mut join)
                .await
                .is_err()
            {
                join.abort();
                let _ = join.await;
            }
        }
    }
}
