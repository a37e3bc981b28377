//! Step records on SQLite through one writer with group commit.
//!
//! Every step writes twice (`running` before it executes, finished after —
//! the executor's durability contract), so these writes set the executor's
//! overhead. How they are made:
//!
//! - one dedicated connection writes every step record, in the order they
//!   were handed over, so its page cache stays valid (a pool rotating four
//!   connections re-read pages after every write of another connection);
//! - records handed over at the same moment (concurrent runs, parallel
//!   steps, a step's end and the next step's start) are committed together:
//!   one call of one transaction, one commit; a lone record is a single
//!   autocommit statement;
//! - a start waits until it is committed (nothing runs before its `running`
//!   record is durable). A finish does not wait: it is committed before or
//!   together with the next record handed over — the next step's start, so
//!   still before that step runs — and [`StepWriter::flush`] waits for a
//!   run's records before its final status is written. A finish that fails
//!   fails the run's next start or flush with its error;
//! - a run's next `seq` is kept in memory after its first step instead of
//!   `MAX(seq)` over all its steps on every start.
//!
//! Only this writer writes step starts and ends of the runs this process
//! executes (one executor per run), so the in-memory `seq` stays right; a run
//! resumed elsewhere reads `MAX(seq)` once there. If the process dies between
//! a step's end and the next commit, that step is found `running` — exactly
//! as if it had died during the step — and is resumed only if idempotent.

use std::collections::HashMap;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Records committed together at most.
const MAX_BATCH: usize = 256;
/// Runs whose next `seq` is remembered; beyond, the table starts over (a miss is one query).
const MAX_REMEMBERED_RUNS: usize = 10_000;

pub(super) const START_SQL: &str = "INSERT INTO steps (run_id, path, seq, kind, status, inputs, started_at) \
    VALUES ($1, $2, $3, $4, 'running', $5, $6) \
    ON CONFLICT (run_id, path) DO UPDATE SET status = 'running', inputs = excluded.inputs, \
    started_at = excluded.started_at, finished_at = NULL, error = NULL";

/// One step record, owned (it crosses to the writer task).
pub(super) enum Op {
    Start {
        run_id: String,
        path: String,
        kind: String,
        inputs: String,
        started_at: String,
    },
    Finish {
        run_id: String,
        path: String,
        status: String,
        outputs: String,
        logs: String,
        error: Option<String>,
        attempts: i64,
        finished_at: String,
    },
}

/// Who hears the outcome: a waiting caller, nobody (a finish), or a flush.
enum Reply {
    Wait(oneshot::Sender<Result<(), String>>),
    Behind,
}

enum Job {
    Write(Op, Reply),
    /// Answers once every record handed over before it is committed, with the
    /// first failure of `run_id`'s records that nobody waited for (kept for
    /// the next flush unless `take`).
    Flush {
        run_id: String,
        take: bool,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Handle to the writer task; it stops when every handle is dropped.
pub(super) struct StepWriter {
    tx: mpsc::UnboundedSender<Job>,
}

fn stopped() -> StoreError {
    StoreError::Corrupt("the step-record writer stopped".into())
}

async fn answer(wait: oneshot::Receiver<Result<(), String>>) -> Result<(), StoreError> {
    match wait.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::Db(sqlx::Error::Protocol(e))),
        Err(_) => Err(stopped()),
    }
}

impl StepWriter {
    /// Opens the writer's own connection and starts its task.
    pub(super) async fn open(options: &SqliteConnectOptions) -> Result<StepWriter, StoreError> {
        let conn = SqliteConnection::connect_with(options).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, rx));
        Ok(StepWriter { tx })
    }

    /// Writes one record; returns once it is committed.
    pub(super) async fn write(&self, op: Op) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job::Write(op, Reply::Wait(done)))
            .map_err(|_| stopped())?;
        answer(wait).await
    }

    /// Hands a record over without waiting for its commit (see the module doc).
    pub(super) fn write_behind(&self, op: Op) -> Result<(), StoreError> {
        self.tx
            .send(Job::Write(op, Reply::Behind))
            .map_err(|_| stopped())
    }

    /// Waits until every record handed over so far is committed; fails with
    /// (and, with `take`, forgets) a failure of `run_id`'s records nobody waited for.
    pub(super) async fn flush(&self, run_id: &str, take: bool) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job::Flush {
                run_id: run_id.to_string(),
                take,
                done,
            })
            .map_err(|_| stopped())?;
        answer(wait).await
    }
}

fn run_of(op: &Op) -> &str {
    match op {
        Op::Start { run_id, .. } | Op::Finish { run_id, .. } => run_id,
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut seqs: HashMap<String, i64> = HashMap::new();
    // First failure of a record nobody waited for, by run.
    let mut failed: HashMap<String, String> = HashMap::new();
    while let Some(first) = rx.recv().await {
        // Let records handed over at the same moment join this commit.
        tokio::task::yield_now().await;
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if seqs.len() > MAX_REMEMBERED_RUNS {
            seqs.clear();
        }
        let mut writes = Vec::new();
        let mut flushes = Vec::new();
        for job in jobs {
            match job {
                // A run whose earlier record failed writes nothing more: its next start fails.
                Job::Write(op, Reply::Wait(done)) if failed.contains_key(run_of(&op)) => {
                    let e = failed.get(run_of(&op)).cloned().unwrap_or_default();
                    let _ = done.send(Err(format!("an earlier step record failed: {e}")));
                }
                Job::Write(op, reply) => writes.push((op, reply)),
                Job::Flush { run_id, take, done } => flushes.push((run_id, take, done)),
            }
        }
        let ops: Vec<&Op> = writes.iter().map(|(op, _)| op).collect();
        let results = commit(&mut conn, &mut seqs, &ops).await;
        for ((op, reply), r) in writes.into_iter().zip(results) {
            match reply {
                Reply::Wait(done) => {
                    let _ = done.send(r);
                }
                Reply::Behind => {
                    if let Err(e) = r {
                        failed.entry(run_of(&op).to_string()).or_insert(e);
                    }
                }
            }
        }
        for (run_id, take, done) in flushes {
            let failure = if take {
                failed.remove(&run_id)
            } else {
                failed.get(&run_id).cloned()
            };
            let _ = done.send(match failure {
                Some(e) => Err(format!("a step record failed: {e}")),
                None => Ok(()),
            });
        }
        if failed.len() > MAX_REMEMBERED_RUNS {
            failed.clear();
        }
    }
}

/// Commits the batch. A lone record is one autocommit statement. Several are
/// one call of one transaction (`BEGIN; …; COMMIT`, in the order handed
/// over), so the batch costs one hand-off to SQLite's thread and one commit.
/// If the batch fails, each record is written on its own so a bad record
/// fails only its own caller.
async fn commit(
    conn: &mut SqliteConnection,
    seqs: &mut HashMap<String, i64>,
    batch: &[&Op],
) -> Vec<Result<(), String>> {
    if batch.is_empty() {
        return Vec::new();
    }
    if batch.len() > 1 {
        match commit_together(conn, seqs, batch).await {
            Ok(()) => return batch.iter().map(|_| Ok(())).collect(),
            Err(_) => {
                // Close the failed transaction; the remembered seqs may be ahead (gaps are harmless).
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
        }
    }
    let mut out = Vec::with_capacity(batch.len());
    for op in batch {
        out.push(apply(&mut *conn, seqs, op).await.map_err(|e| e.to_string()));
    }
    out
}

/// `START_SQL` / `FINISH_SQL` with their parameters numbered from `first`.
fn numbered(sql: &str, params: usize, first: usize) -> String {
    let mut out = sql.to_string();
    // Highest first, so `$1` does not rewrite the start of `$10`.
    for i in (1..=params).rev() {
        out = out.replace(&format!("${i}"), &format!("${{{}}}", first + i - 1));
    }
    out.replace("${", "$").replace('}', "")
}

async fn commit_together(
    conn: &mut SqliteConnection,
    seqs: &mut HashMap<String, i64>,
    batch: &[&Op],
) -> Result<(), sqlx::Error> {
    // In the order handed over (a step's finish before a later start of the same path).
    let mut seq_of = Vec::with_capacity(batch.len());
    for op in batch {
        seq_of.push(match op {
            Op::Start { run_id, .. } => Some(next_seq(conn, seqs, run_id).await?),
            Op::Finish { .. } => None,
        });
    }
    let mut sql = String::from("BEGIN;");
    let mut n = 1;
    for op in batch {
        let (text, params) = match op {
            Op::Start { .. } => (START_SQL, 6),
            Op::Finish { .. } => (super::FINISH_SQL, 8),
        };
        sql.push_str(&numbered(text, params, n));
        sql.push(';');
        n += params;
    }
    sql.push_str("COMMIT;");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (op, seq) in batch.iter().zip(seq_of) {
        q = bind(q, op, seq.unwrap_or_default());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// The run's next `seq`: remembered, or `MAX(seq) + 1` read once.
async fn next_seq(
    conn: &mut SqliteConnection,
    seqs: &mut HashMap<String, i64>,
    run_id: &str,
) -> Result<i64, sqlx::Error> {
    if let Some(n) = seqs.get_mut(run_id) {
        *n += 1;
        return Ok(*n);
    }
    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM steps WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
    seqs.insert(run_id.to_string(), max + 1);
    Ok(max + 1)
}

async fn apply(
    conn: &mut SqliteConnection,
    seqs: &mut HashMap<String, i64>,
    op: &Op,
) -> Result<(), sqlx::Error> {
    let (sql, seq) = match op {
        Op::Start { run_id, .. } => (START_SQL, next_seq(conn, seqs, run_id).await?),
        Op::Finish { .. } => (super::FINISH_SQL, 0),
    };
    bind(sqlx::query(sql), op, seq).execute(&mut *conn).await?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds `op`'s parameters in `START_SQL` / `FINISH_SQL` order (`seq`: a start's).
fn bind<'q>(q: Query<'q>, op: &'q Op, seq: i64) -> Query<'q> {
    match op {
        Op::Start {
            run_id,
            path,
            kind,
            inputs,
            started_at,
        } => q
            .bind(run_id)
            .bind(path)
            .bind(seq)
            .bind(kind)
            .bind(inputs)
            .bind(started_at),
        Op::Finish {
            run_id,
            path,
            status,
            outputs,
            logs,
            error,
            attempts,
            finished_at,
        } => q
            .bind(status)
            .bind(outputs)
            .bind(logs)
            .bind(error.as_deref())
            .bind(*attempts)
            .bind(finished_at)
            .bind(run_id)
            .bind(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered() {
        assert_eq!(
            numbered("a = $1, b = $10, c = $2", 10, 11),
            "a = $11, b = $20, c = $12"
        );
        let start = numbered(START_SQL, 6, 7);
        assert!(
            start.contains("VALUES ($7, $8, $9, $10, 'running', $11, $12)"),
            "{start}"
        );
    }
}
