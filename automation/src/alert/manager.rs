//! Runs rule groups on their intervals, publishes alert events, persists
//! `for` state, and swaps in reloaded rule files without losing alert state.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use super::event::AlertEvent;
use super::group::{Group, GroupEvalReport};
use super::rule::TemplateContext;
use super::state_store::ForStateStore;
use super::{Alert, LabelSet, RuleQueryEngine};
use crate::diagnostic::Diagnostic;
use crate::scrape::SampleSink;

/// Settings shared by all groups.
#[derive(Debug, Clone)]
pub struct RuleManagerOptions {
    /// Interval of groups that do not set one (Prometheus's `evaluation_interval`).
    pub default_interval: Duration,
    /// Evaluations run this long after each interval boundary, so that samples
    /// scraped on the boundary are already stored.
    pub eval_offset: Duration,
    pub external_labels: LabelSet,
    pub external_url: String,
    /// Capacity of the alert event channel.
    pub event_capacity: usize,
}

impl Default for RuleManagerOptions {
    fn default() -> Self {
        RuleManagerOptions {
            default_interval: Duration::from_secs(60),
            eval_offset: Duration::from_millis(300),
            external_labels: LabelSet::new(),
            external_url: String::new(),
            event_capacity: 4096,
        }
    }
}

/// Owns the rule groups and their evaluation loops.
pub struct RuleManager {
    groups: Mutex<Vec<Arc<Mutex<Group>>>>,
    engine: Arc<dyn RuleQueryEngine>,
    sink: Arc<dyn SampleSink>,
    store: Option<Arc<dyn ForStateStore>>,
    events: broadcast::Sender<AlertEvent>,
    opts: RuleManagerOptions,
    tmpl: TemplateContext,
    /// Bumped on every reload so running loops stop and new ones start.
    generation: watch::Sender<u64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The evaluation time of a group with `interval_ms` that follows `now_ms`:
/// the first `k * interval + offset` strictly after it.
pub fn next_eval(now_ms: i64, interval_ms: i64, eval_offset: Duration) -> i64 {
    let interval = interval_ms.max(1);
    let offset = eval_offset.as_millis() as i64 % interval;
    let mut next = (now_ms - offset).div_euclid(interval) * interval + offset;
    if next <= now_ms {
        next += interval;
    }
    next
}

impl RuleManager {
    pub fn new(
        engine: Arc<dyn RuleQueryEngine>,
        sink: Arc<dyn SampleSink>,
        store: Option<Arc<dyn ForStateStore>>,
        opts: RuleManagerOptions,
    ) -> Self {
        let (events, _) = broadcast::channel(opts.event_capacity.max(1));
        let tmpl = TemplateContext {
            external_labels: opts.external_labels.clone(),
            external_url: opts.external_url.clone(),
        };
        RuleManager {
            groups: Mutex::new(Vec::new()),
            engine,
            sink,
            store,
            events,
            opts,
            tmpl,
            generation: watch::channel(0).0,
        }
    }

    /// Alert events from rule evaluations (and from whoever else publishes on
    /// [`RuleManager::event_sender`], such as the Alertmanager webhook).
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }

    /// The sender of the event channel, for other alert sources.
    pub fn event_sender(&self) -> broadcast::Sender<AlertEvent> {
        self.events.clone()
    }

    /// Loads rule files into groups; all problems of all files on failure.
    pub fn load_files(&self, files: &[PathBuf]) -> Result<Vec<Group>, Vec<Diagnostic>> {
        let mut groups = Vec::new();
        let mut diags = Vec::new();
        let default_ms = self.opts.default_interval.as_millis() as i64;
        for f in files {
            match crate::rules::load_rule_file(f) {
                Ok(file) => groups.extend(
                    file.groups
                        .iter()
                        .map(|g| Group::from_rule_group(g, default_ms)),
                ),
                Err(d) => diags.extend(d),
            }
        }
        if diags.is_empty() {
            Ok(groups)
        } else {
            Err(diags)
        }
    }

    /// Installs `groups`, carrying over the alerts of groups with the same key
    /// (or restoring them from the state store on first load).
    pub fn set_groups(&self, mut groups: Vec<Group>) {
        let mut current = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let saved: Vec<(String, Alert)> = if current.is_empty() {
            match self.store.as_ref().map(|s| s.load()) {
                Some(Ok(saved)) => saved.into_iter().map(|s| (s.group, s.alert)).collect(),
                Some(Err(e)) => {
                    warn!(error = %e, "Could not restore alert state.");
                    Vec::new()
                }
                None => Vec::new(),
            }
        } else {
            current
                .iter()
                .flat_map(|g| {
                    let g = g.lock().unwrap_or_else(|p| p.into_inner());
                    let key = g.key();
                    g.alerts()
                        .map(|(_, a)| (key.clone(), a.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for g in &mut groups {
            let key = g.key();
            let mine: Vec<Alert> = saved
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, a)| a.clone())
                .collect();
            if !mine.is_empty() {
                info!(group = %g.name, alerts = mine.len(), "Restored alert state.");
                g.restore(mine);
            }
        }
        *current = groups
            .into_iter()
            .map(|g| Arc::new(Mutex::new(g)))
            .collect();
        drop(current);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Snapshot of every alert: (group name, rule name, alert).
    pub fn alerts(&self) -> Vec<(String, Alert)> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .iter()
            .flat_map(|g| {
                let g = g.lock().unwrap_or_else(|p| p.into_inner());
                g.alerts()
                    .map(|(_, a)| (g.name.clone(), a.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The installed groups, for a caller that drives evaluation on its own
    /// clock (`sluice replay`) through [`RuleManager::eval_group`].
    pub fn groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn options(&self) -> &RuleManagerOptions {
        &self.opts
    }

    /// Evaluates one group at `ts_ms`, publishes its events and saves its state.
    pub fn eval_group(&self, group: &Mutex<Group>, ts_ms: i64) -> GroupEvalReport {
        let mut g = group.lock().unwrap_or_else(|p| p.into_inner());
        let began = std::time::Instant::now();
        let report = g.eval(ts_ms, self.engine.as_ref(), self.sink.as_ref(), &self.tmpl);
        g.last_eval = Some(super::group::LastEval {
            at_ms: ts_ms,
            took_ms: began.elapsed().as_secs_f64() * 1e3,
            errors: report
                .errors
                .iter()
                .map(|(rule, e)| (rule.clone(), e.to_string()))
                .collect(),
        });
        for ev in &report.events {
            // No subscriber is not an error: events are also visible through `alerts()`.
            let _ = self.events.send(ev.clone());
        }
        if let Some(store) = &self.store {
            let alerts: Vec<Alert> = g.alerts().map(|(_, a)| a.clone()).collect();
            if let Err(e) = store.save_group(&g.key(), &alerts) {
                warn!(group = %g.name, error = %e, "Could not save alert state.");
            }
        }
        report
    }

    /// Evaluates every group once at `ts_ms` (tests, benchmarks).
    pub fn eval_all(&self, ts_ms: i64) -> Vec<GroupEvalReport> {
        let groups: Vec<_> = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        groups.iter().map(|g| self.eval_group(g, ts_ms)).collect()
    }

    /// Runs every group on its interval until `shutdown` is true; restarts the
    /// loops when groups are replaced.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut gen_rx = self.generation.subscribe();
        loop {
            gen_rx.borrow_and_update();
            let groups: Vec<_> = self
                .groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (stop_tx, stop_rx) = watch::channel(false);
            let handles: Vec<_> = groups
                .into_iter()
                .map(|g| tokio::spawn(self.clone().group_loop(g, stop_rx.clone())))
                .collect();
            let reload = tokio::select! {
                r = gen_rx.changed() => r.is_ok(),
                _ = shutdown.wait_for(|s| *s) => false,
            };
            let _ = stop_tx.send(true);
            for h in handles {
                let _ = h.await;
            }
            if !reload || *shutdown.borrow() {
                return;
            }
        }
    }

    async fn group_loop(
        self: Arc<Self>,
        group: Arc<Mutex<Group>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let interval = group.lock().unwrap_or_else(|p| p.into_inner()).interval_ms;
        loop {
            let now = now_ms();
            let next = next_eval(now, interval, self.opts.eval_offset);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis((next - now) as u64)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let this = self.clone();
            let g = group.clone();
            // Evaluation is CPU work; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || this.eval_group(&g, next)).await;
        }
    }
}
