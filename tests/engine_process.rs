//! A `sluice-engine` process for end-to-end tests: written config, admin API
//! on a free loopback port (the config says `listen: 127.0.0.1:0`; the port
//! is read from the line the engine prints), HTTP helpers, kill -9, SIGTERM
//! and start again with the same config.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// A running engine.
pub struct EngineProcess {
    bin: PathBuf,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the admin API.
    pub url: String,
    /// Sent as `Authorization: Bearer` on every request when set.
    pub token: Option<String>,
    http: reqwest::Client,
    starts: u32,
}

/// An HTTP answer: status and body (JSON when it parses, else a string).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl EngineProcess {
    /// Writes `config_yaml` to a fresh directory and starts `bin --config FILE ARGS…`.
    pub async fn start(bin: &Path, config_yaml: &str, args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("engine.yaml"), config_yaml)?;
        let mut e = Self {
            bin: bin.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            url: String::new(),
            token: None,
            http: sluice_automation::http_client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            starts: 0,
        };
        e.spawn()?;
        Ok(e)
    }

    /// The config file the engine was started with (tests may rewrite it before a reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("engine.yaml")
    }

    /// The process id of the running engine.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file of the current (latest) start.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("engine.{}.log", self.starts))
    }

    /// Waits (bounded) for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<i32> {
        let Some(c) = self.child.as_mut() else {
            bail!("not running");
        };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = c.try_wait()? {
                self.child = None;
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                bail!("engine still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the engine logged so far (for assertion messages).
    pub fn log(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            let text = std::fs::read_to_string(self.dir.path().join(format!("engine.{n}.log")))
                .unwrap_or_default();
            out.push_str(&format!("--- start {n}\n{text}"));
        }
        out
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path())?;
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(self.config_path())
            .args(&self.args)
            // SLUICE_TEST_ENGINE_LOG overrides the engine's log filter (e.g. `info,rdkafka=debug`).
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_ENGINE_LOG")
                    .unwrap_or_else(|_| "info,rdkafka=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("engine stdout")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut log = log;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                use std::io::Write as _;
                let _ = writeln!(log, "{line}");
                if let Some(url) = line.strip_prefix("sluice-engine admin listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => {
                self.url = url;
                Ok(())
            }
            Err(_) => bail!("engine did not print its admin address:\n{}", self.log()),
        }
    }

    /// Starts the engine again with the same config and arguments (after a kill or stop).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
        {
            bail!("the engine is still running");
        }
        self.spawn()
    }

    /// SIGKILL: no delivery, no commit, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> anyhow::Result<i32> {
        let Some(mut c) = self.child.take() else {
            bail!("not running");
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "engine did not exit within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One request; `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.with_context(|| path.to_owned())?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Ok(Reply { status, body, text })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<&str>) -> anyhow::Result<Reply> {
        self.call("POST", path, body).await
    }

    /// `PUT /admin/config` with a JSON merge patch.
    pub async fn patch_config(&self, patch: &str) -> anyhow::Result<Reply> {
        self.call("PUT", "/admin/config", Some(patch)).await
    }

    /// POST that must answer 200; returns the JSON body.
    pub async fn post_ok(&self, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
        let r = self.post(path, body).await?;
        anyhow::ensure!(r.status == 200, "POST {path}: {} {}", r.status, r.text);
        Ok(r.body)
    }

    /// One sample of a metric from `/metrics` (`name{labels}` exactly as exposed).
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let text = self.get("/metrics").await?.text;
        Ok(text.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        }))
    }

    /// Waits until `/ready` answers 200 (bounded).
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.get("/ready").await?;
            if r.status == 200 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not ready after {limit:?}: {}\n{}", r.text, self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
