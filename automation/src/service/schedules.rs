//! The schedule loop: decides fires with [`crate::schedule::scheduler::poll`]
//! over the last fires recorded in the database, claims every fire there
//! (compare-and-set: one instance wins), and only then starts the run. A
//! restart neither repeats a fire nor bursts the ones missed while down; those
//! are handled per runbook (`catch_up`) and reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::Service;
use super::runner::Submission;
use crate::exec::steps::notify::{Message, send};
use crate::schedule::scheduler::{Action, FireLog, poll};

/// The database's last fires, with the claims `poll` made on top of them.
struct Snapshot {
    last: Mutex<BTreeMap<String, DateTime<Utc>>>,
    claimed: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl FireLog for Snapshot {
    fn last(&self, id: &str) -> Option<DateTime<Utc>> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    fn claim(&self, id: &str, scheduled: DateTime<Utc>) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(id).is_some_and(|p| *p >= scheduled) {
            return false;
        }
        last.insert(id.to_string(), scheduled);
        self.claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), scheduled);
        true
    }
}

/// One pass: what is due now is claimed and started. Returns when to look again.
pub async fn tick(svc: &Arc<Service>) -> Option<DateTime<Utc>> {
    let triggers = svc.library_read().schedules().to_vec();
    if triggers.is_empty() {
        return None;
    }
    let entries: Vec<_> = triggers.iter().map(|t| t.entry.clone()).collect();
    let last = match svc.store.schedule_fires().await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "Could not read schedule fires; retrying.");
            return Some(Utc::now() + chrono::Duration::seconds(5));
        }
    };
    let snap = Snapshot {
        last: Mutex::new(last),
        claimed: Mutex::new(BTreeMap::new()),
    };
    let now = svc.clock.now();
    let grace = chrono::Duration::from_std(svc.config.service.schedule_grace.std())
        .unwrap_or(chrono::Duration::seconds(60));
    let (actions, wake) = poll(&entries, &snap, now, grace);
    let claimed = snap.claimed.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut won = BTreeMap::new();
    for (id, at) in &claimed {
        match svc.store.claim_fire(id, *at, &svc.instance.id).await {
            Ok(w) => {
                won.insert(id.clone(), w);
            }
            Err(e) => warn!(schedule = %id, error = %e, "Could not claim a fire."),
        }
    }
    for action in actions {
        let id = match &action {
            Action::Fire { id, .. } | Action::Skipped { id, .. } => id.clone(),
        };
        if won.get(&id) != Some(&true) {
            continue; // another instance claimed it
        }
        let Some(t) = triggers.iter().find(|t| t.entry.id == id) else {
            continue;
        };
        match action {
            Action::Fire {
                scheduled, late, ..
            } => {
                let sub = Submission {
                    runbook: t.runbook.clone(),
                    params: Default::default(),
                    trigger: "schedule".into(),
                    who: "scheduler".into(),
                    alert: None,
                    webhook: None,
                    scheduled_at: Some(scheduled),
                    scope: Some(String::new()),
                    fingerprint: None,
                    claim: Some(format!(
                        "schedule:{id}@{}",
                        scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )),
                };
                let out = svc.runner.submit(sub).await;
                info!(schedule = %id, %scheduled, late, decision = out.decision.as_str(), run_id = ?out.run_id, "Schedule fired.");
            }
            Action::Skipped { missed, latest, .. } => {
                let name = t.runbook.name().to_string();
                svc.metrics
                    .schedule_missed
                    .inc_by(&[&name], f64::from(missed));
                warn!(schedule = %id, missed, %latest, "Schedule fires were missed while the service was down.");
                let rb = &t.runbook.runbook;
                let msg = Message {
                    title: format!("Sluice: {name} missed {missed} scheduled run(s)"),
                    text: format!(
                        "Schedule `{}` of `{name}` missed {missed} fire(s) while Sluice was not running (latest {}). catch_up: {:?}.",
                        t.entry.schedule.expr(),
                        latest.to_rfc3339(),
                        t.entry.catch_up
                    ),
                    html: None,
                    event: Default::default(),
                };
                for ch in &rb.notify.on_failure {
                    let ok = send(&svc.runner.services, ch, &msg).await.is_ok();
                    svc.metrics
                        .notifications
                        .inc(&[ch.as_str(), if ok { "ok" } else { "failed" }]);
                }
            }
        }
    }
    wake
}

/// Runs [`tick`] until shutdown, sleeping until the next fire (at most 30 s,
/// so a clock jump or another instance's claim is noticed).
pub async fn run(svc: Arc<Service>) {
    let mut stop = svc.shutdown_signal();
    loop {
        if svc.is_stopping() {
            return;
        }
        let wake = tick(&svc).await;
        let now = svc.clock.now();
        let wait = wake
            .map(|w| (w - now).to_std().unwrap_or_default())
            .unwrap_or(StdDuration::from_secs(30))
            .min(StdDuration::from_secs(30))
            .max(StdDuration::from_millis(20));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = svc.schedules_changed.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
