//! Starting, tracking, cancelling and resuming runs in the service.
//!
//! Every automatic start passes the guards twice: first in memory (cheap, so a
//! burst of 10,000 identical alerts costs no database work), then in the
//! database, which is the truth shared by every instance and every restart:
//! a guard key (`runbook|scope`) is locked by the run holding it
//! (`concurrency: skip`/`queue`), cooldown and `max_runs` are counted from
//! recorded runs, and trigger claims (schedule fires, webhook deliveries,
//! idempotency keys) are unique. Only then is the run record written —
//! before any step runs — and the run executed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value as J, json};
use tokio::sync::{Notify, Semaphore};
use tracing::{error, info, warn};

use super::decisions::{DecisionEntry, DecisionLog};
use super::library::LoadedRunbook;
use super::metrics::ServiceMetrics;
use crate::exec::context::Services;
use crate::exec::executor::{
    CancelHandle, Resume, RunError, RunRequest, RunStatus, execute, new_run_id,
};
use crate::exec::steps::notify::{Message, send, send_about};
use crate::runbook::Runbook;
use crate::runbook::model::Concurrency as ModelConcurrency;
use crate::runbook::template::Escape;
use crate::store::{NewRun, RunRecord, Store, StoreError};
use crate::trigger::guard::{Admission, Concurrency, Guards, Key, Policy};

/// A request to start a runbook.
#[derive(Debug, Clone)]
pub struct Submission {
    pub runbook: Arc<LoadedRunbook>,
    pub params: BTreeMap<String, J>,
    /// `alert`, `schedule`, `webhook`, `manual`.
    pub trigger: String,
    pub who: String,
    pub alert: Option<J>,
    pub webhook: Option<J>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Guard scope (alert fingerprint, target; `""` for the whole runbook).
    /// `None`: a start by a person, which no guard stops.
    pub scope: Option<String>,
    /// Alert fingerprint the run handles (its notifications are muted meanwhile).
    pub fingerprint: Option<String>,
    /// Unique claim: a second submission with it returns the first run.
    pub claim: Option<String>,
}

/// Why an automatic start did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Started,
    Queued,
    /// The same trigger (claim) or an already queued start.
    Deduplicated,
    /// A run for the same key is active (`concurrency: skip`).
    Active,
    Cooldown,
    /// `max_runs` exceeded: people were told instead.
    Escalated,
    KillSwitch,
    Maintenance,
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Started => "started",
            Decision::Queued => "queued",
            Decision::Deduplicated => "deduplicated",
            Decision::Active => "active",
            Decision::Cooldown => "cooldown",
            Decision::Escalated => "escalated",
            Decision::KillSwitch => "kill_switch",
            Decision::Maintenance => "maintenance",
            Decision::Error => "error",
        }
    }
}

/// What [`Runner::submit`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub decision: Decision,
    /// The run started, queued, or the one this start duplicates.
    pub run_id: Option<String>,
    pub detail: Option<String>,
}

impl Outcome {
    fn of(decision: Decision, run_id: Option<String>, detail: Option<String>) -> Outcome {
        Outcome {
            decision,
            run_id,
            detail,
        }
    }
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CancelResult {
    /// The run executes here and was told to stop.
    Signalled,
    /// It was queued and will never start.
    CancelledQueued,
    /// It executes on another instance, which will stop it.
    Requested {
        owner: Option<String>,
    },
    AlreadyFinished {
        status: String,
    },
}

struct Active {
    runbook: String,
    cancel: CancelHandle,
    fingerprint: Option<String>,
}

/// Guard key as stored: `runbook|scope`.
pub fn guard_key(runbook: &str, scope: &str) -> String {
    format!("{runbook}|{scope}")
}

/// The guard policy a runbook declares.
pub fn policy_of(rb: &Runbook) -> Policy {
    Policy {
        concurrency: match rb.guards.concurrency {
            ModelConcurrency::Skip => Concurrency::Skip,
            ModelConcurrency::Queue => Concurrency::Queue,
            ModelConcurrency::Allow => Concurrency::Allow,
        },
        cooldown: rb.guards.cooldown.map(|d| d.std()),
        max_runs: rb
            .guards
            .max_runs
            .as_ref()
            .map(|m| (m.count, m.window.std())),
    }
}

/// The memory guard an automatic start passes: key (runbook, scope) and the
/// runbook's policy.
pub fn guard_of(sub: &Submission, scope: &str) -> (Key, Policy) {
    let rb = &sub.runbook.runbook;
    (Key::new(rb.name.value.as_str(), scope), policy_of(rb))
}

fn to_chrono(d: StdDuration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Converts a recorded wall-clock time into the monotonic clock the memory guards use.
fn instant_of(t: DateTime<Utc>) -> Option<Instant> {
    let ago = (Utc::now() - t).to_std().unwrap_or_default();
    Instant::now().checked_sub(ago)
}

/// Executes runs for one service instance.
pub struct Runner {
    pub services: Arc<Services>,
    pub store: Store,
    /// This instance's id (run owner).
    pub owner: String,
    pub guards: Guards,
    pub metrics: Arc<ServiceMetrics>,
    /// Recent admission decisions ("why didn't it run?").
    pub decisions: DecisionLog,
    active: Mutex<HashMap<String, Active>>,
    tasks: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    next_task: std::sync::atomic::AtomicU64,
    handled: Mutex<HashMap<String, usize>>,
    escalated: Mutex<HashMap<String, Instant>>,
    slots: Arc<Semaphore>,
    pump: Notify,
    running: AtomicUsize,
    idle: Notify,
    accepting: std::sync::atomic::AtomicBool,
}

impl Runner {
    pub fn new(
        services: Arc<Services>,
        store: Store,
        owner: String,
        metrics: Arc<ServiceMetrics>,
        max_concurrent: usize,
    ) -> Runner {
        Runner {
            services,
            store,
            owner,
            guards: Guards::new(),
            metrics,
            decisions: DecisionLog::default(),
            active: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            next_task: std::sync::atomic::AtomicU64::new(0),
            handled: Mutex::new(HashMap::new()),
            escalated: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            pump: Notify::new(),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            accepting: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn decided(&self, runbook: &str, d: Decision) {
        self.metrics.trigger_decisions.inc(&[runbook, d.as_str()]);
    }

    /// Whether a run handling alert `fingerprint` executes here now.
    pub fn is_handled(&self, fingerprint: &str) -> bool {
        self.handled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(fingerprint)
            .is_some_and(|n| *n > 0)
    }

    /// Ids of runs executing here.
    pub fn active_runs(&self) -> Vec<String> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Starts (or queues, or refuses) a run.
    pub async fn submit(self: &Arc<Self>, sub: Submission) -> Outcome {
        let entry = DecisionEntry {
            at: Utc::now(),
            runbook: sub.runbook.name().to_string(),
            trigger: sub.trigger.clone(),
            decision: Decision::Error,
            run_id: None,
            detail: None,
            scope: sub.scope.clone(),
        };
        let out = self.admit(sub).await;
        if out.decision == Decision::Error {
            error!(runbook = %entry.runbook, error = ?out.detail, "Could not start a run.");
        }
        self.decided(&entry.runbook, out.decision);
        self.decisions.push(DecisionEntry {
            decision: out.decision,
            run_id: out.run_id.clone(),
            detail: out.detail.clone(),
            ..entry
        });
        out
    }

    async fn admit(self: &Arc<Self>, sub: Submission) -> Outcome {
        // A delivery seen before answers with its run, whatever the guards say now.
        if let Some(claim) = &sub.claim {
            match self.store.run_by_claim(claim).await {
                Ok(Some(first)) => {
                    return Outcome::of(
                        Decision::Deduplicated,
                        Some(first.id),
                        Some(format!("trigger claim `{claim}` was seen before")),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    return Outcome::of(
                        Decision::Error,
                        None,
                        Some(format!("could not check a trigger claim: {e}")),
                    );
                }
            }
        }
        let out = match sub.scope.clone() {
            Some(scope) => self.submit_guarded(sub, scope).await,
            None => self.submit_manual(sub).await,
        };
        out.unwrap_or_else(|e| Outcome::of(Decision::Error, None, Some(e.to_string())))
    }

    async fn submit_manual(self: &Arc<Self>, sub: Submission) -> Result<Outcome, StoreError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Ok(Outcome::of(
                Decision::Error,
                None,
                Some("the service is shutting down".into()),
            ));
        }
        let run_id = new_run_id();
        match self
            .record(&sub, &run_id, None, RunStatus::Running, None)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Claimed { run_id: first, .. }) => {
                return Ok(Outcome::of(
                    Decision::Deduplicated,
                    Some(first),
                    Some("a run with this idempotency key exists".into()),
                ));
            }
            Err(e) => return Err(e),
        }
        self.spawn(Prepared::new(&sub, run_id.clone(), None, None));
        Ok(Outcome::of(Decision::Started, Some(run_id), None))
    }

    async fn submit_guarded(
        self: &Arc<Self>,
        sub: Submission,
        scope: String,
    ) -> Result<Outcome, StoreError> {
        let name = sub.runbook.name().to_string();
        let (key, policy) = guard_of(&sub, &scope);
        if !self.accepting.load(Ordering::SeqCst) {
            return Ok(Outcome::of(
                Decision::Error,
                None,
                Some("the service is shutting down".into()),
            ));
        }
        match self.guards.admit(&key, &policy, Instant::now()) {
            Admission::Start => {}
            Admission::SkipActive => {
                return Ok(Outcome::of(
                    Decision::Active,
                    None,
                    Some(format!(
                        "a run of `{name}` for this scope is active (concurrency: skip)"
                    )),
                ));
            }
            Admission::Queued => return self.enqueue(&sub, &scope).await,
            Admission::Cooldown { remaining } => {
                return Ok(Outcome::of(
                    Decision::Cooldown,
                    None,
                    Some(format!("{} left", crate::duration::Duration(remaining))),
                ));
            }
            Admission::Escalate { runs_in_window } => {
                self.escalate(&sub, &scope, runs_in_window).await;
                return Ok(Outcome::of(
                    Decision::Escalated,
                    None,
                    Some(format!(
                        "{runs_in_window} runs in the max_runs window: people were told instead"
                    )),
                ));
            }
            Admission::KillSwitch => {
                return Ok(Outcome::of(
                    Decision::KillSwitch,
                    None,
                    Some("the kill switch is on: no automatic start".into()),
                ));
            }
        }
        let result = self.confirm(&sub, &scope, &key, &policy).await;
        if !matches!(&result, Ok(o) if o.decision == Decision::Started) {
            // The memory guard admitted a start that did not happen.
            let observed = match &result {
                Ok(o) if o.decision == Decision::Cooldown || o.decision == Decision::Active => self
                    .store
                    .last_start(&guard_key(&name, &scope))
                    .await
                    .ok()
                    .flatten()
                    .and_then(instant_of),
                _ => None,
            };
            self.guards.revert(&key, observed);
        }
        result
    }

    /// The database half of a guarded start; the memory guard admitted it.
    async fn confirm(
        self: &Arc<Self>,
        sub: &Submission,
        scope: &str,
        key: &Key,
        policy: &Policy,
    ) -> Result<Outcome, StoreError> {
        let name = sub.runbook.name();
        let lock = guard_key(name, scope);
        let run_id = new_run_id();
        let hold = policy.concurrency != Concurrency::Allow;
        if !self.lock(&lock, &run_id, hold).await? {
            if policy.concurrency == Concurrency::Queue {
                return self.enqueue(sub, scope).await;
            }
            let holder = self.store.lock_holder(&lock).await?;
            return Ok(Outcome::of(
                Decision::Active,
                holder.clone(),
                holder.map(|h| format!("run {h} holds `{lock}`")),
            ));
        }
        let unlock = || async {
            if let Err(e) = self.store.unlock(&lock, &run_id).await {
                warn!(key = %lock, error = %e, "Could not release a guard lock.");
            }
        };
        let now = Utc::now();
        if let Some(cooldown) = policy.cooldown
            && let Some(last) = self.store.last_start(&lock).await?
            && now - last < to_chrono(cooldown)
        {
            unlock().await;
            let left = (to_chrono(cooldown) - (now - last))
                .to_std()
                .unwrap_or_default();
            return Ok(Outcome::of(
                Decision::Cooldown,
                None,
                Some(format!("{} left", crate::duration::Duration(left))),
            ));
        }
        if let Some((count, window)) = policy.max_runs {
            let n = self
                .store
                .starts_since(&lock, now - to_chrono(window))
                .await?;
            if n >= count {
                unlock().await;
                self.escalate(sub, scope, n).await;
                return Ok(Outcome::of(
                    Decision::Escalated,
                    None,
                    Some(format!(
                        "{n} runs in the max_runs window: people were told instead"
                    )),
                ));
            }
        }
        match self
            .record(sub, &run_id, Some(&lock), RunStatus::Running, Some(scope))
            .await
        {
            Ok(()) => {}
            Err(StoreError::Claimed { run_id: first, .. }) => {
                unlock().await;
                return Ok(Outcome::of(Decision::Deduplicated, Some(first), None));
            }
            Err(e) => {
                unlock().await;
                return Err(e);
            }
        }
        if !hold {
            unlock().await;
        }
        let held = hold.then(|| lock.clone());
        self.spawn(Prepared::new(sub, run_id.clone(), Some(key.clone()), held));
        Ok(Outcome::of(Decision::Started, Some(run_id), None))
    }

    /// Takes the guard lock. A transient lock (`allow`) may be held for a
    /// moment by another start's checks: wait for it, briefly.
    async fn lock(&self, key: &str, run_id: &str, hold: bool) -> Result<bool, StoreError> {
        for _ in 0..50 {
            if self
                .store
                .try_lock(key, run_id, &self.owner, Utc::now())
                .await?
            {
                return Ok(true);
            }
            if hold {
                return Ok(false);
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        Ok(false)
    }

    /// Records a queued start (at most one waits per key; more are coalesced).
    async fn enqueue(
        self: &Arc<Self>,
        sub: &Submission,
        scope: &str,
    ) -> Result<Outcome, StoreError> {
        let lock = guard_key(sub.runbook.name(), scope);
        if let Some(q) = self.store.queued_for(&lock).await? {
            return Ok(Outcome::of(
                Decision::Deduplicated,
                Some(q.id),
                Some("a start is already queued".into()),
            ));
        }
        let run_id = new_run_id();
        match self
            .record(sub, &run_id, Some(&lock), RunStatus::Queued, Some(scope))
            .await
        {
            Ok(()) => {}
            Err(StoreError::Claimed { run_id: first, .. }) => {
                return Ok(Outcome::of(Decision::Deduplicated, Some(first), None));
            }
            Err(e) => return Err(e),
        }
        self.pump.notify_one();
        Ok(Outcome::of(Decision::Queued, Some(run_id), None))
    }

    /// Writes the run record before anything runs.
    async fn record(
        &self,
        sub: &Submission,
        run_id: &str,
        lock: Option<&str>,
        status: RunStatus,
        scope: Option<&str>,
    ) -> Result<(), StoreError> {
        let request = self.services.redactor.json(json!({
            "alert": sub.alert,
            "webhook": sub.webhook,
            "scheduled_at": sub.scheduled_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "scope": scope,
            "fingerprint": sub.fingerprint,
        }));
        let params = self
            .services
            .redactor
            .json(J::Object(sub.params.clone().into_iter().collect()));
        let path = sub.runbook.path.display().to_string();
        self.store
            .create_run(&NewRun {
                status,
                owner: Some(&self.owner),
                guard_key: lock,
                claim: sub.claim.as_deref(),
                request: Some(&request),
                definition: Some(&sub.runbook.text),
                source: Some(&path),
                ..NewRun::manual(
                    run_id,
                    sub.runbook.name(),
                    &sub.trigger,
                    &sub.who,
                    &params,
                    Utc::now(),
                )
            })
            .await
    }

    /// Tells the escalation channels that `max_runs` stopped automation (once per window).
    async fn escalate(&self, sub: &Submission, scope: &str, runs: u32) {
        let rb = &sub.runbook.runbook;
        let Some(esc) = &rb.guards.escalate else {
            return;
        };
        let window = rb
            .guards
            .max_runs
            .as_ref()
            .map_or(StdDuration::from_secs(3600), |m| m.window.std());
        let key = guard_key(rb.name.as_str(), scope);
        {
            let mut sent = self.escalated.lock().unwrap_or_else(|e| e.into_inner());
            if sent.get(&key).is_some_and(|t| t.elapsed() < window) {
                return;
            }
            sent.insert(key.clone(), Instant::now());
        }
        let scope_vars = crate::exec::context::Scope::new(json!({
            "runbook": {"name": rb.name.value, "description": rb.description},
            "alert": sub.alert.clone().unwrap_or(J::Null),
            "params": sub.params,
            "guard": {"key": key, "runs": runs, "window": crate::duration::Duration(window).to_string()},
        }));
        let text = esc
            .text
            .as_ref()
            .and_then(|t| scope_vars.render(t, Escape::None).ok())
            .unwrap_or_else(|| {
                format!(
                    "`{}` ran {runs} times within {} for `{scope}`; Sluice stops acting and needs a person.",
                    rb.name.value,
                    crate::duration::Duration(window)
                )
            });
        let msg = Message {
            title: format!("Sluice: {} escalated", rb.name.value),
            text: self.services.redactor.text(&text),
            html: None,
            event: crate::notify::Event {
                kind: crate::notify::EventKind::Escalation,
                source: Some(rb.name.value.clone()),
                ..Default::default()
            },
        };
        for ch in &esc.channels {
            let result = send(&self.services, ch, &msg).await;
            self.metrics
                .notifications
                .inc(&[ch.as_str(), if result.is_ok() { "ok" } else { "failed" }]);
            if let Err(e) = result {
                warn!(runbook = %rb.name.value, channel = %ch.value, error = %e, "Escalation failed.");
            }
        }
    }

    /// Executes a prepared run in the background.
    fn spawn(self: &Arc<Self>, mut p: Prepared) {
        p.req.owner = Some(self.owner.clone());
        let this = self.clone();
        let n = self.next_task.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        // Holding the task lock while spawning keeps a fast task from removing
        // its handle before it is inserted.
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let handle = tokio::spawn(async move {
            this.execute(p).await;
            this.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&n);
            if this.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                this.idle.notify_waiters();
            }
        });
        tasks.insert(n, handle.abort_handle());
    }

    /// Drops every run future at once (their processes are killed, requests
    /// aborted); nothing more is recorded. For an instance that lost its lease.
    pub fn abort_all(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        for (_, h) in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            h.abort();
        }
        self.running.store(0, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    async fn execute(self: &Arc<Self>, p: Prepared) {
        let permit = self.slots.clone().acquire_owned().await;
        let (handle, signal) = CancelHandle::new();
        let runbook_name = p.runbook.name.value.clone();
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                p.req.id.clone().unwrap_or_default(),
                Active {
                    runbook: runbook_name.clone(),
                    cancel: handle,
                    fingerprint: p.fingerprint.clone(),
                },
            );
        if let Some(fp) = &p.fingerprint {
            *self
                .handled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(fp.clone())
                .or_default() += 1;
        }
        self.refresh_active_gauge();
        let id = p.req.id.clone().unwrap_or_default();
        let mut req = p.req;
        req.cancel = Some(signal);
        let status = match execute(&self.services, p.runbook.clone(), req).await {
            Ok(outcome) => outcome.status,
            Err(RunError::InvalidParams(errors)) => {
                warn!(run_id = %id, errors = ?errors, "Run refused: invalid parameters.");
                RunStatus::Failed
            }
            Err(e) => {
                error!(run_id = %id, error = %e, "Run failed in the store.");
                let _ = self
                    .store
                    .finish_run(&id, RunStatus::Failed, Some(&format!("{e}")), Utc::now())
                    .await;
                RunStatus::Failed
            }
        };
        drop(permit);
        self.metrics
            .runs_total
            .inc(&[&runbook_name, status.as_str()]);
        self.release(
            &id,
            p.key.as_ref(),
            p.lock.as_deref(),
            p.fingerprint.as_deref(),
        )
        .await;
    }

    async fn release(&self, id: &str, key: Option<&Key>, lock: Option<&str>, fp: Option<&str>) {
        let removed = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(fp) = fp.or(removed.as_ref().and_then(|a| a.fingerprint.as_deref())) {
            let mut handled = self.handled.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = handled.get_mut(fp) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    handled.remove(fp);
                }
            }
        }
        if let Some(lock) = lock
            && let Err(e) = self.store.unlock(lock, id).await
        {
            warn!(key = %lock, error = %e, "Could not release a guard lock.");
        }
        if let Some(key) = key {
            self.guards.finished(key);
        }
        self.refresh_active_gauge();
        self.pump.notify_one();
    }

    fn refresh_active_gauge(&self) {
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for a in self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            *counts.entry(a.runbook.clone()).or_default() += 1.0;
        }
        self.metrics
            .runs_active
            .replace(counts.into_iter().map(|(k, v)| (vec![k], v)));
    }

    /// Cancels a run wherever it is.
    pub async fn cancel(&self, run_id: &str, who: &str) -> Result<CancelResult, StoreError> {
        if let Some(a) = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
        {
            a.cancel.cancel(who);
            return Ok(CancelResult::Signalled);
        }
        let (rec, _) = self.store.get_run(run_id).await?;
        let status = RunStatus::parse(&rec.status);
        match status {
            Some(RunStatus::Queued) => {
                if self.store.cancel_queued(run_id, who).await? {
                    self.metrics
                        .runs_total
                        .inc(&[&rec.runbook, RunStatus::Cancelled.as_str()]);
                    return Ok(CancelResult::CancelledQueued);
                }
                // It just started somewhere: ask its owner.
                self.store.request_cancel(run_id, who).await?;
                Ok(CancelResult::Requested { owner: rec.owner })
            }
            Some(RunStatus::Running | RunStatus::WaitingApproval) => {
                self.store.request_cancel(run_id, who).await?;
                Ok(CancelResult::Requested { owner: rec.owner })
            }
            _ => Ok(CancelResult::AlreadyFinished { status: rec.status }),
        }
    }

    /// Applies cancel requests made through other instances.
    pub async fn poll_cancel_requests(&self) -> Result<(), StoreError> {
        for (id, who) in self.store.cancel_requests(&self.owner).await? {
            if let Some(a) = self
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
            {
                a.cancel.cancel(&who);
            }
        }
        Ok(())
    }

    /// Starts queued runs whose key is free and whose cooldown has passed.
    pub async fn pump_queue(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut started = 0;
        for q in self.store.queued_runs().await? {
            if q.owner.as_deref() != Some(self.owner.as_str()) {
                continue;
            }
            if !self.accepting.load(Ordering::SeqCst) {
                break;
            }
            let Some(lock) = q.guard_key.clone() else {
                continue;
            };
            let Some(runbook) = self.definition_of(&q).await else {
                continue;
            };
            let policy = policy_of(&runbook);
            if let Some(cooldown) = policy.cooldown
                && let Some(last) = self.store.last_start(&lock).await?
                && Utc::now() - last < to_chrono(cooldown)
            {
                continue;
            }
            if !self
                .store
                .try_lock(&lock, &q.id, &self.owner, Utc::now())
                .await?
            {
                continue;
            }
            if !self
                .store
                .start_queued(&q.id, &self.owner, Utc::now())
                .await?
            {
                self.store.unlock(&lock, &q.id).await?;
                continue;
            }
            let scope = q.request["scope"].as_str().unwrap_or("").to_string();
            let key = Key::new(&q.runbook, &scope);
            self.guards.force_start(&key, Instant::now());
            info!(run_id = %q.id, runbook = %q.runbook, "Queued run starts.");
            self.spawn(Prepared::from_record(
                &q,
                runbook,
                Some(key),
                Some(lock),
                None,
            ));
            started += 1;
        }
        Ok(started)
    }

    /// The runbook a recorded run was started with.
    async fn definition_of(&self, rec: &RunRecord) -> Option<Arc<Runbook>> {
        let text = match self.store.run_definition(&rec.id).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                warn!(run_id = %rec.id, "Run has no recorded definition.");
                return None;
            }
            Err(e) => {
                warn!(run_id = %rec.id, error = %e, "Could not read a run's definition.");
                return None;
            }
        };
        let path = std::path::PathBuf::from(rec.source.clone().unwrap_or_default());
        match crate::runbook::load_str(&path, &text) {
            Ok(rb) => Some(Arc::new(rb)),
            Err(d) => {
                warn!(run_id = %rec.id, problems = ?d.iter().map(|d| d.to_string()).collect::<Vec<_>>(), "A run's recorded definition no longer loads.");
                None
            }
        }
    }

    /// Waits until `pump_queue` may have work (or `period` passed).
    pub async fn pump_wait(&self, period: StdDuration) {
        let _ = tokio::time::timeout(period, self.pump.notified()).await;
    }

    /// Takes over the unfinished runs of a dead instance: resumes those that
    /// stopped between steps or at a step safe to repeat, marks the others
    /// `interrupted` and tells people. Never runs a step twice silently.
    pub async fn adopt(self: &Arc<Self>, dead: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for rec in self.store.runs_owned_by(dead).await? {
            if !self.store.adopt_run(&rec.id, dead, &self.owner).await? {
                continue;
            }
            n += 1;
            self.recover(rec).await?;
        }
        Ok(n)
    }

    async fn recover(self: &Arc<Self>, rec: RunRecord) -> Result<(), StoreError> {
        let status = RunStatus::parse(&rec.status);
        if status == Some(RunStatus::Queued) {
            info!(run_id = %rec.id, "Adopted a queued run.");
            self.pump.notify_one();
            return Ok(());
        }
        if rec.parent_run.is_some() {
            // A child run: its parent's step decides whether it runs again.
            self.store
                .interrupt_run(
                    &rec.id,
                    "the service stopped during this child run; its parent run decides what happens next",
                )
                .await?;
            return Ok(());
        }
        let Some(runbook) = self.definition_of(&rec).await else {
            return self
                .interrupted(
                    &rec,
                    None,
                    "its recorded runbook definition cannot be loaded",
                )
                .await;
        };
        let (_, steps) = self.store.get_run(&rec.id).await?;
        // Whatever a cut-off step left running dies first, so nothing runs twice.
        for s in steps.iter().filter(|s| s.status == "running") {
            if let (Some(pgid), Some(started)) = (s.pgid, parse_time(&s.started_at))
                && crate::process::orphan::kill_left_over_group(pgid, started)
            {
                warn!(run_id = %rec.id, step = %s.path, pgid, "Killed the processes a cut-off step left running.");
            }
        }
        let unsafe_steps: Vec<String> = steps
            .iter()
            .filter(|s| s.status == "running")
            .filter(|s| !safe_to_repeat(&runbook, &s.path))
            .map(|s| s.path.clone())
            .collect();
        if !unsafe_steps.is_empty() {
            let reason = format!(
                "the service stopped while step `{}` was running; it is not marked `idempotent`, so it is not run again. Check its effect and re-run by hand if needed",
                unsafe_steps.join("`, `")
            );
            return self.interrupted(&rec, Some(&runbook), &reason).await;
        }
        let interrupted_at: Vec<&str> = steps
            .iter()
            .filter(|s| s.status == "running")
            .map(|s| s.path.as_str())
            .collect();
        info!(run_id = %rec.id, runbook = %rec.runbook, steps = ?interrupted_at, "Resuming an interrupted run.");
        let resume = Resume {
            steps: steps
                .into_iter()
                .filter(|s| s.status != "running")
                .map(|s| (s.path.clone(), s))
                .collect(),
        };
        let scope = rec.request["scope"].as_str().map(str::to_string);
        let key = scope.as_ref().map(|s| Key::new(&rec.runbook, s));
        if let Some(key) = &key {
            self.guards.force_start(key, Instant::now());
        }
        let lock = match &rec.guard_key {
            Some(k) if self.store.lock_holder(k).await?.as_deref() == Some(rec.id.as_str()) => {
                Some(k.clone())
            }
            _ => None,
        };
        self.spawn(Prepared::from_record(
            &rec,
            runbook,
            key,
            lock,
            Some(resume),
        ));
        Ok(())
    }

    async fn interrupted(
        &self,
        rec: &RunRecord,
        runbook: Option<&Arc<Runbook>>,
        reason: &str,
    ) -> Result<(), StoreError> {
        warn!(run_id = %rec.id, runbook = %rec.runbook, reason, "Run interrupted.");
        self.store.interrupt_run(&rec.id, reason).await?;
        if let Some(k) = &rec.guard_key {
            self.store.unlock(k, &rec.id).await?;
        }
        self.metrics
            .runs_total
            .inc(&[&rec.runbook, RunStatus::Interrupted.as_str()]);
        if let Some(rb) = runbook {
            let mut channels = rb.notify.on_failure.clone();
            for step in &rb.on_failure {
                // Whoever on_failure notifies also hears about interruptions.
                if step.kind.name == "notify"
                    && let Some(chs) = step.config.get("channels")
                    && let crate::yaml::Value::Seq(items) = &chs.value
                {
                    for i in items {
                        if let Some(s) = i.as_str()
                            && !channels.iter().any(|c| c.value == s)
                        {
                            channels.push(crate::yaml::de::At::new(i.pos, s.to_string()));
                        }
                    }
                }
            }
            let msg = Message {
                title: format!("Sluice: {} interrupted", rec.runbook),
                text: self.services.redactor.text(&format!(
                    "Run {} of `{}` was interrupted: {reason}.{}",
                    rec.id,
                    rec.runbook,
                    self.services
                        .run_url(&rec.id)
                        .map(|u| format!("\n{u}"))
                        .unwrap_or_default()
                )),
                html: None,
                event: crate::notify::Event {
                    kind: crate::notify::EventKind::RunFailed,
                    source: Some(rec.runbook.clone()),
                    link: self.services.run_url(&rec.id),
                    dedup_key: rec.request["fingerprint"].as_str().map(str::to_string),
                    ..Default::default()
                },
            };
            for ch in &channels {
                let result = send_about(&self.services, &rec.id, ch, &msg).await;
                self.metrics
                    .notifications
                    .inc(&[ch.as_str(), if result.is_ok() { "ok" } else { "failed" }]);
            }
        }
        Ok(())
    }

    /// Stops accepting starts and waits up to `grace` for running runs;
    /// those still running are left for the next start to resume or report.
    pub async fn drain(&self, grace: StdDuration) -> usize {
        self.accepting.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let n = self.running.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            let wait = self.idle.notified();
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return self.running.load(Ordering::SeqCst);
            }
        }
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Kinds that only read or wait, and so may run again after a crash.
const REPEATABLE_KINDS: &[&str] = &["approval", "sleep", "wait_until", "parallel", "for_each"];

/// Whether the step at `path` (`id`, `loop[2].child`, `on_failure.id`) may be repeated.
fn safe_to_repeat(rb: &Runbook, path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let id = last.split('[').next().unwrap_or(last);
    rb.all_steps()
        .into_iter()
        .find(|s| s.id.as_str() == id)
        .is_some_and(|s| s.idempotent || REPEATABLE_KINDS.contains(&s.kind.name))
}

/// A run ready to execute.
struct Prepared {
    runbook: Arc<Runbook>,
    req: RunRequest,
    key: Option<Key>,
    lock: Option<String>,
    fingerprint: Option<String>,
}

impl Prepared {
    fn new(sub: &Submission, id: String, key: Option<Key>, lock: Option<String>) -> Prepared {
        Prepared {
            runbook: sub.runbook.runbook.clone(),
            req: RunRequest {
                params: sub.params.clone(),
                trigger: sub.trigger.clone(),
                who: sub.who.clone(),
                alert: sub.alert.clone(),
                webhook: sub.webhook.clone(),
                scheduled_at: sub.scheduled_at,
                id: Some(id),
                ..RunRequest::default()
            },
            key,
            lock,
            fingerprint: sub.fingerprint.clone(),
        }
    }

    fn from_record(
        rec: &RunRecord,
        runbook: Arc<Runbook>,
        key: Option<Key>,
        lock: Option<String>,
        resume: Option<Resume>,
    ) -> Prepared {
        let params = rec
            .params
            .as_object()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        let non_null = |v: &J| (!v.is_null()).then(|| v.clone());
        Prepared {
            runbook,
            req: RunRequest {
                params,
                trigger: rec.trigger.clone(),
                who: rec.who.clone(),
                alert: non_null(&rec.request["alert"]),
                webhook: non_null(&rec.request["webhook"]),
                scheduled_at: rec.request["scheduled_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc)),
                id: Some(rec.id.clone()),
                resume,
                ..RunRequest::default()
            },
            key,
            lock,
            fingerprint: rec.request["fingerprint"].as_str().map(str::to_string),
        }
    }
}
