//! `sluice up --chaos`: faults injected into the engine one after another
//! (the engine's `POST /admin/fault-injection`), each followed through the
//! run it triggers before the next one comes:
//!
//! 1. sink failures: the circuit breaker opens, `CircuitBreakerOpen` fires,
//!    `circuit-breaker-reset` runs and asks for approval. The demo plays the
//!    on-call person: once the run waits, it clears the fault ("upstream is
//!    back") and approves the run through the API with the admin token;
//!    the run resets the breaker and watches it stay closed.
//! 2. a processing delay of 6 ms per record: one worker does ~165 of the
//!    demo's 200 records/s, records wait longer and longer,
//!    `HighProcessingLatency` fires, `high-latency` adds a worker and two
//!    keep up; the fault stays until the alert resolved.
//! 3. 1,000 MB of memory ballast: `MemoryExhausted` fires and
//!    `memory-exhausted` restarts the engine (a fresh process).
//!
//! The first fault comes [`FIRST`] after start, each next one `every` after
//! the previous one's run ended — or, from the second round on, once the
//! runbook's `cooldown` guard (10–15 minutes) lets it run again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::story::Teller;
use crate::service::Service;
use crate::store::RunFilter;

/// Time from "Sluice is up" to the first fault.
pub const FIRST: Duration = Duration::from_secs(15);
/// How long a fault may wait for its alert's run.
const RUN_STARTS_WITHIN: Duration = Duration::from_secs(150);
/// How long a run may take once started.
const RUN_ENDS_WITHIN: Duration = Duration::from_secs(240);
/// How long the latency fault stays after its run, waiting for the alert to resolve.
const RESOLVES_WITHIN: Duration = Duration::from_secs(120);

struct Fault {
    what: &'static str,
    body: serde_json::Value,
    runbook: &'static str,
    alert: &'static str,
    /// Cleared once the run waits for approval, which the demo then gives.
    approve: bool,
    /// Kept until the alert resolved (the run's remedy works with it in).
    until_resolved: bool,
}

fn faults() -> Vec<Fault> {
    vec![
        Fault {
            what: "sink failures (the circuit breaker opens)",
            body: json!({"sink_failure_rate": 1.0}),
            runbook: "circuit-breaker-reset",
            alert: "CircuitBreakerOpen",
            approve: true,
            until_resolved: false,
        },
        Fault {
            what: "6 ms processing delay per record (one worker falls behind, latency rises)",
            body: json!({"processing_delay_ms": 6.0}),
            runbook: "high-latency",
            alert: "HighProcessingLatency",
            approve: false,
            until_resolved: true,
        },
        Fault {
            what: "1000 MB memory ballast (memory utilization above 95%)",
            body: json!({"memory_ballast_mb": 1000}),
            runbook: "memory-exhausted",
            alert: "MemoryExhausted",
            approve: false,
            until_resolved: false,
        },
    ]
}

pub struct Chaos {
    pub svc: Arc<Service>,
    pub teller: Arc<Teller>,
    /// The engine's base URL.
    pub engine: String,
    /// The service API's base URL and an admin token for approving.
    pub api: String,
    pub token: Option<String>,
    pub every: Duration,
}

impl Chaos {
    /// Runs the faults in turn, round after round, until `stop`.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Ok(client) = crate::http_client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        else {
            return;
        };
        let mut wait = FIRST;
        for fault in faults().iter().cycle() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = crate::service::until_stopped(&mut stop) => return,
            }
            wait = self.every;
            if let Some(left) = self.cooling(fault.runbook).await {
                self.teller.say(
                    "chaos",
                    &format!(
                        "next fault in {}s: {}'s cooldown guard would skip a run before",
                        left.as_secs(),
                        fault.runbook
                    ),
                );
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = crate::service::until_stopped(&mut stop) => return,
                }
            }
            tokio::select! {
                _ = self.one(&client, fault) => {}
                _ = crate::service::until_stopped(&mut stop) => {
                    self.clear(&client, fault, false).await;
                    return;
                }
            }
        }
    }

    async fn clear(&self, client: &reqwest::Client, fault: &Fault, tell: bool) {
        let url = format!("{}/admin/fault-injection", self.engine);
        let ok = client
            .delete(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if tell {
            self.teller.say(
                "chaos",
                &if ok {
                    format!("fault cleared: {}", fault.what)
                } else {
                    format!("could not clear the fault at {url}")
                },
            );
        }
    }

    async fn runs_of(&self, runbook: &str) -> Vec<crate::store::RunRecord> {
        self.svc
            .store
            .find_runs(&RunFilter {
                runbook: Some(runbook.to_string()),
                limit: 50,
                ..RunFilter::default()
            })
            .await
            .unwrap_or_default()
    }

    /// How long the runbook's `cooldown` guard still holds after its last
    /// alert-triggered run (and a few seconds more).
    async fn cooling(&self, runbook: &str) -> Option<Duration> {
        let cooldown = {
            let lib = self.svc.library_read();
            lib.runbooks()
                .find(|r| r.name() == runbook)
                .and_then(|r| r.runbook.guards.cooldown)
                .map(|d| d.std())?
        };
        let last = self
            .runs_of(runbook)
            .await
            .into_iter()
            .filter(|r| r.trigger == "alert")
            .filter_map(|r| chrono::DateTime::parse_from_rfc3339(&r.started_at).ok())
            .max()?;
        let ready = last.with_timezone(&chrono::Utc)
            + chrono::Duration::from_std(cooldown + Duration::from_secs(5)).ok()?;
        (ready - chrono::Utc::now())
            .to_std()
            .ok()
            .filter(|d| !d.is_zero())
    }

    async fn status_of(&self, id: &str) -> Option<String> {
        self.svc.store.get_run(id).await.ok().map(|(r, _)| r.status)
    }

    /// Polls `f` every second until it returns something or `limit` passed.
    async fn until<T, F: std::future::Future<Output = Option<T>>>(
        &self,
        limit: Duration,
        mut f: impl FnMut() -> F,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = f().await {
                return Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn one(&self, client: &reqwest::Client, fault: &Fault) {
        let before: BTreeSet<String> = self
            .runs_of(fault.runbook)
            .await
            .into_iter()
            .map(|r| r.id)
            .collect();
        let url = format!("{}/admin/fault-injection", self.engine);
        match client.post(&url).json(&fault.body).send().await {
            Ok(r) if r.status().is_success() => {
                self.teller
                    .say("chaos", &format!("injected {}", fault.what));
            }
            Ok(r) => {
                self.teller.say(
                    "chaos",
                    &format!("the engine refused the fault: HTTP {}", r.status()),
                );
                return;
            }
            Err(e) => {
                self.teller
                    .say("chaos", &format!("could not inject the fault: {e}"));
                return;
            }
        }
        let run = self
            .until(RUN_STARTS_WITHIN, || async {
                self.runs_of(fault.runbook)
                    .await
                    .into_iter()
                    .find(|r| r.trigger == "alert" && !before.contains(&r.id))
                    .map(|r| r.id)
            })
            .await;
        let Some(id) = run else {
            self.teller.say(
                "chaos",
                &format!(
                    "no {} run came for {} within {}s (a guard may hold it: GET /api/v1/runs?runbook={})",
                    fault.runbook,
                    fault.alert,
                    RUN_STARTS_WITHIN.as_secs(),
                    fault.runbook
                ),
            );
            self.clear(client, fault, true).await;
            return;
        };
        let mut cleared = false;
        if fault.approve {
            let waiting = self
                .until(RUN_ENDS_WITHIN, || async {
                    match self.status_of(&id).await.as_deref() {
                        Some("waiting_approval") => Some(true),
                        Some(s) if super::story::run_finished(s) => Some(false),
                        _ => None,
                    }
                })
                .await;
            self.clear(client, fault, true).await;
            cleared = true;
            if waiting == Some(true) {
                self.approve(client, &id).await;
            }
        }
        self.until(RUN_ENDS_WITHIN, || async {
            self.status_of(&id)
                .await
                .filter(|s| super::story::run_finished(s))
        })
        .await;
        if fault.until_resolved {
            let alert = fault.alert;
            self.until(RESOLVES_WITHIN, || async {
                let firing = self.svc.rules.alerts().into_iter().any(|(_, a)| {
                    a.state != crate::alert::AlertState::Inactive
                        && a.labels.get("alertname").is_some_and(|n| n == alert)
                });
                (!firing).then_some(())
            })
            .await;
        }
        if !cleared {
            self.clear(client, fault, true).await;
        }
    }

    async fn approve(&self, client: &reqwest::Client, id: &str) {
        let Some(token) = &self.token else {
            self.teller.say(
                "chaos",
                &format!("approve the run to go on: sluice approve {id}"),
            );
            return;
        };
        let resp = client
            .post(format!("{}/api/v1/runs/{id}/approve", self.api))
            .bearer_auth(token)
            .json(&json!({"comment": "sluice up --chaos: the fault is cleared, upstream is back"}))
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => self.teller.say(
                "chaos",
                &format!(
                    "approved run {id} as the on-call person would (by hand: sluice approve {id})"
                ),
            ),
            Ok(r) => self.teller.say(
                "chaos",
                &format!(
                    "approving run {id} failed: HTTP {}; sluice approve {id}",
                    r.status()
                ),
            ),
            Err(e) => self
                .teller
                .say("chaos", &format!("approving run {id} failed: {e}")),
        }
    }
}
