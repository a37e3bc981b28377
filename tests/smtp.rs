//! A real SMTP server for tests: aiosmtpd (Debian `python3-aiosmtpd`) on
//! 127.0.0.1 and a free port, running `testdata/smtp_recorder.py`, which
//! records every accepted message. The recorder parses each message with
//! Python's own `email` package (independent of the sender's MIME code) and
//! keeps the envelope, headers, every MIME part and the raw text.
//!
//! ```no_run
//! # fn t() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let smtp = sluice_tests::smtp::Smtp::start()?;          // no AUTH
//! // or Smtp::start_with_auth("sluice", "s3cret")?: only these credentials pass
//! let host_port = (smtp.host(), smtp.port());              // ("127.0.0.1", PORT), plain SMTP
//! // … send mail …
//! let got = smtp.wait_for(1, Duration::from_secs(10))?;   // bounded wait for N messages
//! assert_eq!(got[0].subject, "Sluice: x");
//! assert_eq!(got[0].part("text/plain").unwrap().text, "hello\n");
//! # Ok(()) }
//! ```
//!
//! The server is stopped (SIGTERM, then SIGKILL) when the handle is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

const RECORDER: &str = include_str!("testdata/smtp_recorder.py");

/// A running recording SMTP server.
pub struct Smtp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// One message as the server received it.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    /// Envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// Envelope recipients (`RCPT TO`), in order.
    pub rcpt_tos: Vec<String>,
    /// The login used with `AUTH`, if the client authenticated.
    pub auth_login: Option<String>,
    pub subject: String,
    /// The `From:` header.
    pub from: String,
    /// The `To:` header.
    pub to: String,
    /// Top-level content type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// Every non-multipart MIME part, in order.
    pub parts: Vec<Part>,
    /// The message as sent.
    pub raw: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    pub content_type: String,
    pub charset: Option<String>,
    /// Decoded content (transfer encoding undone).
    pub text: String,
}

impl Received {
    /// The first part of this content type.
    pub fn part(&self, content_type: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.content_type == content_type)
    }
}

impl Smtp {
    /// Starts a server accepting mail without authentication.
    pub fn start() -> anyhow::Result<Smtp> {
        Smtp::launch(None)
    }

    /// Starts a server requiring `AUTH` (PLAIN or LOGIN, allowed without TLS on loopback).
    pub fn start_with_auth(user: &str, password: &str) -> anyhow::Result<Smtp> {
        Smtp::launch(Some((user, password)))
    }

    fn launch(auth: Option<(&str, &str)>) -> anyhow::Result<Smtp> {
        let dir = tempfile::Builder::new().prefix("sluice-smtp-").tempdir()?;
        let script = dir.path().join("smtp_recorder.py");
        std::fs::write(&script, RECORDER)?;
        let out = dir.path().join("messages");
        std::fs::create_dir(&out)?;
        let mut last = anyhow::anyhow!("smtp server did not start");
        for _ in 0..3 {
            let port = crate::net::free_port();
            let log = std::fs::File::create(dir.path().join("smtp.log"))?;
            let mut cmd = Command::new("python3");
            cmd.arg(&script)
                .arg("--port")
                .arg(port.to_string())
                .arg("--out")
                .arg(&out);
            if let Some((u, p)) = auth {
                cmd.args(["--user", u, "--password", p]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting python3 (apt-get install python3-aiosmtpd)")?;
            let log_path = dir.path().join("smtp.log");
            let ready = crate::net::wait_until("smtp server", Duration::from_secs(20), || {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "smtp server exited with {status}: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                Ok(std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .contains(&format!("listening {port}")))
            });
            match ready {
                Ok(()) => return Ok(Smtp { child, port, dir }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = e;
                }
            }
        }
        Err(last)
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn messages_dir(&self) -> PathBuf {
        self.dir.path().join("messages")
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> anyhow::Result<Vec<Received>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.messages_dir())?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)?;
                serde_json::from_str(&text).with_context(|| format!("{}", f.display()))
            })
            .collect()
    }

    /// Waits (bounded) until at least `n` messages arrived; returns them all.
    pub fn wait_for(&self, n: usize, limit: Duration) -> anyhow::Result<Vec<Received>> {
        crate::net::wait_until("smtp messages", limit, || Ok(self.messages()?.len() >= n))?;
        self.messages()
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtp.log")).unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the child we started; no memory involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
