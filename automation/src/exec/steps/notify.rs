//! `notify`: send a message to channels from sluice.yaml — Slack incoming
//! webhooks (blocks + text fallback, honouring 429 Retry-After) and email over
//! SMTP (STARTTLS, implicit TLS or plain on loopback; text + HTML). Also sends
//! the runbook-level start/success/failure/approval notifications.

use std::time::Duration as StdDuration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};
use tracing::warn;

use super::http::error_chain;
use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
use crate::config::{Channel, EmailChannel, SlackChannel, SmtpTls};
use crate::exec::context::{RunState, Services, StepCx};
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "notify",
    summary: "Send a message to Slack and email channels.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["channels", "text"],
            "properties": {
                "channels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "Channel names from sluice.yaml."},
                "text": {"type": "string", "description": "Message (Slack text fallback, email text part)."},
                "title": {"type": "string", "description": "Slack header / email subject."},
                "html": {"type": "string", "description": "Email HTML part (default: the text, escaped)."}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub channels: Vec<At<String>>,
    pub text: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: NotifyConfig = super::decode(node, lenient)?;
    if c.channels.is_empty() {
        return Err(DeError::new(
            node.pos,
            "`channels` needs at least one channel",
        ));
    }
    Ok(Box::new(c))
}

/// A message for any channel.
#[derive(Debug, Clone)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub html: Option<String>,
}

impl Action for NotifyConfig {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.channels.iter().map(|c| c.value.as_str()).collect();
        format!(
            "notify {}: {}",
            names.join(", "),
            self.text.lines().next().unwrap_or("")
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.channels
            .iter()
            .map(|c| Ref::new(RefKind::Channel, c))
            .collect()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let msg = Message {
                title: self
                    .title
                    .clone()
                    .unwrap_or_else(|| format!("Sluice: {}", cx.run.runbook.name.value)),
                text: self.text.clone(),
                html: self.html.clone(),
            };
            let mut sent = Vec::new();
            let mut failures = Vec::new();
            let mut permanent = false;
            for name in &self.channels {
                match send(cx.services, name, &msg).await {
                    Ok(()) => {
                        cx.log(format!("sent to {}", name.value));
                        sent.push(json!({"channel": name.value, "ok": true}));
                    }
                    Err(e) => {
                        permanent |= e.failure != super::Failure::Transient;
                        cx.log(format!("{}: {e}", name.value));
                        failures.push(format!("{}: {}", name.value, e.message));
                        sent.push(json!({"channel": name.value, "ok": false, "error": e.message}));
                    }
                }
            }
            // Retrying helps only when every failure may pass by itself
            // (a webhook that is gone or a refused login will not).
            let message = format!("notification failed: {}", failures.join("; "));
            match (failures.is_empty(), permanent) {
                (true, _) => Ok(json!({"sent": sent})),
                (false, true) => Err(StepError::permanent(message)),
                (false, false) => Err(StepError::transient(message)),
            }
        })
    }
}

/// Sends one message to a named channel.
pub async fn send(services: &Services, channel: &str, msg: &Message) -> Result<(), StepError> {
    let ch = services.config.channels.get(channel).ok_or_else(|| {
        StepError::permanent(format!(
            "unknown channel `{channel}` (define it under `channels:` in sluice.yaml)"
        ))
    })?;
    let result = match ch {
        Channel::Slack(s) => slack(&services.http, s, msg).await,
        Channel::Email(e) => email(e, msg).await,
    };
    result.map_err(|mut e| {
        e.message = services.redactor.text(&e.message);
        e
    })
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

const SLACK_ATTEMPTS: u32 = 4;
const MAX_RETRY_AFTER: StdDuration = StdDuration::from_secs(60);

async fn slack(http: &reqwest::Client, ch: &SlackChannel, msg: &Message) -> Result<(), StepError> {
    let payload = slack_payload(msg);
    for attempt in 1..=SLACK_ATTEMPTS {
        let resp = http
            .post(ch.webhook_url.expose())
            .json(&payload)
            .timeout(StdDuration::from_secs(15))
            .send()
            .await
            // Never print the URL: it is the secret.
            .map_err(|e| {
                StepError::transient(format!(
                    "slack: request failed: {}",
                    error_chain(&e.without_url())
                ))
            })?;
        let status = resp.status().as_u16();
        if status == 429 && attempt < SLACK_ATTEMPTS {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(StdDuration::from_secs(1), StdDuration::from_secs)
                .min(MAX_RETRY_AFTER);
            tokio::time::sleep(wait).await;
            continue;
        }
        let body = resp.text().await.unwrap_or_default();
        return match status {
            200..=299 => Ok(()),
            429 | 500..=599 => Err(StepError::transient(format!(
                "slack: HTTP {status}: {}",
                body.trim()
            ))),
            _ => Err(StepError::permanent(format!(
                "slack: HTTP {status}: {}",
                body.trim()
            ))),
        };
    }
    Err(StepError::transient("slack: still rate limited"))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn email(ch: &EmailChannel, msg: &Message) -> Result<(), StepError> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let bad =
        |what: &str, e: &dyn std::fmt::Display| StepError::permanent(format!("email: {what}: {e}"));
    let from: Mailbox = ch.from.parse().map_err(|e| bad("invalid `from`", &e))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(msg.title.clone());
    for to in &ch.to {
        builder = builder.to(to
            .parse::<Mailbox>()
            .map_err(|e| bad("invalid recipient", &e))?);
    }
    let html = msg
        .html
        .clone()
        .unwrap_or_else(|| format!("<pre>{}</pre>", escape_html(&msg.text)));
    let message = builder
        .multipart(MultiPart::alternative_plain_html(msg.text.clone(), html))
        .map_err(|e| bad("building message", &e))?;

    let smtp = &ch.smtp;
    let mut transport = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| bad("smtp", &e))?,
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| bad("smtp", &e))?
        }
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    if let Some(port) = smtp.port {
        transport = transport.port(port);
    }
    if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
        transport =
            transport.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    let transport = transport.timeout(Some(StdDuration::from_secs(30))).build();
    transport.send(message).await.map(|_| ()).map_err(|e| {
        // A 5xx reply (refused login, unknown recipient) will not pass by itself.
        let message = format!("email: {}", error_chain(&e));
        if e.is_permanent() {
            StepError::permanent(message)
        } else {
            StepError::transient(message)
        }
    })
}

/// Tells `channels` that a run started / succeeded / failed / waits for
/// approval, with `detail` (the error, the approval question) below. Failures
/// are logged only.
pub async fn run_event(
    services: &Services,
    run: &RunState,
    event: &str,
    channels: &[At<String>],
    detail: Option<&str>,
) {
    if channels.is_empty() {
        return;
    }
    let name = &run.runbook.name.value;
    let mut text = format!(
        "Runbook `{name}` {event} (run {}, trigger by {}).",
        run.id, run.who
    );
    if let Some(d) = detail {
        text.push('\n');
        text.push_str(d);
    }
    if let Some(url) = services.run_url(&run.id) {
        text.push_str(&format!("\n{url}"));
    }
    let msg = Message {
        title: format!("Sluice: {name} {event}"),
        text: services.redactor.text(&text),
        html: None,
    };
    for ch in channels {
        if let Err(e) = send(services, ch, &msg).await {
            warn!(run_id = %run.id, channel = %ch.value, error = %e, "Run notification failed.");
        }
    }
}
