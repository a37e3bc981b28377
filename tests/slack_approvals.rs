//! Approvals from Slack, end to end through `sluice serve`: a Slack app
//! channel posts the approval request with Approve / Reject buttons (to the
//! Web API stand-in, which checks Block Kit and the bot token), and clicks
//! come back as Slack sends them — form-encoded `payload`, signed with the
//! app's signing secret. Forged, replayed and non-approver clicks are refused
//! and audited; an approver's click lets the run proceed, records who, and
//! updates the message.

use std::time::Duration;

use serde_json::{Value as J, json};
use sluice_automation::api::slack::signature;
use sluice_tests::net::{self, eventually};
use sluice_tests::served::{ADMIN, OPERATOR};
use sluice_tests::slack::{BOT_TOKEN, Slack};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

const GATED: &str = r#"
name: gated
triggers: [manual]
steps:
  - id: before
    exec: {argv: [echo, before]}
  - id: ask
    approval: {message: "Reset the breaker on payments?", timeout: 10m}
  - id: after
    exec: {argv: [echo, after]}
notify:
  on_approval: [oncall-slack]
"#;

struct Svc {
    handle: sluice_automation::service::Handle,
    base: String,
    http: reqwest::Client,
}

impl Svc {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<J>) -> J {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap().json().await.unwrap_or(J::Null)
    }

    /// Posts a click as Slack does; returns the HTTP status.
    async fn click(&self, payload: &J, secret: &str, at: i64) -> u16 {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let ts = at.to_string();
        self.http
            .post(format!("{}/api/v1/slack/interactions", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", signature(secret, &ts, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A block_actions payload as Slack sends it for a click on `action` of `message`.
fn click_payload(user: &str, action: &J, message: &J, channel: &str, response_url: &str) -> J {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0SLUICE"},
        "api_app_id": "A0SLUICE",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "1234.5678.abcd",
        "team": {"id": "T0SLUICE", "domain": "sluice"},
        "channel": {"id": channel, "name": "oncall"},
        "message": message,
        "response_url": response_url,
        "actions": [{
            "action_id": action["action_id"], "block_id": "sluice_approval", "value": action["value"],
            "text": action["text"], "style": action["style"], "type": "button", "action_ts": "1700000001.000200"
        }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_clicks_approve_in_slack_and_forged_replayed_or_foreign_clicks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Slack::start().await.unwrap();
    let rb = dir.path().join("runbooks");
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(rb.join("gated.yaml"), GATED).unwrap();
    let config = format!(
        "runbooks: [{rb}]\nstore: 'sqlite://{db}'\napi:\n  tokens:\n    - {{name: oncall, token: {OPERATOR}, role: operator}}\n    - {{name: root, token: {ADMIN}, role: admin}}\nchannels:\n  oncall-slack:\n    slack:\n      bot_token: {BOT_TOKEN}\n      channel: C0ONCALL\n      signing_secret: {SIGNING_SECRET}\n      approvers: {{U0ALICE: alice}}\n      api_url: {api}\nservice:\n  lease: 2s\n  shutdown_grace: 2s\n",
        rb = rb.display(),
        db = dir.path().join("service.db").display(),
        api = slack.api_url(),
    );
    let handle = sluice_tests::sluice::serve(dir.path(), &config).await;
    let s = Svc {
        base: format!("http://{}", handle.addr),
        handle,
        http: net::client(),
    };

    let started = s
        .call(
            "POST",
            "/api/v1/runbooks/gated/runs",
            OPERATOR,
            Some(json!({})),
        )
        .await;
    let id = started["run_id"].as_str().unwrap().to_string();
    // The request arrives through chat.postMessage, with buttons bound to it.
    let post = eventually(
        "the approval request in Slack",
        Duration::from_secs(20),
        || async {
            slack
                .posts()
                .into_iter()
                .find(|p| p.path == "/api/chat.postMessage")
        },
    )
    .await;
    assert_eq!(post.status, 200);
    assert_eq!(post.rejected, None, "Slack accepts it: {:#}", post.body);
    assert_eq!(post.body["channel"], "C0ONCALL");
    let blocks = post.body["blocks"].as_array().unwrap();
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("buttons");
    let approve = &actions["elements"][0];
    let reject = &actions["elements"][1];
    assert_eq!(approve["action_id"], "sluice_approve");
    assert_eq!(reject["action_id"], "sluice_reject");
    assert_eq!(approve["value"], format!("{id}|ask"));
    assert!(
        post.body["text"]
            .as_str()
            .unwrap()
            .contains("Reset the breaker on payments?")
    );
    // The message as Slack keeps it (with its ts), for the click payloads.
    let mut message = json!({"type": "message", "text": post.body["text"], "blocks": post.body["blocks"], "user": "U0BOT", "bot_id": "B0SLUICE"});
    message["ts"] = json!("1700000000.000100");
    let now = chrono::Utc::now().timestamp();
    let alice = click_payload(
        "U0ALICE",
        approve,
        &message,
        "C0ONCALL",
        &slack.response_url(),
    );
    let mallory = click_payload(
        "U0MALLORY",
        approve,
        &message,
        "C0ONCALL",
        &slack.response_url(),
    );

    // Forged (wrong secret), replayed (signed ten minutes ago), and a user
    // who is not an approver: refused, and the run still waits.
    assert_eq!(s.click(&alice, "not-the-signing-secret", now).await, 401);
    assert_eq!(s.click(&alice, SIGNING_SECRET, now - 600).await, 401);
    assert_eq!(s.click(&mallory, SIGNING_SECRET, now).await, 403);
    let told = eventually(
        "mallory is told privately",
        Duration::from_secs(10),
        || async {
            slack
                .posts()
                .into_iter()
                .find(|p| p.path.starts_with("/actions/"))
        },
    )
    .await;
    assert_eq!(told.body["response_type"], "ephemeral", "{:#}", told.body);
    assert!(
        told.body["text"]
            .as_str()
            .unwrap()
            .contains("not one of Sluice's approvers")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = s
        .call("GET", &format!("/api/v1/runs/{id}"), OPERATOR, None)
        .await;
    assert_eq!(run["run"]["status"], "waiting_approval", "{run:#}");

    // Alice approves: the run goes on, and the record says who, from Slack.
    assert_eq!(s.click(&alice, SIGNING_SECRET, now).await, 200);
    let run = eventually("the run to finish", Duration::from_secs(20), || async {
        let r = s
            .call("GET", &format!("/api/v1/runs/{id}"), OPERATOR, None)
            .await;
        matches!(r["run"]["status"].as_str(), Some("succeeded" | "failed")).then_some(r)
    })
    .await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let a = &run["approvals"][0];
    assert_eq!(a["status"], "approved");
    assert_eq!(a["decided_by"], "alice");
    assert!(a["comment"].as_str().unwrap().contains("U0ALICE"), "{a:#}");
    // The message now says who decided, and has no buttons left.
    let update = eventually("chat.update", Duration::from_secs(10), || async {
        slack
            .posts()
            .into_iter()
            .find(|p| p.path == "/api/chat.update")
    })
    .await;
    assert_eq!(update.rejected, None, "{:#}", update.body);
    assert_eq!(update.body["ts"], "1700000000.000100");
    assert_eq!(update.body["channel"], "C0ONCALL");
    let ublocks = update.body["blocks"].as_array().unwrap();
    assert!(
        !ublocks.iter().any(|b| b["type"] == "actions"),
        "{ublocks:#?}"
    );
    let said = ublocks.last().unwrap()["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(said.starts_with("Approved by alice"), "{said}");
    // A late click on the old message changes nothing and says who decided.
    let reject_late = click_payload(
        "U0ALICE",
        reject,
        &message,
        "C0ONCALL",
        &slack.response_url(),
    );
    assert_eq!(s.click(&reject_late, SIGNING_SECRET, now).await, 200);
    let late = eventually(
        "the second chat.update",
        Duration::from_secs(10),
        || async {
            let ups: Vec<_> = slack
                .posts()
                .into_iter()
                .filter(|p| p.path == "/api/chat.update")
                .collect();
            (ups.len() >= 2).then(|| ups[1].clone())
        },
    )
    .await;
    let said = late.body["blocks"].as_array().unwrap().last().unwrap()["elements"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(said.contains("Already approved by alice"), "{said}");
    let run = s
        .call("GET", &format!("/api/v1/runs/{id}"), OPERATOR, None)
        .await;
    assert_eq!(run["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(run["approvals"][0]["status"], "approved");

    // Every click is in the audit log: who, and what was refused.
    let audit = s.call("GET", "/api/v1/audit?limit=100", ADMIN, None).await;
    let clicks: Vec<(String, u64)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "POST /api/v1/slack/interactions")
        .map(|e| {
            (
                e["who"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    for want in [
        ("anonymous".to_string(), 401),
        ("slack:U0MALLORY".to_string(), 403),
        ("alice".to_string(), 200),
    ] {
        assert!(clicks.contains(&want), "{want:?} in {clicks:?}");
    }
    assert_eq!(
        clicks.iter().filter(|c| c.1 == 401).count(),
        2,
        "{clicks:?}"
    );
    // The secrets never show up in what the API returns.
    let text = format!("{run}{audit}");
    assert!(!text.contains(SIGNING_SECRET) && !text.contains(BOT_TOKEN));
    s.handle.shutdown().await;
}
