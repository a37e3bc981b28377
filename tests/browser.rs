//! A real headless Chromium (Debian's `chromium-headless-shell`), driven over
//! the DevTools protocol by `testdata/cdp.py`: open pages, wait for what they
//! show, click, type. It reports every uncaught exception, `console.error` and
//! browser log error (CSP violations, failed loads) seen on the way.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value as J, json};

/// What a script of actions saw.
#[derive(Debug)]
pub struct Report {
    /// One value per action (`wait` and `eval` give the expression's value).
    pub results: Vec<J>,
    /// Exceptions, console errors and log errors, in order.
    pub errors: Vec<String>,
}

/// Runs `actions` in one tab of a fresh browser profile; panics, with what
/// the page showed, when an action fails.
pub async fn run(actions: Vec<J>) -> Report {
    tokio::task::spawn_blocking(move || run_blocking(&actions))
        .await
        .expect("browser task")
}

fn run_blocking(actions: &[J]) -> Report {
    let profile = tempfile::tempdir().expect("browser profile dir");
    let script = crate::sluice::repo().join("tests/testdata/cdp.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .env("CDP_PROFILE", profile.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the DevTools driver");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!(actions).to_string().as_bytes())
        .expect("write actions");
    let out = child.wait_with_output().expect("driver output");
    let report: J = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the DevTools driver printed no report ({e}; is chromium-headless-shell installed?): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let errors: Vec<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    if let Some(f) = report["failed"].as_str() {
        panic!("in the browser: {f}\nerrors on the page: {errors:#?}");
    }
    Report {
        results: report["results"].as_array().cloned().unwrap_or_default(),
        errors,
    }
}

/// `{"open": url}`.
pub fn open(url: &str) -> J {
    json!({ "open": url })
}

/// `{"wait": js}`: until the expression is truthy (20 s).
pub fn wait(js: &str) -> J {
    json!({ "wait": js, "timeout": 20 })
}

/// `{"click": css}`.
pub fn click(css: &str) -> J {
    json!({ "click": css })
}

/// `{"fill": css, "value": text}`.
pub fn fill(css: &str, value: &str) -> J {
    json!({ "fill": css, "value": value })
}

/// `{"eval": js}`.
pub fn eval(js: &str) -> J {
    json!({ "eval": js })
}

/// `{"screenshot": path}`: the viewport (1280×900) as a PNG.
pub fn screenshot(path: &std::path::Path) -> J {
    json!({ "screenshot": path.display().to_string() })
}
