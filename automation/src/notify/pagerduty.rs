//! PagerDuty Events API v2 (`POST /v2/enqueue`): an incident per alert,
//! keyed by the alert's fingerprint (`dedup_key`), moved along with what
//! Sluice does about it:
//!
//! | event | `event_action` |
//! |---|---|
//! | alert firing, run failed, escalation, approval wanted | `trigger` (a person is needed) |
//! | run started (remediation under way) | `trigger`, then `acknowledge` |
//! | run succeeded, alert resolved | `resolve` |
//!
//! `acknowledge` and `resolve` need a dedup key (the incident to act on);
//! without one they are not sent. A run started by an alert usually starts
//! before the alert's own notification (held by `group_wait`) reaches
//! PagerDuty, and PagerDuty drops an acknowledge for an incident it does
//! not have; so a run's start sends a `trigger` with the same key first
//! (PagerDuty folds it into the open incident if there is one) and then
//! the `acknowledge`. The alert's trigger that arrives later is folded into
//! the acknowledged incident. Severity comes from the alert's
//! `severity` label mapped onto PagerDuty's four (`page`/`critical` →
//! critical, `error`/`high` → error, `warning`/`warn` → warning, `info`/
//! `low`/`none` → info), else the channel's `severity`. A 429 is retried
//! after `Retry-After` by the delivery policy.

use futures::future::BoxFuture;
use serde_json::{Value as J, json};

use super::{EventKind, Message, Notifier, NotifyError};
use crate::config::PagerDutyChannel;

/// PagerDuty's severities.
pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

/// Summaries are limited to 1024 characters.
const SUMMARY_CHARS: usize = 1024;

pub struct PagerDuty<'c>(pub &'c PagerDutyChannel);

/// `trigger`, `acknowledge` or `resolve` for an event.
pub fn action(kind: EventKind) -> &'static str {
    match kind {
        EventKind::RunStarted => "acknowledge",
        EventKind::RunSucceeded | EventKind::AlertResolved => "resolve",
        _ => "trigger",
    }
}

/// An alert's `severity` label as one of PagerDuty's four.
pub fn severity(label: Option<&str>, default: &str) -> String {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("page" | "critical" | "fatal") => "critical".into(),
        Some("error" | "high" | "major") => "error".into(),
        Some("warning" | "warn" | "minor") => "warning".into(),
        Some("info" | "low" | "none") => "info".into(),
        _ => default.to_string(),
    }
}

/// The Events v2 body for `msg`, or `None` when there is nothing to act on.
pub fn event(ch: &PagerDutyChannel, msg: &Message) -> Option<J> {
    let action = action(msg.event.kind);
    let key = msg.event.dedup_key.clone();
    if action != "trigger" && key.is_none() {
        return None;
    }
    let mut body = json!({
        "routing_key": ch.routing_key.expose(),
        "event_action": action,
    });
    if let Some(k) = &key {
        body["dedup_key"] = J::String(k.chars().take(255).collect());
    }
    if action == "trigger" {
        let summary = if msg.title.is_empty() {
            msg.text.lines().next().unwrap_or("Sluice").to_string()
        } else {
            msg.title.clone()
        };
        body["payload"] = json!({
            "summary": summary.chars().take(SUMMARY_CHARS).collect::<String>(),
            "source": msg.event.source.clone().unwrap_or_else(|| ch.source.clone()),
            "severity": severity(msg.event.severity.as_deref(), &ch.severity),
            "component": "sluice",
            "custom_details": {"text": msg.text, "event": msg.event.kind},
        });
        if let Some(link) = &msg.event.link {
            body["links"] = json!([{"href": link, "text": "Sluice run"}]);
        }
    }
    Some(body)
}

/// The events to send for `msg`, in order: a run's start opens (or joins)
/// the incident before acknowledging it.
pub fn events(ch: &PagerDutyChannel, msg: &Message) -> Vec<J> {
    let Some(body) = event(ch, msg) else {
        return Vec::new();
    };
    if msg.event.kind != EventKind::RunStarted {
        return vec![body];
    }
    let mut open = msg.clone();
    open.event.kind = EventKind::Info;
    event(ch, &open).into_iter().chain([body]).collect()
}

impl Notifier for PagerDuty<'_> {
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            // A retry sends both again: a trigger with the same key is idempotent.
            for body in events(self.0, msg) {
                let req = http.post(self.0.url.0.clone());
                super::post_json("pagerduty", req, &body).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Event;

    fn ch() -> PagerDutyChannel {
        serde_json::from_value(json!({"routing_key": "R0UT1NGKEY0123456789012345678901"})).unwrap()
    }

    fn msg(kind: EventKind, key: Option<&str>) -> Message {
        Message {
            title: "Sluice: failover failed".into(),
            text: "failed at fence".into(),
            html: None,
            event: Event {
                kind,
                dedup_key: key.map(str::to_string),
                severity: Some("critical".into()),
                link: Some("http://sluice/runs/r1".into()),
                source: Some("failover".into()),
                approval: None,
            },
        }
    }

    #[test]
    fn incidents_follow_the_run_by_dedup_key() {
        let c = ch();
        let t = event(&c, &msg(EventKind::AlertFiring, Some("abc"))).unwrap();
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "abc");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "failover");
        assert_eq!(t["links"][0]["href"], "http://sluice/runs/r1");
        let a = event(&c, &msg(EventKind::RunStarted, Some("abc"))).unwrap();
        assert_eq!(a["event_action"], "acknowledge");
        let started: Vec<J> = events(&c, &msg(EventKind::RunStarted, Some("abc")));
        let actions: Vec<&J> = started.iter().map(|e| &e["event_action"]).collect();
        assert_eq!(actions, ["trigger", "acknowledge"]);
        assert!(started.iter().all(|e| e["dedup_key"] == "abc"));
        assert!(events(&c, &msg(EventKind::RunStarted, None)).is_empty());
        assert!(a.get("payload").is_none(), "acknowledge carries no payload");
        let r = event(&c, &msg(EventKind::RunSucceeded, Some("abc"))).unwrap();
        assert_eq!(r["event_action"], "resolve");
        assert!(event(&c, &msg(EventKind::RunSucceeded, None)).is_none());
        assert_eq!(severity(Some("page"), "error"), "critical");
        assert_eq!(severity(None, "warning"), "warning");
    }
}
