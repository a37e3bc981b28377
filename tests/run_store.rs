//! The run store against a real PostgreSQL server (fresh database per test),
//! held to the same contract as SQLite: every check runs on both.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value as J, json};
use sluice_automation::exec::executor::{RunStatus, new_run_id};
use sluice_automation::store::{
    ApprovalPolicy, DeliveryRecord, NewRun, RunFilter, SilenceRecord, StepEnd, StepStart, Store,
    StoreError,
};
use sluice_tests::postgres::Postgres;

use crate::support::{config, run, runbook, services, sqlite_store};

async fn postgres_store() -> (Store, String) {
    let pg = Postgres::shared().expect("postgres starts");
    let url = pg.fresh_database().expect("fresh database");
    let store = Store::connect(&url).await.expect("connect + migrate");
    assert_eq!(store.backend(), "postgres");
    (store, url)
}

fn at(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
}

fn new_run<'a>(id: &'a str, params: &'a J, parent: Option<&'a str>, secs: i64) -> NewRun<'a> {
    NewRun {
        parent,
        ..NewRun::manual(id, "cb-reset", "alert", "alertmanager", params, at(secs))
    }
}

fn start<'a>(run_id: &'a str, path: &'a str, inputs: &'a J, secs: i64) -> StepStart<'a> {
    StepStart {
        run_id,
        path,
        kind: "http",
        inputs,
        started_at: at(secs),
    }
}

/// What every store backend must do the same way.
async fn store_contract(store: &Store) {
    let params = json!({"breaker": "sink", "note": "ünïcødé ✓ 'quotes' \"and\" \\ back", "n": 3, "nested": {"l": [1, 2.5, null, true]}});
    let a = new_run_id();
    let b = new_run_id();
    store
        .create_run(&new_run(&a, &params, None, 0))
        .await
        .unwrap();
    store
        .create_run(&new_run(&b, &json!({}), Some(&a), 1))
        .await
        .unwrap();
    // A duplicate id is refused, not overwritten.
    assert!(
        store
            .create_run(&new_run(&a, &json!({}), None, 2))
            .await
            .is_err()
    );

    let inputs = json!({"url": "http://x/", "token": "***"});
    for (i, path) in ["check", "loop[0].call", "loop[1].call", "on_failure.tell"]
        .iter()
        .enumerate()
    {
        store
            .start_step(&start(&a, path, &inputs, 10 + i as i64))
            .await
            .unwrap();
    }
    let big = "x".repeat(200_000);
    let outputs = json!({"status": 200, "body": {"big": big, "emoji": "🚨"}});
    let logs = vec![
        "HTTP 200, 5 bytes".to_string(),
        "line with \u{0007} bell".to_string(),
    ];
    store
        .finish_step(&StepEnd {
            run_id: &a,
            path: "check",
            status: "succeeded",
            outputs: &outputs,
            logs: &logs,
            error: None,
            attempts: 3,
            finished_at: at(20),
        })
        .await
        .unwrap();
    store
        .finish_step(&StepEnd {
            run_id: &a,
            path: "loop[0].call",
            status: "failed",
            outputs: &J::Null,
            logs: &[],
            error: Some("unexpected HTTP status 503: warming up"),
            attempts: 1,
            finished_at: at(21),
        })
        .await
        .unwrap();
    // Starting a step again (a resumed idempotent step) resets it and keeps its place.
    store
        .start_step(&start(&a, "loop[0].call", &json!({"again": true}), 30))
        .await
        .unwrap();

    let (run_a, steps) = store.get_run(&a).await.unwrap();
    assert_eq!(run_a.id, a);
    assert_eq!(run_a.runbook, "cb-reset");
    assert_eq!(run_a.status, "running");
    assert_eq!(run_a.trigger, "alert");
    assert_eq!(run_a.who, "alertmanager");
    assert_eq!(run_a.params, params);
    assert_eq!(run_a.parent_run, None);
    assert_eq!(run_a.started_at, "2026-09-21T14:13:20.000Z");
    let paths: Vec<&str> = steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["check", "loop[0].call", "loop[1].call", "on_failure.tell"]
    );
    let check = &steps[0];
    assert_eq!((check.status.as_str(), check.attempts), ("succeeded", 3));
    assert_eq!(check.inputs, inputs);
    assert_eq!(check.outputs, outputs);
    assert_eq!(check.logs, logs);
    assert_eq!(
        check.finished_at.as_deref(),
        Some("2026-09-21T14:13:40.000Z")
    );
    let again = &steps[1];
    assert_eq!(again.status, "running");
    assert_eq!(again.inputs, json!({"again": true}));
    assert_eq!(
        (again.error.as_deref(), again.finished_at.as_deref()),
        (None, None)
    );
    let (run_b, _) = store.get_run(&b).await.unwrap();
    assert_eq!(run_b.parent_run.as_deref(), Some(a.as_str()));

    // Newest first; the limit holds.
    let listed: Vec<String> = store
        .list_runs(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [b.clone(), a.clone()]);
    assert_eq!(store.list_runs(1).await.unwrap().len(), 1);

    store
        .set_run_status(&a, RunStatus::WaitingApproval)
        .await
        .unwrap();
    store
        .finish_run(&b, RunStatus::Succeeded, None, at(40))
        .await
        .unwrap();
    let unfinished: Vec<(String, String)> = store
        .unfinished_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect();
    assert_eq!(unfinished, [(a.clone(), "waiting_approval".to_string())]);
    let (run_b, _) = store.get_run(&b).await.unwrap();
    assert_eq!(
        (run_b.status.as_str(), run_b.finished_at.as_deref()),
        ("succeeded", Some("2026-09-21T14:14:00.000Z"))
    );
    store
        .finish_run(&a, RunStatus::Failed, Some("check: boom"), at(41))
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&a).await.unwrap().0.error.as_deref(),
        Some("check: boom")
    );
    assert!(store.unfinished_runs().await.unwrap().is_empty());

    assert!(matches!(
        store.get_run("r-nope").await,
        Err(StoreError::NoSuchRun(_))
    ));
    assert!(matches!(
        store.set_run_status("r-nope", RunStatus::Failed).await,
        Err(StoreError::NoSuchRun(_))
    ));

    // Approvals: asking twice keeps one request; a decision is recorded once.
    store
        .request_approval(
            &a,
            "gate",
            "Reset all breakers?",
            &ApprovalPolicy::default(),
        )
        .await
        .unwrap();
    store
        .request_approval(&a, "gate", "asked again", &ApprovalPolicy::default())
        .await
        .unwrap();
    let pending = store.pending_approvals().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].message.as_str(), pending[0].status.as_str()),
        ("Reset all breakers?", "pending")
    );
    assert_eq!(
        store
            .decide(&a, false, "bob", Some("not now"))
            .await
            .unwrap(),
        ["gate"]
    );
    let decided = store.approval(&a, "gate").await.unwrap().unwrap();
    assert_eq!(
        (
            decided.status.as_str(),
            decided.decided_by.as_deref(),
            decided.comment.as_deref()
        ),
        ("rejected", Some("bob"), Some("not now"))
    );
    assert!(decided.decided_at.is_some());
    assert!(matches!(
        store.decide(&a, true, "carol", None).await,
        Err(StoreError::NoPendingApproval(_))
    ));
    assert!(matches!(
        store.decide("r-nope", true, "carol", None).await,
        Err(StoreError::NoPendingApproval(_))
    ));
    assert_eq!(store.approval(&a, "other").await.unwrap(), None);
    store
        .request_approval(&b, "gate", "timeout?", &ApprovalPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .decide_as(&b, "approved", "timeout", None)
            .await
            .unwrap(),
        ["gate"]
    );
    assert!(store.pending_approvals().await.unwrap().is_empty());

    // A policy kept with the request: only the approvers decide, and the
    // run's starter may reject but not approve.
    let c = format!("{a}-policy");
    store
        .create_run(&new_run(&c, &json!({}), None, 50))
        .await
        .unwrap();
    let policy = ApprovalPolicy {
        approvers: Some(vec!["alice".into(), "dave".into()]),
        not_by: Some("dave".into()),
    };
    store
        .request_approval(&c, "gate", "go?", &policy)
        .await
        .unwrap();
    let kept = store.approval(&c, "gate").await.unwrap().unwrap();
    assert_eq!(
        (kept.approvers.clone(), kept.not_by.clone()),
        (policy.approvers.clone(), policy.not_by.clone())
    );
    assert!(matches!(
        store.decide(&c, true, "mallory", None).await,
        Err(StoreError::NotAnApprover { .. })
    ));
    assert!(matches!(
        store.decide(&c, true, "dave", None).await,
        Err(StoreError::SelfApproval { .. })
    ));
    assert_eq!(
        store.approval(&c, "gate").await.unwrap().unwrap().status,
        "pending",
        "a refused decision changes nothing"
    );
    assert_eq!(
        store.decide(&c, true, "alice", None).await.unwrap(),
        ["gate"]
    );

    // Deliveries about a run, in order, with their outcome.
    for (i, ok) in [(0, true), (1, false)] {
        store
            .record_delivery(&DeliveryRecord {
                run_id: c.clone(),
                at: at(60 + i),
                channel: format!("ch{i}"),
                event: "run_failed".into(),
                ok,
                attempts: 1 + i,
                error: (!ok).then(|| "HTTP 404".to_string()),
            })
            .await
            .unwrap();
    }
    let d = store.deliveries_of(&c).await.unwrap();
    assert_eq!(
        d.iter()
            .map(|d| (d.channel.as_str(), d.ok, d.attempts, d.error.as_deref()))
            .collect::<Vec<_>>(),
        [("ch0", true, 1, None), ("ch1", false, 2, Some("HTTP 404"))]
    );
    assert!(store.deliveries_of(&a).await.unwrap().is_empty());
}

/// Runs `n` copies of `attempt(i)` at once, alternating between the two
/// connections (two service instances on one database); how many won.
async fn race<F, Fut>(a: &Store, b: &Store, n: usize, attempt: F) -> usize
where
    F: Fn(Store, usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(attempt(if i % 2 == 0 { a.clone() } else { b.clone() }, i)))
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    won
}

/// The service's shared state: every claim has exactly one winner when
/// instances race for it, whatever the backend.
async fn service_contract(a: &Store, b: &Store) {
    let empty = json!({});
    // One run per trigger claim: racing creators get `Claimed` naming the winner.
    let ids: Vec<String> = (0..12).map(|_| new_run_id()).collect();
    let ids = std::sync::Arc::new(ids);
    let won = race(a, b, 12, |store, i| {
        let ids = ids.clone();
        async move {
            let params = json!({});
            let run = NewRun {
                claim: Some("schedule:nightly@2026-11-23T02:00:00Z"),
                guard_key: Some("nightly|*"),
                owner: Some("instance-a"),
                ..NewRun::manual(
                    &ids[i],
                    "nightly",
                    "schedule",
                    "scheduler",
                    &params,
                    at(i as i64),
                )
            };
            match store.create_run(&run).await {
                Ok(()) => true,
                Err(StoreError::Claimed { .. }) => false,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
    })
    .await;
    assert_eq!(won, 1, "a trigger claim had {won} winners");
    let winner = a
        .run_by_claim("schedule:nightly@2026-11-23T02:00:00Z")
        .await
        .unwrap()
        .expect("claimed run");
    let loser = ids.iter().find(|id| **id != winner.id).unwrap();
    match b
        .create_run(&NewRun {
            claim: Some("schedule:nightly@2026-11-23T02:00:00Z"),
            ..NewRun::manual(loser, "nightly", "schedule", "scheduler", &empty, at(0))
        })
        .await
    {
        Err(StoreError::Claimed { run_id, .. }) => assert_eq!(run_id, winner.id),
        other => panic!("expected Claimed, got {other:?}"),
    }

    // Guard locks: one holder; only the holder releases or hands it on.
    let won = race(a, b, 20, |store, i| async move {
        store
            .try_lock("cb-reset|sink", &format!("run-{i}"), "inst", at(0))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(won, 1, "a guard lock had {won} holders");
    let holder = a.lock_holder("cb-reset|sink").await.unwrap().expect("held");
    assert!(!b.unlock("cb-reset|sink", "someone-else").await.unwrap());
    assert!(
        b.transfer_lock("cb-reset|sink", &holder, "run-next", "inst-b")
            .await
            .unwrap()
    );
    assert_eq!(
        a.lock_holder("cb-reset|sink").await.unwrap().as_deref(),
        Some("run-next")
    );
    assert!(a.unlock("cb-reset|sink", "run-next").await.unwrap());
    assert_eq!(a.lock_holder("cb-reset|sink").await.unwrap(), None);
    // A lock left behind by a finished run is released; a live run keeps its own.
    assert!(
        a.try_lock("nightly|*", &winner.id, "inst", at(0))
            .await
            .unwrap()
    );
    assert!(
        a.try_lock("stale", "run-gone", "inst", at(0))
            .await
            .unwrap()
    );
    assert_eq!(b.release_finished_locks().await.unwrap(), 1);
    assert_eq!(
        a.lock_holder("nightly|*").await.unwrap(),
        Some(winner.id.clone())
    );

    // Schedule fires: compare-and-set, newer fires only, one winner each.
    let fire = at(100);
    let won = race(a, b, 20, move |store, i| async move {
        store
            .claim_fire("nightly", fire, &format!("inst-{i}"))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(won, 1, "a schedule fire had {won} winners");
    assert!(!a.claim_fire("nightly", fire, "late").await.unwrap());
    assert!(!a.claim_fire("nightly", at(50), "older").await.unwrap());
    let next = at(200);
    let won = race(a, b, 20, move |store, i| async move {
        store
            .claim_fire("nightly", next, &format!("inst-{i}"))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(won, 1);
    assert_eq!(
        b.schedule_fires().await.unwrap().get("nightly"),
        Some(&next)
    );

    // Adoption of a dead instance's run and starting a queued run: one winner.
    let adoptee = new_run_id();
    a.create_run(&NewRun {
        owner: Some("dead-instance"),
        ..NewRun::manual(&adoptee, "x", "manual", "t", &empty, at(1))
    })
    .await
    .unwrap();
    let id = adoptee.clone();
    let won = race(a, b, 10, move |store, i| {
        let id = id.clone();
        async move {
            store
                .adopt_run(&id, "dead-instance", &format!("inst-{i}"))
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(won, 1, "a run was adopted {won} times");
    let queued = new_run_id();
    a.create_run(&NewRun {
        status: RunStatus::Queued,
        guard_key: Some("q|*"),
        ..NewRun::manual(&queued, "q", "manual", "t", &empty, at(2))
    })
    .await
    .unwrap();
    assert_eq!(
        b.queued_for("q|*").await.unwrap().map(|r| r.id),
        Some(queued.clone())
    );
    let id = queued.clone();
    let won = race(a, b, 10, move |store, i| {
        let id = id.clone();
        async move {
            store
                .start_queued(&id, &format!("inst-{i}"), at(3))
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(won, 1, "a queued run started {won} times");
    assert!(b.queued_runs().await.unwrap().is_empty());

    // Instances and leases.
    a.register_instance("inst-a", "host-a").await.unwrap();
    b.register_instance("inst-b", "host-b").await.unwrap();
    assert!(a.heartbeat("inst-a").await.unwrap());
    b.stop_instance("inst-b").await.unwrap();
    assert!(
        !b.heartbeat("inst-b").await.unwrap(),
        "a stopped instance renewed its lease"
    );
    let far = Utc::now() + chrono::Duration::hours(1);
    // inst-b stopped cleanly and owns nothing: not dead. From inst-b's view inst-a's lease ran out.
    assert_eq!(
        a.dead_instances(far, "inst-a").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(b.dead_instances(far, "inst-b").await.unwrap(), ["inst-a"]);
    let names: Vec<String> = a
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), 2);

    // Cancel requests reach the owner once; queued runs cancel at once.
    let owned = new_run_id();
    a.create_run(&NewRun {
        owner: Some("inst-a"),
        ..NewRun::manual(&owned, "x", "manual", "t", &empty, at(4))
    })
    .await
    .unwrap();
    assert!(b.request_cancel(&owned, "alice").await.unwrap());
    assert!(!b.request_cancel(&owned, "bob").await.unwrap());
    assert_eq!(
        a.cancel_requests("inst-a").await.unwrap(),
        [(owned.clone(), "alice".to_string())]
    );
    let q2 = new_run_id();
    a.create_run(&NewRun {
        status: RunStatus::Queued,
        ..NewRun::manual(&q2, "q", "manual", "t", &empty, at(5))
    })
    .await
    .unwrap();
    assert!(b.cancel_queued(&q2, "alice").await.unwrap());
    assert!(!a.cancel_queued(&q2, "alice").await.unwrap());
    assert_eq!(a.get_run(&q2).await.unwrap().0.status, "cancelled");

    // Silences and durable settings, across connections.
    let silence = SilenceRecord {
        id: "s1".into(),
        matchers: vec![
            "alertname=\"CircuitBreakerOpen\"".into(),
            "name=~\"sink|source\"".into(),
        ],
        starts_at: at(0),
        ends_at: at(200 * 86_400),
        created_by: "alice".into(),
        comment: "maintenance ✓".into(),
    };
    a.upsert_silence(&silence).await.unwrap();
    let mut changed = silence.clone();
    changed.comment = "extended".into();
    b.upsert_silence(&changed).await.unwrap();
    assert_eq!(a.silences(Utc::now()).await.unwrap(), [changed]);
    assert_eq!(a.get_state("kill_switch").await.unwrap(), None);
    a.set_state("kill_switch", "on", "alice").await.unwrap();
    b.set_state("kill_switch", "off", "bob").await.unwrap();
    assert_eq!(
        a.get_state("kill_switch").await.unwrap().as_deref(),
        Some("off")
    );

    // Guard accounting and filters.
    assert_eq!(a.starts_since("nightly|*", at(0)).await.unwrap(), 1);
    assert_eq!(
        a.last_start("nightly|*").await.unwrap(),
        Some(at(winner_offset(&ids, &winner.id)))
    );
    let filtered = b
        .find_runs(&RunFilter {
            runbook: Some("nightly".into()),
            status: Some("running".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let filtered: Vec<&str> = filtered.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(filtered, [winner.id.as_str()]);
    b.ping().await.unwrap();
}

/// Which second the winning racer started at (`at(i)` for racer `i`).
fn winner_offset(ids: &[String], winner: &str) -> i64 {
    ids.iter().position(|id| id == winner).unwrap() as i64
}

#[tokio::test]
async fn sqlite_service_contract() {
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite_store(dir.path()).await;
    let b = sqlite_store(dir.path()).await;
    service_contract(&a, &b).await;
}

#[tokio::test]
async fn postgres_service_contract() {
    let (a, url) = postgres_store().await;
    let b = Store::connect(&url).await.unwrap();
    service_contract(&a, &b).await;
}

#[tokio::test]
async fn sqlite_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    store_contract(&sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn postgres_store_keeps_the_same_contract() {
    let (store, _) = postgres_store().await;
    store_contract(&store).await;
}

#[tokio::test]
async fn postgres_migrations_run_once_and_reconnecting_keeps_the_data() {
    let (store, url) = postgres_store().await;
    let params = json!({"a": 1});
    let id = new_run_id();
    store
        .create_run(&new_run(&id, &params, None, 0))
        .await
        .unwrap();
    drop(store);
    let again = Store::connect(&url)
        .await
        .expect("second connect migrates nothing");
    assert_eq!(again.get_run(&id).await.unwrap().0.params, params);
    let db = url.rsplit('/').next().unwrap();
    let pg = Postgres::shared().unwrap();
    let applied: usize = pg
        .psql(db, "SELECT count(*) FROM _sqlx_migrations WHERE success")
        .unwrap()
        .parse()
        .unwrap();
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../automation/migrations"
    ))
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
    })
    .count();
    assert_eq!(applied, files);
    assert_eq!(pg.psql(db, "SELECT count(*) FROM runs").unwrap(), "1");
}

/// A whole run through the executor on PostgreSQL: every step recorded in
/// order with redacted inputs, an approval decided through a second
/// connection (as `sluice approve` in another process would), parallel
/// children recorded each once.
#[tokio::test]
async fn runs_are_recorded_in_postgres_with_secrets_redacted() {
    let (store, url) = postgres_store().await;
    let sv = services(
        config("secrets:\n  api_key: sk-live-0123456789\n"),
        Some(store),
    );
    let rb = runbook(
        r#"
name: pg-run
params:
  who: {default: ops}
steps:
  - id: hello
    exec: {argv: [echo, "hi {{params.who}} {{secrets.api_key}}"]}
  - id: fan
    parallel:
      max_concurrency: 4
      steps:
        - {id: c0, exec: {argv: ["true"]}}
        - {id: c1, exec: {argv: ["true"]}}
        - {id: c2, exec: {argv: ["true"]}}
        - {id: c3, exec: {argv: ["true"]}}
        - {id: c4, exec: {argv: ["true"]}}
        - {id: c5, exec: {argv: ["true"]}}
  - id: gate
    approval: {message: "Go on?"}
  - id: after
    exec: {argv: [echo, "by {{steps.gate.output.by}}"]}
"#,
    );
    let task = tokio::spawn({
        let (sv, rb) = (sv.clone(), rb.clone());
        async move { run(&sv, &rb, &[]).await }
    });
    // Another connection decides, like `sluice approve` in another process.
    let other = Store::connect(&url).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..500 {
        pending = other.pending_approvals().await.unwrap();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pending.len(), 1, "no approval requested");
    assert_eq!(
        other.get_run(&pending[0].run_id).await.unwrap().0.status,
        "waiting_approval"
    );
    other
        .decide(&pending[0].run_id, true, "alice", Some("ok"))
        .await
        .unwrap();
    let out = task.await.unwrap();
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["after"]["output"]["stdout"], "by alice\n");

    let (rec, steps) = other.get_run(&out.id).await.unwrap();
    assert_eq!(rec.status, "succeeded");
    let paths: Vec<&str> = steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths.len(), 10, "{paths:?}");
    assert_eq!(paths[0], "hello");
    assert_eq!(paths[1], "fan");
    assert_eq!(&paths[8..], ["gate", "after"]);
    let mut children: Vec<&str> = paths[2..8].to_vec();
    children.sort();
    assert_eq!(
        children,
        ["fan.c0", "fan.c1", "fan.c2", "fan.c3", "fan.c4", "fan.c5"]
    );
    assert!(steps.iter().all(|s| s.status == "succeeded"), "{steps:#?}");
    let dump = serde_json::to_string(&(&rec, &steps)).unwrap();
    assert!(
        !dump.contains("sk-live-0123456789"),
        "secret stored: {dump}"
    );
    assert_eq!(steps[0].inputs["argv"][1], "hi ops ***");
    assert_eq!(steps[0].outputs["stdout"], "hi ops ***\n");

    // Concurrent starts of the parallel children each got their own place in the order.
    let db = url.rsplit('/').next().unwrap();
    let seqs = Postgres::shared()
        .unwrap()
        .psql(
            db,
            &format!(
                "SELECT count(DISTINCT seq) || '/' || count(*) FROM steps WHERE run_id = '{}'",
                out.id
            ),
        )
        .unwrap();
    assert_eq!(seqs, "10/10", "steps share a position in the run's order");
}

#[tokio::test]
async fn many_concurrent_runs_on_one_postgres_store() {
    let (store, _) = postgres_store().await;
    many_concurrent_runs(store).await;
}

#[tokio::test]
async fn many_concurrent_runs_on_one_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    many_concurrent_runs(sqlite_store(dir.path()).await).await;
}

/// 50 runs of 3 steps at once: every step recorded, in order, once.
async fn many_concurrent_runs(store: Store) {
    let sv = services(config(""), Some(store.clone()));
    let rb = runbook(
        "name: many\nsteps:\n  - {id: a, sleep: 0s}\n  - {id: b, sleep: 0s}\n  - {id: c, sleep: 0s}\n",
    );
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (sv, rb) = (sv.clone(), rb.clone());
        tasks.push(tokio::spawn(async move { run(&sv, &rb, &[]).await }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let out = t.await.unwrap();
        assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
        ids.push(out.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "run ids collided");
    for id in &ids {
        let (rec, steps) = store.get_run(id).await.unwrap();
        assert_eq!(rec.status, "succeeded");
        let paths: Vec<&str> = steps.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "c"]);
    }
}
