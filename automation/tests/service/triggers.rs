//! What starts runs: alerts from internal rules on scraped metrics, the
//! Alertmanager webhook, webhook hooks, schedules — and the guards on the way.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value as J, json};
use sluice_automation::schedule::scheduler::Clock;

use crate::harness::*;

fn am_payload(alerts: &[(&str, &str)]) -> J {
    json!({
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "sluice", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": alerts.iter().map(|(name, instance)| json!({
            "status": "firing",
            "labels": {"alertname": name, "instance": instance, "severity": "critical"},
            "annotations": {"summary": format!("{name} on {instance}")},
            "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph"
        })).collect::<Vec<_>>()
    })
}

const REMEDIATE: &str = r#"
name: remediate
triggers:
  - alert: EngineHot
    labels: {severity: critical}
guards:
  concurrency: skip
  cooldown: 1h
steps:
  - id: fix
    exec: {argv: [echo, "fixing {{alert.labels.instance}}"]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_duplicate_webhook_alerts_starts_exactly_one_run_per_fingerprint() {
    let s = TestService::start("", &[("runbooks/remediate.yaml", REMEDIATE)]).await;
    let client = client();
    let mut sends = Vec::new();
    // 20 deliveries × 10 engines, concurrently, plus alerts no trigger matches.
    for _ in 0..20 {
        let instances: Vec<String> = (0..10).map(|i| format!("engine-{i}")).collect();
        let mut alerts: Vec<(&str, &str)> = instances
            .iter()
            .map(|i| ("EngineHot", i.as_str()))
            .collect();
        alerts.push(("SomethingElse", "engine-0"));
        let body = am_payload(&alerts);
        let c = client.clone();
        let url = format!("{}/api/v1/alerts/webhook", s.base);
        sends.push(tokio::spawn(async move {
            c.post(url).json(&body).send().await.unwrap().status()
        }));
    }
    for h in sends {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    eventually(20, "10 runs finished", || async {
        let runs = s.runs("remediate").await;
        runs.len() == 10 && runs.iter().all(|r| r["status"] == "succeeded")
    })
    .await;
    // And no more come: each fingerprint is in its cooldown.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let runs = s.runs("remediate").await;
    assert_eq!(runs.len(), 10);
    let mut instances: Vec<String> = runs
        .iter()
        .map(|r| {
            r["request"]["alert"]["labels"]["instance"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 10);
    let (_, m) = s.call("GET", "/metrics", None, None).await;
    let m = m.as_str().unwrap().to_string();
    assert!(
        m.contains("sluice_trigger_decisions_total{runbook=\"remediate\",decision=\"started\"} 10"),
        "{m}"
    );
    // A re-send after the runs finished lands in the cooldown.
    let resp = client
        .post(format!("{}/api/v1/alerts/webhook", s.base))
        .json(&am_payload(&[("EngineHot", "engine-3")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    eventually(10, "the re-send is counted as cooldown", || async {
        let (_, m) = s.call("GET", "/metrics", None, None).await;
        m.as_str().unwrap().contains("decision=\"cooldown\"")
    })
    .await;
    assert_eq!(s.runs("remediate").await.len(), 10);
    // Why did the re-send not run? The decision log says, with the time left.
    let (st, d) = s.get("/api/v1/decisions?runbook=remediate&limit=500").await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let d = d["decisions"].as_array().unwrap().clone();
    let cooldown = &d[0];
    assert_eq!(cooldown["decision"], "cooldown", "{cooldown:#}");
    assert_eq!(cooldown["trigger"], "alert");
    assert!(
        cooldown["detail"].as_str().unwrap().ends_with(" left"),
        "{cooldown:#}"
    );
    let started: std::collections::BTreeSet<&str> = d
        .iter()
        .filter(|x| x["decision"] == "started")
        .map(|x| x["run_id"].as_str().unwrap())
        .collect();
    let runs = s.runs("remediate").await;
    let ids: std::collections::BTreeSet<&str> =
        runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(started, ids);
    // Every decision counted in the metrics is in the log, refusals included.
    let (_, m) = s.call("GET", "/metrics", None, None).await;
    let counted: f64 = m
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("sluice_trigger_decisions_total{runbook=\"remediate\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(d.len() as f64, counted, "{d:#?}");
    assert!(d.len() >= 11, "refusals are logged: {}", d.len());
    assert!(d.iter().all(|x| x["runbook"] == "remediate"));
    // The runs of one alert are found by its fingerprint on the server.
    let one = &runs[0];
    let fp = one["request"]["fingerprint"].as_str().unwrap();
    let (_, found) = s
        .get(&format!("/api/v1/runs?trigger=alert&fingerprint={fp}"))
        .await;
    let found = found["runs"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["id"], one["id"]);
    assert_eq!(
        s.call("GET", "/api/v1/decisions", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

/// Until the service has scraped the test gauge.
async fn scraped(s: &TestService) {
    eventually(15, "the gauge is scraped", || async {
        let (_, b) = s.get("/api/v1/query?query=test_temperature").await;
        b["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_internal_rule_on_scraped_metrics_triggers_the_runbook_and_notifies() {
    let gauge = Gauge::start(5.0).await;
    let slack = Recorder::start().await;
    let config = format!(
        r#"
metrics:
  interval: 1s
  scrape: ["{url}"]
  job: test
channels:
  ops: {{slack: {{webhook_url: "{slack}"}}}}
alerting:
  evaluation_interval: 1s
  mute_handled: false
  route:
    receiver: ops
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
"#,
        url = gauge.url(),
        slack = slack.url()
    );
    let rules = r#"
groups:
  - name: t
    interval: 1s
    rules:
      - alert: TooHot
        expr: test_temperature > 10
        labels: {severity: critical}
        annotations:
          summary: "room {{ $labels.room }} is at {{ $value }} degrees"
"#;
    let rb = r#"
name: cool-down
triggers:
  - alert: TooHot
guards: {cooldown: 1h}
steps:
  - id: cool
    exec: {argv: [echo, "{{alert.annotations.summary}}"]}
"#;
    let s = TestService::start(
        &config,
        &[("alerts/t.yaml", rules), ("runbooks/cool.yaml", rb)],
    )
    .await;
    scraped(&s).await;
    assert!(s.runs("cool-down").await.is_empty());
    gauge.set(25.0);
    eventually(15, "the alert's run finished", || async {
        let runs = s.runs("cool-down").await;
        runs.len() == 1 && runs[0]["status"] == "succeeded"
    })
    .await;
    let run = &s.runs("cool-down").await[0];
    assert_eq!(run["trigger"], "alert");
    let (_, full) = s
        .get(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        full["steps"][0]["outputs"]["stdout"], "room a is at 25 degrees\n",
        "{full:#}"
    );
    let (_, alerts) = s.get("/api/v1/alerts").await;
    let firing = &alerts["alerts"][0];
    assert_eq!(firing["state"], "firing", "{alerts:#}");
    assert_eq!(firing["labels"]["room"], "a");
    // The rule as the console's Alerts page shows it.
    let (_, rules) = s.get("/api/v1/rules").await;
    let g = &rules["groups"][0];
    assert_eq!(g["name"], "t", "{rules:#}");
    assert!(g["last_evaluation"].is_string(), "{g:#}");
    assert!(g["evaluation_ms"].as_f64().unwrap() >= 0.0);
    let r = &g["rules"][0];
    assert_eq!(
        (
            &r["type"],
            &r["name"],
            &r["expr"],
            &r["health"],
            &r["firing"]
        ),
        (
            &json!("alerting"),
            &json!("TooHot"),
            &json!("test_temperature > 10"),
            &json!("ok"),
            &json!(1)
        ),
        "{r:#}"
    );
    eventually(15, "the notification arrived", || async {
        !slack.posts().is_empty()
    })
    .await;
    let post = &slack.posts()[0];
    let text = post["text"].as_str().unwrap();
    assert!(text.contains("[FIRING:1] alertname=TooHot"), "{text}");
    assert!(text.contains("room a is at 25 degrees"), "{text}");
    assert_eq!(post["blocks"][0]["type"], "header");
    gauge.set(5.0);
    eventually(20, "the resolved notification arrived", || async {
        slack.texts().iter().any(|t| t.contains("[RESOLVED]"))
    })
    .await;
    assert_eq!(s.runs("cool-down").await.len(), 1);
    s.stop().await;
}

/// PagerDuty as its Events API v2 behaves: a trigger opens an incident for
/// its dedup key (or joins the open one), acknowledge and resolve act on an
/// open incident and are dropped otherwise. Each incident's states in order.
#[derive(Default)]
struct PagerDuty {
    events: std::sync::Mutex<Vec<J>>,
    incidents: std::sync::Mutex<std::collections::BTreeMap<String, Vec<&'static str>>>,
}

impl PagerDuty {
    async fn start() -> (Arc<PagerDuty>, String) {
        let pd = Arc::new(PagerDuty::default());
        let p = pd.clone();
        let app = axum::Router::new().route(
            "/v2/enqueue",
            axum::routing::post(move |body: axum::Json<J>| {
                let p = p.clone();
                async move {
                    let e = body.0;
                    let key = e["dedup_key"].as_str().unwrap_or("").to_string();
                    let mut all = p.incidents.lock().unwrap();
                    let states = all.entry(key.clone()).or_default();
                    let open = states.last().is_some_and(|s| *s != "resolved");
                    match (e["event_action"].as_str().unwrap(), open) {
                        ("trigger", false) => states.push("triggered"),
                        ("acknowledge", true) => states.push("acknowledged"),
                        ("resolve", true) => states.push("resolved"),
                        _ => {}
                    }
                    p.events.lock().unwrap().push(e);
                    (
                        axum::http::StatusCode::ACCEPTED,
                        axum::Json(json!({"status": "success", "dedup_key": key})),
                    )
                }
            }),
        );
        let addr = serve(app).await;
        (pd, format!("http://{addr}/v2/enqueue"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_opens_a_pagerduty_incident_the_run_acknowledges_it_and_success_resolves_it() {
    let gauge = Gauge::start(5.0).await;
    let (pd, pd_url) = PagerDuty::start().await;
    let config = format!(
        r#"
metrics:
  interval: 1s
  scrape: ["{url}"]
  job: test
channels:
  pager: {{pagerduty: {{routing_key: R0UT1NGKEY0123456789012345678901, url: "{pd_url}"}}}}
alerting:
  evaluation_interval: 1s
  route:
    receiver: pager
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
"#,
        url = gauge.url(),
    );
    let rules = "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: TooHot\n        expr: test_temperature > 10\n        labels: {severity: critical}\n";
    let rb = "name: cool-down\ntriggers:\n  - alert: TooHot\nnotify: {on_start: [pager], on_success: [pager]}\nsteps:\n  - id: cool\n    sleep: 3s\n";
    let s = TestService::start(
        &config,
        &[("alerts/t.yaml", rules), ("runbooks/cool.yaml", rb)],
    )
    .await;
    scraped(&s).await;
    gauge.set(25.0);
    // The remediation works: while the run goes, the temperature falls and
    // the alert resolves.
    eventually(20, "the run started", || async {
        let runs = s.runs("cool-down").await;
        runs.len() == 1 && runs[0]["status"] == "running"
    })
    .await;
    gauge.set(5.0);
    eventually(20, "the run succeeded", || async {
        let runs = s.runs("cool-down").await;
        runs.len() == 1 && runs[0]["status"] == "succeeded"
    })
    .await;
    let run = s.runs("cool-down").await[0].clone();
    let fp = run["request"]["fingerprint"].as_str().unwrap().to_string();
    eventually(20, "the incident resolved", || async {
        pd.incidents
            .lock()
            .unwrap()
            .get(&fp)
            .is_some_and(|st| st.last() == Some(&"resolved"))
    })
    .await;
    // Let the alert's own resolve arrive too; it must not reopen anything.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let incidents = pd.incidents.lock().unwrap().clone();
    let events = pd.events.lock().unwrap().clone();
    assert_eq!(
        incidents.len(),
        1,
        "one incident, keyed by the alert: {events:#?}"
    );
    assert_eq!(
        incidents[&fp],
        ["triggered", "acknowledged", "resolved"],
        "{events:#?}"
    );
    assert!(
        events.iter().all(|e| e["dedup_key"] == fp.as_str()),
        "{events:#?}"
    );
    // Each delivery is on the run.
    let (_, full) = s
        .get(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    let on_run: Vec<&str> = full["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(on_run, ["run_started", "run_succeeded"], "{full:#}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_need_a_valid_signature_and_retries_start_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deployed");
    let rb = format!(
        r#"
name: deploy
triggers: [{{webhook: deploy}}]
params:
  version: {{type: string, default: "{{{{webhook.version}}}}"}}
steps:
  - id: record
    shell: {{script: "echo {{{{params.version}}}} >> {out}"}}
"#,
        out = out.display()
    );
    let s = TestService::start("", &[("runbooks/deploy.yaml", &rb)]).await;
    let client = client();
    let url = format!("{}/api/v1/hooks/deploy", s.base);
    let body = br#"{"version": "1.2.3; touch /tmp/pwned-by-hook"}"#.to_vec();
    let bad = client
        .post(&url)
        .header("x-sluice-signature", "sha256=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let sig = sluice_automation::api::signature::sign(HOOK_SECRET, None, &body);
    let mut run_ids = Vec::new();
    for _ in 0..3 {
        let resp = client
            .post(&url)
            .header("x-sluice-signature", &sig)
            .header("idempotency-key", "delivery-1")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let b: J = resp.json().await.unwrap();
        let id = b["runs"][0]["run_id"].as_str();
        run_ids.push(id.unwrap_or_else(|| panic!("{b}")).to_string());
    }
    assert!(run_ids.iter().all(|r| *r == run_ids[0]), "{run_ids:?}");
    let run = s.wait_final(&run_ids[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["who"], "hook:deploy");
    // The body reached the template, shell-quoted: written, not executed.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "1.2.3; touch /tmp/pwned-by-hook\n"
    );
    assert!(!std::path::Path::new("/tmp/pwned-by-hook").exists());
    let (_, audit) = s.call("GET", "/api/v1/audit", Some(ADMIN), None).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["who"] == "hook:deploy" && e["status"] == 202),
        "{audit}"
    );
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["who"] == "anonymous" && e["status"] == 401)
    );
    s.stop().await;
}

/// Real time shifted to a chosen start.
struct Shifted(chrono::Duration);

impl Clock for Shifted {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_once_and_a_restart_does_not_fire_it_again() {
    let rb = r#"
name: nightly
triggers:
  - schedule: "0 3 * * *"
    timezone: Europe/Paris
steps:
  - exec: {argv: [echo, "{{run.scheduled_at}}"]}
"#;
    // 02:59:58 in Paris on a winter day = 01:59:58Z.
    let start: DateTime<Utc> = "2026-12-03T01:59:58Z".parse().unwrap();
    let clock = Arc::new(Shifted(start - Utc::now()));
    let s = TestService::start_with_clock("", &[("runbooks/nightly.yaml", rb)], clock).await;
    let (_, sched) = s.get("/api/v1/schedules").await;
    assert_eq!(
        sched["schedules"][0]["next"][0], "2026-12-03T02:00:00+00:00",
        "{sched:#}"
    );
    eventually(15, "the fire ran", || async {
        let runs = s.runs("nightly").await;
        runs.len() == 1 && runs[0]["status"] == "succeeded"
    })
    .await;
    let run = &s.runs("nightly").await[0];
    assert_eq!(run["trigger"], "schedule");
    let (_, full) = s
        .get(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        full["steps"][0]["outputs"]["stdout"],
        "2026-12-03T02:00:00Z\n"
    );
    let dir = s.stop().await;
    // Same store, same (shifted) time: the fire is claimed, nothing repeats.
    let clock = Arc::new(Shifted(start + chrono::Duration::seconds(5) - Utc::now()));
    let s = TestService::start_in(dir, "", clock).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(s.runs("nightly").await.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_edit_keeps_the_previous_runbook_running_and_is_reported() {
    let good = "name: edit-me\nsteps:\n  - id: one\n    exec: {argv: [echo, one]}\n";
    let s = TestService::start("", &[("runbooks/edit.yaml", good)]).await;
    write(
        s.dir.path(),
        "runbooks/edit.yaml",
        "name: edit-me\nsteps:\n  - id: one\n    exce: {argv: [echo, two]}\n",
    );
    eventually(15, "the broken file is reported", || async {
        let (_, b) = s.get("/api/v1/runbooks").await;
        b["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["valid"] == false)
    })
    .await;
    let (_, b) = s.get("/api/v1/runbooks").await;
    let f = b["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["valid"] == false)
        .unwrap();
    assert_eq!(f["in_effect"], "previous");
    let problem = f["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("edit.yaml:4:5: unknown step kind or field `exce`, did you mean `exec`?"),
        "{problem}"
    );
    let (_, m) = s.call("GET", "/metrics", None, None).await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("sluice_config_last_reload_successful 0")
    );
    // The previous version still runs.
    let id = s.trigger("edit-me", json!({})).await;
    let run = s.wait_final(&id).await;
    assert_eq!(run["steps"][0]["outputs"]["stdout"], "one\n");
    // A fixed edit takes effect.
    write(
        s.dir.path(),
        "runbooks/edit.yaml",
        "name: edit-me\nsteps:\n  - id: one\n    exec: {argv: [echo, three]}\n",
    );
    eventually(15, "the fix is in effect", || async {
        let (_, b) = s.get("/api/v1/runbooks").await;
        b["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["valid"] == true)
    })
    .await;
    let id = s.trigger("edit-me", json!({})).await;
    assert_eq!(
        s.wait_final(&id).await["steps"][0]["outputs"]["stdout"],
        "three\n"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_starts_wait_for_the_active_run_and_coalesce() {
    let rb = r#"
name: serial
triggers: [{webhook: deploy}]
guards: {concurrency: queue}
steps:
  - sleep: 1s
"#;
    let s = TestService::start("", &[("runbooks/serial.yaml", rb)]).await;
    let client = client();
    let mut decisions = Vec::new();
    for i in 0..4 {
        let body = format!("{{\"n\": {i}}}").into_bytes();
        let sig = sluice_automation::api::signature::sign(HOOK_SECRET, None, &body);
        let b: J = client
            .post(format!("{}/api/v1/hooks/deploy", s.base))
            .header("x-sluice-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        decisions.push(b["runs"][0]["decision"].as_str().unwrap().to_string());
    }
    assert_eq!(
        decisions,
        ["started", "queued", "deduplicated", "deduplicated"]
    );
    eventually(20, "both runs finished, one after the other", || async {
        let runs = s.runs("serial").await;
        runs.len() == 2 && runs.iter().all(|r| r["status"] == "succeeded")
    })
    .await;
    let runs = s.runs("serial").await;
    let (first, second) = (&runs[1], &runs[0]);
    assert!(
        second["started_at"].as_str().unwrap() >= first["finished_at"].as_str().unwrap(),
        "{runs:#?}"
    );
    assert!(second["queued_at"].is_string());
    s.stop().await;
}
