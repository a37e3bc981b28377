//! Slack, as an incoming webhook or as an app. Both send a Block Kit header
//! (the title) and section (the text), with `text` as the notification
//! fallback. An app posts through the Web API (`chat.postMessage` with its
//! bot token) and, when it has a signing secret and approvers, puts Approve /
//! Reject buttons on approval requests; [`decided`] is what the message
//! becomes once someone decides. Slack's 429 with `Retry-After` is waited out
//! by the delivery policy; the Web API's `ok: false` errors are classified
//! here.

use futures::future::BoxFuture;
use serde_json::{Value as J, json};

use super::{ApprovalRef, EventKind, Message, Notifier, NotifyError};
use crate::config::SlackChannel;

pub struct Slack<'c>(pub &'c SlackChannel);

/// Button `action_id`s; the interaction endpoint knows only these.
pub const APPROVE_ACTION: &str = "sluice_approve";
pub const REJECT_ACTION: &str = "sluice_reject";
/// `block_id` of the buttons (and of the decision that replaces them).
pub const APPROVAL_BLOCK: &str = "sluice_approval";

impl Notifier for Slack<'_> {
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let mut payload = slack_payload(msg);
            if let (Some(token), Some(channel)) = (&self.0.bot_token, &self.0.channel) {
                if let (true, EventKind::Approval, Some(a)) =
                    (self.0.interactive(), msg.event.kind, &msg.event.approval)
                {
                    payload["blocks"]
                        .as_array_mut()
                        .expect("blocks")
                        .push(buttons(a));
                }
                payload["channel"] = json!(channel);
                web_api(http, self.0, token.expose(), "chat.postMessage", &payload)
                    .await
                    .map(|_| ())
            } else if let Some(url) = &self.0.webhook_url {
                let req = http.post(url.expose());
                super::post_json("slack", req, &payload).await.map(|_| ())
            } else {
                Err(NotifyError::permanent(
                    "slack: no webhook_url and no bot_token",
                ))
            }
        })
    }
}

/// Calls a Web API method (JSON body, bot token) and returns its answer.
/// Slack answers HTTP 200 with `ok: false` for most errors; the ones that may
/// pass by themselves are retried, the rest are not.
pub async fn web_api(
    http: &reqwest::Client,
    ch: &SlackChannel,
    token: &str,
    method: &str,
    body: &J,
) -> Result<J, NotifyError> {
    let url = format!("{}/{method}", ch.api_url.0.as_str().trim_end_matches('/'));
    let req = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json; charset=utf-8");
    let (_, text) = super::post_json("slack", req, body).await?;
    let answer: J = serde_json::from_str(&text).map_err(|_| {
        NotifyError::recoverable(format!("slack {method}: not JSON: {}", text.trim()))
    })?;
    if answer["ok"] == true {
        return Ok(answer);
    }
    let error = answer["error"].as_str().unwrap_or("unknown error");
    let message = format!("slack {method}: {error}");
    Err(
        if matches!(
            error,
            "internal_error"
                | "fatal_error"
                | "service_unavailable"
                | "request_timeout"
                | "ratelimited"
        ) {
            NotifyError::recoverable(message)
        } else {
            NotifyError::permanent(message)
        },
    )
}

/// The Approve / Reject buttons for one request; the value names the run
/// and step, and Slack's request signature proves a click on it is genuine.
fn buttons(a: &ApprovalRef) -> J {
    let value = format!("{}|{}", a.run_id, a.step);
    json!({"type": "actions", "block_id": APPROVAL_BLOCK, "elements": [
        {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": value,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": value,
         "text": {"type": "plain_text", "text": "Reject"},
         "confirm": {"title": {"type": "plain_text", "text": "Reject?"},
                     "text": {"type": "plain_text", "text": "The run stops at this step."},
                     "confirm": {"type": "plain_text", "text": "Reject"},
                     "deny": {"type": "plain_text", "text": "Cancel"}}}
    ]})
}

/// The approval message once decided: its blocks without the buttons, and
/// a line saying who decided what (for `chat.update`).
pub fn decided(original: &J, line: &str) -> J {
    let mut blocks: Vec<J> = original["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["block_id"] != APPROVAL_BLOCK && b["type"] != "actions")
        .cloned()
        .collect();
    blocks.push(json!({"type": "context", "block_id": APPROVAL_BLOCK,
        "elements": [{"type": "mrkdwn", "text": cut_escaped(&escape_mrkdwn(line), SLACK_SECTION_CHARS)}]}));
    let text = original["text"].as_str().unwrap_or_default();
    json!({"text": format!("{text} — {}", escape_mrkdwn(line)), "blocks": blocks})
}

/// Slack's limits: header text (plain_text) and section text (mrkdwn), in characters.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_SECTION_CHARS: usize = 3000;

/// The Slack payload: a header (the title) and a section (the text), with
/// `text` as the notification fallback. mrkdwn fields have Slack's control
/// characters escaped (`&`, `<`, `>`), so a value cannot mention `@channel`
/// or disguise a link; plain URLs are still linked by Slack. Empty parts are
/// left out (Slack refuses empty text objects) and long ones cut to Slack's
/// limits.
pub fn slack_payload(msg: &Message) -> J {
    let mut blocks = Vec::new();
    if !msg.title.trim().is_empty() {
        blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": cut(&msg.title, SLACK_HEADER_CHARS)}}));
    }
    let body = escape_mrkdwn(&msg.text);
    if !body.trim().is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut_escaped(&body, SLACK_SECTION_CHARS)}}));
    }
    let fallback = match (msg.title.trim().is_empty(), msg.text.trim().is_empty()) {
        (false, false) => format!("{}: {}", escape_mrkdwn(&msg.title), body),
        (false, true) => escape_mrkdwn(&msg.title),
        (true, false) => body,
        (true, true) => "(empty notification)".to_string(),
    };
    json!({"text": fallback, "blocks": blocks})
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape_mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters; a cut text ends with `…`.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// [`cut`] for escaped text: never ends inside an `&…;` entity.
fn cut_escaped(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    if let Some(amp) = out.rfind('&')
        && !out[amp..].contains(';')
    {
        out.truncate(amp);
    }
    out.push('…');
    out
}
