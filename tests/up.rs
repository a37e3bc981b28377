//! `sluice up --chaos` as a new user runs it: the built binary in a fresh
//! working directory holding what a fresh clone has (`runbooks/`, `alerts/`,
//! `engine.example.yaml`, `sluice.yaml`), nothing else. Within 5 minutes of
//! "Sluice is up" every chaos fault's alert-triggered runbook must have
//! succeeded and its success been delivered to the built-in Slack receiver
//! (`.sluice/notifications.log`). Ctrl-C (SIGINT) must then stop everything
//! and leave no process behind.
//!
//! The only difference from the README's command line: the engine admin API
//! and the service API are put on free ports (`--engine-listen`, `--listen`)
//! instead of 8080 / 8081, so the test does not collide with a `sluice up`
//! someone is running, and the engine binary is the one Cargo built for the
//! tests (SLUICE_ENGINE_BIN, as `sluice up` documents).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as J;
use sluice_tests::net::free_port;
use sluice_tests::sluice::repo;

const WITHIN: Duration = Duration::from_secs(300);
/// The runbook each chaos fault leads to.
const RUNBOOKS: [&str; 3] = ["circuit-breaker-reset", "high-latency", "memory-exhausted"];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Processes whose command line mentions `dir` (the engine's config lives there).
fn processes_under(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&needle)
        {
            out.push(pid);
        }
    }
    out
}

struct Up {
    child: Child,
    dir: tempfile::TempDir,
}

impl Up {
    fn out(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.out")).unwrap_or_default()
    }

    /// Ctrl-C, then SIGKILL after 30 s; returns whether it stopped by itself
    /// and what it left running.
    fn stop(&mut self) -> (bool, Vec<i32>) {
        let pid = self.child.id() as i32;
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                clean = status.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !clean {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Give the engine's group a moment after its parent's exit.
        let mut left = processes_under(self.dir.path());
        for _ in 0..20 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            left = processes_under(self.dir.path());
        }
        for p in &left {
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        (clean, left)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn slack_texts(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .filter(|m| m["kind"] == "slack")
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_up_chaos_in_a_fresh_clone_remediates_every_fault_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    copy_tree(&root.join("runbooks"), &dir.path().join("runbooks"));
    copy_tree(&root.join("alerts"), &dir.path().join("alerts"));
    for f in ["engine.example.yaml", "sluice.yaml"] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    let (engine_port, api_port) = (free_port(), free_port());
    let out = std::fs::File::create(dir.path().join("up.out")).unwrap();
    let err = std::fs::File::create(dir.path().join("up.err")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args([
            "up",
            "--chaos",
            "--engine-listen",
            &format!("127.0.0.1:{engine_port}"),
            "--listen",
            &format!("127.0.0.1:{api_port}"),
        ])
        .current_dir(dir.path())
        .env(
            "SLUICE_ENGINE_BIN",
            env!("CARGO_BIN_EXE_sluice-engine-under-test"),
        )
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("sluice up starts");
    let mut up = Up { child, dir };
    let data: PathBuf = up.dir.path().join(".sluice");

    // "Sluice is up."
    let deadline = Instant::now() + Duration::from_secs(180);
    while !up.out().contains("Sluice is up.") {
        if let Ok(Some(status)) = up.child.try_wait() {
            panic!(
                "sluice up exited ({status}):\n{}\n{}",
                up.out(),
                std::fs::read_to_string(up.dir.path().join("up.err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "not up in 180 s:\n{}", up.out());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let is_up = Instant::now();
    let token = std::fs::read_to_string(data.join("api-token")).unwrap();
    let token = token.trim();
    let http = sluice_tests::net::client();
    let api = format!("http://127.0.0.1:{api_port}");
    let log = data.join("notifications.log");

    // Runbook → (seconds from "Sluice is up" to its succeeded alert-triggered
    // run with the success delivered to Slack).
    let mut done: Vec<(&str, u64)> = Vec::new();
    let mut last_runs = J::Null;
    while done.len() < RUNBOOKS.len() && is_up.elapsed() < WITHIN {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(resp) = http
            .get(format!("{api}/api/v1/runs?limit=100"))
            .bearer_auth(token)
            .send()
            .await
        else {
            continue;
        };
        assert_eq!(resp.status(), 200, "the token sluice up wrote is accepted");
        let Ok(runs) = resp.json::<J>().await else {
            continue;
        };
        let texts = slack_texts(&log);
        for rb in RUNBOOKS {
            if done.iter().any(|(r, _)| *r == rb) {
                continue;
            }
            let succeeded = runs["runs"].as_array().into_iter().flatten().find(|r| {
                r["runbook"] == rb && r["trigger"] == "alert" && r["status"] == "succeeded"
            });
            if let Some(id) = succeeded.and_then(|r| r["id"].as_str())
                && texts
                    .iter()
                    .any(|t| t.contains(&format!("`{rb}` succeeded")) && t.contains(id))
            {
                done.push((rb, is_up.elapsed().as_secs()));
            }
        }
        last_runs = runs;
    }
    // The terminal tells a run's end up to half a second after its Slack
    // message arrived.
    let story = [
        "chaos  injected sink failures",
        "alert  CircuitBreakerOpen firing",
        "run    circuit-breaker-reset started by alert CircuitBreakerOpen",
        "step   circuit-breaker-reset/upstream succeeded",
        "run    circuit-breaker-reset succeeded",
        "slack  #oncall  Sluice: circuit-breaker-reset succeeded",
        "run    high-latency succeeded",
        "run    memory-exhausted succeeded",
    ];
    let told = Instant::now() + Duration::from_secs(10);
    while Instant::now() < told && !story.iter().all(|l| up.out().contains(l)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let transcript = up.out();
    let service_log = std::fs::read_to_string(data.join("sluice.log")).unwrap_or_default();
    let warnings: Vec<&str> = service_log
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    let warnings = warnings[warnings.len().saturating_sub(30)..].join("\n");
    // The console the terminal points at shows those runs to a person who
    // signs in with the token sluice up wrote.
    let console = format!("{api}/ui/");
    assert!(
        transcript.contains(&format!("console           {console}")),
        "{transcript}"
    );
    let page = if done.len() == RUNBOOKS.len() {
        use sluice_tests::browser::{self, click, eval, fill, open, wait};
        Some(
            browser::run(vec![
                open(&format!("{console}#/runs")),
                fill("#token", token),
                click("#signin-button"),
                wait("document.getElementById('view').innerText.includes('circuit-breaker-reset')"),
                eval("[...document.querySelectorAll('#view tbody tr')].map(r => r.innerText)"),
                open(&format!("{console}#/")),
                wait("document.getElementById('view').dataset.loaded === 'overview'"),
                eval("document.getElementById('view').innerText"),
            ])
            .await,
        )
    } else {
        None
    };
    let (clean, left) = up.stop();
    for (rb, secs) in &done {
        println!(
            "e2e-timing sluice-up {rb}: succeeded and notified {secs} s after \"Sluice is up\""
        );
    }
    let brief: Vec<String> = last_runs["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["runbook"], r["trigger"], r["status"], r["error"]
            )
        })
        .collect();
    assert_eq!(
        done.len(),
        RUNBOOKS.len(),
        "within {WITHIN:?} only {done:?}\nruns: {brief:#?}\nterminal:\n{transcript}\nnotifications: {:#?}\nservice warnings:\n{warnings}",
        slack_texts(&log)
    );
    let page = page.expect("the console was opened");
    let rows: Vec<&str> = page.results[4]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(J::as_str)
        .collect();
    for rb in RUNBOOKS {
        assert!(
            rows.iter()
                .any(|r| r.contains(rb) && r.contains("succeeded") && r.contains("alert")),
            "the console lists {rb}: {rows:#?}"
        );
    }
    let overview = page.results[7].as_str().unwrap();
    assert!(overview.contains("Scrape targets"), "{overview}");
    assert!(page.errors.is_empty(), "console errors: {:#?}", page.errors);
    // The terminal told the story.
    for line in story {
        assert!(transcript.contains(line), "no `{line}` in:\n{transcript}");
    }
    assert!(
        clean,
        "sluice up did not stop cleanly on SIGINT:\n{transcript}"
    );
    assert!(left.is_empty(), "left running: {left:?}");
}
