//! Notifications: one [`Notifier`] per channel kind, one file each, one
//! registry ([`notifier`]), and one delivery policy ([`deliver`]) every
//! sender in Sluice goes through — the `notify` step, run start/success/
//! failure/approval messages, alert notifications, escalations, missed
//! schedules and interrupted runs.
//!
//! | kind | file | what it sends |
//! |---|---|---|
//! | `slack` | slack.rs | incoming webhook or app (Web API), Block Kit header + section, text fallback; Approve / Reject buttons on approval requests (app mode) |
//! | `email` | email.rs | SMTP (STARTTLS, TLS, plain on loopback), text + HTML |
//! | `webhook` | webhook.rs | documented JSON, HMAC-SHA256 signed |
//! | `pagerduty` | pagerduty.rs | Events API v2: trigger / acknowledge / resolve by dedup key |
//! | `teams` | teams.rs | Workflows webhook with an Adaptive Card |
//!
//! A notifier says whether a failure may pass by itself (`recoverable`) and
//! how long the service asked to wait (`retry_after`: Slack's and
//! PagerDuty's 429); [`deliver`] retries recoverable failures with backoff,
//! waiting out `Retry-After` (at most a minute), so no channel retries on
//! its own.

pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::Channel;
use crate::secret::Redactor;

/// What happened, for channels that track incidents (PagerDuty) and for receivers of webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    #[default]
    Info,
    RunStarted,
    RunSucceeded,
    RunFailed,
    Approval,
    Escalation,
    AlertFiring,
    AlertResolved,
}

/// The context of a notification.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Event {
    pub kind: EventKind,
    /// Ties messages about one incident together: the alert fingerprint (or group key).
    pub dedup_key: Option<String>,
    /// `critical`, `error`, `warning`, `info` (from the alert's `severity` label).
    pub severity: Option<String>,
    /// Where a person can look (the run in the API/console).
    pub link: Option<String>,
    /// What it is about: the runbook or alert name.
    pub source: Option<String>,
    /// The approval an [`EventKind::Approval`] message asks for (channels
    /// that can take the decision put buttons on it).
    pub approval: Option<ApprovalRef>,
}

/// One approval request: the run and the step that waits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRef {
    pub run_id: String,
    pub step: String,
}

/// One notification.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub title: String,
    pub text: String,
    /// Email HTML part (default: the text, escaped).
    pub html: Option<String>,
    pub event: Event,
}

/// A failed delivery and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    pub message: String,
    pub recoverable: bool,
    /// How long the service asked to wait before the next try.
    pub retry_after: Option<Duration>,
}

impl NotifyError {
    pub fn recoverable(message: impl Into<String>) -> Self {
        NotifyError {
            message: message.into(),
            recoverable: true,
            retry_after: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError {
            message: message.into(),
            recoverable: false,
            retry_after: None,
        }
    }

    /// From an HTTP answer: 429 and 5xx may pass, other statuses will not.
    pub fn http(kind: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let message = format!("{kind}: HTTP {status}: {}", body.trim());
        NotifyError {
            message,
            recoverable: status == 429 || status >= 500,
            retry_after,
        }
    }

    /// A request that did not get an answer (never the URL: it may be the secret).
    pub fn request(kind: &str, e: reqwest::Error) -> Self {
        NotifyError::recoverable(format!(
            "{kind}: request failed: {}",
            crate::exec::steps::http::error_chain(&e.without_url())
        ))
    }
}

/// Sends one message on one channel, once.
pub trait Notifier: Send + Sync {
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// The notifier of a channel (the registry: one line per kind).
pub fn notifier(ch: &Channel) -> Box<dyn Notifier + '_> {
    match ch {
        Channel::Slack(c) => Box::new(slack::Slack(c)),
        Channel::Email(c) => Box::new(email::Email(c)),
        Channel::Webhook(c) => Box::new(webhook::Webhook(c)),
        Channel::Pagerduty(c) => Box::new(pagerduty::PagerDuty(c)),
        Channel::Teams(c) => Box::new(teams::Teams(c)),
    }
}

/// Tries per delivery.
pub const ATTEMPTS: u32 = 4;
/// The longest `Retry-After` waited out.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Delay before try `attempt + 1`: what the service asked for (capped), else 0.5 s doubling.
pub fn delay(attempt: u32, e: &NotifyError) -> Duration {
    e.retry_after
        .map(|d| d.min(MAX_RETRY_AFTER))
        .unwrap_or_else(|| Duration::from_millis(500) * 2u32.pow(attempt.saturating_sub(1).min(6)))
}

/// Delivers `msg` on `ch` with the one retry policy; error text is
/// redacted. Either way, how many attempts it took.
pub async fn deliver(
    http: &reqwest::Client,
    redactor: &Redactor,
    ch: &Channel,
    msg: &Message,
) -> (u32, Result<(), NotifyError>) {
    let n = notifier(ch);
    let (attempts, result) = retrying(|| n.send(http, msg)).await;
    let result = result.map_err(|mut e| {
        e.message = redactor.text(&e.message);
        e
    });
    (attempts, result)
}

/// The one retry policy: `send` again while its failure is recoverable, up
/// to [`ATTEMPTS`], waiting [`delay`] between; how many attempts it took.
pub async fn retrying<F, Fut>(mut send: F) -> (u32, Result<(), NotifyError>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), NotifyError>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Ok(()) => return (attempt, Ok(())),
            Err(e) if !e.recoverable || attempt >= ATTEMPTS => return (attempt, Err(e)),
            Err(e) => {
                tokio::time::sleep(delay(attempt, &e)).await;
                attempt += 1;
            }
        }
    }
}

/// `Retry-After` in seconds, as Slack and PagerDuty send it.
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// POSTs JSON and reads the answer: `Ok` on 2xx, a classified error otherwise.
pub async fn post_json(
    kind: &str,
    req: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<(u16, String), NotifyError> {
    send(kind, req.json(body)).await
}

/// Sends a prepared request (15 s timeout) and classifies the answer.
pub async fn send(kind: &str, req: reqwest::RequestBuilder) -> Result<(u16, String), NotifyError> {
    let resp = req
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| NotifyError::request(kind, e))?;
    let status = resp.status().as_u16();
    let wait = retry_after(&resp);
    let text = resp.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        Ok((status, text))
    } else {
        Err(NotifyError::http(kind, status, &text, wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_but_capped_and_backoff_doubles() {
        let mut e = NotifyError::recoverable("x");
        assert_eq!(delay(1, &e), Duration::from_millis(500));
        assert_eq!(delay(3, &e), Duration::from_secs(2));
        e.retry_after = Some(Duration::from_secs(7));
        assert_eq!(delay(1, &e), Duration::from_secs(7));
        e.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(delay(1, &e), MAX_RETRY_AFTER);
        assert!(NotifyError::http("x", 429, "", None).recoverable);
        assert!(NotifyError::http("x", 503, "", None).recoverable);
        assert!(!NotifyError::http("x", 400, "", None).recoverable);
    }
}
