//! Notification receivers: a loopback HTTP server that records Slack posts
//! and answers like Slack, and a real SMTP server (aiosmtpd) whose printed
//! messages are kept in a file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value as J;
use tokio::process::{Child, Command};

use crate::net::{self, eventually};

/// Records every JSON body posted to `/slack`.
#[derive(Clone, Default)]
pub struct SlackRecorder {
    pub url: String,
    posts: Arc<Mutex<Vec<J>>>,
}

impl SlackRecorder {
    pub async fn start() -> SlackRecorder {
        let posts: Arc<Mutex<Vec<J>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/slack",
                post(
                    |State(p): State<Arc<Mutex<Vec<J>>>>, Json(body): Json<J>| async move {
                        p.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                        "ok"
                    },
                ),
            )
            .with_state(posts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackRecorder {
            url: format!("http://{addr}/slack"),
            posts,
        }
    }

    pub fn texts(&self) -> Vec<String> {
        self.posts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| p.to_string())
            .collect()
    }
}

/// `python3 -m aiosmtpd` on a free port; received messages are printed into `log`.
pub struct Smtp {
    pub port: u16,
    pub log: PathBuf,
    _child: Child,
}

impl Smtp {
    pub async fn start(dir: &Path) -> Smtp {
        let port = net::free_port();
        let log = dir.join("smtp.log");
        let out = std::fs::File::create(&log).expect("smtp log");
        let err = out.try_clone().expect("smtp log");
        let child = Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m aiosmtpd (python3-aiosmtpd)");
        eventually(
            "the SMTP server to listen",
            Duration::from_secs(20),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Smtp {
            port,
            log,
            _child: child,
        }
    }

    /// What the server printed (the received messages).
    pub fn received(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until a received message contains `needle`; returns all received.
    pub async fn wait_for(&self, needle: &str, limit: std::time::Duration) -> String {
        crate::net::eventually(&format!("an email with {needle:?}"), limit, || async {
            let m = self.received();
            m.contains(needle).then_some(m)
        })
        .await
    }
}
