//! Guardrails applied to every automatic start of a runbook: deduplication by
//! alert fingerprint, concurrency per key, cooldown, a cap on runs per window
//! (beyond which Sluice escalates to people instead of acting), and a global
//! kill switch.
//!
//! The decision and the bookkeeping happen under one lock, so a burst of
//! identical alerts arriving at once admits exactly one run.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What happens when a start arrives while a run for the same key is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// Drop the new start (recorded as skipped).
    #[default]
    Skip,
    /// Start it when the active run ends (at most one waits; more are coalesced).
    Queue,
    /// Run concurrently.
    Allow,
}

/// The guard settings of one runbook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub concurrency: Concurrency,
    /// Minimum time between the start of one run and the next for the same key.
    pub cooldown: Option<Duration>,
    /// At most `count` runs per `window` per key; beyond that, escalate.
    pub max_runs: Option<(u32, Duration)>,
}

/// What a guard is keyed on: the runbook and the thing it acts on (an alert
/// fingerprint or a target name; empty for manual/scheduled runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub runbook: String,
    pub scope: String,
}

impl Key {
    pub fn new(runbook: impl Into<String>, scope: impl Into<String>) -> Self {
        Self {
            runbook: runbook.into(),
            scope: scope.into(),
        }
    }
}

/// The verdict for one start request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Start the run now. The caller must call [`Guards::finished`] when it ends.
    Start,
    /// A run for this key is active and the policy is `skip`.
    SkipActive,
    /// Queued behind the active run; [`Guards::finished`] hands it back.
    Queued,
    /// Still cooling down; `remaining` until the next start is allowed.
    Cooldown { remaining: Duration },
    /// `max_runs` exceeded in the window: notify people instead of acting.
    Escalate { runs_in_window: u32 },
    /// Automation is switched off globally.
    KillSwitch,
}

#[derive(Debug, Default)]
struct KeyState {
    active: u32,
    queued: bool,
    last_start: Option<Instant>,
    /// `last_start` before the latest admission, for [`Guards::revert`].
    prev_start: Option<Instant>,
    starts: VecDeque<Instant>,
}

/// Guard state for all keys. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Guards {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    keys: HashMap<Key, KeyState>,
    killed: bool,
}

impl Guards {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns all automatic starts off (`true`) or back on.
    pub fn set_kill_switch(&self, on: bool) {
        self.lock().killed = on;
    }

    pub fn kill_switch(&self) -> bool {
        self.lock().killed
    }

    /// Decides whether a run for `key` may start at `now`, and records the start
    /// when it may. Cooldown and the window count apply to queued starts too,
    /// when they are handed back.
    pub fn admit(&self, key: &Key, policy: &Policy, now: Instant) -> Admission {
        let mut inner = self.lock();
        if inner.killed {
            return Admission::KillSwitch;
        }
        let state = inner.keys.entry(key.clone()).or_default();
        if state.active > 0 {
            match policy.concurrency {
                Concurrency::Skip => return Admission::SkipActive,
                Concurrency::Queue => {
                    state.queued = true;
                    return Admission::Queued;
                }
                Concurrency::Allow => {}
            }
        }
        if let (Some(cooldown), Some(last)) = (policy.cooldown, state.last_start) {
            let since = now.saturating_duration_since(last);
            if since < cooldown {
                return Admission::Cooldown {
                    remaining: cooldown - since,
                };
            }
        }
        if let Some((count, window)) = policy.max_runs {
            while state
                .starts
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= window)
            {
                state.starts.pop_front();
            }
            if state.starts.len() as u32 >= count {
                return Admission::Escalate {
                    runs_in_window: state.starts.len() as u32,
                };
            }
        }
        state.active += 1;
        state.prev_start = state.last_start;
        state.last_start = Some(now);
        state.starts.push_back(now);
        Admission::Start
    }

    /// Undoes the latest [`Admission::Start`] for `key` (the run did not start
    /// after all, e.g. another instance holds it). `observed` is when the run
    /// that blocked it started, which then counts for cooldown and the window.
    pub fn revert(&self, key: &Key, observed: Option<Instant>) {
        let mut inner = self.lock();
        let Some(state) = inner.keys.get_mut(key) else {
            return;
        };
        state.active = state.active.saturating_sub(1);
        state.starts.pop_back();
        state.last_start = state.prev_start.take();
        if let Some(t) = observed {
            state.last_start = Some(state.last_start.map_or(t, |l| l.max(t)));
            if !state.starts.contains(&t) {
                state.starts.push_back(t);
                state.starts.make_contiguous().sort();
            }
        }
    }

    /// Records a start that bypassed [`Guards::admit`] (a queued or resumed run).
    pub fn force_start(&self, key: &Key, now: Instant) {
        let mut inner = self.lock();
        let state = inner.keys.entry(key.clone()).or_default();
        state.active += 1;
        state.queued = false;
        state.prev_start = state.last_start;
        state.last_start = Some(now);
        state.starts.push_back(now);
    }

    /// Records the end of a run for `key`. Returns `true` when a queued start
    /// is waiting: the caller should call [`Guards::admit`] again for it.
    pub fn finished(&self, key: &Key) -> bool {
        let mut inner = self.lock();
        let Some(state) = inner.keys.get_mut(key) else {
            return false;
        };
        state.active = state.active.saturating_sub(1);
        state.active == 0 && std::mem::take(&mut state.queued)
    }

    /// Number of active runs for `key`.
    pub fn active(&self, key: &Key) -> u32 {
        self.lock().keys.get(key).map_or(0, |s| s.active)
    }

    /// Forgets keys with no active run, no queued start and nothing left in
    /// their windows, so state stays bounded under many distinct fingerprints.
    pub fn prune(&self, now: Instant, horizon: Duration) {
        self.lock().keys.retain(|_, s| {
            s.active > 0
                || s.queued
                || s.last_start
                    .is_some_and(|t| now.saturating_duration_since(t) < horizon)
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent counters; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(scope: &str) -> Key {
        Key::new("cb-reset", scope)
    }

    #[test]
    fn skip_drops_starts_while_active() {
        let g = Guards::new();
        let p = Policy::default();
        let t = Instant::now();
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        assert_eq!(g.admit(&key("a"), &p, t), Admission::SkipActive);
        // Another fingerprint is independent.
        assert_eq!(g.admit(&key("b"), &p, t), Admission::Start);
        assert!(!g.finished(&key("a")));
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
    }

    #[test]
    fn queue_hands_back_one_coalesced_start() {
        let g = Guards::new();
        let p = Policy {
            concurrency: Concurrency::Queue,
            ..Policy::default()
        };
        let t = Instant::now();
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Queued);
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Queued);
        assert!(g.finished(&key("a")));
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        assert!(!g.finished(&key("a")));
    }

    #[test]
    fn allow_runs_concurrently() {
        let g = Guards::new();
        let p = Policy {
            concurrency: Concurrency::Allow,
            ..Policy::default()
        };
        let t = Instant::now();
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        assert_eq!(g.active(&key("a")), 2);
    }

    #[test]
    fn cooldown_counts_from_the_last_start() {
        let g = Guards::new();
        let p = Policy {
            cooldown: Some(Duration::from_secs(600)),
            ..Policy::default()
        };
        let t = Instant::now();
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        g.finished(&key("a"));
        assert_eq!(
            g.admit(&key("a"), &p, t + Duration::from_secs(60)),
            Admission::Cooldown {
                remaining: Duration::from_secs(540)
            }
        );
        assert_eq!(
            g.admit(&key("a"), &p, t + Duration::from_secs(600)),
            Admission::Start
        );
    }

    #[test]
    fn max_runs_escalates_then_recovers_as_the_window_slides() {
        let g = Guards::new();
        let p = Policy {
            max_runs: Some((3, Duration::from_secs(3600))),
            ..Policy::default()
        };
        let t = Instant::now();
        for i in 0..3 {
            let at = t + Duration::from_secs(i * 60);
            assert_eq!(g.admit(&key("a"), &p, at), Admission::Start);
            g.finished(&key("a"));
        }
        assert_eq!(
            g.admit(&key("a"), &p, t + Duration::from_secs(300)),
            Admission::Escalate { runs_in_window: 3 }
        );
        // The first start leaves the window after an hour.
        assert_eq!(
            g.admit(&key("a"), &p, t + Duration::from_secs(3600)),
            Admission::Start
        );
    }

    #[test]
    fn revert_undoes_a_start_and_keeps_what_was_observed() {
        let g = Guards::new();
        let p = Policy {
            cooldown: Some(Duration::from_secs(600)),
            ..Policy::default()
        };
        let t = Instant::now();
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        g.revert(&key("a"), None);
        assert_eq!(g.active(&key("a")), 0);
        // Nothing started: no cooldown.
        assert_eq!(g.admit(&key("a"), &p, t), Admission::Start);
        // Blocked by a run another instance started a minute ago: its start counts.
        g.revert(&key("a"), Some(t - Duration::from_secs(60)));
        assert!(matches!(
            g.admit(&key("a"), &p, t),
            Admission::Cooldown { .. }
        ));
    }

    #[test]
    fn kill_switch_stops_everything() {
        let g = Guards::new();
        g.set_kill_switch(true);
        assert_eq!(
            g.admit(&key("a"), &Policy::default(), Instant::now()),
            Admission::KillSwitch
        );
        g.set_kill_switch(false);
        assert_eq!(
            g.admit(&key("a"), &Policy::default(), Instant::now()),
            Admission::Start
        );
    }

    #[test]
    fn a_burst_from_many_threads_admits_exactly_one_per_key() {
        let g = Arc::new(Guards::new());
        let p = Policy {
            cooldown: Some(Duration::from_secs(600)),
            ..Policy::default()
        };
        let t = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let g = Arc::clone(&g);
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .filter(|i| {
                            g.admit(&key(&format!("fp{}", i % 100)), &p, t) == Admission::Start
                        })
                        .count()
                })
            })
            .collect();
        let started: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(started, 100);
    }

    #[test]
    fn prune_keeps_state_bounded() {
        let g = Guards::new();
        let p = Policy::default();
        let t = Instant::now();
        for i in 0..1000 {
            let k = key(&format!("fp{i}"));
            g.admit(&k, &p, t);
            g.finished(&k);
        }
        g.prune(t + Duration::from_secs(7200), Duration::from_secs(3600));
        assert_eq!(g.lock().keys.len(), 0);
    }
}
