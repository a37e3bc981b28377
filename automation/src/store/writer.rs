//! Run and step records on SQLite through one writer thread with group commit.
//!
//! Every step writes twice (`running` before it executes, finished after —
//! the executor's durability contract), so these writes set the executor's
//! overhead. How they are made:
//!
//! - one dedicated thread owns one connection (rusqlite, the SQLite C API
//!   called directly) and writes every step record, and the run records of
//!   the runs this process executes, in the order they were handed over: no
//!   hop through a driver's worker thread, statements prepared once, no
//!   waiting for another connection's write lock, and a page cache no other
//!   connection's writes invalidate;
//! - records handed over at the same moment (concurrent runs, parallel
//!   steps, a step's end and the next step's start) are committed together in
//!   one transaction; a record nobody waits for (a step's end) waits up to
//!   [`HOLD`] for company, so a run's sequential steps cost one commit each;
//! - a start waits until it is committed (nothing runs before its `running`
//!   record is durable). A finish does not wait: it is committed before or
//!   together with the next record handed over — the next step's start, so
//!   still before that step runs — and [`Writer::flush`] waits for a
//!   run's records before its final status is written. A finish that fails
//!   fails the run's next start or flush with its error;
//! - a run's next `seq` is kept in memory after its first step instead of
//!   `MAX(seq)` over all its steps on every start;
//! - while a single run is busy, the writer and the caller waiting for a
//!   commit poll for up to [`SPIN`] before they sleep: on a VM a thread's
//!   wake-up costs tens of µs of CPU and latency, three of them per step were
//!   most of a sequential step's overhead, and that run's next record (or the
//!   commit's answer) usually comes sooner. With many runs busy nobody polls:
//!   batches are big, the wake-ups are shared, and the CPU is the runs'.
//!
//! Only this writer writes step starts and ends of the runs this process
//! executes (one executor per run), so the in-memory `seq` stays right; a run
//! resumed elsewhere reads `MAX(seq)` once there. If the process dies between
//! a step's end and the next commit, that step is found `running` — exactly
//! as if it had died during the step — and is resumed only if idempotent.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use super::StoreError;

/// Records committed together at most.
const MAX_BATCH: usize = 256;
/// Runs whose next `seq` is remembered; beyond, the table starts over (a miss is one query).
const MAX_REMEMBERED_RUNS: usize = 10_000;
/// How long records nobody waits for are held for a record that is waited
/// for (a step's end for the next step's start) before they are committed alone.
const HOLD: Duration = Duration::from_millis(2);
/// How long a batch with a waited record stays open for other busy runs'
/// records at most, while they keep coming (see [`LINGER_GAP`]).
const LINGER: Duration = Duration::from_micros(1500);
/// The batch closes once no record came for this long: runs that are busy
/// but not handing records over (a long step) do not hold it open.
const LINGER_GAP: Duration = Duration::from_micros(250);
/// With this many runs busy, a lingering writer sleeps through each gap and
/// then takes what came, instead of waking for every record: records come
/// tens of µs apart then, and each wake-up costs both threads a futex call.
const NAP_BUSY: usize = 16;
/// A run that handed over a record this recently is busy.
const ACTIVE: Duration = Duration::from_millis(20);
/// How long the writer, or a caller waiting for a commit, polls before it
/// sleeps while a single run is busy (see the module doc).
const SPIN: Duration = Duration::from_micros(200);
/// WAL pages after which a commit checkpoints (SQLite's default is 1,000).
/// A checkpoint syncs the WAL and the database file while the committing
/// thread waits, so fewer of them shorten a sequential run's steps (numbers
/// in docs/runbooks.md, "Executor overhead"); the WAL file grows to about
/// 40 MB before it is reused from its start.
pub(super) const WAL_AUTOCHECKPOINT: u32 = 10_000;
/// How long a write waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const START_SQL: &str = "INSERT INTO steps (run_id, path, seq, kind, status, inputs, started_at) \
    VALUES ($1, $2, $3, $4, 'running', $5, $6) \
    ON CONFLICT (run_id, path) DO UPDATE SET status = 'running', inputs = excluded.inputs, \
    started_at = excluded.started_at, finished_at = NULL, error = NULL";
const MAX_SEQ_SQL: &str = "SELECT COALESCE(MAX(seq), 0) FROM steps WHERE run_id = $1";

/// One write, owned (it crosses to the writer thread).
pub(super) enum Op {
    Start {
        run_id: String,
        path: String,
        kind: String,
        inputs: String,
        started_at: String,
    },
    /// Any other write of a run's records (a step's end, the run itself):
    /// `sql` numbers its parameters `$1`, `$2`, … in order of appearance,
    /// bound by position.
    Exec {
        run_id: String,
        sql: &'static str,
        args: Vec<super::Arg>,
        /// The run's final record (its end status): it hands over nothing more.
        last: bool,
    },
}

impl rusqlite::ToSql for super::Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            super::Arg::Text(t) => t.to_sql(),
            super::Arg::Int(n) => n.to_sql(),
        }
    }
}

/// Rows a write changed, or why it failed.
type Outcome = Result<usize, String>;

/// Who hears the outcome: a waiting caller, or nobody (a finish).
enum Reply {
    Wait(oneshot::Sender<Outcome>),
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
        done: oneshot::Sender<Outcome>,
    },
}

impl Job {
    fn waited_for(&self) -> bool {
        !matches!(self, Job::Write(_, Reply::Behind))
    }
}

/// Handle to the writer thread; it stops when every handle is dropped, after
/// committing what was handed over.
pub(super) struct Writer {
    tx: Sender<Job>,
    /// Callers waiting for an answer: one alone polls for it (see [`SPIN`]).
    waiting: Arc<AtomicUsize>,
}

fn stopped() -> StoreError {
    StoreError::Writer("the record writer stopped".into())
}

async fn answer(wait: oneshot::Receiver<Outcome>) -> Result<usize, StoreError> {
    match wait.await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(StoreError::Writer(e)),
        Err(_) => Err(stopped()),
    }
}

/// The writer's connection, with the pool's settings (WAL is the file's, set by the pool).
fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
    Ok(conn)
}

impl Writer {
    /// Opens the writer's own connection to the (existing, migrated) file and starts its thread.
    pub(super) async fn open(path: &Path) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel();
        let (ready, opened) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("sluice-store-writer".into())
            .spawn(move || match open_connection(&path) {
                Ok(conn) => {
                    let _ = ready.send(Ok(0));
                    run(conn, rx);
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("opening {}: {e}", path.display())));
                }
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the record writer: {e}")))?;
        answer(opened).await?;
        Ok(Writer {
            tx,
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Hands `job` over and waits for its answer. Alone, the caller polls
    /// for up to [`SPIN`] (yielding to the runtime's other tasks in between)
    /// before it sleeps: the answer usually comes sooner than a wake-up.
    async fn ask(
        &self,
        job: Job,
        mut wait: oneshot::Receiver<Outcome>,
    ) -> Result<usize, StoreError> {
        let waiting = Waiting::enter(&self.waiting);
        self.tx.send(job).map_err(|_| stopped())?;
        if waiting.alone() {
            let spun = Instant::now();
            while spun.elapsed() < SPIN {
                match wait.try_recv() {
                    Ok(r) => return r.map_err(StoreError::Writer),
                    Err(oneshot::error::TryRecvError::Closed) => return Err(stopped()),
                    Err(oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                }
            }
        }
        answer(wait).await
    }

    /// Writes one record; returns the rows it changed once it is committed.
    pub(super) async fn write(&self, op: Op) -> Result<usize, StoreError> {
        let (done, wait) = oneshot::channel();
        self.ask(Job::Write(op, Reply::Wait(done)), wait).await
    }

    /// Hands a record over without waiting for its commit (see the module doc).
    pub(super) fn write_behind(&self, op: Op) -> Result<(), StoreError> {
        self.tx
            .send(Job::Write(op, Reply::Behind))
            .map_err(|_| stopped())
    }

    /// Waits until every record handed over so far is committed; fails with
    /// (and, with `take`, forgets) a failure of `run_id`'s records nobody waited for.
    pub(super) async fn flush(&self, run_id: &str, take: bool) -> Result<usize, StoreError> {
        let (done, wait) = oneshot::channel();
        let job = Job::Flush {
            run_id: run_id.to_string(),
            take,
            done,
        };
        self.ask(job, wait).await
    }
}

/// One caller counted in [`Writer::waiting`] until dropped (also when its
/// future is dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }

    fn alone(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 1
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn run_of(op: &Op) -> &str {
    match op {
        Op::Start { run_id, .. } | Op::Exec { run_id, .. } => run_id,
    }
}

/// Moves what is queued into `jobs`, up to [`MAX_BATCH`].
fn drain(rx: &Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Runs that handed over records lately: while other runs are busy, a batch
/// with a waited record is held open briefly for theirs (see [`next_batch`]).
#[derive(Default)]
struct Activity {
    /// Run → when it last handed over a record.
    seen: HashMap<String, Instant>,
    /// At most one run was busy at the last batch.
    alone: bool,
}

impl Activity {
    fn note(&mut self, jobs: &[Job], now: Instant) {
        for job in jobs {
            match job {
                Job::Write(
                    Op::Exec {
                        run_id, last: true, ..
                    },
                    _,
                ) => {
                    self.seen.remove(run_id);
                }
                Job::Write(op, _) => {
                    let run = run_of(op);
                    match self.seen.get_mut(run) {
                        Some(t) => *t = now,
                        None => {
                            self.seen.insert(run.to_string(), now);
                        }
                    }
                }
                Job::Flush { .. } => {}
            }
        }
        if self.seen.len() > MAX_REMEMBERED_RUNS {
            self.seen.retain(|_, t| now.duration_since(*t) < ACTIVE);
        }
    }

    /// Runs that handed over a record within [`ACTIVE`].
    fn busy(&self, now: Instant) -> usize {
        self.seen
            .values()
            .filter(|t| now.duration_since(**t) < ACTIVE)
            .count()
    }
}

/// Adds the runs with a waited record in `jobs` to `runs`.
fn waiting_runs(jobs: &[Job], runs: &mut HashSet<String>) {
    for job in jobs {
        if let Job::Write(op, Reply::Wait(_)) = job
            && !runs.contains(run_of(op))
        {
            runs.insert(run_of(op).to_string());
        }
    }
}

/// The next job within `wait` (`None`: forever); with `spin`, polled for
/// up to [`SPIN`] of it before sleeping.
fn recv(rx: &Receiver<Job>, wait: Option<Duration>, spin: bool) -> Result<Job, RecvTimeoutError> {
    let spun = Instant::now();
    if spin {
        let budget = wait.map_or(SPIN, |w| w.min(SPIN));
        while spun.elapsed() < budget {
            match rx.try_recv() {
                Ok(job) => return Ok(job),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
    }
    match wait {
        Some(w) => rx.recv_timeout(w.saturating_sub(spun.elapsed())),
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    }
}

/// Waits up to `wait` for one more job, then takes what else is queued;
/// false if none came.
fn gather(rx: &Receiver<Job>, jobs: &mut Vec<Job>, wait: Duration, spin: bool) -> bool {
    match recv(rx, Some(wait), spin) {
        Ok(job) => {
            jobs.push(job);
            drain(rx, jobs);
            true
        }
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
    }
}

/// The next batch: what is queued, and — while nothing in it is waited for —
/// what arrives within [`HOLD`]. Once something in it is waited for and other
/// runs were recently busy, what they hand over joins it, for as long as
/// records keep coming ([`LINGER_GAP`]) and at most [`LINGER`]: one commit
/// then serves many runs (a commit costs more than the records in it, and
/// concurrent runs' records dirty the same pages), at the price of up to
/// [`LINGER`] before a step starts. A single run never waits: its next
/// record cannot come before this commit.
/// While at most one run was busy at the last batch, the writer polls
/// before it sleeps (see [`SPIN`]).
/// `None` once every handle is gone and all is done.
fn next_batch(rx: &Receiver<Job>, activity: &mut Activity) -> Option<Vec<Job>> {
    let spin = activity.alone;
    let mut jobs = vec![recv(rx, None, spin).ok()?];
    drain(rx, &mut jobs);
    while jobs.len() < MAX_BATCH
        && !jobs.iter().any(Job::waited_for)
        && gather(rx, &mut jobs, HOLD, spin)
    {}
    let start = Instant::now();
    activity.note(&jobs, start);
    // Counted once: runs rarely start or go quiet within a linger.
    let busy = activity.busy(start);
    activity.alone = busy <= 1;
    let mut waiting = HashSet::new();
    waiting_runs(&jobs, &mut waiting);
    while jobs.len() < MAX_BATCH && busy > waiting.len() {
        let from = jobs.len();
        let left = LINGER.saturating_sub(start.elapsed()).min(LINGER_GAP);
        if left.is_zero() {
            break;
        }
        let came = if busy >= NAP_BUSY {
            std::thread::sleep(left);
            drain(rx, &mut jobs);
            jobs.len() > from
        } else {
            gather(rx, &mut jobs, left, false)
        };
        if !came {
            break;
        }
        activity.note(&jobs[from..], Instant::now());
        waiting_runs(&jobs[from..], &mut waiting);
    }
    Some(jobs)
}

fn run(mut conn: Connection, rx: Receiver<Job>) {
    let mut mem = Memory::default();
    // First failure of a record nobody waited for, by run.
    let mut failed: HashMap<String, String> = HashMap::new();
    let mut activity = Activity::default();
    while let Some(jobs) = next_batch(&rx, &mut activity) {
        if mem.seqs.len() > MAX_REMEMBERED_RUNS {
            mem.seqs.clear();
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
        let results = commit(&mut conn, &mut mem, &ops);
        for ((op, reply), r) in writes.into_iter().zip(results) {
            match reply {
                Reply::Wait(done) => {
                    let _ = done.send(r);
                }
                Reply::Behind => {
                    if let Err(e) = r {
                        tracing::warn!(run = run_of(&op), error = %e, "step record not written");
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
                None => Ok(0),
            });
        }
        if failed.len() > MAX_REMEMBERED_RUNS {
            failed.clear();
        }
    }
}

/// Commits the batch in one transaction, in the order handed over (a step's
/// finish before a later start of the same path). If it fails, each record
/// is committed on its own so a bad record fails only its own caller.
fn commit(conn: &mut Connection, mem: &mut Memory, batch: &[&Op]) -> Vec<Outcome> {
    if batch.is_empty() {
        return Vec::new();
    }
    if batch.len() > 1 {
        // On failure the remembered seqs may be ahead of the rolled-back rows (gaps are harmless).
        if let Ok(rows) = in_transaction(conn, mem, batch) {
            return rows.into_iter().map(Ok).collect();
        }
    }
    batch
        .iter()
        .map(
            |op| match in_transaction(conn, mem, std::slice::from_ref(op)) {
                Ok(rows) => Ok(rows[0]),
                Err(e) => Err(e.to_string()),
            },
        )
        .collect()
}

/// `BEGIN IMMEDIATE`: the write lock is taken (waiting up to the busy
/// timeout) before `MAX(seq)` is read, so a read never has to be upgraded.
/// `BEGIN` and `COMMIT` are prepared once like the writes (rusqlite's
/// `Transaction` parses them anew each time).
fn in_transaction(
    conn: &mut Connection,
    mem: &mut Memory,
    batch: &[&Op],
) -> rusqlite::Result<Vec<usize>> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = (|| {
        let mut rows = Vec::with_capacity(batch.len());
        for op in batch {
            rows.push(apply(conn, mem, op)?);
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(rows)
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// The run's next `seq`: remembered, or `MAX(seq) + 1` read once.
fn next_seq(conn: &Connection, mem: &mut Memory, run_id: &str) -> rusqlite::Result<i64> {
    if let Some(n) = mem.seqs.get_mut(run_id) {
        *n += 1;
        return Ok(*n);
    }
    let max: i64 = prepare(conn, mem, MAX_SEQ_SQL)?.query_row([run_id], |row| row.get(0))?;
    mem.seqs.insert(run_id.to_string(), max + 1);
    Ok(max + 1)
}

/// What the writer keeps between batches besides its connection.
#[derive(Default)]
struct Memory {
    /// Run → the `seq` of its last step start.
    seqs: HashMap<String, i64>,
    /// Statements whose parameter names were checked (see [`prepare`]).
    checked: HashSet<&'static str>,
}

/// Prepares `sql` (once per connection), checking once that its parameters
/// are `$1`, `$2`, … in order of appearance, since they are bound by position.
fn prepare<'c>(
    conn: &'c Connection,
    mem: &mut Memory,
    sql: &'static str,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let stmt = conn.prepare_cached(sql)?;
    if mem.checked.contains(sql) {
        return Ok(stmt);
    }
    for i in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(i);
        if name.and_then(|n| n.strip_prefix('$')) != Some(&i.to_string()) {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "parameter {i} of `{sql}` is {name:?}, not ${i}"
            )));
        }
    }
    mem.checked.insert(sql);
    Ok(stmt)
}

fn apply(conn: &Connection, mem: &mut Memory, op: &Op) -> rusqlite::Result<usize> {
    Ok(match op {
        Op::Start {
            run_id,
            path,
            kind,
            inputs,
            started_at,
        } => {
            let seq = next_seq(conn, mem, run_id)?;
            prepare(conn, mem, START_SQL)?
                .execute(params![run_id, path, seq, kind, inputs, started_at])?
        }
        Op::Exec { sql, args, .. } => {
            prepare(conn, mem, sql)?.execute(rusqlite::params_from_iter(args))?
        }
    })
}
