//! Rule groups over the real in-memory store and evaluator: lifecycle events,
//! write-back of ALERTS and recording rules, and `for` state across a restart.

use std::sync::Arc;
use std::time::Duration;

use sluice_automation::alert::{
    AlertEventKind, AlertSource, AlertState, FileStateStore, ForStateStore, LocalEngine,
    RuleManager, RuleManagerOptions,
};
use sluice_automation::scrape::SampleSink;
use sluice_promql::{Evaluator, Labels, MemStorage, Value};

const RULES: &str = r#"
groups:
  - name: engine
    interval: 1s
    limit: 5
    rules:
      - record: backlog:sum
        expr: sum(sluice_backlog_size)
      - alert: LagHigh
        expr: backlog:sum > 100
        for: 3s
        labels:
          severity: warning
        annotations:
          description: "backlog is {{ $value }}"
"#;

fn setup(dir: &std::path::Path) -> (Arc<MemStorage>, Arc<RuleManager>) {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let storage = Arc::new(MemStorage::new(Duration::from_secs(3600)));
    let store: Arc<dyn ForStateStore> =
        Arc::new(FileStateStore::open(dir.join("alert-state.json")).unwrap());
    let mgr = Arc::new(RuleManager::new(
        Arc::new(LocalEngine::new(storage.clone())),
        storage.clone(),
        Some(store),
        RuleManagerOptions::default(),
    ));
    let groups = mgr.load_files(&[rules]).unwrap();
    mgr.set_groups(groups);
    (storage, mgr)
}

fn backlog(storage: &MemStorage, t: i64, v: f64) {
    let l = vec![
        ("__name__".to_string(), "sluice_backlog_size".to_string()),
        ("topic".to_string(), "in".to_string()),
    ];
    SampleSink::append(storage, &l, t, v);
}

fn query(storage: &MemStorage, q: &str, t: i64) -> Vec<(Labels, f64)> {
    match Evaluator::default()
        .instant(storage, &sluice_promql::parse(q).unwrap(), t)
        .unwrap()
    {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lifecycle_events_and_write_back() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, mgr) = setup(dir.path());
    let mut events = mgr.subscribe();
    let t0 = 1_700_000_000_000;
    for (i, v) in [50.0, 150.0, 150.0, 150.0, 150.0, 20.0].iter().enumerate() {
        let t = t0 + i as i64 * 1000;
        backlog(&storage, t - 100, *v);
        let reports = mgr.eval_all(t);
        assert!(reports.iter().all(|r| r.errors.is_empty()), "{reports:?}");
        let alerts = mgr.alerts();
        match i {
            0 => assert!(alerts.is_empty()),
            1..=3 => assert_eq!(alerts[0].1.state, AlertState::Pending, "at step {i}"),
            4 => assert_eq!(alerts[0].1.state, AlertState::Firing),
            _ => assert_eq!(alerts[0].1.state, AlertState::Inactive),
        }
    }
    let firing = events.try_recv().unwrap();
    assert_eq!(firing.kind, AlertEventKind::Firing);
    assert_eq!(firing.name, "LagHigh");
    assert_eq!(firing.since_ms, t0 + 1000);
    assert_eq!(firing.at_ms, t0 + 4000);
    assert_eq!(firing.annotations["description"], "backlog is 150");
    assert_eq!(firing.labels["severity"], "warning");
    assert!(matches!(firing.source, AlertSource::Rule { ref group, .. } if group == "engine"));
    let resolved = events.try_recv().unwrap();
    assert_eq!(resolved.kind, AlertEventKind::Resolved);
    assert_eq!(resolved.fingerprint, firing.fingerprint);
    assert_eq!(resolved.ended_ms, Some(t0 + 5000));
    assert!(
        events.try_recv().is_err(),
        "pending transitions are not events"
    );

    // Recording rule and ALERTS written back to the store.
    assert_eq!(query(&storage, "backlog:sum", t0 + 3000)[0].1, 150.0);
    let alerts = query(&storage, "ALERTS", t0 + 4000);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].0.get("alertstate"), Some("firing"));
    assert_eq!(
        query(&storage, "ALERTS_FOR_STATE", t0 + 4000)[0].1,
        ((t0 + 1000) / 1000) as f64
    );
    // Resolved: the ALERTS series got a staleness marker.
    assert!(query(&storage, "ALERTS", t0 + 5000).is_empty());
}

#[test]
fn for_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    {
        let (storage, mgr) = setup(dir.path());
        backlog(&storage, t0 - 100, 500.0);
        mgr.eval_all(t0);
        assert_eq!(mgr.alerts()[0].1.state, AlertState::Pending);
    }
    // A new process: fresh store (scraped again), same state file.
    let (storage, mgr) = setup(dir.path());
    let mut events = mgr.subscribe();
    assert_eq!(mgr.alerts().len(), 1, "restored from the state file");
    backlog(&storage, t0 + 2900, 500.0);
    mgr.eval_all(t0 + 3000);
    // `for: 3s` counted from the first activation before the restart.
    let a = &mgr.alerts()[0].1;
    assert_eq!((a.state, a.active_at_ms), (AlertState::Firing, t0));
    assert_eq!(events.try_recv().unwrap().kind, AlertEventKind::Firing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_loop_evaluates_on_aligned_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, mgr) = setup(dir.path());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut events = mgr.subscribe();
    let now = chrono::Utc::now().timestamp_millis();
    // A high backlog already stored for the whole test window.
    for i in -1..8 {
        backlog(&storage, now + i * 1000, 1000.0);
    }
    let handle = tokio::spawn(mgr.clone().run(rx));
    let ev = tokio::time::timeout(Duration::from_secs(8), events.recv())
        .await
        .expect("alert fires within 8 s")
        .unwrap();
    assert_eq!(ev.kind, AlertEventKind::Firing);
    // Evaluations happen at whole seconds + the 300 ms offset.
    assert_eq!(ev.at_ms.rem_euclid(1000), 300);
    assert!(ev.at_ms - ev.since_ms >= 3000);
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}
