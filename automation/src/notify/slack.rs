//! Slack incoming webhooks: a Block Kit header (the title) and section (the
//! text), with `text` as the notification fallback; Slack's 429 with
//! `Retry-After` is waited out by the delivery policy.

use futures::future::BoxFuture;
use serde_json::{Value as J, json};

use super::{Message, Notifier, NotifyError};
use crate::config::SlackChannel;

pub struct Slack<'c>(pub &'c SlackChannel);

impl Notifier for Slack<'_> {
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let req = http.post(self.0.webhook_url.expose());
            super::post_json("slack", req, &slack_payload(msg))
                .await
                .map(|_| ())
        })
    }
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
