//! `channels:` in sluice.yaml: where notifications go. One variant per
//! channel kind; each kind's sender is one file in [`crate::notify`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::HttpUrl;
use crate::secret::Secret;

/// A notification channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Channel {
    /// Slack incoming webhook.
    Slack(SlackChannel),
    /// Email over SMTP.
    Email(EmailChannel),
    /// A generic webhook: JSON bodies signed with HMAC-SHA256.
    Webhook(WebhookChannel),
    /// PagerDuty Events API v2: incidents opened, acknowledged and resolved with runs and alerts.
    Pagerduty(PagerDutyChannel),
    /// Microsoft Teams through a Workflows webhook (Adaptive Cards).
    Teams(TeamsChannel),
}

impl Channel {
    /// The kind's name, as written in sluice.yaml.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack",
            Channel::Email(_) => "email",
            Channel::Webhook(_) => "webhook",
            Channel::Pagerduty(_) => "pagerduty",
            Channel::Teams(_) => "teams",
        }
    }

    /// Its secret fields, for redaction.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Channel::Slack(s) => [&s.webhook_url, &s.bot_token, &s.signing_secret]
                .into_iter()
                .flatten()
                .collect(),
            Channel::Email(e) => e.smtp.password.iter().collect(),
            Channel::Webhook(w) => {
                let mut v: Vec<&Secret> = w.secret.iter().collect();
                v.extend(w.headers.values());
                v
            }
            Channel::Pagerduty(p) => vec![&p.routing_key],
            Channel::Teams(t) => vec![&t.webhook_url],
        }
    }
}

/// Slack, in one of two modes: an incoming webhook (`webhook_url`), or an
/// app (`bot_token` + `channel`, posting through the Web API). An app with a
/// `signing_secret` and `approvers` puts Approve / Reject buttons on approval
/// requests; the clicks come back to `POST /api/v1/slack/interactions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    /// Incoming-webhook mode: the webhook URL (a secret: it authorises posting).
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// App mode: the bot token (`xoxb-…`, a secret).
    #[serde(default)]
    pub bot_token: Option<Secret>,
    /// App mode: the conversation to post to (an ID such as `C0123ABCD`, or `#name`).
    #[serde(default)]
    pub channel: Option<String>,
    /// App mode: the app's signing secret, which authenticates button clicks.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Slack user IDs allowed to approve or reject from Slack, each with the
    /// name recorded on the run (`U012AB3CD: alice`). Nobody else can.
    #[serde(default)]
    pub approvers: BTreeMap<String, String>,
    /// App mode: the Web API base (default `https://slack.com/api`).
    #[serde(default = "default_slack_api")]
    pub api_url: HttpUrl,
}

impl SlackChannel {
    /// Whether approval requests on this channel carry buttons.
    pub fn interactive(&self) -> bool {
        self.bot_token.is_some() && self.signing_secret.is_some() && !self.approvers.is_empty()
    }
}

fn default_slack_api() -> HttpUrl {
    HttpUrl(url::Url::parse("https://slack.com/api").expect("valid URL"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    pub smtp: Smtp,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (loopback/testing only).
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// A generic webhook. The body is the documented JSON of a notification;
/// with `secret`, `X-Sluice-Signature: sha256=<hex HMAC-SHA256 of
/// "<timestamp>.<body>">` and `X-Sluice-Timestamp` let the receiver check it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub url: HttpUrl,
    /// Signing secret (at least 16 characters).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Extra headers (values are secrets: an `Authorization` header, say).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyChannel {
    /// The integration's routing key (a secret).
    pub routing_key: Secret,
    /// Events endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    #[serde(default = "default_pagerduty_url")]
    pub url: HttpUrl,
    /// Severity when the alert has no `severity` label: `critical`, `error`, `warning`, `info`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// `payload.source` (default: `sluice`).
    #[serde(default = "default_source")]
    pub source: String,
}

fn default_pagerduty_url() -> HttpUrl {
    HttpUrl(url::Url::parse("https://events.pagerduty.com/v2/enqueue").expect("valid URL"))
}
fn default_severity() -> String {
    "error".to_string()
}
fn default_source() -> String {
    "sluice".to_string()
}

/// Microsoft Teams: a Workflows ("Post to a channel when a webhook request
/// is received") webhook URL — a secret, it authorises posting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsChannel {
    pub webhook_url: Secret,
}
