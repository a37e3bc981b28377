//! `notify`: send a message to channels from sluice.yaml — Slack incoming
//! webhooks (blocks + text fallback, honouring 429 Retry-After) and email over
//! SMTP (STARTTLS, implicit TLS or plain on loopback; text + HTML). Also sends
//! the runbook-level start/success/failure/approval notifications.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
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

pub use crate::notify::{Event, EventKind, Message};

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
                event: Event {
                    source: Some(cx.run.runbook.name.value.clone()),
                    link: cx.services.run_url(&cx.run.id),
                    ..run_alert(cx.run)
                },
            };
            let mut sent = Vec::new();
            let mut failures = Vec::new();
            let mut permanent = false;
            for name in &self.channels {
                match send_about(cx.services, &cx.run.id, name, &msg).await {
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

/// Sends one message to a named channel through the one delivery policy
/// ([`crate::notify::deliver`]); in a rehearsal it is recorded instead.
pub async fn send(services: &Services, channel: &str, msg: &Message) -> Result<(), StepError> {
    deliver(services, None, channel, msg).await
}

/// [`send`], and the delivery recorded on run `run_id` (channel, event,
/// outcome, attempts), so "was anyone told?" is answered on the run.
pub async fn send_about(
    services: &Services,
    run_id: &str,
    channel: &str,
    msg: &Message,
) -> Result<(), StepError> {
    deliver(services, Some(run_id), channel, msg).await
}

async fn deliver(
    services: &Services,
    run_id: Option<&str>,
    channel: &str,
    msg: &Message,
) -> Result<(), StepError> {
    if let Some(r) = &services.rehearsal {
        r.notify(channel, &msg.title, &services.redactor.text(&msg.text));
        return Ok(());
    }
    let ch = services.config.channels.get(channel).ok_or_else(|| {
        StepError::permanent(format!(
            "unknown channel `{channel}` (define it under `channels:` in sluice.yaml)"
        ))
    })?;
    let (attempts, result) =
        crate::notify::deliver(&services.http, &services.redactor, ch, msg).await;
    if let (Some(run_id), Some(store)) = (run_id, &services.store) {
        let event = serde_json::to_value(msg.event.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "info".into());
        let rec = crate::store::DeliveryRecord {
            run_id: run_id.to_string(),
            at: chrono::Utc::now(),
            channel: channel.to_string(),
            event,
            ok: result.is_ok(),
            attempts: i64::from(attempts),
            error: result.as_ref().err().map(|e| e.message.clone()),
        };
        if let Err(e) = store.record_delivery(&rec).await {
            warn!(run_id, channel, error = %e, "Could not record a notification on its run.");
        }
    }
    result.map_err(|e| {
        if e.recoverable {
            StepError::transient(e.message)
        } else {
            StepError::permanent(e.message)
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
    let msg = run_message(services, run, event, detail);
    send_all(services, run, channels, &msg).await;
}

/// Asks `channels` to approve step `path` of `run`; channels that can take
/// the decision (a Slack app) add buttons bound to this request.
pub async fn approval_request(
    services: &Services,
    run: &RunState,
    path: &str,
    channels: &[At<String>],
    question: &str,
) {
    if channels.is_empty() {
        return;
    }
    let mut msg = run_message(services, run, "needs approval", Some(question));
    msg.event.approval = Some(crate::notify::ApprovalRef {
        run_id: run.id.clone(),
        step: path.to_string(),
    });
    send_all(services, run, channels, &msg).await;
}

async fn send_all(services: &Services, run: &RunState, channels: &[At<String>], msg: &Message) {
    for ch in channels {
        if let Err(e) = send_about(services, &run.id, ch, msg).await {
            warn!(run_id = %run.id, channel = %ch.value, error = %e, "Run notification failed.");
        }
    }
}

/// The message telling that `run` started / succeeded / … with `detail` below.
fn run_message(services: &Services, run: &RunState, event: &str, detail: Option<&str>) -> Message {
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
    let kind = match event {
        "start" => EventKind::RunStarted,
        "succeeded" => EventKind::RunSucceeded,
        "needs approval" => EventKind::Approval,
        "failed" | "cancelled" | "interrupted" => EventKind::RunFailed,
        _ => EventKind::Info,
    };
    Message {
        title: format!("Sluice: {name} {event}"),
        text: services.redactor.text(&text),
        html: None,
        event: Event {
            kind,
            source: Some(name.clone()),
            link: services.run_url(&run.id),
            ..run_alert(run)
        },
    }
}

/// The alert a run was started by, as event context: its fingerprint (the
/// incident's dedup key) and `severity` label.
fn run_alert(run: &RunState) -> Event {
    let get = |t: &str| {
        run.scope
            .render(t, crate::runbook::template::Escape::None)
            .ok()
            .filter(|s| !s.is_empty())
    };
    Event {
        dedup_key: get("{{alert.fingerprint}}"),
        severity: get("{{alert.labels.severity}}"),
        ..Event::default()
    }
}
