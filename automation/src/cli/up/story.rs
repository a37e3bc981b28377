//! What `sluice up` tells on the terminal: one line per event, as it happens —
//! a fault injected, an alert firing, a run started, each step finished, the
//! run's end, a notification delivered, the alert resolved. The service's
//! own JSON log goes to `.sluice/sluice.log`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::service::Service;
use crate::store::RunFilter;

/// Prints story lines, each stamped with the time since `sluice up` started.
pub struct Teller {
    start: Instant,
    print: bool,
}

impl Teller {
    pub fn new() -> Teller {
        Teller {
            start: Instant::now(),
            print: true,
        }
    }

    /// A teller that prints nothing (tests).
    #[cfg(test)]
    pub fn quiet() -> Teller {
        Teller {
            start: Instant::now(),
            print: false,
        }
    }

    /// One line: `+  42s  kind   text`.
    pub fn say(&self, kind: &str, text: &str) {
        if self.print {
            let s = self.start.elapsed().as_secs();
            println!("+{:>2}:{:02}  {kind:<6} {text}", s / 60, s % 60);
        }
    }
}

/// Steps statuses that are not yet an outcome.
fn step_unfinished(status: &str) -> bool {
    matches!(
        status,
        "running" | "pending" | "waiting" | "waiting_approval" | "queued"
    )
}

pub(super) fn run_finished(status: &str) -> bool {
    matches!(
        status,
        "succeeded" | "failed" | "cancelled" | "interrupted" | "skipped" | "rejected"
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[derive(Default)]
struct Watched {
    printed_steps: BTreeSet<String>,
    status: String,
}

/// Tells alerts and runs of `svc` as they change, polling twice a second,
/// until `stop`.
pub async fn watch(
    svc: Arc<Service>,
    teller: Arc<Teller>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let filter = RunFilter {
        limit: 25,
        ..RunFilter::default()
    };
    // Runs from earlier `sluice up` sessions are history, not news.
    let mut seen: BTreeSet<String> = svc
        .store
        .find_runs(&filter)
        .await
        .map(|runs| runs.into_iter().map(|r| r.id).collect())
        .unwrap_or_default();
    let mut active: BTreeMap<String, Watched> = BTreeMap::new();
    // Alert fingerprint → (name, state).
    let mut alerts: BTreeMap<String, (String, String)> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = crate::service::until_stopped(&mut stop) => return,
        }
        // Alerts.
        let mut now: BTreeMap<String, (String, String, String)> = BTreeMap::new();
        for (_, a) in svc.rules.alerts() {
            if a.state == crate::alert::AlertState::Inactive {
                continue;
            }
            let state = serde_json::to_value(a.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let name = a.labels.get("alertname").cloned().unwrap_or_default();
            let summary = a.annotations.get("summary").cloned().unwrap_or_default();
            let fp = crate::alert::fingerprint(&a.labels);
            now.insert(fp, (name, state, summary));
        }
        for (fp, (name, state, summary)) in &now {
            let before = alerts.get(fp).map(|(_, s)| s.as_str());
            if before != Some(state.as_str()) && state == "firing" {
                teller.say("alert", &format!("{name} firing: {summary}"));
            }
        }
        for (fp, (name, state)) in &alerts {
            if !now.contains_key(fp) && state == "firing" {
                teller.say("alert", &format!("{name} resolved"));
            }
        }
        alerts = now
            .into_iter()
            .map(|(fp, (n, s, _))| (fp, (n, s)))
            .collect();

        // Runs.
        if let Ok(runs) = svc.store.find_runs(&filter).await {
            for r in runs.iter().rev() {
                if seen.insert(r.id.clone()) {
                    let by = match r.trigger.as_str() {
                        "alert" => format!("alert {}", alert_name(&r.request).unwrap_or("?")),
                        t => t.to_string(),
                    };
                    teller.say(
                        "run",
                        &format!("{} started by {by} (run {})", r.runbook, r.id),
                    );
                    active.insert(r.id.clone(), Watched::default());
                }
            }
        }
        let ids: Vec<String> = active.keys().cloned().collect();
        for id in ids {
            let Ok((run, steps)) = svc.store.get_run(&id).await else {
                continue;
            };
            let w = active.entry(id.clone()).or_default();
            for s in &steps {
                if step_unfinished(&s.status) || w.printed_steps.contains(&s.path) {
                    continue;
                }
                w.printed_steps.insert(s.path.clone());
                let what = match (&s.status[..], &s.error) {
                    ("failed", Some(e)) => format!("failed: {}", first_line(e)),
                    (st, _) => st.to_string(),
                };
                teller.say("step", &format!("{}/{} {what}", run.runbook, s.path));
            }
            if run.status != w.status {
                w.status = run.status.clone();
                if run.status == "waiting_approval" {
                    teller.say(
                        "run",
                        &format!(
                            "{} waits for approval: sluice approve {}",
                            run.runbook, run.id
                        ),
                    );
                }
            }
            if run_finished(&run.status) {
                let took = match (
                    chrono::DateTime::parse_from_rfc3339(&run.started_at),
                    run.finished_at
                        .as_deref()
                        .and_then(|f| chrono::DateTime::parse_from_rfc3339(f).ok()),
                ) {
                    (Ok(a), Some(b)) => format!(" in {}s", (b - a).num_seconds()),
                    _ => String::new(),
                };
                let why = match &run.error {
                    Some(e) if run.status != "succeeded" => format!(": {}", first_line(e)),
                    _ => String::new(),
                };
                teller.say(
                    "run",
                    &format!("{} {}{took}{why} (run {})", run.runbook, run.status, run.id),
                );
                active.remove(&id);
            }
        }
    }
}

/// The alert name in a run's request (the alert it was started for).
fn alert_name(request: &serde_json::Value) -> Option<&str> {
    [
        "/alert/labels/alertname",
        "/labels/alertname",
        "/alert/alertname",
        "/alertname",
    ]
    .iter()
    .find_map(|p| request.pointer(p).and_then(|v| v.as_str()))
}
