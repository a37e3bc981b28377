//! Alert notifications: the routing tree, grouping and timers of
//! [`crate::dispatch`] driven by the service's clock, muted by silences,
//! inhibition, maintenance windows and (configurable) alerts a running
//! runbook handles; each notification goes to the receiver's channels.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::Service;
use crate::config::{Alerting, RouteConfig};
use crate::dispatch::{
    Dispatcher, GroupBy, InhibitRule, LabelSet, Matcher, Muter, Notification, Route, RouteOpts,
    Silence,
};
use crate::exec::steps::notify::{Message, send};
use crate::store::SilenceRecord;

fn parse_all(list: &[crate::yaml::de::At<String>]) -> Vec<Matcher> {
    // Checked when the config loaded.
    list.iter().filter_map(|m| Matcher::parse(m).ok()).collect()
}

fn route_of(c: &RouteConfig, parent: &RouteOpts) -> Route {
    let mut opts = parent.clone();
    if let Some(r) = &c.receiver {
        opts.receiver = r.value.clone();
    }
    if let Some(g) = &c.group_by {
        opts.group_by = if g.iter().any(|l| l == "...") {
            GroupBy::All
        } else {
            GroupBy::Labels(g.clone())
        };
    }
    if let Some(d) = c.group_wait {
        opts.group_wait = d.std();
    }
    if let Some(d) = c.group_interval {
        opts.group_interval = d.std();
    }
    if let Some(d) = c.repeat_interval {
        opts.repeat_interval = d.std();
    }
    if let Some(b) = c.send_resolved {
        opts.send_resolved = b;
    }
    Route {
        id: String::new(),
        matchers: parse_all(&c.matchers),
        continue_matching: c.continue_matching,
        routes: c.routes.iter().map(|r| route_of(r, &opts)).collect(),
        opts,
    }
}

/// The dispatcher for the configured route and inhibition rules.
pub fn build_dispatcher(route: &RouteConfig, alerting: &Alerting) -> Dispatcher {
    let root = route_of(route, &RouteOpts::default());
    let inhibit = alerting
        .inhibit_rules
        .iter()
        .map(|r| InhibitRule {
            source_matchers: parse_all(&r.source_matchers),
            target_matchers: parse_all(&r.target_matchers),
            equal: r.equal.clone(),
        })
        .collect();
    Dispatcher::new(root, inhibit)
}

/// Silences written in sluice.yaml.
pub fn config_silences(alerting: &Alerting) -> Vec<Silence> {
    let parse = |t: &Option<crate::yaml::de::At<String>>| {
        t.as_ref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    alerting
        .silences
        .iter()
        .enumerate()
        .map(|(i, s)| Silence {
            id: format!("config-{i}"),
            matchers: parse_all(&s.matchers),
            starts_at: parse(&s.starts_at).unwrap_or(DateTime::<Utc>::MIN_UTC),
            ends_at: parse(&s.ends_at).unwrap_or(DateTime::<Utc>::MAX_UTC),
            created_by: "sluice.yaml".into(),
            comment: s.comment.clone(),
        })
        .collect()
}

/// A stored silence as the dispatcher's (`None` when a matcher no longer parses).
pub fn silence_of(r: &SilenceRecord) -> Option<Silence> {
    let matchers: Result<Vec<Matcher>, _> = r.matchers.iter().map(|m| Matcher::parse(m)).collect();
    Some(Silence {
        id: r.id.clone(),
        matchers: matchers.ok()?,
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        created_by: r.created_by.clone(),
        comment: r.comment.clone(),
    })
}

/// Mutes alerts a running runbook handles and alerts in a maintenance window.
struct ServiceMuter<'a> {
    svc: &'a Service,
}

impl Muter for ServiceMuter<'_> {
    fn mutes(&self, labels: &LabelSet, now: DateTime<Utc>) -> bool {
        (self.svc.config.alerting.mute_handled
            && self
                .svc
                .runner
                .is_handled(&crate::alert::fingerprint(labels)))
            || self.svc.windows.mutes(labels, now)
    }
}

/// Title and text of a notification, in the spirit of Alertmanager's default templates.
pub fn message(n: &Notification) -> Message {
    let group: Vec<String> = n
        .group_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let status = if n.firing.is_empty() {
        "[RESOLVED]".to_string()
    } else {
        format!("[FIRING:{}]", n.firing.len())
    };
    let title = if group.is_empty() {
        status
    } else {
        format!("{status} {}", group.join(" "))
    };
    let line = |a: &crate::dispatch::Alert, resolved: bool| {
        let name = a.labels.get("alertname").map_or("alert", String::as_str);
        let rest: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let about = a
            .annotations
            .get("summary")
            .or_else(|| a.annotations.get("description"))
            .map(|s| format!(" — {s}"))
            .unwrap_or_default();
        let when = if resolved {
            a.ends_at
                .map(|t| {
                    format!(
                        " (resolved {})",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                })
                .unwrap_or_default()
        } else {
            format!(
                " (since {})",
                a.starts_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        };
        format!("• {name} {{{}}}{about}{when}", rest.join(", "))
    };
    let mut text = String::new();
    if !n.firing.is_empty() {
        text.push_str("Firing:\n");
        for a in &n.firing {
            text.push_str(&line(a, false));
            text.push('\n');
        }
    }
    if !n.resolved.is_empty() {
        text.push_str("Resolved:\n");
        for a in &n.resolved {
            text.push_str(&line(a, true));
            text.push('\n');
        }
    }
    // One alert: its fingerprint is the incident (a run it starts carries the same).
    let alerts: Vec<&crate::dispatch::Alert> = n.firing.iter().chain(&n.resolved).collect();
    let dedup_key = match alerts.as_slice() {
        [one] => crate::alert::fingerprint::fingerprint(&one.labels),
        _ => n.group_key.clone(),
    };
    Message {
        title,
        text: text.trim_end().to_string(),
        html: None,
        event: crate::notify::Event {
            kind: if n.firing.is_empty() {
                crate::notify::EventKind::AlertResolved
            } else {
                crate::notify::EventKind::AlertFiring
            },
            dedup_key: Some(dedup_key),
            severity: alerts
                .first()
                .and_then(|a| a.labels.get("severity").cloned()),
            link: None,
            source: alerts
                .first()
                .and_then(|a| a.labels.get("alertname").cloned()),
            approval: None,
        },
    }
}

/// The channels of a receiver (a receiver name or a channel name).
fn channels(svc: &Service, receiver: &str) -> Vec<String> {
    match svc.config.alerting.receivers.get(receiver) {
        Some(list) => list.iter().map(|c| c.value.clone()).collect(),
        None => vec![receiver.to_string()],
    }
}

/// Sends due notifications until shutdown.
pub async fn run(svc: Arc<Service>) {
    let Some(dispatcher) = &svc.dispatcher else {
        return;
    };
    let mut stop = svc.shutdown_signal();
    let mut last_silence_sync = std::time::Instant::now();
    loop {
        let now = svc.clock.now();
        let due = {
            let mut d = dispatcher.lock().unwrap_or_else(|e| e.into_inner());
            d.tick_with(now, &ServiceMuter { svc: &svc })
        };
        for n in due {
            let msg = message(&n);
            for ch in channels(&svc, &n.receiver) {
                let result = send(&svc.runner.services, &ch, &msg).await;
                svc.metrics
                    .notifications
                    .inc(&[&ch, if result.is_ok() { "ok" } else { "failed" }]);
                if let Err(e) = result {
                    warn!(channel = %ch, group = %n.group_key, error = %e, "Alert notification failed.");
                }
            }
        }
        // Silences created on other instances.
        if last_silence_sync.elapsed() > StdDuration::from_secs(10) {
            last_silence_sync = std::time::Instant::now();
            sync_silences(&svc).await;
        }
        let next = dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_due();
        let wait = next
            .map(|t| (t - svc.clock.now()).to_std().unwrap_or_default())
            .unwrap_or(StdDuration::from_secs(1))
            .clamp(StdDuration::from_millis(50), StdDuration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = svc.alerts_changed.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Brings API silences written by any instance into this dispatcher.
pub async fn sync_silences(svc: &Service) {
    let Some(d) = &svc.dispatcher else { return };
    let now = Utc::now();
    match svc.store.silences(now - chrono::Duration::hours(1)).await {
        Ok(recs) => {
            let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
            for r in &recs {
                if let Some(s) = silence_of(r)
                    && d.silences.get(&s.id) != Some(&s)
                {
                    let _ = d.silences.upsert(s);
                }
            }
            d.silences.gc(now, chrono::Duration::hours(1));
        }
        Err(e) => warn!(error = %e, "Could not sync silences."),
    }
}
