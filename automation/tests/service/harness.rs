//! A real `sluice serve` in the test process: config, runbooks and rules
//! written into a temp dir, a fresh SQLite store, the API on a free loopback
//! port; plus small real servers it talks to (a `/metrics` endpoint with a
//! settable gauge, a recorder answering like Slack).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use reqwest::StatusCode;
use serde_json::{Value as J, json};
use sluice_automation::schedule::scheduler::{Clock, SystemClock};
use sluice_automation::service::{Handle, Options, Service};

pub const VIEWER: &str = "viewer-token-0123456789";
pub const OPERATOR: &str = "operator-token-0123456789";
pub const ADMIN: &str = "admin-token-0123456789";
pub const HOOK_SECRET: &str = "hook-secret-0123456789abcdef";

/// Tokens, a fast lease and a hook; tests append their own sections.
pub const BASE_CONFIG: &str = r#"
api:
  tokens:
    - {name: grafana, token: viewer-token-0123456789, role: viewer}
    - {name: alice, token: operator-token-0123456789, role: operator}
    - {name: root, token: admin-token-0123456789, role: admin}
service:
  lease: 2s
  shutdown_grace: 2s
hooks:
  deploy: {hmac: hook-secret-0123456789abcdef}
"#;

/// An HTTP client for tests (bounded requests).
pub fn client() -> reqwest::Client {
    sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A `/metrics` endpoint exposing `test_temperature` with a value tests set.
pub struct Gauge {
    pub addr: SocketAddr,
    value: Arc<AtomicU64>,
}

impl Gauge {
    pub async fn start(initial: f64) -> Gauge {
        let value = Arc::new(AtomicU64::new(initial.to_bits()));
        let v = value.clone();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let v = f64::from_bits(v.load(Ordering::SeqCst));
                async move {
                    format!("# TYPE test_temperature gauge\ntest_temperature{{room=\"a\"}} {v}\n")
                }
            }),
        );
        Gauge {
            addr: serve(app).await,
            value,
        }
    }

    pub fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

/// Records what is posted to it and answers `ok`, like a Slack incoming webhook.
pub struct Recorder {
    pub addr: SocketAddr,
    posts: Arc<Mutex<Vec<J>>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let p = posts.clone();
        let app = Router::new().route(
            "/slack",
            post(move |body: axum::Json<J>| {
                p.lock().unwrap().push(body.0);
                async { "ok" }
            }),
        );
        Recorder {
            addr: serve(app).await,
            posts,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/slack", self.addr)
    }

    pub fn posts(&self) -> Vec<J> {
        self.posts.lock().unwrap().clone()
    }

    /// Texts of the posts (the Slack `text` fallback).
    pub fn texts(&self) -> Vec<String> {
        self.posts()
            .iter()
            .map(|p| p["text"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

pub struct TestService {
    pub handle: Option<Handle>,
    pub base: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

pub fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

impl TestService {
    /// Starts a service with `config` appended to [`BASE_CONFIG`], and the given files.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> TestService {
        Self::start_with_clock(config, files, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(
        config: &str,
        files: &[(&str, &str)],
        clock: Arc<dyn Clock>,
    ) -> TestService {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
        std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
        for (rel, text) in files {
            write(dir.path(), rel, text);
        }
        Self::start_in(dir, config, clock).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        clock: Arc<dyn Clock>,
    ) -> TestService {
        let cfg = write(dir.path(), "sluice.yaml", &format!("{BASE_CONFIG}{config}"));
        let handle = Service::start(Options {
            config_path: cfg,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            store_url: None,
            clock,
            watch: true,
            supervisor: None,
        })
        .await
        .expect("service starts");
        TestService {
            base: format!("http://{}", handle.addr),
            handle: Some(handle),
            dir,
            http: client(),
        }
    }

    /// Stops the service and hands back its directory (to start it again).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.dir
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<J>,
    ) -> (StatusCode, J) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(J::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, J) {
        self.call("GET", path, Some(VIEWER), None).await
    }

    /// Starts a run as the operator; returns the run id.
    pub async fn trigger(&self, runbook: &str, params: J) -> String {
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/runbooks/{runbook}/runs"),
                Some(OPERATOR),
                Some(json!({"params": params})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["run_id"].as_str().unwrap().to_string()
    }

    /// Polls a run until `done` holds for it (bounded: 30 s).
    pub async fn wait_run(&self, id: &str, done: impl Fn(&J) -> bool) -> J {
        for _ in 0..600 {
            let (status, body) = self.get(&format!("/api/v1/runs/{id}")).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, body) = self.get(&format!("/api/v1/runs/{id}")).await;
        panic!("run {id} did not reach the expected state: {body:#}");
    }

    pub async fn wait_final(&self, id: &str) -> J {
        self.wait_run(id, |b| {
            matches!(
                b["run"]["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "interrupted")
            )
        })
        .await
    }

    /// Runs of `runbook`, newest first.
    pub async fn runs(&self, runbook: &str) -> Vec<J> {
        let (_, body) = self
            .get(&format!("/api/v1/runs?runbook={runbook}&limit=1000"))
            .await;
        body["runs"].as_array().cloned().unwrap_or_default()
    }
}

/// Polls `cond` until it holds (bounded: `secs` seconds).
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 20 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
