//! Alert events — from the internal rules and the Alertmanager webhook alike —
//! go to the notifier and start the runbooks whose `alert:` triggers match.
//! Firing internal alerts are re-considered every minute, as Prometheus
//! re-sends them to Alertmanager: an alert still firing after its cooldown
//! gets another run, and `max_runs` turns a remediation that does not help
//! into an escalation.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value as J, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use super::Service;
use super::decisions::DecisionEntry;
use super::runner::{Decision, Submission};
use crate::alert::{AlertEvent, AlertEventKind, AlertSource, AlertState};
use crate::runbook::template::Escape;

fn rfc3339(ms: i64) -> Option<String> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// What templates see as `alert`.
pub fn alert_json(ev: &AlertEvent) -> J {
    json!({
        "name": ev.name,
        "status": match ev.kind { AlertEventKind::Firing => "firing", AlertEventKind::Resolved => "resolved" },
        "labels": ev.labels,
        "annotations": ev.annotations,
        "value": ev.value,
        "fingerprint": ev.fingerprint,
        "since": rfc3339(ev.since_ms),
        "ended": ev.ended_ms.and_then(rfc3339),
        "source": match &ev.source { AlertSource::Rule { .. } => "rule", AlertSource::Webhook { .. } => "webhook" },
        "generator_url": ev.generator_url,
    })
}

/// Handles one alert event: notification bookkeeping and triggers.
pub fn on_event(svc: &Arc<Service>, ev: AlertEvent) {
    let source = match ev.source {
        AlertSource::Rule { .. } => "rules",
        AlertSource::Webhook { .. } => "webhook",
    };
    let kind = match ev.kind {
        AlertEventKind::Firing => "firing",
        AlertEventKind::Resolved => "resolved",
    };
    svc.metrics.alerts_received.inc(&[source, kind]);
    if source == "webhook" {
        let mut ext = svc
            .external_alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match ev.kind {
            AlertEventKind::Firing => {
                ext.insert(ev.fingerprint.clone(), ev.clone());
            }
            AlertEventKind::Resolved => {
                ext.remove(&ev.fingerprint);
            }
        }
    }
    if let Some(d) = &svc.dispatcher {
        let alert = crate::dispatch::Alert {
            labels: ev.labels.clone(),
            annotations: ev.annotations.clone(),
            starts_at: Utc
                .timestamp_millis_opt(ev.since_ms)
                .single()
                .unwrap_or_else(Utc::now),
            ends_at: ev
                .ended_ms
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            generator_url: ev.generator_url.clone(),
        };
        d.lock()
            .unwrap_or_else(|e| e.into_inner())
            .ingest(alert, svc.clock.now());
        svc.alerts_changed.notify_one();
    }
    trigger(svc, &ev);
}

/// What the alert triggers make of one event, before the guards.
#[derive(Debug, Clone)]
pub enum TriggerStart {
    /// A maintenance window suppresses automatic runs for the alert.
    Maintenance { runbook: String, window: String },
    /// A guarded start to submit (its `scope` is set).
    Submit(Submission),
}

/// The starts `ev` asks for: the runbooks whose `alert:` triggers match it
/// (labels and matchers, `on_resolved`), with their guard scope, at `now`.
pub fn trigger_starts(
    library: &super::library::Library,
    windows: &super::maintenance::Windows,
    ev: &AlertEvent,
    now: DateTime<Utc>,
) -> Vec<TriggerStart> {
    let mut out = Vec::new();
    for t in library.alert_triggers(&ev.name) {
        let wanted = match ev.kind {
            AlertEventKind::Firing => true,
            AlertEventKind::Resolved => t.on_resolved,
        };
        if !wanted || !t.matches(&ev.labels) {
            continue;
        }
        let name = t.runbook.name().to_string();
        if ev.kind == AlertEventKind::Firing
            && let Some(w) = windows.suppresses_runs(&ev.labels, now)
        {
            out.push(TriggerStart::Maintenance {
                runbook: name,
                window: w.to_string(),
            });
            continue;
        }
        let alert = alert_json(ev);
        let mut scope = guard_scope(&t.runbook.runbook, &alert, &ev.fingerprint);
        if ev.kind == AlertEventKind::Resolved {
            scope.push_str("#resolved");
        }
        out.push(TriggerStart::Submit(Submission {
            runbook: t.runbook.clone(),
            params: Default::default(),
            trigger: "alert".into(),
            who: format!("alert:{}", ev.name),
            alert: Some(alert),
            webhook: None,
            scheduled_at: None,
            scope: Some(scope),
            fingerprint: Some(ev.fingerprint.clone()),
            claim: None,
        }));
    }
    out
}

/// Starts the runbooks whose alert triggers match `ev`.
pub fn trigger(svc: &Arc<Service>, ev: &AlertEvent) {
    let starts = trigger_starts(&svc.library_read(), &svc.windows, ev, svc.clock.now());
    for start in starts {
        let sub = match start {
            TriggerStart::Maintenance { runbook, window } => {
                debug!(runbook = %runbook, window = %window, alert = %ev.name, "Maintenance window: not starting.");
                svc.metrics
                    .trigger_decisions
                    .inc(&[&runbook, Decision::Maintenance.as_str()]);
                svc.runner.decisions.push(DecisionEntry {
                    at: Utc::now(),
                    detail: Some(format!(
                        "maintenance window `{window}` is open (alert {})",
                        ev.name
                    )),
                    runbook,
                    trigger: "alert".into(),
                    decision: Decision::Maintenance,
                    run_id: None,
                    scope: Some(ev.fingerprint.clone()),
                });
                continue;
            }
            TriggerStart::Submit(sub) => sub,
        };
        let name = sub.runbook.name().to_string();
        let runner = svc.runner.clone();
        tokio::spawn(async move {
            let out = runner.submit(sub).await;
            debug!(runbook = %name, decision = out.decision.as_str(), run_id = ?out.run_id, "Alert trigger.");
        });
    }
}

/// The guard scope of an automatic start: the runbook's `guards.scope`
/// template, or `default` (the alert fingerprint; empty for the whole runbook).
pub fn guard_scope(rb: &crate::runbook::Runbook, alert: &J, default: &str) -> String {
    let Some(t) = &rb.guards.scope else {
        return default.to_string();
    };
    let scope = crate::exec::context::Scope::new(json!({
        "alert": alert,
        "runbook": {"name": rb.name.value},
        "params": {},
    }));
    match scope.render(t, Escape::None) {
        Ok(s) => s,
        Err(e) => {
            warn!(runbook = %rb.name.value, error = %e.0, "guards.scope did not render; using the default scope.");
            default.to_string()
        }
    }
}

/// Consumes the rules' alert events until shutdown.
pub async fn consume(svc: Arc<Service>) {
    let mut rx = svc.rules.subscribe();
    let mut stop = svc.shutdown_signal();
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = stop.wait_for(|s| *s) => return,
        };
        match ev {
            Ok(ev) => on_event(&svc, ev),
            Err(RecvError::Lagged(n)) => {
                // Missed events: the firing alerts are all re-considered at once.
                warn!(
                    missed = n,
                    "Alert events were dropped; re-checking firing alerts."
                );
                resend_once(&svc);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Re-considers every firing internal alert.
fn resend_once(svc: &Arc<Service>) {
    for ev in firing_events(svc) {
        trigger(svc, &ev);
    }
}

/// Current firing alerts of the internal rules as events.
pub fn firing_events(svc: &Service) -> Vec<AlertEvent> {
    firing_events_of(
        svc.rules.alerts(),
        &svc.config.alerting.external_labels,
        Utc::now().timestamp_millis(),
    )
}

/// The firing ones of `alerts` (group name, alert) as events at `at_ms`,
/// with the `external` labels: what the periodic re-send considers.
pub fn firing_events_of(
    alerts: Vec<(String, crate::alert::Alert)>,
    external: &crate::alert::LabelSet,
    at_ms: i64,
) -> Vec<AlertEvent> {
    alerts
        .into_iter()
        .filter(|(_, a)| a.state == AlertState::Firing)
        .map(|(group, a)| {
            let mut labels = external.clone();
            labels.extend(a.labels.clone());
            AlertEvent {
                kind: AlertEventKind::Firing,
                name: labels.get("alertname").cloned().unwrap_or_default(),
                fingerprint: crate::alert::fingerprint(&labels),
                labels,
                annotations: a.annotations.clone(),
                value: Some(a.value),
                since_ms: a.active_at_ms,
                ended_ms: None,
                at_ms,
                generator_url: None,
                source: AlertSource::Rule {
                    file: String::new(),
                    group,
                },
            }
        })
        .collect()
}

/// How often firing alerts are considered again (see the module doc).
pub const RESEND_EVERY: StdDuration = StdDuration::from_secs(60);

/// Every [`RESEND_EVERY`], firing alerts are considered again (see the module doc).
pub async fn resend(svc: Arc<Service>) {
    let mut stop = svc.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RESEND_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        resend_once(&svc);
        refresh_metrics(&svc);
        // External alerts Alertmanager stopped re-sending are gone after an hour.
        let cutoff = Utc::now().timestamp_millis() - 3_600_000;
        svc.external_alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, ev| ev.at_ms >= cutoff);
    }
}

/// `sluice_alerts{alertname,state}` from the rules.
pub fn refresh_metrics(svc: &Service) {
    let mut counts: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for (_, a) in svc.rules.alerts() {
        let name = a.labels.get("alertname").cloned().unwrap_or_default();
        *counts.entry((name, a.state.to_string())).or_default() += 1.0;
    }
    svc.metrics
        .alerts
        .replace(counts.into_iter().map(|((n, s), v)| (vec![n, s], v)));
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
