//! Step kinds against real local servers, processes and files.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value as J, json};
use sluice_automation::exec::executor::RunStatus;

use crate::harness::{config, run, runbook, serve, services, step_record, tempdir};

#[derive(Default)]
struct Counters {
    flaky: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    resets: std::sync::Mutex<Vec<(Option<String>, J)>>,
}

fn admin_router(c: Arc<Counters>) -> axum::Router {
    axum::Router::new()
        .route("/ok", get(|| async { Json(json!({"a": 1, "name": "main"})) }))
        .route("/admin/version", get(|| async { Json(json!({"a": 1, "version": "0.1.0"})) }))
        .route(
            "/flaky",
            get(|State(c): State<Arc<Counters>>| async move {
                if c.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "warming up")
                } else {
                    (StatusCode::OK, "ready")
                }
            }),
        )
        .route(
            "/slow",
            get(|State(c): State<Arc<Counters>>| async move {
                let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                c.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(80)).await;
                c.in_flight.fetch_sub(1, Ordering::SeqCst);
                "done"
            }),
        )
        .route("/hang", get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }))
        .route("/big", get(|| async { "x".repeat(2 << 20) }))
        .route(
            "/admin/circuit-breaker/reset",
            post(|State(c): State<Arc<Counters>>, headers: HeaderMap, Json(body): Json<J>| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                let ok = auth.as_deref() == Some("Bearer engine-token-123");
                c.resets.lock().unwrap().push((auth, body));
                if ok { (StatusCode::OK, Json(json!({"reset": true}))) } else { (StatusCode::UNAUTHORIZED, Json(json!({"error": "token"}))) }
            }),
        )
        .with_state(c)
}

#[tokio::test]
async fn http_outputs_flow_into_later_steps_and_retries_recover() {
    let c = Arc::new(Counters::default());
    let addr = serve(admin_router(c.clone())).await;
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        r#"
name: http-flow
steps:
  - id: get
    http: {{url: "http://{addr}/ok"}}
  - id: flaky
    http: {{url: "http://{addr}/flaky"}}
    retry: {{attempts: 4, backoff: 10ms}}
  - id: use
    exec: {{argv: [echo, "{{{{steps.get.output.body.name}}}}-{{{{steps.get.output.status}}}}"]}}
"#
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["use"]["output"]["stdout"], "main-200\n");
    assert_eq!(out.steps["flaky"]["attempts"], 3);
    let rec = step_record(&sv, &out.id, "flaky").await;
    assert_eq!(rec.attempts, 3);
    assert_eq!(
        rec.logs.iter().filter(|l| l.contains("retrying")).count(),
        2,
        "{:?}",
        rec.logs
    );
}

#[tokio::test]
async fn step_timeout_aborts_a_hanging_request() {
    let addr = serve(admin_router(Arc::new(Counters::default()))).await;
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: hang\nsteps:\n  - id: h\n    http: {{url: 'http://{addr}/hang'}}\n    timeout: 200ms\n"
    ));
    let start = Instant::now();
    let out = run(&sv, &rb, &[]).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("h: timed out after 200ms"));
}

#[tokio::test]
async fn engine_call_sends_token_and_record_redacts_it() {
    let c = Arc::new(Counters::default());
    let addr = serve(admin_router(c.clone())).await;
    let dir = tempdir();
    let cfg = config(&format!(
        "targets:\n  primary:\n    url: http://{addr}\n    token: engine-token-123\n"
    ));
    let sv = services(cfg, dir.path()).await;
    let rb = runbook(
        "name: reset\nparams:\n  breaker: {default: sink}\nsteps:\n  - id: reset\n    engine.circuit_breaker.reset: {target: primary, name: '{{params.breaker}}'}\n  - id: show\n    exec: {argv: [echo, 'token={{targets.primary.url}}']}\n",
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let resets = c.resets.lock().unwrap().clone();
    assert_eq!(
        resets,
        vec![(
            Some("Bearer engine-token-123".to_string()),
            json!({"name": "sink"})
        )]
    );
    // Nothing recorded anywhere holds the token.
    let (run_rec, steps) = sv.store.as_ref().unwrap().get_run(&out.id).await.unwrap();
    let dump = format!(
        "{}{}",
        serde_json::to_string(&run_rec).unwrap(),
        serde_json::to_string(&steps).unwrap()
    );
    assert!(!dump.contains("engine-token-123"), "{dump}");
    assert_eq!(
        steps[0].inputs,
        json!({"target": "primary", "name": "sink"})
    );
}

#[tokio::test]
async fn wrong_engine_token_fails_permanently_without_retry() {
    let c = Arc::new(Counters::default());
    let addr = serve(admin_router(c.clone())).await;
    let dir = tempdir();
    let cfg = config(&format!(
        "targets:\n  primary:\n    url: http://{addr}\n    token: wrong-token\n"
    ));
    let sv = services(cfg, dir.path()).await;
    let rb = runbook(
        "name: reset\nsteps:\n  - id: reset\n    engine.circuit_breaker.reset: {target: primary}\n    retry: {attempts: 3, backoff: 1ms}\n",
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("unexpected HTTP status 401"),
        "{:?}",
        out.error
    );
    assert_eq!(c.resets.lock().unwrap().len(), 1, "4xx must not be retried");
}

#[tokio::test]
async fn wait_until_polls_until_the_check_holds() {
    let c = Arc::new(Counters::default());
    let addr = serve(admin_router(c.clone())).await;
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: wait\nsteps:\n  - id: w\n    wait_until: {{http: {{url: 'http://{addr}/flaky', contains: ready}}, every: 20ms, timeout: 5s}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["w"]["output"]["attempts"], 3);
    let rb = runbook(&format!(
        "name: wait2\nsteps:\n  - id: w\n    wait_until: {{http: {{url: 'http://{addr}/ok', contains: never}}, every: 20ms, timeout: 200ms}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .unwrap()
            .contains("condition not met within 200ms")
    );
}

#[tokio::test]
async fn wait_until_compares_a_json_number_below_and_above() {
    // Each GET answers a higher `n`: 1, 2, 3 …
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/n",
            get(|State(h): State<Arc<AtomicUsize>>| async move {
                Json(json!({"n": h.fetch_add(1, Ordering::SeqCst) + 1, "s": "7.5"}))
            }),
        )
        .with_state(hits.clone());
    let addr = serve(app).await;
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: above\nsteps:\n  - id: w\n    wait_until: {{http: {{url: 'http://{addr}/n', json_pointer: /n, above: 2}}, every: 10ms, timeout: 5s}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["w"]["output"]["attempts"], 3);
    assert_eq!(out.steps["w"]["output"]["last"]["value"], 3);
    // A number held in a string counts; `below` that never holds times out.
    let rb = runbook(&format!(
        "name: below\nsteps:\n  - id: w\n    wait_until: {{http: {{url: 'http://{addr}/n', json_pointer: /s, below: 7}}, every: 10ms, timeout: 100ms}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let rb = runbook(&format!(
        "name: below2\nsteps:\n  - id: w\n    wait_until: {{http: {{url: 'http://{addr}/n', json_pointer: /s, below: 8, above: 7}}, every: 10ms, timeout: 5s}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    // `below` without `json_pointer` is refused when the runbook loads.
    let bad = sluice_automation::runbook::load_str(
        std::path::Path::new("bad.yaml"),
        "name: bad\nsteps:\n  - id: w\n    wait_until: {http: {url: 'http://x/', below: 1}}\n",
    );
    assert!(bad.unwrap_err().iter().any(|d| {
        d.to_string()
            .contains("`below` and `above` need `json_pointer`")
    }));
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let pidfile = dir.path().join("child.pid");
    let rb = runbook(&format!(
        "name: kill\nsteps:\n  - id: s\n    shell:\n      script: |\n        sleep 30 &\n        echo $! > {}\n        wait\n    timeout: 300ms\n",
        pidfile.display()
    ));
    let start = Instant::now();
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(start.elapsed() < Duration::from_secs(5));
    let pid = std::fs::read_to_string(&pidfile)
        .expect("pid written")
        .trim()
        .to_string();
    // The grandchild `sleep` is gone (give the kernel a moment to reap it).
    let mut alive = true;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        alive = !stat.is_empty() && !stat.contains(") Z ");
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "background process {pid} survived the timeout");
}

#[tokio::test]
async fn parallel_and_for_each_bound_their_concurrency() {
    let c = Arc::new(Counters::default());
    let addr = serve(admin_router(c.clone())).await;
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: fan\nsteps:\n  - id: loop\n    for_each:\n      items: [1, 2, 3, 4, 5, 6]\n      concurrency: 2\n      steps:\n        - id: call\n          http: {{url: 'http://{addr}/slow'}}\n        - id: tag\n          exec: {{argv: [echo, 'item-{{{{item}}}}-{{{{index}}}}-{{{{steps.call.output.body}}}}']}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(c.max_in_flight.load(Ordering::SeqCst), 2);
    let iterations = out.steps["loop"]["output"]["iterations"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(iterations.len(), 6);
    assert_eq!(iterations[3]["tag"]["output"]["stdout"], "item-4-3-done\n");

    c.max_in_flight.store(0, Ordering::SeqCst);
    let rb = runbook(&format!(
        "name: par\nsteps:\n  - id: p\n    parallel:\n      max_concurrency: 3\n      steps:\n{}",
        (0..6)
            .map(|i| format!("        - id: c{i}\n          http: {{url: 'http://{addr}/slow'}}\n"))
            .collect::<String>()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(c.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(out.steps["c5"]["status"], "succeeded");
}

#[tokio::test]
async fn if_continue_on_error_and_on_failure() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let marker = dir.path().join("rolled-back");
    let rb = runbook(&format!(
        r#"
name: flow
params:
  skip: {{type: bool, default: true}}
steps:
  - id: skipped
    if: "{{{{not params.skip}}}}"
    exec: {{argv: ["false"]}}
  - id: soft
    exec: {{argv: ["false"]}}
    continue_on_error: true
  - id: hard
    if: "{{{{eq steps.soft.status 'failed'}}}}"
    exec: {{argv: [sh, -c, "echo boom >&2; exit 3"]}}
  - id: never
    exec: {{argv: [echo, never]}}
on_failure:
  - id: rollback
    exec: {{argv: [sh, -c, 'printf %s "$MSG" > {}'], env: {{MSG: "{{{{failed.step}}}}: {{{{failed.error}}}}"}}}}
"#,
        marker.display()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.steps["skipped"]["status"], "skipped");
    assert_eq!(out.steps["soft"]["status"], "failed");
    assert!(out.steps.get("never").is_none());
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "hard: exited with status 3: boom"
    );
}

#[tokio::test]
async fn runbook_step_calls_another_with_params() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let child = runbook(
        "name: child\nparams:\n  who: {required: true}\nsteps:\n  - id: hi\n    exec: {argv: [echo, 'hi {{params.who}}']}\n",
    );
    sv.add_runbook(child);
    let parent = runbook(
        "name: parent\nsteps:\n  - id: call\n    runbook: {name: child, params: {who: ops}}\n  - id: after\n    exec: {argv: [echo, '{{steps.call.output.steps.hi.output.stdout}}']}\n",
    );
    let out = run(&sv, &parent, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["after"]["output"]["stdout"], "hi ops\n\n");
    let child_id = out.steps["call"]["output"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (rec, _) = sv.store.as_ref().unwrap().get_run(&child_id).await.unwrap();
    assert_eq!(rec.parent_run.as_deref(), Some(out.id.as_str()));
    assert_eq!(rec.trigger, "runbook");
}

#[tokio::test]
async fn approval_waits_for_a_decision_and_records_it() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(
        "name: gated\nsteps:\n  - id: ok\n    approval: {message: 'Reset all breakers?'}\n  - id: act\n    exec: {argv: [echo, 'approved by {{steps.ok.output.by}}']}\n",
    );
    let task = tokio::spawn({
        let (sv, rb) = (sv.clone(), rb.clone());
        async move { run(&sv, &rb, &[]).await }
    });
    let store = sv.store.clone().unwrap();
    let pending = loop {
        let p = store.pending_approvals().await.unwrap();
        if let Some(a) = p.into_iter().next() {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(pending.message, "Reset all breakers?");
    let (run_rec, _) = store.get_run(&pending.run_id).await.unwrap();
    assert_eq!(run_rec.status, "waiting_approval");
    store
        .decide(&pending.run_id, true, "alice", Some("go"))
        .await
        .unwrap();
    let out = task.await.unwrap();
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["act"]["output"]["stdout"], "approved by alice\n");
    let a = store.approval(&out.id, "ok").await.unwrap().unwrap();
    assert_eq!(
        (
            a.status.as_str(),
            a.decided_by.as_deref(),
            a.comment.as_deref()
        ),
        ("approved", Some("alice"), Some("go"))
    );

    // Rejection fails the run; a timeout takes the default.
    let rb = runbook(
        "name: gated2\nsteps:\n  - id: ok\n    approval: {message: 'sure?', timeout: 100ms, default: reject}\n",
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.error.as_deref(),
        Some("ok: rejected by timeout: no decision within 100ms")
    );
}

#[tokio::test]
async fn backup_then_restore_round_trip_with_retention() {
    let c = Arc::new(Counters::default());
    let addr = serve(admin_router(c)).await;
    let dir = tempdir();
    let src = dir.path().join("etc");
    std::fs::create_dir_all(src.join("conf.d")).unwrap();
    std::fs::write(src.join("engine.yaml"), "processing: {batch_size: 10}\n").unwrap();
    std::fs::write(src.join("conf.d/extra.yaml"), "x: 1\n").unwrap();
    let dest = dir.path().join("backups");
    let restored = dir.path().join("restored");
    let sv = services(
        config(&format!("targets:\n  primary:\n    url: http://{addr}\n")),
        dir.path(),
    )
    .await;
    let rb = runbook(&format!(
        r#"
name: bk
steps:
  - id: b
    backup:
      dest: {dest}
      name: engine
      files: [{src}]
      downloads: [{{as: state.json, target: primary, path: /ok}}]
      engine_version_from: primary
      retention: {{keep: 2}}
"#,
        dest = dest.display(),
        src = src.display()
    ));
    let mut archives = Vec::new();
    for _ in 0..3 {
        let out = run(&sv, &rb, &[]).await;
        assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
        archives.push(
            out.steps["b"]["output"]["archive"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        assert_eq!(out.steps["b"]["output"]["entries"], 3);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        !left.contains(&archives[0]),
        "oldest archive kept: {left:?}"
    );

    let rb = runbook(&format!(
        "name: rs\nsteps:\n  - id: r\n    restore: {{archive: '{}', dest: '{}'}}\n",
        archives[2],
        restored.display()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(
        std::fs::read_to_string(restored.join("files/etc/engine.yaml")).unwrap(),
        "processing: {batch_size: 10}\n"
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("files/etc/conf.d/extra.yaml")).unwrap(),
        "x: 1\n"
    );
    let state: J = serde_json::from_str(
        &std::fs::read_to_string(restored.join("downloads/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["name"], "main");
    assert_eq!(
        out.steps["r"]["output"]["manifest"]["engine_version"]["a"],
        1
    );
}

#[tokio::test]
async fn cleanup_applies_age_and_count_under_its_root_only() {
    let dir = tempdir();
    let root = dir.path().join("logs");
    std::fs::create_dir_all(&root).unwrap();
    let outside = dir.path().join("keep-me.log");
    std::fs::write(&outside, "x").unwrap();
    let now = std::time::SystemTime::now();
    for (i, days) in [1u64, 3, 10, 20, 30].iter().enumerate() {
        let p = root.join(format!("app-{i}.log"));
        std::fs::write(&p, "log").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(now - Duration::from_secs(days * 86400))
            .unwrap();
    }
    std::fs::write(root.join("notes.txt"), "n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link.log")).unwrap();
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: c\nsteps:\n  - id: c\n    cleanup: {{root: '{}', pattern: '*.log', older_than: 7d, keep: 4}}\n",
        root.display()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // app-4 (30 days) is beyond the newest 4 and older than 7 days; the symlink and its target stay.
    assert_eq!(
        left,
        [
            "app-0.log",
            "app-1.log",
            "app-2.log",
            "app-3.log",
            "link.log",
            "notes.txt"
        ]
    );
    assert!(outside.exists());
}

#[tokio::test]
async fn run_timeout_cancels_the_running_step_and_kills_its_processes() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let pidfile = dir.path().join("child.pid");
    let after = dir.path().join("after");
    let rb = runbook(&format!(
        "name: slow\ntimeout: 300ms\nsteps:\n  - id: s\n    shell:\n      script: |\n        sleep 30 &\n        echo $! > {}\n        wait\n  - id: next\n    exec: {{argv: [touch, {}]}}\non_failure:\n  - id: tell\n    exec: {{argv: [echo, '{{{{failed.error}}}}']}}\n",
        pidfile.display(),
        after.display()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("run timed out after 300ms"));
    assert!(!after.exists(), "a step ran after the run timed out");
    // The cut-off step is recorded as abandoned; on_failure still ran and saw why.
    assert_eq!(step_record(&sv, &out.id, "s").await.status, "abandoned");
    assert_eq!(
        out.steps["tell"]["output"]["stdout"],
        "run timed out after 300ms\n"
    );
    let pid = std::fs::read_to_string(&pidfile)
        .expect("pid written")
        .trim()
        .to_string();
    let mut alive = true;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        alive = !stat.is_empty() && !stat.contains(") Z ");
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "background process {pid} survived the run timeout");
}
