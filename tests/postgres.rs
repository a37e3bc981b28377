//! A real PostgreSQL server for tests (Debian `postgresql`): `initdb` into a
//! temporary directory, `postgres` listening on 127.0.0.1 on a free port
//! (and a unix socket in the same directory), trust authentication, no
//! durability (fsync off — these are test databases).
//!
//! The server refuses to run as root, so when the tests run as root it runs
//! as the `postgres` system user (the data directory is handed to that user).
//! Binaries: `$SLUICE_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! // One server per test binary, started on first use, stopped at exit:
//! let pg = sluice_tests::postgres::Postgres::shared()?;
//! // A fresh, empty database for this test:
//! let url = pg.fresh_database()?; // postgres://postgres@127.0.0.1:PORT/sluice_test_N
//! let store = sluice_automation::store::Store::connect(&url).await?;
//! # Ok(()) }
//! ```
//!
//! [`Postgres::start`] gives a server of your own instead (stopped and its
//! directory removed on drop), e.g. to kill it in the middle of a test with
//! [`Postgres::kill`].

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running PostgreSQL server.
pub struct Postgres {
    child: Mutex<Option<Child>>,
    port: u16,
    bin: PathBuf,
    dir: Option<tempfile::TempDir>,
    databases: AtomicU32,
}

/// Where the PostgreSQL server binaries are.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_PG_BIN")
        && !p.is_empty()
    {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (apt-get install postgresql)")?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
}

/// uid and gid of the `postgres` system user, from /etc/passwd.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("no `postgres` user to run the server as (apt-get install postgresql)")?;
    let f: Vec<&str> = line.split(':').collect();
    Ok((f[2].parse()?, f[3].parse()?))
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

static SHARED: OnceLock<Postgres> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(pg) = SHARED.get() {
        pg.stop();
        // A static is never dropped: remove the data directory here.
        if let Some(d) = &pg.dir {
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

impl Postgres {
    /// The server shared by every test of this binary (each test takes its own
    /// database with [`Postgres::fresh_database`]); stopped when the process exits.
    pub fn shared() -> anyhow::Result<&'static Postgres> {
        static START: Mutex<()> = Mutex::new(());
        let _one_at_a_time = START.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pg) = SHARED.get() {
            return Ok(pg);
        }
        // Started from a thread that lives as long as the process: the server
        // gets SIGKILL when that thread ends (PR_SET_PDEATHSIG), so even a
        // killed test binary leaves no server behind.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                let _ = tx.send(Postgres::launch(true));
                loop {
                    std::thread::park();
                }
            })?;
        let pg = rx.recv().context("postgres keeper thread")??;
        let pg = SHARED.get_or_init(|| pg);
        // SAFETY: registers a plain `extern "C" fn()` with the C runtime's exit handlers.
        unsafe {
            libc::atexit(stop_shared);
        }
        Ok(pg)
    }

    /// Starts a server of its own: initdb, then postgres on a free port; waits
    /// (bounded) until it accepts connections. Stopped when dropped.
    pub fn start() -> anyhow::Result<Postgres> {
        Postgres::launch(false)
    }

    fn launch(die_with_thread: bool) -> anyhow::Result<Postgres> {
        let bin = bin_dir()?;
        let user = if running_as_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("sluice-pg-").tempdir()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let out = as_user(Command::new(bin.join("initdb")), user, false)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .current_dir(dir.path())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut last = anyhow::anyhow!("postgres did not start");
        for _ in 0..3 {
            let port = crate::net::free_port();
            let log = std::fs::File::create(dir.path().join("postgres.log"))?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid))?;
            }
            let child = as_user(Command::new(bin.join("postgres")), user, die_with_thread)
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting postgres")?;
            let mut pg = Postgres {
                child: Mutex::new(Some(child)),
                port,
                bin: bin.clone(),
                dir: None,
                databases: AtomicU32::new(0),
            };
            match pg.wait_ready(Duration::from_secs(30)) {
                Ok(()) => {
                    pg.dir = Some(dir);
                    return Ok(pg);
                }
                Err(e) => {
                    pg.stop();
                    let log = std::fs::read_to_string(dir.path().join("postgres.log"))
                        .unwrap_or_default();
                    last = e.context(log);
                }
            }
        }
        Err(last)
    }

    fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("postgres exited with {status}");
            }
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()?
                .success();
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("postgres did not accept connections within {limit:?}")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `name` (which must exist).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A client program (`createdb`, `psql`…) aimed at this server as `postgres`.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        cmd
    }

    /// Creates a new empty database and returns its URL.
    pub fn fresh_database(&self) -> anyhow::Result<String> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("sluice_test_{}_{n}", std::process::id());
        let out = self
            .client("createdb")
            .arg(&name)
            .output()
            .context("running createdb")?;
        if !out.status.success() {
            bail!("createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(self.url(&name))
    }

    /// Runs SQL through `psql` on database `name`; returns its unaligned output.
    pub fn psql(&self, name: &str, sql: &str) -> anyhow::Result<String> {
        let out = self
            .client("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                name,
                "-c",
                sql,
            ])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Kills the server at once (SIGKILL to the postmaster), like a crash.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (fast shutdown, SIGINT), bounded; kills it if it lingers.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the postmaster we started; no memory involved.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's data directory parent (holds `postgres.log` and the socket).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        self.dir()
            .and_then(|d| std::fs::read_to_string(d.join("postgres.log")).ok())
            .unwrap_or_default()
    }
}

/// Runs the command as `user` (uid, gid) when given; with `die_with_thread`
/// the child gets SIGKILL when the spawning thread ends.
fn as_user(mut cmd: Command, user: Option<(u32, u32)>, die_with_thread: bool) -> Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid)
            .gid(gid)
            .env("HOME", "/tmp")
            .env_remove("PGDATA");
    }
    if die_with_thread {
        // SAFETY: prctl(2) in the child between fork and exec; async-signal-safe, no allocation.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    cmd
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
