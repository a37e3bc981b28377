//! `sluice replay`: the alert rules and runbooks of a service run over a
//! recorded metric history — when would each alert have fired and resolved,
//! which runbook would have started, which starts the guards would have
//! suppressed or escalated — without running a single step.
//!
//! Nothing here is a second implementation of the service: the rule groups
//! are the service's [`RuleManager`] groups evaluated by [`RuleManager::eval_group`]
//! on the service's aligned ticks ([`next_eval`]), over the same
//! [`LocalEngine`] and store; the runbooks and rule files are loaded by the
//! service's [`Library`]; alert events go through the service's
//! [`trigger_starts`] (trigger labels and matchers, maintenance windows,
//! guard scope), firing alerts are re-considered every [`RESEND_EVERY`] as
//! the service does, and every start passes the service's [`Guards`] with
//! its [`guard_of`] key and policy — on a synthetic clock (a base `Instant`
//! plus the replay offset). An admitted run is planned by a dry run of the
//! executor, which renders every step and changes nothing.
//!
//! What a replay cannot know is how long a run would have taken: runs end at
//! once unless `run_duration` says otherwise (it matters for `concurrency`).

pub mod history;
pub mod timeline;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use crate::alert::manager::next_eval;
use crate::alert::{AlertEvent, AlertEventKind, Group, LocalEngine, RuleManager};
use crate::config::Config;
use crate::exec::context::Services;
use crate::exec::executor::{RunError, RunRequest, execute};
use crate::rules::RuleKind;
use crate::service::alerts::{RESEND_EVERY, TriggerStart, firing_events_of, trigger_starts};
use crate::service::library::Library;
use crate::service::maintenance::Windows;
use crate::service::runner::{Submission, guard_of};
use crate::trigger::guard::{Admission, Guards, Key};
use history::History;
use timeline::{Event, Outcome, Report, RunEvent, What};

/// Runbooks, rule files and configuration, loaded as the service loads them.
pub struct Loaded {
    pub config: Config,
    pub library: Library,
}

/// Loads runbooks and rules with the service's [`Library`]; every problem of
/// every invalid file (rendered `file:line:col: message`) on failure.
pub fn load(
    config: Config,
    runbook_paths: &[PathBuf],
    rule_paths: &[PathBuf],
) -> Result<Loaded, Vec<String>> {
    let mut library = Library::default();
    let report = library.reload(&config, runbook_paths, rule_paths);
    if !report.ok {
        return Err(report
            .invalid
            .into_iter()
            .flat_map(|f| f.problems)
            .collect());
    }
    Ok(Loaded { config, library })
}

impl Loaded {
    /// Names of the recording rules (their series are recomputed, not loaded).
    pub fn recorded_names(&self) -> Vec<String> {
        self.library
            .rule_files()
            .iter()
            .flat_map(|f| &f.groups)
            .flat_map(|g| &g.rules)
            .filter_map(|r| match &r.kind {
                RuleKind::Record { name } => Some(name.clone()),
                RuleKind::Alert { .. } => None,
            })
            .collect()
    }

    /// What the history must hold: series selectors the rules read, and how
    /// far before the range they look (longest range or offset, plus the
    /// 5-minute lookback).
    pub fn selectors(&self) -> (Vec<String>, Duration) {
        let mut out = BTreeMap::new();
        let mut longest = Duration::ZERO;
        for f in self.library.rule_files() {
            for g in &f.groups {
                for r in &g.rules {
                    history::selectors(&r.ast, &mut out, &mut longest);
                }
            }
        }
        (
            out.into_keys().collect(),
            longest + Duration::from_secs(300),
        )
    }

    /// The history filter for these rules.
    pub fn keep(&self) -> history::Keep {
        history::Keep::new(self.recorded_names())
    }
}

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// First evaluation at or after this (Unix ms).
    pub start_ms: i64,
    /// Last evaluation at or before this.
    pub end_ms: i64,
    /// Evaluate every group at this interval instead of its own.
    pub interval: Option<Duration>,
    /// Only this runbook's starts (and the alerts that trigger it).
    pub runbook: Option<String>,
    /// How long an admitted run is taken to run (for `concurrency`).
    pub run_duration: Duration,
}

/// Something the replay does at a time besides evaluating groups.
enum Action {
    /// A run ends: its guard key is released.
    Finish(Key),
    /// A queued start tries again.
    Retry(Box<(Submission, String, AlertEvent)>),
}

/// Replays `history` through the rules and runbooks of `loaded`.
pub async fn replay(loaded: &Loaded, history: &History, opts: &Options) -> anyhow::Result<Report> {
    let config = &loaded.config;
    let lib = &loaded.library;
    let mut rule_opts = crate::service::rule_manager_options(config);
    let default_ms = rule_opts.default_interval.as_millis() as i64;
    let eval_offset = rule_opts.eval_offset;
    rule_opts.event_capacity = 1;
    let manager = RuleManager::new(
        Arc::new(LocalEngine::new(history.storage.clone())),
        history.storage.clone(),
        None,
        rule_opts,
    );
    let groups: Vec<Group> = lib
        .rule_files()
        .iter()
        .flat_map(|f| {
            f.groups
                .iter()
                .map(|g| Group::from_rule_group(g, default_ms))
        })
        .map(|mut g| {
            if let Some(i) = opts.interval {
                g.interval_ms = (i.as_millis() as i64).max(1);
            }
            g
        })
        .collect();
    manager.set_groups(groups);
    let groups = manager.groups();

    let windows = Windows::from_config(&config.alerting.maintenance_windows);
    let guards = Guards::new();
    guards.set_kill_switch(config.service.kill_switch);
    let services = Arc::new(Services::new(config.clone(), None)?);
    for rb in lib.runbooks() {
        services.add_runbook(rb.runbook.clone());
    }

    let mut sim = Sim {
        lib,
        windows: &windows,
        guards: &guards,
        services: &services,
        opts,
        base: Instant::now(),
        events: Vec::new(),
        actions: BinaryHeap::new(),
        pending: HashMap::new(),
        seq: 0,
        queued: HashMap::new(),
        escalated: HashMap::new(),
        last_errors: HashMap::new(),
    };

    let mut next: Vec<i64> = groups
        .iter()
        .map(|g| {
            let i = g.lock().unwrap_or_else(|p| p.into_inner()).interval_ms;
            next_eval(opts.start_ms - 1, i, eval_offset)
        })
        .collect();
    let resend_ms = RESEND_EVERY.as_millis() as i64;
    let mut next_resend = opts.start_ms + resend_ms;
    let mut evaluations = 0usize;
    let external = &config.alerting.external_labels;
    loop {
        let t_group = next.iter().copied().min().unwrap_or(i64::MAX);
        let t_action = sim.actions.peek().map_or(i64::MAX, |Reverse((t, _))| *t);
        let t = t_group.min(t_action).min(next_resend);
        if t > opts.end_ms {
            break;
        }
        // At one instant: runs ending, then evaluations in group order, then the re-send.
        if t_action == t {
            let Some(Reverse((_, seq))) = sim.actions.pop() else {
                break;
            };
            if let Some(a) = sim.pending.remove(&seq) {
                sim.act(a, t).await;
            }
            continue;
        }
        if t_group == t {
            for (i, g) in groups.iter().enumerate() {
                if next[i] != t {
                    continue;
                }
                let report = manager.eval_group(g, t);
                evaluations += 1;
                let (gname, interval) = {
                    let g = g.lock().unwrap_or_else(|p| p.into_inner());
                    (g.name.clone(), g.interval_ms)
                };
                for (rule, err) in report.errors {
                    sim.rule_error(t, &gname, &rule, &err.to_string());
                }
                for ev in report.events {
                    sim.alert_event(&ev, t, false).await;
                }
                next[i] = next_eval(t, interval, eval_offset);
            }
            continue;
        }
        for ev in firing_events_of(manager.alerts(), external, t) {
            sim.alert_event(&ev, t, true).await;
        }
        next_resend += resend_ms;
    }
    Ok(timeline::report(
        opts.start_ms,
        opts.end_ms,
        evaluations,
        history,
        sim.events,
    ))
}

struct Sim<'a> {
    lib: &'a Library,
    windows: &'a Windows,
    guards: &'a Guards,
    services: &'a Arc<Services>,
    opts: &'a Options,
    base: Instant,
    events: Vec<Event>,
    actions: BinaryHeap<Reverse<(i64, u64)>>,
    pending: HashMap<u64, Action>,
    seq: u64,
    /// A start waiting behind the active run of its key.
    queued: HashMap<Key, (Submission, String, AlertEvent)>,
    /// When people were last told about an escalation of a key (once per window).
    escalated: HashMap<Key, i64>,
    last_errors: HashMap<(String, String), String>,
}

impl Sim<'_> {
    /// The synthetic monotonic clock: the base instant plus the replay offset.
    fn instant(&self, t_ms: i64) -> Instant {
        self.base + Duration::from_millis((t_ms - self.opts.start_ms).max(0) as u64)
    }

    fn schedule(&mut self, t_ms: i64, a: Action) {
        self.seq += 1;
        self.pending.insert(self.seq, a);
        self.actions.push(Reverse((t_ms, self.seq)));
    }

    fn wanted(&self, runbook: &str) -> bool {
        self.opts.runbook.as_deref().is_none_or(|r| r == runbook)
    }

    fn rule_error(&mut self, t: i64, group: &str, rule: &str, error: &str) {
        let k = (group.to_string(), rule.to_string());
        if self.last_errors.get(&k).is_some_and(|e| e == error) {
            return;
        }
        self.last_errors.insert(k, error.to_string());
        self.events.push(Event {
            t_ms: t,
            what: What::RuleError {
                group: group.to_string(),
                rule: rule.to_string(),
                error: error.to_string(),
            },
        });
    }

    async fn alert_event(&mut self, ev: &AlertEvent, t: i64, resent: bool) {
        if !resent {
            let shown = match &self.opts.runbook {
                None => true,
                Some(rb) => self
                    .lib
                    .alert_triggers(&ev.name)
                    .iter()
                    .any(|tr| tr.runbook.name() == rb && tr.matches(&ev.labels)),
            };
            if shown {
                self.events.push(Event {
                    t_ms: t,
                    what: What::Alert {
                        name: ev.name.clone(),
                        labels: ev.labels.clone(),
                        firing: ev.kind == AlertEventKind::Firing,
                        fingerprint: ev.fingerprint.clone(),
                        active_since_ms: ev.since_ms,
                    },
                });
            }
        }
        let now = Utc
            .timestamp_millis_opt(t)
            .single()
            .unwrap_or_else(Utc::now);
        for start in trigger_starts(self.lib, self.windows, ev, now) {
            match start {
                TriggerStart::Maintenance { runbook, window } => {
                    if self.wanted(&runbook) {
                        self.push_run(t, &runbook, "", ev, resent, Outcome::Maintenance { window });
                    }
                }
                TriggerStart::Submit(sub) => {
                    if !self.wanted(sub.runbook.name()) {
                        continue;
                    }
                    let scope = sub.scope.clone().unwrap_or_default();
                    self.submit(sub, scope, ev, t, resent, false).await;
                }
            }
        }
    }

    fn push_run(
        &mut self,
        t: i64,
        runbook: &str,
        scope: &str,
        ev: &AlertEvent,
        resent: bool,
        outcome: Outcome,
    ) {
        self.events.push(Event {
            t_ms: t,
            what: What::Run(RunEvent {
                runbook: runbook.to_string(),
                alert: ev.name.clone(),
                labels: ev.labels.clone(),
                fingerprint: ev.fingerprint.clone(),
                scope: scope.to_string(),
                resent,
                on_resolved: ev.kind == AlertEventKind::Resolved,
                outcome,
            }),
        });
    }

    /// One guarded start, as the runner's memory guard decides it.
    async fn submit(
        &mut self,
        sub: Submission,
        scope: String,
        ev: &AlertEvent,
        t: i64,
        resent: bool,
        from_queue: bool,
    ) {
        let (key, policy) = guard_of(&sub, &scope);
        let name = sub.runbook.name().to_string();
        let outcome = match self.guards.admit(&key, &policy, self.instant(t)) {
            Admission::Start => {
                let (plan, error) = self.plan(&sub).await;
                let d = self.opts.run_duration.as_millis() as i64;
                if d == 0 {
                    self.finish(&key, t);
                } else {
                    self.schedule(t + d, Action::Finish(key.clone()));
                }
                Outcome::Started {
                    plan,
                    error,
                    from_queue,
                }
            }
            Admission::SkipActive => Outcome::Active,
            Admission::Queued => {
                self.queued
                    .insert(key.clone(), (sub.clone(), scope.clone(), ev.clone()));
                Outcome::Queued
            }
            Admission::Cooldown { remaining } => {
                let cooldown = policy.cooldown.unwrap_or_default();
                if from_queue {
                    // The queued start waits out the cooldown (the runner's queue pump).
                    let at = t + remaining.as_millis() as i64;
                    self.schedule(at, Action::Retry(Box::new((sub, scope, ev.clone()))));
                    return;
                }
                Outcome::Cooldown {
                    cooldown,
                    last_run_ms: t - (cooldown - remaining).as_millis() as i64,
                    remaining,
                }
            }
            Admission::Escalate { runs_in_window } => {
                let (count, window) = policy.max_runs.unwrap_or((0, Duration::ZERO));
                let window_ms = window.as_millis() as i64;
                let configured = sub.runbook.runbook.guards.escalate.is_some();
                let told = configured
                    && self
                        .escalated
                        .get(&key)
                        .is_none_or(|last| t - last >= window_ms);
                if told {
                    self.escalated.insert(key.clone(), t);
                }
                Outcome::Escalated {
                    runs_in_window,
                    max_runs: count,
                    window,
                    configured,
                    notified: told,
                }
            }
            Admission::KillSwitch => Outcome::KillSwitch,
        };
        self.push_run(t, &name, &scope, ev, resent, outcome);
    }

    /// A run of `key` ended at `t`; a start queued behind it goes next.
    fn finish(&mut self, key: &Key, t: i64) {
        if self.guards.finished(key)
            && let Some((sub, scope, ev)) = self.queued.remove(key)
        {
            self.schedule(t, Action::Retry(Box::new((sub, scope, ev))));
        }
    }

    async fn act(&mut self, a: Action, t: i64) {
        match a {
            Action::Finish(key) => self.finish(&key, t),
            Action::Retry(b) => {
                let (sub, scope, ev) = *b;
                self.submit(sub, scope, &ev, t, false, true).await
            }
        }
    }

    /// The steps a start would run: a dry run of the executor.
    async fn plan(
        &self,
        sub: &Submission,
    ) -> (Vec<crate::exec::executor::PlannedStep>, Option<String>) {
        let req = RunRequest {
            params: sub.params.clone(),
            trigger: sub.trigger.clone(),
            who: sub.who.clone(),
            alert: sub.alert.clone(),
            dry_run: true,
            ..RunRequest::default()
        };
        match execute(self.services, sub.runbook.runbook.clone(), req).await {
            Ok(out) => (out.plan, None),
            Err(RunError::InvalidParams(e)) => (
                Vec::new(),
                Some(format!("would fail: invalid parameters: {}", e.join("; "))),
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
