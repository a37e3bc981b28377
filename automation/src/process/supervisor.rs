use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to start one process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Unique name (`engine`, `engine-1` …).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Where stdout and stderr go (appended); inherited when `None`.
    pub log: Option<PathBuf>,
    pub restart: RestartPolicy,
    /// Time between SIGTERM and SIGKILL on stop.
    pub stop_grace: Duration,
}

impl ProcessSpec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            log: None,
            restart: RestartPolicy::default(),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// Restart behaviour when a process exits without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed before the process is left `Failed`.
    pub max_restarts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    /// Exited on its own; waiting out the backoff before a restart.
    Restarting,
    Stopped,
    /// Exited too often; no more restarts.
    Failed,
}

/// A snapshot of one supervised process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessStatus {
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub last_exit: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("process {0:?} is already running")]
    AlreadyRunning(String),
    #[error("no process named {0:?}")]
    Unknown(String),
    #[error("cannot start {name:?} ({program}): {source}")]
    Spawn {
        name: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
}

struct Managed {
    status: Arc<Mutex<ProcessStatus>>,
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts, watches and stops named child processes.
#[derive(Default)]
pub struct Supervisor {
    procs: Mutex<BTreeMap<String, Managed>>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `spec` and keeps it running per its restart policy. Fails if a
    /// process of that name is running or the program cannot be spawned.
    pub fn start(&self, spec: ProcessSpec) -> Result<ProcessStatus, SupervisorError> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = procs.get(&spec.name) {
            let state = existing
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .state;
            if matches!(state, ProcessState::Running | ProcessState::Restarting) {
                return Err(SupervisorError::AlreadyRunning(spec.name));
            }
        }
        let child = spawn(&spec)?;
        let status = Arc::new(Mutex::new(ProcessStatus {
            name: spec.name.clone(),
            state: ProcessState::Running,
            pid: child.id(),
            restarts: 0,
            started_at: Some(Utc::now()),
            last_exit: None,
        }));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(watch_loop(
            spec.clone(),
            child,
            Arc::clone(&status),
            stop_rx,
        ));
        let snapshot = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        procs.insert(
            spec.name,
            Managed {
                status,
                stop_tx,
                task,
            },
        );
        Ok(snapshot)
    }

    /// Stops a process: SIGTERM to its group, SIGKILL after the grace period.
    pub async fn stop(&self, name: &str) -> Result<ProcessStatus, SupervisorError> {
        let managed = {
            let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
            procs
                .remove(name)
                .ok_or_else(|| SupervisorError::Unknown(name.to_string()))?
        };
        let _ = managed.stop_tx.send(true);
        let _ = managed.task.await;
        let snapshot = managed
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(snapshot)
    }

    /// Stops every process (used on Ctrl-C).
    pub async fn stop_all(&self) {
        let names: Vec<String> = self
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            let _ = self.stop(&name).await;
        }
    }

    pub fn status(&self, name: &str) -> Option<ProcessStatus> {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs
            .get(name)
            .map(|m| m.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub fn list(&self) -> Vec<ProcessStatus> {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs
            .values()
            .map(|m| m.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }
}

fn spawn(spec: &ProcessSpec) -> Result<Child, SupervisorError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        // Its own process group: a stop reaches everything it started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let err = |source| SupervisorError::Spawn {
        name: spec.name.clone(),
        program: spec.program.display().to_string(),
        source,
    };
    if let Some(log) = &spec.log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(err)?;
        let file2 = file.try_clone().map_err(err)?;
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(file2));
    }
    cmd.spawn().map_err(err)
}

async fn watch_loop(
    spec: ProcessSpec,
    mut child: Child,
    status: Arc<Mutex<ProcessStatus>>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let set =
        |f: &dyn Fn(&mut ProcessStatus)| f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
    let mut restarts = 0u32;
    loop {
        tokio::select! {
            exit = child.wait() => {
                let how = match exit {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
                tracing::warn!(process = %spec.name, exit = %how, "Supervised process exited.");
                if restarts >= spec.restart.max_restarts {
                    set(&|s| { s.state = ProcessState::Failed; s.pid = None; s.last_exit = Some(how.clone()); });
                    return;
                }
                set(&|s| { s.state = ProcessState::Restarting; s.pid = None; s.last_exit = Some(how.clone()); });
                let backoff = spec
                    .restart
                    .initial_backoff
                    .saturating_mul(2u32.saturating_pow(restarts))
                    .min(spec.restart.max_backoff);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop_rx.changed() => {
                        set(&|s| s.state = ProcessState::Stopped);
                        return;
                    }
                }
                restarts += 1;
                match spawn(&spec) {
                    Ok(c) => {
                        child = c;
                        let pid = child.id();
                        set(&|s| { s.state = ProcessState::Running; s.pid = pid; s.restarts = restarts; s.started_at = Some(Utc::now()); });
                    }
                    Err(e) => {
                        tracing::error!(process = %spec.name, error = %e, "Restart failed.");
                        set(&|s| { s.state = ProcessState::Failed; s.last_exit = Some(e.to_string()); });
                        return;
                    }
                }
            }
            _ = stop_rx.changed() => {
                let how = terminate(&mut child, spec.stop_grace).await;
                set(&|s| { s.state = ProcessState::Stopped; s.pid = None; s.last_exit = Some(how.clone()); });
                return;
            }
        }
    }
}

/// SIGTERM the child's process group, wait up to `grace`, then SIGKILL it.
async fn terminate(child: &mut Child, grace: Duration) -> String {
    if let Some(pid) = child.id() {
        signal_group(pid, libc::SIGTERM);
        if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
            return status.to_string();
        }
        signal_group(pid, libc::SIGKILL);
    }
    match child.wait().await {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    }
}

fn signal_group(pid: u32, signal: i32) {
    // The child leads its own group (process_group(0)), so -pid addresses it.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str) -> ProcessSpec {
        let mut spec = ProcessSpec::new(name, "/bin/sh");
        spec.args = vec!["-c".into(), script.into()];
        spec.stop_grace = Duration::from_secs(2);
        spec
    }

    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid as i32, 0) == 0 }
    }

    #[tokio::test]
    async fn stop_terminates_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let sup = Supervisor::new();
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let st = sup.start(sh("p", &script)).unwrap();
        assert_eq!(st.state, ProcessState::Running);
        let grandchild = wait_for_file(&pidfile).await.trim().parse::<u32>().unwrap();
        assert!(alive(grandchild));
        let st = sup.stop("p").await.unwrap();
        assert_eq!(st.state, ProcessState::Stopped);
        // Reaped by init eventually; it must at least have been signalled.
        for _ in 0..50 {
            if !alive(grandchild) || is_zombie(grandchild) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("grandchild {grandchild} survived the stop");
    }

    #[tokio::test]
    async fn a_crashing_process_is_restarted_then_marked_failed() {
        let sup = Supervisor::new();
        let mut spec = sh("crashy", "exit 3");
        spec.restart = RestartPolicy {
            max_restarts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        };
        sup.start(spec).unwrap();
        for _ in 0..100 {
            if let Some(s) = sup.status("crashy")
                && s.state == ProcessState::Failed
            {
                assert_eq!(s.restarts, 2);
                assert_eq!(s.last_exit.as_deref(), Some("exit status: 3"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never failed: {:?}", sup.status("crashy"));
    }

    #[tokio::test]
    async fn starting_a_running_name_twice_is_refused() {
        let sup = Supervisor::new();
        sup.start(sh("dup", "sleep 30")).unwrap();
        assert!(matches!(
            sup.start(sh("dup", "sleep 30")),
            Err(SupervisorError::AlreadyRunning(_))
        ));
        sup.stop_all().await;
        assert!(sup.list().is_empty());
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let sup = Supervisor::new();
        let err = sup
            .start(ProcessSpec::new("ghost", "/nonexistent/sluice-engine"))
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/sluice-engine"),
            "{err}"
        );
    }

    async fn wait_for_file(path: &std::path::Path) -> String {
        for _ in 0..100 {
            if let Ok(s) = std::fs::read_to_string(path)
                && !s.trim().is_empty()
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} never written", path.display());
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(false)
    }
}
