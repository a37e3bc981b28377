//! Run history in a database: SQLite by default (`sqlite://path`), PostgreSQL
//! with the same SQL (`postgres://…`). Every run, every step (inputs after
//! templating with secrets redacted, outputs, logs, status, timings, attempts)
//! and every approval decision is recorded.

use std::str::FromStr;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde_json::Value as J;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use crate::exec::executor::RunStatus;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL `{0}` (use sqlite://PATH or postgres://…)")]
    BadUrl(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("run `{0}` not found")]
    NoSuchRun(String),
    #[error("run `{0}` has no approval waiting for a decision")]
    NoPendingApproval(String),
    /// The approval names who may decide it, and `who` is not one of them.
    #[error("{who} may not decide this approval (approvers: {allowed})")]
    NotAnApprover { who: String, allowed: String },
    /// The step refuses self-approval and `who` started the run.
    #[error("{who} started this run and may not approve it (the step refuses self-approval)")]
    SelfApproval { who: String },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("run store writer: {0}")]
    Writer(String),
    #[error("`{claim}` was already claimed by run {run_id}")]
    Claimed { claim: String, run_id: String },
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The run store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: std::sync::Arc<Pool>,
    /// SQLite files: run and step records go through one group-committing writer.
    writer: Option<std::sync::Arc<writer::Writer>>,
}

const FINISH_SQL: &str = "UPDATE steps SET status = $1, outputs = $2, logs = $3, error = $4, attempts = $5, finished_at = $6 \
                          WHERE run_id = $7 AND path = $8";

/// Runs the same query text on whichever database is configured.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &*$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// A parameter of a write that may go to the writer or a pool.
pub(crate) enum Arg {
    Text(Option<String>),
    Int(i64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(Some(s.to_string()))
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(Some(s))
    }
}

impl From<Option<&str>> for Arg {
    fn from(s: Option<&str>) -> Arg {
        Arg::Text(s.map(str::to_string))
    }
}

impl From<Option<String>> for Arg {
    fn from(s: Option<String>) -> Arg {
        Arg::Text(s)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

/// Binds `args` in order to a sqlx query of either database.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(n) => q.bind(*n),
            };
        }
        q
    }};
}

pub struct NewRun<'a> {
    pub id: &'a str,
    pub runbook: &'a str,
    /// `running`, or `queued` for a run waiting behind another one.
    pub status: RunStatus,
    pub trigger: &'a str,
    pub who: &'a str,
    pub params: &'a J,
    pub parent: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    /// The service instance executing it (`None` for the CLI).
    pub owner: Option<&'a str>,
    /// Guard key (`runbook|scope`) its cooldown and concurrency count against.
    pub guard_key: Option<&'a str>,
    /// Unique trigger claim (`schedule:ID@TIME`, `hook:NAME:KEY`): a second
    /// run with the same claim is refused, on every instance.
    pub claim: Option<&'a str>,
    /// What started it (alert, webhook body, schedule time), secrets redacted: for resuming.
    pub request: Option<&'a J>,
    /// The runbook text it runs, so a resumed run runs what it started with.
    pub definition: Option<&'a str>,
    /// The runbook file.
    pub source: Option<&'a str>,
}

impl<'a> NewRun<'a> {
    /// A run started by hand from the CLI: no owner, guard or claim.
    pub fn manual(
        id: &'a str,
        runbook: &'a str,
        trigger: &'a str,
        who: &'a str,
        params: &'a J,
        started_at: DateTime<Utc>,
    ) -> Self {
        NewRun {
            id,
            runbook,
            status: RunStatus::Running,
            trigger,
            who,
            params,
            parent: None,
            started_at,
            owner: None,
            guard_key: None,
            claim: None,
            request: None,
            definition: None,
            source: None,
        }
    }
}

pub struct StepStart<'a> {
    pub run_id: &'a str,
    pub path: &'a str,
    pub kind: &'a str,
    pub inputs: &'a J,
    pub started_at: DateTime<Utc>,
}

pub struct StepEnd<'a> {
    pub run_id: &'a str,
    pub path: &'a str,
    pub status: &'a str,
    pub outputs: &'a J,
    pub logs: &'a [String],
    pub error: Option<&'a str>,
    pub attempts: u32,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub id: String,
    pub runbook: String,
    pub status: String,
    pub trigger: String,
    pub who: String,
    pub params: J,
    pub parent_run: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Instance that executes (or executed) it.
    pub owner: Option<String>,
    pub guard_key: Option<String>,
    pub claim: Option<String>,
    /// Alert / webhook / schedule data it was started with (redacted).
    pub request: J,
    pub source: Option<String>,
    pub queued_at: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    pub path: String,
    pub kind: String,
    pub status: String,
    pub inputs: J,
    pub outputs: J,
    pub logs: Vec<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Process group of the step's program while it runs (`exec`, `shell`).
    pub pgid: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRecord {
    pub run_id: String,
    pub step_path: String,
    pub message: String,
    /// `pending`, `approved`, `rejected`.
    pub status: String,
    pub requested_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    /// Only these may decide (None: anyone with the operator role).
    pub approvers: Option<Vec<String>>,
    /// This one may not approve (the run's starter, when self-approval is refused).
    pub not_by: Option<String>,
}

/// Who may decide an approval, fixed when it is asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalPolicy {
    pub approvers: Option<Vec<String>>,
    pub not_by: Option<String>,
}

impl ApprovalRecord {
    /// Whether `who` may take this decision (rejecting one's own run is fine).
    pub fn allows(&self, who: &str, approve: bool) -> Result<(), StoreError> {
        if let Some(list) = &self.approvers
            && !list.iter().any(|a| a == who)
        {
            return Err(StoreError::NotAnApprover {
                who: who.to_string(),
                allowed: list.join(", "),
            });
        }
        if approve && self.not_by.as_deref() == Some(who) {
            return Err(StoreError::SelfApproval {
                who: who.to_string(),
            });
        }
        Ok(())
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json_text(v: &J) -> String {
    v.to_string()
}

fn parse_json(s: Option<String>) -> J {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(J::Null)
}

const RUN_COLUMNS: &str = "id, runbook, status, trigger_kind, who, params, parent_run, error, started_at, finished_at, \
     owner, guard_key, claim, request, source, queued_at";
const STEP_COLUMNS: &str =
    "path, kind, status, inputs, outputs, logs, error, attempts, started_at, finished_at, pgid";
const APPROVAL_COLUMNS: &str = "run_id, step_path, message, status, requested_at, decided_by, decided_at, comment, \
     approvers, not_by";

macro_rules! run_record {
    ($row:expr) => {{
        let row = $row;
        RunRecord {
            id: row.try_get("id")?,
            runbook: row.try_get("runbook")?,
            status: row.try_get("status")?,
            trigger: row.try_get("trigger_kind")?,
            who: row.try_get("who")?,
            params: parse_json(row.try_get("params")?),
            parent_run: row.try_get("parent_run")?,
            error: row.try_get("error")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            owner: row.try_get("owner")?,
            guard_key: row.try_get("guard_key")?,
            claim: row.try_get("claim")?,
            request: parse_json(row.try_get("request")?),
            source: row.try_get("source")?,
            queued_at: row.try_get("queued_at")?,
        }
    }};
}

macro_rules! step_record {
    ($row:expr) => {{
        let row = $row;
        StepRecord {
            path: row.try_get("path")?,
            kind: row.try_get("kind")?,
            status: row.try_get("status")?,
            inputs: parse_json(row.try_get("inputs")?),
            outputs: parse_json(row.try_get("outputs")?),
            logs: serde_json::from_value(parse_json(row.try_get("logs")?)).unwrap_or_default(),
            error: row.try_get("error")?,
            attempts: row.try_get("attempts")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            pgid: row.try_get("pgid")?,
        }
    }};
}

macro_rules! approval_record {
    ($row:expr) => {{
        let row = $row;
        ApprovalRecord {
            run_id: row.try_get("run_id")?,
            step_path: row.try_get("step_path")?,
            message: row.try_get("message")?,
            status: row.try_get("status")?,
            requested_at: row.try_get("requested_at")?,
            decided_by: row.try_get("decided_by")?,
            decided_at: row.try_get("decided_at")?,
            comment: row.try_get("comment")?,
            approvers: {
                let text: Option<String> = row.try_get("approvers")?;
                match text {
                    Some(t) => Some(
                        serde_json::from_str(&t)
                            .map_err(|e| StoreError::Corrupt(format!("approvers: {e}")))?,
                    ),
                    None => None,
                }
            },
            not_by: row.try_get("not_by")?,
        }
    }};
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut writer_path = None;
        let pool = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let options = if path == ":memory:" {
                SqliteConnectOptions::from_str("sqlite::memory:")?
            } else {
                if let Some(dir) = std::path::Path::new(path).parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
                }
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
            };
            let options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(StdDuration::from_secs(10))
                .foreign_keys(true)
                .pragma("wal_autocheckpoint", writer::WAL_AUTOCHECKPOINT.to_string());
            // One in-memory database must be one connection.
            let max = if path == ":memory:" { 1 } else { 4 };
            if path != ":memory:" {
                writer_path = Some(std::path::PathBuf::from(path));
            }
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max)
                    // A local file does not drop connections: no ping before each query.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await?,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(StdDuration::from_secs(10))
                    .connect(url)
                    .await?,
            )
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let mut store = Store {
            pool: std::sync::Arc::new(pool),
            writer: None,
        };
        let migrator = sqlx::migrate!("./migrations");
        on_pool!(store, p => { migrator.run(p).await?; });
        if let Some(path) = writer_path {
            store.writer = Some(std::sync::Arc::new(writer::Writer::open(&path).await?));
        }
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        match &*self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Records a new run. With a `claim` another run already holds, nothing is
    /// written and [`StoreError::Claimed`] names that run.
    pub async fn create_run(&self, run: &NewRun<'_>) -> Result<(), StoreError> {
        let sql = "INSERT INTO runs (id, runbook, status, trigger_kind, who, params, parent_run, started_at, \
                   owner, guard_key, claim, request, definition, source, queued_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                   ON CONFLICT DO NOTHING";
        let queued_at = (run.status == RunStatus::Queued).then(|| ts(run.started_at));
        let args = vec![
            Arg::from(run.id),
            run.runbook.into(),
            run.status.as_str().into(),
            run.trigger.into(),
            run.who.into(),
            json_text(run.params).into(),
            run.parent.into(),
            ts(run.started_at).into(),
            run.owner.into(),
            run.guard_key.into(),
            run.claim.into(),
            run.request.map(json_text).into(),
            run.definition.into(),
            run.source.into(),
            queued_at.into(),
        ];
        let written = self.write_run(run.id, sql, args, false).await?;
        if written == 1 {
            return Ok(());
        }
        match run.claim {
            Some(claim) => match self.run_by_claim(claim).await? {
                Some(existing) => Err(StoreError::Claimed {
                    claim: claim.to_string(),
                    run_id: existing.id,
                }),
                None => Err(StoreError::Corrupt(format!("run {} not written", run.id))),
            },
            None => Err(StoreError::Corrupt(format!(
                "run id {} already exists",
                run.id
            ))),
        }
    }

    /// The run holding a trigger claim.
    pub async fn run_by_claim(&self, claim: &str) -> Result<Option<RunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE claim = $1");
        on_pool!(self, p => {
            match sqlx::query(AssertSqlSafe(sql.clone())).bind(claim).fetch_optional(p).await? {
                Some(row) => Ok(Some(run_record!(&row))),
                None => Ok(None),
            }
        })
    }

    /// Writes a record of run `run_id`: on SQLite files through the step
    /// writer (one writer, in order with the run's steps, no lock contention
    /// between connections), otherwise on the pool. `last`: the run's final
    /// record. Returns the rows changed.
    async fn write_run(
        &self,
        run_id: &str,
        sql: &'static str,
        args: Vec<Arg>,
        last: bool,
    ) -> Result<u64, StoreError> {
        if let Some(w) = &self.writer {
            let op = writer::Op::Exec {
                run_id: run_id.to_string(),
                sql,
                args,
                last,
            };
            return Ok(w.write(op).await? as u64);
        }
        Ok(
            on_pool!(self, p => bind_args!(sqlx::query(sql), &args).execute(p).await?.rows_affected()),
        )
    }

    /// Replaces the recorded parameters (after defaults and templates are resolved).
    pub async fn set_run_params(&self, id: &str, params: &J) -> Result<(), StoreError> {
        let sql = "UPDATE runs SET params = $1 WHERE id = $2";
        self.write_run(id, sql, vec![json_text(params).into(), id.into()], false)
            .await?;
        Ok(())
    }

    /// The runbook text a run was started with.
    pub async fn run_definition(&self, id: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT definition FROM runs WHERE id = $1";
        let row: Option<Option<String>> =
            on_pool!(self, p => sqlx::query_scalar(sql).bind(id).fetch_optional(p).await?);
        Ok(row.flatten())
    }

    pub async fn set_run_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        let sql = "UPDATE runs SET status = $1 WHERE id = $2";
        let done = self
            .write_run(id, sql, vec![status.as_str().into(), id.into()], false)
            .await?;
        if done == 0 {
            return Err(StoreError::NoSuchRun(id.to_string()));
        }
        Ok(())
    }

    pub async fn finish_run(
        &self,
        id: &str,
        status: RunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // The run's step records first: a finished run never shows a step still running.
        self.flush_steps(id).await?;
        let sql = "UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4";
        let args = vec![
            status.as_str().into(),
            error.into(),
            ts(at).into(),
            id.into(),
        ];
        self.write_run(id, sql, args, true).await?;
        Ok(())
    }

    /// Records that a step is about to execute (before it has any effect).
    pub async fn start_step(&self, s: &StepStart<'_>) -> Result<(), StoreError> {
        let sql = "INSERT INTO steps (run_id, path, seq, kind, status, inputs, started_at) \
                   VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = $1), $3, 'running', $4, $5) \
                   ON CONFLICT (run_id, path) DO UPDATE SET status = 'running', inputs = excluded.inputs, \
                   started_at = excluded.started_at, finished_at = NULL, error = NULL";
        macro_rules! insert {
            ($on:expr) => {
                sqlx::query(sql)
                    .bind(s.run_id)
                    .bind(s.path)
                    .bind(s.kind)
                    .bind(json_text(s.inputs))
                    .bind(ts(s.started_at))
                    .execute($on)
                    .await?
            };
        }
        if let Some(w) = &self.writer {
            w.write(writer::Op::Start {
                run_id: s.run_id.to_string(),
                path: s.path.to_string(),
                kind: s.kind.to_string(),
                inputs: json_text(s.inputs),
                started_at: ts(s.started_at),
            })
            .await?;
            return Ok(());
        }
        match &*self.pool {
            // SQLite runs one writer at a time: MAX(seq) + 1 cannot be read twice.
            Pool::Sqlite(p) => {
                insert!(p);
            }
            // Concurrent starts in one run (parallel steps) would read the same
            // MAX(seq) under READ COMMITTED: take the run's row lock first.
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
                    .bind(s.run_id)
                    .execute(&mut *tx)
                    .await?;
                insert!(&mut *tx);
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Records how a step ended. On SQLite files the record is committed
    /// before (or with) the next one of this store — the next step's start —
    /// without the caller waiting; [`Store::finish_run`] waits for it.
    pub async fn finish_step(&self, s: &StepEnd<'_>) -> Result<(), StoreError> {
        let logs = serde_json::to_string(s.logs).unwrap_or_else(|_| "[]".into());
        let args = vec![
            Arg::from(s.status),
            json_text(s.outputs).into(),
            logs.into(),
            s.error.into(),
            i64::from(s.attempts).into(),
            ts(s.finished_at).into(),
            s.run_id.into(),
            s.path.into(),
        ];
        if let Some(w) = &self.writer {
            return w.write_behind(writer::Op::Exec {
                run_id: s.run_id.to_string(),
                sql: FINISH_SQL,
                args,
                last: false,
            });
        }
        on_pool!(self, p => { bind_args!(sqlx::query(FINISH_SQL), &args).execute(p).await?; });
        Ok(())
    }

    /// Records the process group a running step's program leads.
    pub async fn set_step_pgid(
        &self,
        run_id: &str,
        path: &str,
        pgid: i64,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE steps SET pgid = $1 WHERE run_id = $2 AND path = $3";
        on_pool!(self, p => { sqlx::query(sql).bind(pgid).bind(run_id).bind(path).execute(p).await?; });
        Ok(())
    }

    /// Marks steps still `running` as abandoned (cut off by a cancel or the run timeout).
    pub async fn abandon_running_steps(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.flush_steps(run_id).await?;
        let sql = "UPDATE steps SET status = $1, finished_at = $2, error = COALESCE(error, 'cut off by the run ending') \
                   WHERE run_id = $3 AND status = 'running'";
        on_pool!(self, p => { sqlx::query(sql).bind(crate::exec::executor::ABANDONED).bind(ts(at)).bind(run_id).execute(p).await?; });
        Ok(())
    }

    /// The newest runs first.
    pub async fn list_runs(&self, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT $1");
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).bind(limit).fetch_all(p).await? {
                out.push(run_record!(&row));
            }
        });
        Ok(out)
    }

    /// Runs not finished: running or waiting for approval (after a crash: interrupted ones).
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('running', 'waiting_approval', 'queued') ORDER BY started_at"
        );
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).fetch_all(p).await? {
                out.push(run_record!(&row));
            }
        });
        Ok(out)
    }

    /// Waits until the step records of this store handed over so far are
    /// committed; fails with a step record of `run_id` that could not be written.
    async fn flush_steps(&self, run_id: &str) -> Result<(), StoreError> {
        if let Some(w) = &self.writer {
            w.flush(run_id, true).await?;
        }
        Ok(())
    }

    /// One run and its steps in execution order.
    pub async fn get_run(&self, id: &str) -> Result<(RunRecord, Vec<StepRecord>), StoreError> {
        // Read what this store handed over (a failure is the run's to report, not the reader's).
        if let Some(w) = &self.writer {
            let _ = w.flush(id, false).await;
        }
        let run_sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let steps_sql = format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 ORDER BY seq");
        on_pool!(self, p => {
            let row = sqlx::query(AssertSqlSafe(run_sql.clone())).bind(id).fetch_optional(p).await?;
            let run = match row {
                Some(row) => run_record!(&row),
                None => return Err(StoreError::NoSuchRun(id.to_string())),
            };
            let mut steps = Vec::new();
            for row in sqlx::query(AssertSqlSafe(steps_sql.clone())).bind(id).fetch_all(p).await? {
                steps.push(step_record!(&row));
            }
            Ok((run, steps))
        })
    }

    /// Asks for a decision (idempotent: an existing request, decided or not, is kept).
    pub async fn request_approval(
        &self,
        run_id: &str,
        step_path: &str,
        message: &str,
        policy: &ApprovalPolicy,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO approvals (run_id, step_path, message, status, requested_at, approvers, not_by) \
                   VALUES ($1, $2, $3, 'pending', $4, $5, $6) ON CONFLICT (run_id, step_path) DO NOTHING";
        let approvers = policy
            .approvers
            .as_ref()
            .map(|a| serde_json::to_string(a).expect("strings serialize"));
        on_pool!(self, p => { sqlx::query(sql).bind(run_id).bind(step_path).bind(message).bind(ts(Utc::now()))
            .bind(approvers.as_deref()).bind(policy.not_by.as_deref()).execute(p).await?; });
        Ok(())
    }

    pub async fn approval(
        &self,
        run_id: &str,
        step_path: &str,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = $1 AND step_path = $2"
        );
        on_pool!(self, p => {
            match sqlx::query(AssertSqlSafe(sql.clone())).bind(run_id).bind(step_path).fetch_optional(p).await? {
                Some(row) => Ok(Some(approval_record!(&row))),
                None => Ok(None),
            }
        })
    }

    pub async fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, StoreError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' ORDER BY requested_at"
        );
        let mut out = Vec::new();
        on_pool!(self, p => {
            for row in sqlx::query(AssertSqlSafe(sql.clone())).fetch_all(p).await? {
                out.push(approval_record!(&row));
            }
        });
        Ok(out)
    }

    /// Approves or rejects every pending approval of a run; returns the step paths decided.
    pub async fn decide(
        &self,
        run_id: &str,
        approve: bool,
        who: &str,
        comment: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let status = if approve { "approved" } else { "rejected" };
        let pending = self.pending_of(run_id).await?;
        // A person's decision: each waiting approval's policy must allow it.
        for a in &pending {
            a.allows(who, approve)?;
        }
        self.record_decision(run_id, pending, status, who, comment)
            .await
    }

    /// Records a decision made by the approval step itself (its timeout default).
    pub async fn decide_as(
        &self,
        run_id: &str,
        status: &str,
        who: &str,
        comment: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let pending = self.pending_of(run_id).await?;
        self.record_decision(run_id, pending, status, who, comment)
            .await
    }

    /// The approvals of `run_id` waiting for a decision.
    async fn pending_of(&self, run_id: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut pending = self.pending_approvals().await?;
        pending.retain(|a| a.run_id == run_id);
        Ok(pending)
    }

    /// Decides `pending` (the run's waiting approvals) as `status`.
    async fn record_decision(
        &self,
        run_id: &str,
        pending: Vec<ApprovalRecord>,
        status: &str,
        who: &str,
        comment: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let paths: Vec<String> = pending.into_iter().map(|a| a.step_path).collect();
        if paths.is_empty() {
            return Err(StoreError::NoPendingApproval(run_id.to_string()));
        }
        let sql = "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, comment = $4 \
                   WHERE run_id = $5 AND step_path = $6 AND status = 'pending'";
        let now = ts(Utc::now());
        for path in &paths {
            on_pool!(self, p => { sqlx::query(sql)
                .bind(status)
                .bind(who)
                .bind(&now)
                .bind(comment)
                .bind(run_id)
                .bind(path)
                .execute(p)
                .await?; });
        }
        Ok(paths)
    }
}

// After the macros above, which it uses.
mod service;
mod writer;

pub use service::{DeliveryRecord, InstanceRecord, RunFilter, SilenceRecord};
