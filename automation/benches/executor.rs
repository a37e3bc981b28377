//! Executor overhead: what running a step through Sluice costs beyond the
//! step's own work, with and without the SQLite run store.
//!
//! ```text
//! cargo bench -p sluice-automation --bench executor
//! ```
//!
//! 1. One run of a runbook of 1,000 no-op steps (`sleep: 0s`): the wall time
//!    per step is the executor's overhead (render, redact, record, scope).
//! 2. 1,000 concurrent runs of a 5-step runbook of `http` calls against a
//!    loopback server (four of the five steps template a header from the
//!    previous step's output). Right after, the same 5,000 requests are sent
//!    bare with the same client and concurrency; the CPU time difference per
//!    step is the executor's overhead there (wall time on a shared 2-core
//!    machine mostly measures the HTTP round trips). The median over
//!    repetitions of each pair's difference is printed, with its quartiles.
//!    Both sides use a fresh client of the shipped configuration, and the
//!    TCP connections each side opened are printed (a request that finds no
//!    idle connection opens one, so a difference there is part of the
//!    difference in CPU). Between repetitions the dropped clients' sockets
//!    are waited for, so none is inherited, and so is the dropped store's
//!    writer (closing checkpoints the WAL). The same is also measured at 100
//!    concurrent runs.
//!
//! With the store, the record writer thread's own CPU is printed beside the
//! totals (the rest of the store's cost is on the executor's side).
//!
//! Env: `REPS` (5; the median is printed), `RUNS` (`1000,100`), `STEPS` (1000),
//! `STORE` (`both`; `none` or `sqlite` measures one side only, e.g. to profile it).
//! Runs on a 2-worker tokio runtime. With the store, each repetition gets a
//! fresh SQLite file in a temporary directory (WAL, synchronous=NORMAL: the
//! shipped defaults).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_automation::config::Config;
use sluice_automation::exec::context::Services;
use sluice_automation::exec::executor::{RunRequest, RunStatus, execute};
use sluice_automation::runbook::{Runbook, load_str};
use sluice_automation::store::Store;

/// The allocator the `sluice` binary ships with (see its `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass; no other memory is touched.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time so far of this process's record writer threads (from
/// `/proc/self/task/*/schedstat`, nanoseconds on CPU): what of the store's
/// cost is the writer's own, the rest being the executor's side of it.
fn writer_cpu() -> Duration {
    writer_tasks()
        .iter()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse().ok()
        })
        .map(Duration::from_nanos)
        .sum()
}

/// `/proc/self/task/…` of this process's record writer threads.
fn writer_tasks() -> Vec<std::path::PathBuf> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| t.path())
        .filter(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.starts_with("sluice-store-wr"))
        })
        .collect()
}

/// Waits (up to 10 s) until the record writers of dropped stores have
/// exited: closing its connection checkpoints the WAL into the database
/// file, work that would otherwise land in the next repetition's numbers.
async fn writers_gone() {
    poll_until(|| writer_tasks().is_empty()).await;
}

/// Checks `done` every 20 ms until it holds, for up to 10 s.
async fn poll_until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn runbook(text: &str) -> Arc<Runbook> {
    Arc::new(load_str(Path::new("bench.yaml"), text).expect("bench runbook is valid"))
}

async fn services(with_store: bool, dir: &Path) -> Arc<Services> {
    let store = if with_store {
        let url = format!("sqlite://{}", dir.join("runs.db").display());
        Some(Store::connect(&url).await.expect("sqlite store"))
    } else {
        None
    };
    Arc::new(Services::new(Config::default(), store).expect("services"))
}

fn request() -> RunRequest {
    RunRequest {
        trigger: "manual".into(),
        who: "bench".into(),
        ..RunRequest::default()
    }
}

/// Wall and CPU time of one measured piece of work.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    /// Of `cpu`, the record writer thread's.
    writer: Duration,
}

async fn measure<F: std::future::Future<Output = ()>>(work: F) -> Sample {
    let (w, c, wc) = (Instant::now(), cpu_time(), writer_cpu());
    work.await;
    Sample {
        wall: w.elapsed(),
        cpu: cpu_time() - c,
        writer: writer_cpu().saturating_sub(wc),
    }
}

fn median(mut xs: Vec<Sample>) -> Sample {
    xs.sort_by_key(|s| s.wall);
    xs[xs.len() / 2]
}

fn micros(d: Duration, per: usize) -> f64 {
    d.as_secs_f64() * 1e6 / per as f64
}

async fn no_op_steps(reps: usize, steps: usize, with_store: bool) -> Sample {
    let mut text = String::from("name: noop\nsteps:\n");
    for i in 0..steps {
        text.push_str(&format!("  - {{id: s{i}, sleep: 0s}}\n"));
    }
    let rb = runbook(&text);
    let mut samples = Vec::new();
    for _ in 0..reps {
        let dir = tempfile::tempdir().expect("tempdir");
        let sv = services(with_store, dir.path()).await;
        let s = measure(async {
            let out = execute(&sv, rb.clone(), request()).await.expect("run");
            assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
        })
        .await;
        samples.push(s);
        drop(sv);
        writers_gone().await;
    }
    median(samples)
}

/// TCP connections the loopback server accepted.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

async fn serve() -> SocketAddr {
    use axum::serve::ListenerExt;
    let app = axum::Router::new().route(
        "/ok",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"ok": true, "n": 1})) }),
    );
    // 1,000 concurrent connects overflow the default accept queue (1,024
    // minus what the accept loop is behind by): dropped handshakes are then
    // retransmitted by kernel timers whose CPU lands on whatever thread runs.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(4096).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let listener = listener.tap_io(|_| {
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// `runs` concurrent runs of 5 HTTP steps against the same requests sent bare.
struct HttpResult {
    /// Medians of each side.
    exec: Sample,
    bare: Sample,
    /// CPU of the executor minus that of the bare requests measured right
    /// after it, per repetition, sorted: the machine's drift between
    /// repetitions (other tenants, DAMON) cancels within a pair.
    overheads: Vec<f64>,
    /// TCP connections each side opened, per repetition.
    exec_conns: usize,
    bare_conns: usize,
}

async fn http_runs(reps: usize, runs: usize, with_store: bool, addr: SocketAddr) -> HttpResult {
    let mut text =
        format!("name: five\nsteps:\n  - id: s0\n    http: {{url: 'http://{addr}/ok'}}\n");
    for i in 1..5 {
        text.push_str(&format!(
            "  - id: s{i}\n    http: {{url: 'http://{addr}/ok', headers: {{x-prev: '{{{{steps.s{}.output.status}}}}'}}}}\n",
            i - 1
        ));
    }
    let rb = runbook(&text);
    let url = format!("http://{addr}/ok");
    let (mut exec, mut bare) = (Vec::new(), Vec::new());
    let (mut exec_conns, mut bare_conns) = (0, 0);
    let fds_before = open_fds();
    for _ in 0..reps {
        let dir = tempfile::tempdir().expect("tempdir");
        // Each side starts with a fresh client of the same configuration.
        let sv = services(with_store, dir.path()).await;
        let client = sluice_automation::exec::context::http_client().expect("client");
        let before = ACCEPTED.load(Ordering::Relaxed);
        exec.push(
            measure(async {
                let tasks: Vec<_> = (0..runs)
                    .map(|_| {
                        let (sv, rb) = (sv.clone(), rb.clone());
                        tokio::spawn(async move { execute(&sv, rb, request()).await })
                    })
                    .collect();
                for t in tasks {
                    let out = t.await.expect("task").expect("run");
                    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
                }
            })
            .await,
        );
        let middle = ACCEPTED.load(Ordering::Relaxed);
        exec_conns += middle - before;
        bare.push(
            measure(async {
                let tasks: Vec<_> = (0..runs)
                    .map(|_| {
                        let (client, url) = (client.clone(), url.clone());
                        tokio::spawn(async move {
                            for _ in 0..5 {
                                let resp = client.get(&url).send().await.expect("request");
                                let body: serde_json::Value = resp.json().await.expect("json");
                                assert_eq!(body["ok"], true);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
            })
            .await,
        );
        bare_conns += ACCEPTED.load(Ordering::Relaxed) - middle;
        drop((sv, client));
        settle(fds_before).await;
        writers_gone().await;
    }
    let mut overheads: Vec<f64> = exec
        .iter()
        .zip(&bare)
        .map(|(e, b)| e.cpu.as_secs_f64() - b.cpu.as_secs_f64())
        .collect();
    overheads.sort_by(f64::total_cmp);
    HttpResult {
        exec: median(exec),
        bare: median(bare),
        overheads,
        exec_conns: exec_conns / reps,
        bare_conns: bare_conns / reps,
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Waits (up to 10 s) until the connections of the clients just dropped are
/// closed at both ends, so no repetition inherits another's sockets.
async fn settle(baseline: usize) {
    poll_until(|| open_fds() <= baseline + 8).await;
}

/// 1,000 concurrent requests hold 2,000 sockets (both ends): lift the soft
/// open-file limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    raise_fd_limit();
    let reps = env("REPS", 5).max(1);
    let runs: Vec<usize> = std::env::var("RUNS")
        .unwrap_or_else(|_| "1000,100".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let steps = env("STEPS", 1000);
    let store = std::env::var("STORE").unwrap_or_else(|_| "both".into());
    let sides: Vec<(&str, bool)> = [("no store", false), ("sqlite  ", true)]
        .into_iter()
        .filter(|(_, with)| match store.as_str() {
            "none" => !with,
            "sqlite" => *with,
            _ => true,
        })
        .collect();
    println!("executor overhead — median of {reps}, tokio multi-thread runtime with 2 workers\n");

    println!("{steps} no-op steps in one run:");
    for &(label, with_store) in &sides {
        let s = no_op_steps(reps, steps, with_store).await;
        println!(
            "  {label}: {:>8.1} ms   {:>9.0} steps/s   {:>6.1} µs/step wall   {:>6.1} µs/step CPU (writer thread {:>5.1})",
            s.wall.as_secs_f64() * 1e3,
            steps as f64 / s.wall.as_secs_f64(),
            micros(s.wall, steps),
            micros(s.cpu, steps),
            micros(s.writer, steps),
        );
    }

    let addr = serve().await;
    for runs in &runs {
        let total = runs * 5;
        println!("\n{runs} concurrent runs × 5 http steps ({total} steps) against 127.0.0.1:");
        for &(label, with_store) in &sides {
            let r = http_runs(reps, *runs, with_store, addr).await;
            let (e, b, o) = (r.exec, r.bare, &r.overheads);
            let per_step = |secs: f64| secs * 1e6 / total as f64;
            println!(
                "  {label}: {:>8.1} ms   {:>9.0} steps/s   CPU/step {:>6.1} µs (bare HTTP {:>6.1} µs) → overhead {:>6.1} µs/step (quartiles {:.1}–{:.1}; writer thread {:>5.1})   TCP connects {} (bare {})",
                e.wall.as_secs_f64() * 1e3,
                total as f64 / e.wall.as_secs_f64(),
                micros(e.cpu, total),
                micros(b.cpu, total),
                per_step(o[o.len() / 2]),
                per_step(o[o.len() / 4]),
                per_step(o[o.len() * 3 / 4]),
                micros(e.writer, total),
                r.exec_conns,
                r.bare_conns,
            );
        }
    }
}
