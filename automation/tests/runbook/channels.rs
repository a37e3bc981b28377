//! The webhook, PagerDuty and Teams channels against loopback servers that
//! check each request against the provider's documented format (PagerDuty
//! Events API v2, Teams Workflows with an Adaptive Card) and can answer 429
//! with Retry-After; the webhook's HMAC signature checked the way a receiver
//! would.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value as J, json};
use sluice_automation::exec::executor::{RunRequest, RunStatus, execute};

use super::harness::{config, runbook, serve, services, tempdir};

#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
    /// Answer 429 (Retry-After: 1) this many times first.
    throttle: Mutex<u32>,
}

async fn record(
    State(s): State<Arc<Seen>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, String) {
    let mut out = HeaderMap::new();
    {
        let mut t = s.throttle.lock().unwrap();
        if *t > 0 {
            *t -= 1;
            out.insert("retry-after", "1".parse().unwrap());
            return (StatusCode::TOO_MANY_REQUESTS, out, "slow down".into());
        }
    }
    s.bodies.lock().unwrap().push((headers, body.to_vec()));
    (
        StatusCode::ACCEPTED,
        out,
        json!({"status": "success", "message": "Event processed"}).to_string(),
    )
}

async fn stand_in(throttle: u32) -> (Arc<Seen>, String) {
    let seen = Arc::new(Seen::default());
    *seen.throttle.lock().unwrap() = throttle;
    let addr = serve(
        axum::Router::new()
            .route("/hook", post(record))
            .with_state(seen.clone()),
    )
    .await;
    (seen, format!("http://{addr}/hook"))
}

fn bodies(s: &Seen) -> Vec<(HeaderMap, J)> {
    s.bodies
        .lock()
        .unwrap()
        .iter()
        .map(|(h, b)| (h.clone(), serde_json::from_slice(b).expect("JSON body")))
        .collect()
}

/// What PagerDuty's Events API v2 requires of an event.
fn assert_events_v2(e: &J) {
    assert_eq!(e["routing_key"].as_str().map(str::len), Some(32), "{e}");
    let action = e["event_action"].as_str().unwrap();
    assert!(
        ["trigger", "acknowledge", "resolve"].contains(&action),
        "{e}"
    );
    if action == "trigger" {
        let p = &e["payload"];
        let summary = p["summary"].as_str().unwrap();
        assert!(
            !summary.is_empty() && summary.chars().count() <= 1024,
            "{e}"
        );
        assert!(p["source"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        assert!(
            ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap()),
            "{e}"
        );
    } else {
        assert!(
            e["dedup_key"].is_string(),
            "{action} needs a dedup_key: {e}"
        );
    }
    assert!(e["dedup_key"].as_str().is_none_or(|k| k.len() <= 255));
}

#[tokio::test]
async fn pagerduty_incidents_are_triggered_acknowledged_and_resolved_with_the_run() {
    let (pd, url) = stand_in(1).await;
    let dir = tempdir();
    let yaml = format!(
        "targets: {{}}\nchannels:\n  pager:\n    pagerduty: {{routing_key: R0UT1NGKEY0123456789012345678901, url: '{url}'}}\n"
    );
    let sv = services(config(&yaml), dir.path()).await;
    let rb = runbook(
        "name: remediate\ntriggers:\n  - alert: EngineDown\nsteps:\n  - id: page\n    notify: {channels: [pager], text: \"engine down\", title: \"EngineDown on primary\"}\nnotify:\n  on_start: [pager]\n  on_success: [pager]\n",
    );
    let alert = json!({"name": "EngineDown", "labels": {"alertname": "EngineDown", "severity": "critical"}, "fingerprint": "9f1c2b3a4d5e6f70", "value": 0});
    let req = RunRequest {
        trigger: "alert".into(),
        who: "alert:EngineDown".into(),
        alert: Some(alert),
        ..RunRequest::default()
    };
    let out = execute(&sv, rb, req).await.unwrap();
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let events: Vec<J> = bodies(&pd).into_iter().map(|(_, b)| b).collect();
    for e in &events {
        assert_events_v2(e);
    }
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    // The run opens (or joins) the incident and acknowledges it when it
    // starts (after one 429 waited out), the step pages again into the same
    // incident, success resolves it: one incident, one key.
    assert_eq!(
        actions,
        ["trigger", "acknowledge", "trigger", "resolve"],
        "{events:#?}"
    );
    assert!(
        events.iter().all(|e| e["dedup_key"] == "9f1c2b3a4d5e6f70"),
        "{events:#?}"
    );
    assert_eq!(events[2]["payload"]["severity"], "critical");
    assert_eq!(events[2]["payload"]["summary"], "EngineDown on primary");
    // The routing key never reaches the run record.
    assert!(!out.steps.to_string().contains("R0UT1NGKEY"));
}

#[tokio::test]
async fn the_webhook_channel_signs_its_documented_body() {
    let (hook, url) = stand_in(0).await;
    let dir = tempdir();
    let secret = "a-long-random-signing-secret";
    let yaml = format!(
        "targets: {{}}\nchannels:\n  hook:\n    webhook: {{url: '{url}', secret: {secret}, headers: {{X-Team: ops}}}}\n"
    );
    let sv = services(config(&yaml), dir.path()).await;
    let rb = runbook(
        "name: w\nsteps:\n  - id: tell\n    notify: {channels: [hook], text: \"disk 91% full\", title: \"DiskFilling\"}\n",
    );
    let out = super::harness::run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let raw = hook.bodies.lock().unwrap()[0].clone();
    let (headers, body) = raw;
    let ts: i64 = headers["x-sluice-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() < 60,
        "fresh timestamp"
    );
    // The receiver's check: HMAC-SHA256 over "<timestamp>.<raw body>".
    let want = sluice_automation::notify::webhook::signature(secret, ts, &body);
    assert_eq!(headers["x-sluice-signature"].to_str().unwrap(), want);
    assert_ne!(
        want,
        sluice_automation::notify::webhook::signature("another-secret-entirely", ts, &body)
    );
    assert_eq!(headers["x-team"], "ops");
    assert_eq!(headers["content-type"], "application/json");
    let doc: J = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["version"], "1");
    assert_eq!(doc["title"], "DiskFilling");
    assert_eq!(doc["text"], "disk 91% full");
    assert_eq!(doc["event"]["source"], "w");
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_through_a_workflows_webhook() {
    let (teams, url) = stand_in(0).await;
    let dir = tempdir();
    let yaml = format!("targets: {{}}\nchannels:\n  teams:\n    teams: {{webhook_url: '{url}'}}\n");
    let sv = services(config(&yaml), dir.path()).await;
    let rb = runbook(
        "name: t\nsteps:\n  - id: tell\n    notify: {channels: [teams], text: \"failover done <b>now</b>\", title: \"Failover\"}\n",
    );
    let out = super::harness::run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let (_, m) = bodies(&teams).remove(0);
    assert_eq!(m["type"], "message");
    let a = &m["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &a["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["version"], "1.4");
    let blocks = card["body"].as_array().unwrap();
    assert!(
        blocks
            .iter()
            .all(|b| b["type"] == "TextBlock" && b["text"].is_string())
    );
    assert_eq!(blocks[0]["text"], "Failover");
    assert_eq!(blocks[1]["text"], "failover done <b>now</b>");
}

#[tokio::test]
async fn a_channel_without_its_routing_key_or_with_a_short_secret_is_refused_with_its_place() {
    let parse = |y: &str| {
        sluice_automation::config::Config::parse(std::path::Path::new("s.yaml"), y, &|_| None)
            .err()
            .map(|d| {
                d.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let e = parse("channels:\n  pager:\n    pagerduty: {severity: critical}\n");
    assert!(
        e.starts_with("s.yaml:3:16:") && e.contains("missing field `routing_key`"),
        "{e}"
    );
    let e =
        parse("channels:\n  hook:\n    webhook: {url: 'http://127.0.0.1:1/x', secret: short}\n");
    assert!(
        e.starts_with("s.yaml:3:") && e.contains("shorter than 16"),
        "{e}"
    );
    let e = parse(
        "channels:\n  pager:\n    pagerduty: {routing_key: R0UT1NGKEY0123456789012345678901, severity: urgent}\n",
    );
    assert!(
        e.contains("severity `urgent` is not one of critical, error, warning, info"),
        "{e}"
    );
    let e = parse("channels:\n  t:\n    teams: {webhook: x}\n");
    assert!(
        e.contains("unknown field `webhook`, did you mean `webhook_url`?"),
        "{e}"
    );
    // Slack: one mode or the other, and an interactive app complete.
    let e = parse("channels:\n  s:\n    slack: {}\n");
    assert!(
        e.starts_with("s.yaml:3:")
            && e.contains("give `webhook_url` (incoming webhook) or `bot_token`"),
        "{e}"
    );
    let e = parse(
        "channels:\n  s:\n    slack:\n      webhook_url: http://x\n      approvers: {U1: alice}\n",
    );
    assert!(
        e.starts_with("s.yaml:5:") && e.contains("`approvers` needs a Slack app"),
        "{e}"
    );
    let e = parse(
        "channels:\n  s:\n    slack:\n      bot_token: xoxb-1\n      channel: C1\n      approvers: {U1: alice}\n",
    );
    assert!(
        e.contains("`approvers` need the app's `signing_secret`"),
        "{e}"
    );
    let e = parse(
        "channels:\n  s:\n    slack:\n      bot_token: xoxb-1\n      signing_secret: abc\n      approvers: {alice: alice}\n",
    );
    assert!(e.contains("a Slack app needs `channel`"), "{e}");
    assert!(e.contains("`alice` is not a Slack user ID"), "{e}");
    let e = parse(
        "channels:\n  s:\n    slack:\n      bot_token: xoxb-1\n      channel: C1\n      signing_secret: abc\n",
    );
    assert!(e.contains("approval buttons need `approvers`"), "{e}");
    assert_eq!(
        parse(
            "channels:\n  s:\n    slack: {bot_token: xoxb-1, channel: C1, signing_secret: abc, approvers: {U0ALICE: alice}}\n"
        ),
        ""
    );
}
