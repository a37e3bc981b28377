//! The `sluice` binary end to end: `run` (a line per step, exit 0/1/2),
//! `--dry-run` (nothing changes, nothing is recorded), `plan` (rendered with
//! parameters), `runs`, and `approve`/`--reject` deciding a run waiting in
//! another process.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value as J;

use crate::harness::{serve, tempdir};

/// `sluice ARGS…` in `dir` with its own store there.
fn sluice(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.current_dir(dir)
        .env(
            "SLUICE_STORE",
            format!("sqlite://{}", dir.join("runs.db").display()),
        )
        .env("USER", "tester")
        .env_remove("RUST_LOG");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn runs_json(dir: &Path) -> J {
    let out = sluice(dir).args(["runs", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, yaml: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

#[test]
fn run_prints_a_line_per_step_and_exits_0_when_it_succeeds_1_when_it_fails() {
    let dir = tempdir();
    let ok = write(
        dir.path(),
        "ok.yaml",
        "name: ok\nparams:\n  who: {default: ops}\nsteps:\n  - id: hello\n    exec: {argv: [echo, 'hi {{params.who}}']}\n  - id: pause\n    sleep: 10ms\n",
    );
    let out = sluice(dir.path())
        .args(["run", &ok, "--param", "who=dev"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("ok   hello ("), "{err}");
    assert!(lines[1].starts_with("ok   pause ("), "{err}");
    assert!(
        lines[2].starts_with("run r") && lines[2].ends_with(" succeeded"),
        "{err}"
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        "name: bad\nsteps:\n  - id: a\n    exec: {argv: ['true']}\n  - id: b\n    exec: {argv: [sh, -c, 'echo broken >&2; exit 3']}\n  - id: c\n    exec: {argv: ['true']}\n",
    );
    let out = sluice(dir.path()).args(["run", &bad]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("FAIL b ("), "{err}");
    assert!(err.contains("): exited with status 3: broken"), "{err}");
    assert!(!err.contains(" c ("), "step c ran after the failure: {err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains(" failed: b: exited with status 3: broken"),
        "{err}"
    );

    // Both runs are recorded, newest first, with who ran them.
    let runs = runs_json(dir.path());
    let summary: Vec<(&str, &str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["runbook"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["who"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("bad", "failed", "tester"), ("ok", "succeeded", "tester")]
    );
    assert_eq!(runs[1]["params"]["who"], "dev");

    // `runs ID` shows the steps with inputs and outputs; an unknown id is invalid input.
    let id = runs[1]["id"].as_str().unwrap();
    let out = sluice(dir.path()).args(["runs", id]).output().unwrap();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        shown.contains(&format!("run {id}: ok (succeeded)")),
        "{shown}"
    );
    assert!(
        shown.contains("- hello [exec] succeeded (attempts 1)"),
        "{shown}"
    );
    assert!(shown.contains(r#""stdout":"hi dev\n""#), "{shown}");
    let out = sluice(dir.path())
        .args(["runs", "r-none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dry_run_renders_every_step_changes_nothing_and_records_nothing() {
    let dir = tempdir();
    let marker = dir.path().join("MARKER");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("old.log"), "x").unwrap();
    let rb = write(
        dir.path(),
        "dry.yaml",
        &format!(
            "name: dry\nparams:\n  file: {{default: MARKER}}\nsteps:\n  - id: touch\n    exec: {{argv: [touch, '{}/{{{{params.file}}}}']}}\n  - id: clean\n    cleanup: {{root: '{}', older_than: 0s}}\n  - id: call\n    http: {{url: 'http://127.0.0.1:9/never', method: POST}}\n",
            dir.path().display(),
            logs.display()
        ),
    );
    let out = sluice(dir.path())
        .args(["run", &rb, "--dry-run"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.starts_with("Dry run of `dry`: nothing was changed."),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("touch [exec]: run 'touch' '{}'", marker.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("clean [cleanup]: delete `*` files under"),
        "{stdout}"
    );
    assert!(
        stdout.contains("call [http]: POST http://127.0.0.1:9/never"),
        "{stdout}"
    );
    assert!(!marker.exists(), "a dry run executed a step");
    assert!(logs.join("old.log").exists(), "a dry run deleted a file");
    assert!(
        !dir.path().join("runs.db").exists(),
        "a dry run opened the store"
    );
}

#[test]
fn plan_renders_templates_with_the_parameters() {
    let dir = tempdir();
    let rb = write(
        dir.path(),
        "plan.yaml",
        "name: plan\nparams:\n  breaker: {required: true}\n  n: {type: int, default: 2}\nsteps:\n  - id: say\n    exec: {argv: [echo, 'reset {{params.breaker}} x{{params.n}}']}\n    retry: {attempts: 3}\n  - id: fixed\n    sleep: 1s\n",
    );
    let out = sluice(dir.path())
        .args(["plan", &rb, "--param", "breaker=sink"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("- say [exec]: run 'echo' 'reset sink x2'"),
        "{stdout}"
    );
    assert!(stdout.contains("    retry: 3 attempts"), "{stdout}");
    assert!(stdout.contains("- fixed [sleep]: sleep 1s"), "{stdout}");
    // Without the required parameter the templates are shown as written.
    let out = sluice(dir.path()).args(["plan", &rb]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("(templated)"),
        "{}",
        text(&out.stdout)
    );
    // A given parameter that is wrong is invalid input, as for `run`.
    let out = sluice(dir.path())
        .args(["plan", &rb, "--param", "n=many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("parameter `n`: expected an integer"));
    assert!(
        !dir.path().join("runs.db").exists(),
        "plan opened the store"
    );
}

/// Waits (bounded) for the one run in `dir` to wait for approval; its id.
fn waiting_run(dir: &Path) -> String {
    for _ in 0..300 {
        if dir.join("runs.db").exists() {
            let runs = runs_json(dir);
            if let Some(r) = runs.as_array().and_then(|a| a.first())
                && r["status"] == "waiting_approval"
            {
                return r["id"].as_str().unwrap().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no run waits for approval");
}

fn finish(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
}

const GATED: &str = "name: gated\nsteps:\n  - id: gate\n    approval: {message: 'Reset all breakers?'}\n  - id: act\n    exec: {argv: [echo, '{{steps.gate.output.decision}} by {{steps.gate.output.by}}: {{steps.gate.output.comment}}']}\n";

#[test]
fn approve_and_reject_decide_a_run_waiting_in_another_process() {
    let dir = tempdir();
    let rb = write(dir.path(), "gated.yaml", GATED);
    let child = sluice(dir.path())
        .args(["run", &rb])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = waiting_run(dir.path());
    let out = sluice(dir.path())
        .args(["approve", &id, "--comment", "go ahead", "--who", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("approved {id} (gate)"));
    let done = finish(child);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    let out = sluice(dir.path())
        .args(["runs", &id, "--json"])
        .output()
        .unwrap();
    let shown: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["steps"][1]["outputs"]["stdout"],
        "approved by alice: go ahead\n"
    );

    // Nothing waits any more: deciding again is invalid input.
    let out = sluice(dir.path()).args(["approve", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    // Rejected (in a fresh directory, so the waiting run is the only one).
    let dir = tempdir();
    let rb = write(dir.path(), "gated.yaml", GATED);
    let child = sluice(dir.path())
        .args(["run", &rb])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = waiting_run(dir.path());
    let out = sluice(dir.path())
        .args(["approve", &id, "--reject", "--comment", "not during peak"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let done = finish(child);
    assert_eq!(done.status.code(), Some(1));
    assert!(
        text(&done.stderr).contains("gate: rejected by tester: not during peak"),
        "{}",
        text(&done.stderr)
    );
}

#[tokio::test]
async fn target_flag_points_a_run_at_another_engine() {
    let addr = serve(axum::Router::new().route(
        "/admin/version",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"version": "9.9.9"})) }),
    ))
    .await;
    let dir = tempdir();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        "targets:\n  primary:\n    url: http://127.0.0.1:9\n",
    )
    .unwrap();
    let rb = write(
        dir.path(),
        "v.yaml",
        "name: v\nsteps:\n  - id: v\n    engine.version: {target: primary}\n  - id: show\n    exec: {argv: [echo, '{{steps.v.output.body.version}}']}\n",
    );
    let out = tokio::process::Command::from(sluice(dir.path()))
        .args(["run", &rb, "--target"])
        .arg(format!("primary=http://{addr}"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs = runs_json(dir.path());
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let shown = sluice(dir.path())
        .args(["runs", &id, "--json"])
        .output()
        .unwrap();
    let shown: J = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["steps"][1]["outputs"]["stdout"], "9.9.9\n");
    let out = sluice(dir.path())
        .args(["run", &rb, "--target", "primary=ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("URL must be http:// or https://"));
}
