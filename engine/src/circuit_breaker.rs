//! Circuit breaker around the sink: Closed → (failure_threshold consecutive
//! failures) → Open → (timeout_seconds) → HalfOpen → (success_threshold
//! consecutive successes) → Closed, or back to Open on a failure or when the
//! probe period exceeds recovery_timeout.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::CircuitBreakerConfig;

/// Breaker state; the metric value is 0 closed, 1 open, 2 half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn metric_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        })
    }
}

/// Timing settings (from `circuit_breaker:` in the config).
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub recovery_timeout: Duration,
    pub success_threshold: u32,
}

impl From<&CircuitBreakerConfig> for BreakerSettings {
    fn from(c: &CircuitBreakerConfig) -> Self {
        Self {
            failure_threshold: c.failure_threshold.value.max(1),
            open_for: Duration::from_secs(c.timeout_seconds),
            recovery_timeout: Duration::from_secs(c.recovery_timeout),
            success_threshold: c.success_threshold.value.max(1),
        }
    }
}

/// A state change, kept for monthly stats.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

#[derive(Debug)]
struct Inner {
    settings: BreakerSettings,
    state: BreakerState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    since: Instant,
    failures_total: u64,
    successes_total: u64,
    rejected_total: u64,
    times_opened: u64,
    open_time: Duration,
    transitions: VecDeque<Transition>,
}

/// One named breaker, shared by the pipeline and the admin API.
#[derive(Debug)]
pub struct CircuitBreaker {
    pub name: String,
    inner: Mutex<Inner>,
}

/// A point-in-time view for the API and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    pub name: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub failures_total: u64,
    pub successes_total: u64,
    pub rejected_total: u64,
    pub times_opened: u64,
    pub total_open_seconds: f64,
    pub seconds_in_state: f64,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub timeout_seconds: u64,
    pub recovery_timeout_seconds: u64,
    pub recent_transitions: Vec<Transition>,
}

const KEEP_TRANSITIONS: usize = 1000;

impl CircuitBreaker {
    pub fn new(name: impl Into<String>, settings: BreakerSettings) -> Self {
        Self {
            name: name.into(),
            inner: Mutex::new(Inner {
                settings,
                state: BreakerState::Closed,
                consecutive_failures: 0,
                consecutive_successes: 0,
                since: Instant::now(),
                failures_total: 0,
                successes_total: 0,
                rejected_total: 0,
                times_opened: 0,
                open_time: Duration::ZERO,
                transitions: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies new settings (config reload); the state is kept.
    pub fn reconfigure(&self, settings: BreakerSettings) {
        self.lock().settings = settings;
    }

    pub fn state(&self) -> BreakerState {
        let mut g = self.lock();
        g.tick(&self.name);
        g.state
    }

    /// Whether a call may go through now (moves Open → HalfOpen after the timeout).
    pub fn allow(&self) -> bool {
        let mut g = self.lock();
        g.tick(&self.name);
        if g.state == BreakerState::Open {
            g.rejected_total += 1;
            false
        } else {
            true
        }
    }

    /// Time until an open breaker will probe again.
    pub fn retry_in(&self) -> Duration {
        let g = self.lock();
        match g.state {
            BreakerState::Open => g.settings.open_for.saturating_sub(g.since.elapsed()),
            _ => Duration::ZERO,
        }
    }

    pub fn record_success(&self) {
        let mut g = self.lock();
        g.successes_total += 1;
        g.consecutive_failures = 0;
        if g.state == BreakerState::HalfOpen {
            g.consecutive_successes += 1;
            if g.consecutive_successes >= g.settings.success_threshold {
                g.go(
                    &self.name,
                    BreakerState::Closed,
                    "success threshold reached",
                );
            }
        }
    }

    pub fn record_failure(&self) {
        let mut g = self.lock();
        g.failures_total += 1;
        g.consecutive_successes = 0;
        g.consecutive_failures += 1;
        match g.state {
            BreakerState::Closed if g.consecutive_failures >= g.settings.failure_threshold => {
                g.go(&self.name, BreakerState::Open, "failure threshold reached")
            }
            BreakerState::HalfOpen => {
                g.go(&self.name, BreakerState::Open, "failure while half-open")
            }
            _ => {}
        }
    }

    /// Forces the breaker closed (admin reset). Returns the state it had.
    pub fn reset(&self) -> BreakerState {
        let mut g = self.lock();
        let before = g.state;
        g.consecutive_failures = 0;
        g.consecutive_successes = 0;
        if before != BreakerState::Closed {
            g.go(&self.name, BreakerState::Closed, "manual reset");
        }
        before
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let mut g = self.lock();
        g.tick(&self.name);
        let open_now = if g.state == BreakerState::Open {
            g.since.elapsed()
        } else {
            Duration::ZERO
        };
        BreakerSnapshot {
            name: self.name.clone(),
            state: g.state,
            consecutive_failures: g.consecutive_failures,
            consecutive_successes: g.consecutive_successes,
            failures_total: g.failures_total,
            successes_total: g.successes_total,
            rejected_total: g.rejected_total,
            times_opened: g.times_opened,
            total_open_seconds: (g.open_time + open_now).as_secs_f64(),
            seconds_in_state: g.since.elapsed().as_secs_f64(),
            failure_threshold: g.settings.failure_threshold,
            success_threshold: g.settings.success_threshold,
            timeout_seconds: g.settings.open_for.as_secs(),
            recovery_timeout_seconds: g.settings.recovery_timeout.as_secs(),
            recent_transitions: g.transitions.iter().rev().take(20).cloned().collect(),
        }
    }

    /// Transitions within the last `days` days.
    pub fn transitions_since(&self, since: DateTime<Utc>) -> Vec<Transition> {
        self.lock()
            .transitions
            .iter()
            .filter(|t| t.at >= since)
            .cloned()
            .collect()
    }
}

impl Inner {
    /// Time-driven transitions: Open → HalfOpen, HalfOpen → Open on probe timeout.
    fn tick(&mut self, name: &str) {
        match self.state {
            BreakerState::Open if self.since.elapsed() >= self.settings.open_for => {
                self.go(name, BreakerState::HalfOpen, "open timeout elapsed")
            }
            BreakerState::HalfOpen
                if self.settings.recovery_timeout > Duration::ZERO
                    && self.since.elapsed() >= self.settings.recovery_timeout =>
            {
                self.go(name, BreakerState::Open, "recovery timeout elapsed")
            }
            _ => {}
        }
    }

    fn go(&mut self, name: &str, to: BreakerState, reason: &str) {
        let from = self.state;
        if from == BreakerState::Open {
            self.open_time += self.since.elapsed();
        }
        if to == BreakerState::Open {
            self.times_opened += 1;
        }
        self.state = to;
        self.since = Instant::now();
        self.consecutive_successes = 0;
        if to == BreakerState::Closed {
            self.consecutive_failures = 0;
        }
        tracing::warn!(breaker = name, from = %from, to = %to, reason, "Circuit breaker state changed.");
        if self.transitions.len() >= KEEP_TRANSITIONS {
            self.transitions.pop_front();
        }
        self.transitions.push_back(Transition {
            at: Utc::now(),
            from,
            to,
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(open_ms: u64) -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            open_for: Duration::from_millis(open_ms),
            recovery_timeout: Duration::from_secs(30),
            success_threshold: 2,
        }
    }

    #[test]
    fn opens_after_threshold_and_closes_after_successful_probes() {
        let b = CircuitBreaker::new("sink", settings(30));
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.snapshot();
        assert_eq!(s.times_opened, 1);
        assert!(s.total_open_seconds >= 0.03);
        assert_eq!(s.recent_transitions.len(), 3);
    }

    #[test]
    fn failure_while_half_open_reopens_and_reset_closes() {
        let b = CircuitBreaker::new("sink", settings(10));
        for _ in 0..3 {
            b.record_failure();
        }
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.reset(), BreakerState::Open);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot().times_opened, 2);
    }

    #[test]
    fn successes_reset_the_failure_count() {
        let b = CircuitBreaker::new("sink", settings(1000));
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
