//! The engine's operational surface through its HTTP API on a running
//! process, against a real broker (Tansu): the sink breaker under injected
//! failures, maintenance, config changes, state export/import into a new
//! engine, diagnostics, auth.

use std::time::Duration;

use serde_json::Value;
use sluice_tests::engine_process::{EngineProcess, wait_for};
use sluice_tests::kafka;

use crate::engine_support::*;

const TOPICS: &[&str] = &["input", "copied", "counts"];

async fn breaker_state(e: &EngineProcess) -> f64 {
    e.metric("sluice_circuit_breaker_state{name=\"sink\"}")
        .await
        .unwrap()
        .expect("breaker state metric")
}

async fn wait_breaker(e: &EngineProcess, state: f64, what: &str) {
    wait_for(Duration::from_secs(30), what, || async {
        Ok((breaker_state(e).await == state).then_some(()))
    })
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", e.log()));
}

async fn wait_processed(e: &EngineProcess, n: f64) {
    wait_for(Duration::from_secs(60), "records processed", || async {
        Ok((processed(e).await >= n).then_some(()))
    })
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", e.log()));
}

async fn config_of(e: &EngineProcess) -> Value {
    e.get("/admin/config").await.unwrap().body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_under_injected_sink_failures_and_closes_after_recovery() {
    let broker = broker(TOPICS, 3).await;
    let bs = broker.bootstrap();
    let extra = "circuit_breaker:\n  failure_threshold: 3\n  timeout_seconds: 1\n  recovery_timeout: 5\n  success_threshold: 2\nwatermarks:\n  max_out_of_orderness_ms: 60000\n";
    let e = ready_engine(
        &config(&bs, "breaker", extra),
        &["--enable-fault-injection"],
    )
    .await;
    let f = e
        .post_ok(
            "/admin/fault-injection",
            Some(r#"{"sink_failure_rate": 1.0}"#),
        )
        .await
        .unwrap();
    assert_eq!(f["sink_failure_rate"], 1.0);
    let first = records(0, 50, 5, 1_000, 10);
    produce_input(&bs, &first).await;
    wait_breaker(&e, 1.0, "breaker open").await;
    let ready = e.get("/ready").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.body["checks"]["circuit_breakers"]["ok"], false);
    assert!(
        ready.body["checks"]["circuit_breakers"]["detail"]
            .as_str()
            .unwrap()
            .contains("open"),
        "{}",
        ready.text
    );
    // Half-open probes keep failing: it reopens; nothing delivered, nothing committed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = e
        .get("/admin/circuit-breaker/monthly-stats")
        .await
        .unwrap()
        .body;
    assert!(
        stats["breakers"][0]["times_opened"].as_u64().unwrap() >= 2,
        "reopened after a failed probe: {stats}"
    );
    assert!(
        e.metric("sluice_circuit_breaker_failures_total{name=\"sink\"}")
            .await
            .unwrap()
            .unwrap()
            >= 3.0
    );
    let copied = kafka::read_all(&bs, "copied", Duration::from_secs(10)).unwrap();
    assert!(copied.is_empty(), "nothing reaches the sink while failing");
    let committed = kafka::committed(&bs, "breaker", "input").unwrap();
    assert_eq!(
        committed.values().sum::<i64>(),
        0,
        "no offset committed past undelivered results: {committed:?}"
    );

    // The sink recovers: a half-open probe succeeds, the breaker closes, everything arrives.
    let cleared = e
        .call("DELETE", "/admin/fault-injection", None)
        .await
        .unwrap();
    assert_eq!(cleared.status, 200);
    wait_breaker(&e, 0.0, "breaker closed").await;
    let copied = kafka::read_until(&bs, "copied", Duration::from_secs(30), |m| {
        ids(m).len() == first.len()
    })
    .await
    .unwrap();
    assert_eq!(ids(&copied).len(), first.len());
    let stats = e
        .get("/admin/circuit-breaker/monthly-stats")
        .await
        .unwrap()
        .body;
    let transitions: Vec<(String, String)> = stats["breakers"][0]["last_transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["to"].as_str().unwrap().to_owned(),
                t["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        transitions.first(),
        Some(&("closed".to_owned(), "success threshold reached".to_owned())),
        "newest first: {stats}"
    );
    assert!(transitions.iter().any(|(to, _)| to == "half_open"));
    assert!(stats["breakers"][0]["total_open_seconds"].as_f64().unwrap() >= 1.0);
    e.wait_ready(Duration::from_secs(10)).await.unwrap();

    // Forced reset while failing again: the answer says what it was, and records still arrive.
    e.post_ok(
        "/admin/fault-injection",
        Some(r#"{"sink_failure_rate": 1.0}"#),
    )
    .await
    .unwrap();
    let second = records(50, 60, 5, 1_000, 10);
    produce_input(&bs, &second).await;
    wait_breaker(&e, 1.0, "breaker open again").await;
    let reset = e
        .post_ok("/admin/circuit-breaker/reset?name=sink", None)
        .await
        .unwrap();
    assert_eq!(reset["reset"][0]["previous_state"], "open", "{reset}");
    assert_eq!(reset["reset"][0]["state"], "closed");
    let unknown = e
        .post("/admin/circuit-breaker/reset", Some(r#"{"name": "db"}"#))
        .await
        .unwrap();
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    e.call("DELETE", "/admin/fault-injection", None)
        .await
        .unwrap();
    let all = e
        .post_ok("/admin/circuit-breaker/reset-all", None)
        .await
        .unwrap();
    assert_eq!(all["reset"][0]["state"], "closed");
    wait_breaker(&e, 0.0, "breaker closed after reset").await;
    let copied = kafka::read_until(&bs, "copied", Duration::from_secs(30), |m| {
        ids(m).len() == 60
    })
    .await
    .unwrap();
    assert_eq!(ids(&copied).len(), 60, "{}", e.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_pauses_intake_and_keeps_health_green() {
    let broker = broker(TOPICS, 3).await;
    let bs = broker.bootstrap();
    let e = ready_engine(&config(&bs, "maint", ""), &[]).await;
    let absent = e
        .post("/admin/fault-injection", Some(r#"{"sink_failures": 1}"#))
        .await
        .unwrap();
    assert_eq!(absent.status, 404, "fault injection needs the flag");
    produce_input(&bs, &records(0, 20, 4, 1_000, 10)).await;
    wait_processed(&e, 20.0).await;

    let on = e.post_ok("/admin/maintenance/enable", None).await.unwrap();
    assert_eq!(on["maintenance"], true);
    assert_eq!(on["was_enabled"], false);
    produce_input(&bs, &records(20, 40, 4, 1_000, 10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(processed(&e).await, 20.0, "intake paused in maintenance");
    let health = e.get("/health").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body["maintenance"], true);
    // Still ready (the seed's deploy_config.sh checks /ready in maintenance);
    // readiness says that intake is paused and why.
    let ready = e.get("/ready").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["intake"], "paused");
    assert_eq!(ready.body["checks"]["maintenance"]["enabled"], true);
    assert!(
        ready.body["checks"]["maintenance"]["detail"]
            .as_str()
            .unwrap()
            .contains("intake paused")
    );
    assert_eq!(ready.body["checks"]["kafka"]["ok"], true, "{}", ready.text);
    assert_eq!(
        e.metric("sluice_maintenance_mode").await.unwrap(),
        Some(1.0)
    );
    let threads = e.get("/admin/threads").await.unwrap().body;
    assert_eq!(threads["workers"][0]["activity"], "paused", "{threads}");
    assert_eq!(threads["stalled_workers"], false);
    let again = e.post_ok("/admin/maintenance/enable", None).await.unwrap();
    assert_eq!(again["was_enabled"], true, "idempotent");

    let off = e.post_ok("/admin/maintenance/disable", None).await.unwrap();
    assert_eq!(off["maintenance"], false);
    wait_processed(&e, 40.0).await;
    let ready = e.get("/ready").await.unwrap();
    assert_eq!(ready.body["intake"], "running", "{}", ready.text);
    assert_eq!(
        e.metric("sluice_maintenance_mode").await.unwrap(),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_are_validated_and_a_bad_one_leaves_the_old_in_force() {
    let broker = broker(TOPICS, 1).await;
    let bs = broker.bootstrap();
    let base = config(&bs, "config", "circuit_breaker:\n  failure_threshold: 10\n");
    let e = ready_engine(&base, &[]).await;
    let before = config_of(&e).await;
    assert_eq!(before["circuit_breaker"]["failure_threshold"], 10);

    // Bad patches: rejected with the reason, nothing changes.
    let r = e
        .patch_config(r#"{"resource_limits": {"max_total_memory": 10}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(
        r.body["problems"][0]["field"], "resource_limits.max_operator_memory",
        "{}",
        r.text
    );
    let r = e
        .patch_config(r#"{"performance": {"batch_size": 1000, "enable_caching": true}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    assert!(r.text.contains("unknown field `performance`"), "{}", r.text);
    let r = e
        .patch_config(r#"{"queries": [{"name": "x", "sql": "SELEC 1", "source_topic": "a", "sink_topic": "b"}]}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    assert!(r.text.contains("queries[0].sql"), "{}", r.text);
    assert_eq!(
        config_of(&e).await,
        before,
        "a bad PUT leaves the old config in force"
    );

    // Good patches: a live setting applies in place, a data-path one restarts the pipeline.
    let r = e
        .patch_config(r#"{"circuit_breaker": {"failure_threshold": 4}}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["pipeline_restarted"], false);
    let r = e
        .patch_config(r#"{"processing": {"batch_size": 10}}"#)
        .await
        .unwrap();
    assert_eq!(r.body["pipeline_restarted"], true, "{}", r.text);
    let now = config_of(&e).await;
    assert_eq!(now["circuit_breaker"]["failure_threshold"], 4);
    assert_eq!(now["processing"]["batch_size"], 10);
    produce_input(&bs, &records(0, 30, 3, 1_000, 10)).await;
    wait_processed(&e, 30.0).await;

    // Reload: a broken file is refused with its position; the running config stays.
    std::fs::write(
        e.config_path(),
        base.replace("failure_threshold: 10", "failure_threshold: lots"),
    )
    .unwrap();
    let r = e.post("/admin/config/reload", None).await.unwrap();
    assert_eq!(r.status, 422, "{}", r.text);
    let p = &r.body["problems"][0];
    assert_eq!(
        p["field"], "circuit_breaker.failure_threshold",
        "{}",
        r.text
    );
    assert!(p["line"].as_u64().unwrap() > 0, "points into the file: {p}");
    assert_eq!(config_of(&e).await, now);
    std::fs::write(
        e.config_path(),
        base.replace("failure_threshold: 10", "failure_threshold: 7"),
    )
    .unwrap();
    let r = e.post_ok("/admin/config/reload", None).await.unwrap();
    assert_eq!(
        r["pipeline_restarted"], true,
        "the file's batch_size differs: {r}"
    );
    let reloaded = config_of(&e).await;
    assert_eq!(reloaded["circuit_breaker"]["failure_threshold"], 7);
    assert_eq!(
        reloaded["processing"]["batch_size"], 100,
        "the file wins over PUT"
    );
    produce_input(&bs, &records(30, 40, 3, 1_000, 10)).await;
    wait_processed(&e, 40.0).await;
}

/// The state-transfer config: windows stay open (large out-of-orderness).
fn state_config(bs: &str, group: &str, suffix: &str, extra: &str) -> String {
    config(
        bs,
        group,
        &format!("watermarks:\n  max_out_of_orderness_ms: 600000\n{extra}"),
    )
    .replace("sink_topic: copied", &format!("sink_topic: copied{suffix}"))
    .replace("sink_topic: counts", &format!("sink_topic: counts{suffix}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_export_into_a_new_engine_gives_identical_window_results() {
    let broker = broker(&["input", "copied", "counts", "copied_b", "counts_b"], 3).await;
    let bs = broker.bootstrap();
    let mut a = ready_engine(&state_config(&bs, "state-a", "", ""), &[]).await;
    let first = records(0, 200, 5, 10_000, 10);
    produce_input(&bs, &first).await;
    wait_consumed(&a, 200).await;
    a.post_ok("/admin/maintenance/enable", None).await.unwrap();
    let doc = a.get("/admin/state/export").await.unwrap();
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    assert_eq!(doc["version"], 1);
    let per_key = doc["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "per_key")
        .unwrap();
    assert_eq!(per_key["windows"].as_array().unwrap().len(), 2, "{per_key}");
    // Engine A's own results for its 200 records (the reference).
    let drained = a.post_ok("/admin/processing/drain", None).await.unwrap();
    assert_eq!(drained["report"]["windows_flushed"], 2);
    let a_counts = kafka::read_all(&bs, "counts", Duration::from_secs(10)).unwrap();
    assert_counts_exact(&first, &a_counts);
    assert_every_window_complete(&first, &a_counts);
    a.terminate().unwrap();

    // Engine B: another group that starts at the end of the topic, so it has
    // only the imported state of the first 200 records.
    let b_yaml = state_config(&bs, "state-b", "_b", "").replace(
        "  consumer:\n",
        "  consumer:\n    auto.offset.reset: latest\n",
    );
    let b = ready_engine(&b_yaml, &[]).await;
    wait_for(Duration::from_secs(30), "B has its partitions", || async {
        let t = b.get("/admin/threads").await?;
        Ok((t.body["pipeline"]["assigned_partitions"] == 3).then_some(()))
    })
    .await
    .unwrap();
    let text = doc.to_string();
    let r = b.post("/admin/state/import", Some(&text)).await.unwrap();
    assert_eq!(r.status, 409, "import needs maintenance: {}", r.text);
    assert!(r.text.contains("maintenance"), "{}", r.text);
    b.post_ok("/admin/maintenance/enable", None).await.unwrap();
    let mut other_version = doc.clone();
    other_version["version"] = Value::from(2);
    let r = b
        .post("/admin/state/import", Some(&other_version.to_string()))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("version 2 is not supported"), "{}", r.text);
    let mut other_queries = doc.clone();
    other_queries["queries"][0]["name"] = Value::from("renamed");
    let r = b
        .post("/admin/state/import", Some(&other_queries.to_string()))
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("query set differs"), "{}", r.text);
    let r = b
        .post("/admin/state/import", Some("{\"version\": 1}"))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text);
    let r = b.post_ok("/admin/state/import", Some(&text)).await.unwrap();
    assert_eq!(r["imported"], true);
    assert_eq!(r["windows"], 2);

    // B goes on with 100 more records of the same windows; its results must be
    // those of one engine that saw all 300.
    b.post_ok("/admin/maintenance/disable", None).await.unwrap();
    let second = records(200, 300, 5, 10_000, 5);
    produce_input(&bs, &second).await;
    wait_consumed(&b, 300).await;
    let drained = b.post_ok("/admin/processing/drain", None).await.unwrap();
    assert_eq!(drained["report"]["windows_flushed"], 2, "{drained}");
    let b_counts = kafka::read_all(&bs, "counts_b", Duration::from_secs(10)).unwrap();
    let all: Vec<Rec> = first.iter().chain(&second).cloned().collect();
    assert_counts_exact(&all, &b_counts);
    assert_every_window_complete(&all, &b_counts);
    // And without the second batch the windows are A's: same keys, same windows.
    let a_windows: Vec<_> = window_results(&a_counts).into_keys().collect();
    let b_windows: Vec<_> = window_results(&b_counts).into_keys().collect();
    assert_eq!(a_windows, b_windows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_report_real_figures_behind_the_token() {
    let broker = broker(TOPICS, 2).await;
    let bs = broker.bootstrap();
    let extra = "watermarks:\n  max_out_of_orderness_ms: 600000\n";
    let yaml = config(&bs, "diag", extra).replace(
        "admin:\n  listen: 127.0.0.1:0\n",
        "admin:\n  listen: 127.0.0.1:0\n  token: s3cret\n  max_body_bytes: 4096\n",
    );
    let mut e = ready_engine(&yaml, &[]).await;
    // Auth: every /admin path needs the token; probes and metrics stay open.
    let r = e.get("/admin/version").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(e.get("/health").await.unwrap().status, 200);
    assert_eq!(e.get("/metrics").await.unwrap().status, 200);
    e.token = Some("wrong".into());
    assert_eq!(e.get("/admin/config").await.unwrap().status, 401);
    e.token = Some("s3cret".into());
    let big = format!(
        r#"{{"processing": {{"batch_size": 5}}, "x": "{}"}}"#,
        "y".repeat(5000)
    );
    assert_eq!(e.patch_config(&big).await.unwrap().status, 413);

    produce_input(&bs, &records(0, 100, 4, 1_000, 10)).await;
    wait_processed(&e, 100.0).await;
    // Figures are published every second.
    let perf = wait_for(Duration::from_secs(10), "query figures", || async {
        let p = e.get("/admin/queries/performance").await?.body;
        let done = p["queries"]
            .as_array()
            .is_some_and(|q| q.iter().all(|q| q["records_in"] == 100));
        Ok(done.then_some(p))
    })
    .await
    .unwrap();
    let q = |name: &str| {
        perf["queries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(q("copy")["results_produced"], 100);
    assert_eq!(q("copy")["query_type"], "filter");
    let pk = q("per_key");
    assert_eq!(pk["query_type"], "windowing");
    assert_eq!(pk["open_windows"], 1, "{pk}");
    assert_eq!(pk["groups"], 4);
    assert!(pk["state_bytes"].as_u64().unwrap() > 0);
    assert!(pk["mean_exec_us"].as_f64().unwrap() > 0.0);

    let threads = e.get("/admin/threads").await.unwrap().body;
    assert!(threads["count"].as_u64().unwrap() > 2);
    assert_eq!(threads["workers"][0]["stalled"], false, "{threads}");
    assert_eq!(threads["pipeline"]["assigned_partitions"], 2);
    let version = e.get("/admin/version").await.unwrap().body;
    assert_eq!(version["name"], "sluice-engine");
    assert_eq!(version["state_format_version"], 1);
    assert!(version["librdkafka"].as_str().unwrap().starts_with('2'));

    let res = e.get("/admin/resources").await.unwrap().body;
    assert!(
        res["process"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
        "{res}"
    );
    assert!(res["system"]["memory_total_bytes"].as_u64().unwrap() > 0);
    let op = res["operator_state"]["total_bytes"].as_u64().unwrap();
    assert!(op > 0, "{res}");
    let util = e.get("/admin/resources/utilization").await.unwrap().body;
    let pk_util = util["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "per_key")
        .unwrap();
    assert!(pk_util["groups_percent"].as_f64().unwrap() > 0.0, "{util}");
    let analysis = e.get("/admin/resources/analysis").await.unwrap().body;
    assert_eq!(
        analysis["largest_operator"]["name"], "per_key",
        "{analysis}"
    );
    assert_eq!(analysis["largest_operator"]["bytes"].as_u64().unwrap(), op);
    let recs = e
        .get("/admin/resources/recommendations")
        .await
        .unwrap()
        .body;
    assert!(recs["recommendations"].is_array(), "{recs}");

    // Cleanup closes the windows of a source that went quiet and frees their state.
    let clean = e.post_ok("/admin/resources/cleanup", None).await.unwrap();
    assert_eq!(clean["cleanup"]["windows_closed"], 1, "{clean}");
    assert!(clean["cleanup"]["bytes_freed"].as_u64().unwrap() > 0);
    let counts = kafka::read_until(&bs, "counts", Duration::from_secs(10), |m| m.len() == 4)
        .await
        .unwrap();
    assert_eq!(counts.len(), 4, "one result per key");

    // Metric history: a sample every 5 s feeds export, baselines and the weekly report.
    let export = wait_for(
        Duration::from_secs(20),
        "a history sample after the records",
        || async {
            let x = e.get("/admin/metrics/export?days=30").await?.body;
            let after = x["samples"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["records_processed"].as_u64().unwrap_or(0) >= 100)
            });
            Ok(after.then_some(x))
        },
    )
    .await
    .unwrap();
    assert!(export["count"].as_u64().unwrap() >= 1);
    let base = e
        .post_ok("/admin/performance/update-baselines", None)
        .await
        .unwrap();
    assert!(
        base["baselines"]["samples"].as_u64().unwrap() >= 1,
        "{base}"
    );
    let weekly = e
        .get("/admin/performance/weekly-report")
        .await
        .unwrap()
        .body;
    assert!(weekly["summary"]["samples"].as_u64().unwrap() >= 1);
    assert!(weekly["compared_to_baselines"].is_object(), "{weekly}");
    let bad = e
        .post("/admin/metrics/cleanup?older_than=soon", None)
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cleaned = e
        .post_ok("/admin/metrics/cleanup?older_than=1s", None)
        .await
        .unwrap();
    assert!(
        cleaned["removed_samples"].as_u64().unwrap() >= 1,
        "{cleaned}"
    );
}
