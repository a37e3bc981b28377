//! A run survives `kill -9` of the service process: on restart, a step that
//! was cut off and is marked idempotent runs again while finished steps do
//! not; any other cut-off run is marked `interrupted` and people are told;
//! pending approvals and queued starts carry on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value as J, json};

use crate::harness::*;

/// `sluice serve` as a child process on a free loopback port.
struct Serve {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Serve {
    async fn start(dir: &Path, n: u32) -> Serve {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("serve-{n}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(dir.join("sluice.yaml"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice serve");
        let serve = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = client();
        for _ in 0..200 {
            if http
                .get(format!("{}/health", serve.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(serve);
        panic!(
            "sluice serve did not come up: {}",
            std::fs::read_to_string(dir.join(format!("serve-{n}.log"))).unwrap_or_default()
        );
    }

    /// SIGKILL: no cleanup of any kind.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn call(&self, method: &str, path: &str, body: Option<J>) -> (StatusCode, J) {
        let mut req = client()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(OPERATOR);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let st = resp.status();
        (st, resp.json().await.unwrap_or(J::Null))
    }

    async fn trigger(&self, runbook: &str) -> String {
        let (st, b) = self
            .call(
                "POST",
                &format!("/api/v1/runbooks/{runbook}/runs"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        b["run_id"].as_str().unwrap().to_string()
    }

    async fn run(&self, id: &str) -> J {
        self.call("GET", &format!("/api/v1/runs/{id}"), None)
            .await
            .1
    }

    async fn wait_status(&self, id: &str, status: &str) -> J {
        for _ in 0..400 {
            let r = self.run(id).await;
            if r["run"]["status"] == status {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} never became {status}: {:#}", self.run(id).await);
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        st.rfind(')')
            .and_then(|i| st[i + 2..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

fn setup(runbooks: &[(&str, String)], extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    for (name, text) in runbooks {
        write(dir.path(), &format!("runbooks/{name}.yaml"), text);
    }
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    write(dir.path(), "sluice.yaml", &format!("{BASE_CONFIG}{extra}"));
    (dir, work)
}

async fn wait_file_lines(path: &Path, n: usize) {
    eventually(
        20,
        &format!("{} has {n} line(s)", path.display()),
        || async { std::fs::read_to_string(path).is_ok_and(|s| s.lines().count() >= n) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_step_resumes_an_idempotent_step_without_repeating_finished_ones() {
    let dirs = tempfile::tempdir().unwrap();
    let w = dirs.path();
    let rb = format!(
        r#"
name: resumable
steps:
  - id: first
    shell: {{script: "echo first >> {w}/log"}}
  - id: second
    idempotent: true
    shell: {{script: "n=$(cat {w}/attempts 2>/dev/null | wc -l); echo x >> {w}/attempts; if [ $n -eq 0 ]; then sleep 60; fi; echo second >> {w}/log"}}
  - id: third
    shell: {{script: "echo third >> {w}/log"}}
"#,
        w = w.display()
    );
    let (dir, _) = setup(&[("resumable", rb)], "");
    let s = Serve::start(dir.path(), 1).await;
    let id = s.trigger("resumable").await;
    wait_file_lines(&w.join("attempts"), 1).await;
    s.kill9();

    let s = Serve::start(dir.path(), 2).await;
    let run = s.wait_status(&id, "succeeded").await;
    assert_eq!(
        std::fs::read_to_string(w.join("log")).unwrap(),
        "first\nsecond\nthird\n",
        "the finished step ran once, the cut-off one again: {run:#}"
    );
    assert_eq!(
        std::fs::read_to_string(w.join("attempts"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let steps = run["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{run:#}");
    assert_ne!(run["run"]["owner"], J::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_step_marks_a_non_idempotent_run_interrupted_and_tells_people() {
    let slack = Recorder::start().await;
    let dirs = tempfile::tempdir().unwrap();
    let w = dirs.path();
    let rb = format!(
        r#"
name: migrate
steps:
  - id: copy
    shell: {{script: "echo started >> {w}/attempts; sleep 60 & echo $! > {w}/child; wait"}}
  - id: after
    shell: {{script: "echo after >> {w}/log"}}
notify:
  on_failure: [ops]
"#,
        w = w.display()
    );
    let extra = format!(
        "channels:\n  ops: {{slack: {{webhook_url: \"{}\"}}}}\n",
        slack.url()
    );
    let (dir, _) = setup(&[("migrate", rb)], &extra);
    let s = Serve::start(dir.path(), 1).await;
    let id = s.trigger("migrate").await;
    wait_file_lines(&w.join("attempts"), 1).await;
    s.kill9();

    let s = Serve::start(dir.path(), 2).await;
    let run = s.wait_status(&id, "interrupted").await;
    let err = run["run"]["error"].as_str().unwrap();
    assert!(
        err.contains("step `copy`") && err.contains("idempotent"),
        "{err}"
    );
    // What the cut-off step left running was stopped by the takeover.
    let child: i32 = std::fs::read_to_string(w.join("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually(10, "the step's leftover process is gone", || async {
        !alive(child)
    })
    .await;
    // Never run twice silently: the step ran once, the next step never.
    assert_eq!(
        std::fs::read_to_string(w.join("attempts")).unwrap(),
        "started\n"
    );
    assert!(!w.join("log").exists());
    eventually(10, "people were told", || async {
        slack
            .texts()
            .iter()
            .any(|t| t.contains(&id) && t.contains("interrupted"))
    })
    .await;
    // The guard lock is free again: the runbook can run.
    let (st, _) = s
        .call("POST", "/api/v1/runbooks/migrate/runs", Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_approval_and_a_queued_start_survive_kill_9() {
    let gated = r#"
name: gated
steps:
  - id: ask
    approval: {message: "restart the engine?"}
  - id: done
    exec: {argv: [echo, approved]}
"#
    .to_string();
    let serial = r#"
name: serial
triggers: [{webhook: deploy}]
guards: {concurrency: queue}
params:
  pause: {type: duration, default: "{{webhook.pause}}"}
steps:
  - id: wait
    sleep: "{{params.pause}}"
"#
    .to_string();
    let (dir, _) = setup(&[("gated", gated), ("serial", serial)], "");
    let s = Serve::start(dir.path(), 1).await;
    let gated_id = s.trigger("gated").await;
    s.wait_status(&gated_id, "waiting_approval").await;
    let mut ids = Vec::new();
    for pause in ["4s", "10ms"] {
        let body = format!("{{\"pause\": \"{pause}\"}}").into_bytes();
        let sig = sluice_automation::api::signature::sign(HOOK_SECRET, None, &body);
        let b: J = client()
            .post(format!("{}/api/v1/hooks/deploy", s.base))
            .header("x-sluice-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(b["runs"][0]["run_id"].as_str().unwrap().to_string());
    }
    assert_eq!(s.run(&ids[1]).await["run"]["status"], "queued");
    s.kill9();

    let s = Serve::start(dir.path(), 2).await;
    // The approval is still pending and can be decided on the new process.
    s.wait_status(&gated_id, "waiting_approval").await;
    let (st, b) = s
        .call(
            "POST",
            &format!("/api/v1/runs/{gated_id}/approve"),
            Some(json!({"comment": "after the crash"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let run = s.wait_status(&gated_id, "succeeded").await;
    assert_eq!(run["approvals"][0]["decided_by"], "alice");
    // The sleeping run resumed (sleep is safe to repeat), then the queued one ran.
    let first = s.wait_status(&ids[0], "succeeded").await;
    let second = s.wait_status(&ids[1], "succeeded").await;
    assert!(
        second["run"]["started_at"].as_str().unwrap()
            >= first["run"]["finished_at"].as_str().unwrap(),
        "{first:#} {second:#}"
    );
}
