//! The loop that fires schedules: it sleeps until the earliest next fire,
//! decides per schedule with [`due`], and claims each fire in a [`FireLog`]
//! before acting on it. The claim is a compare-and-set on the persisted last
//! fire time, so a fire is acted on once even with two service instances on
//! one database, and a restart neither repeats nor bursts missed fires.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::{CatchUp, Due, Schedule, due};

/// Persisted last fire per schedule.
pub trait FireLog: Send + Sync {
    /// The scheduled time of the last claimed fire.
    fn last(&self, id: &str) -> Option<DateTime<Utc>>;
    /// Records `scheduled` as the last fire if it is newer than the stored one;
    /// returns whether this caller won the claim.
    fn claim(&self, id: &str, scheduled: DateTime<Utc>) -> bool;
}

/// A [`FireLog`] in memory (single instance, tests).
#[derive(Default)]
pub struct MemoryFireLog {
    last: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl FireLog for MemoryFireLog {
    fn last(&self, id: &str) -> Option<DateTime<Utc>> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    fn claim(&self, id: &str, scheduled: DateTime<Utc>) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(id) {
            Some(prev) if *prev >= scheduled => false,
            _ => {
                last.insert(id.to_string(), scheduled);
                true
            }
        }
    }
}

/// One schedule the scheduler watches (a runbook's `schedule:` trigger).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unique id, e.g. `weekly-maintenance#0` (runbook and trigger index).
    pub id: String,
    pub schedule: Schedule,
    pub catch_up: CatchUp,
}

/// What the scheduler asks the service to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a run for the fire scheduled at `scheduled` (`late`: a catch-up run).
    Fire {
        id: String,
        scheduled: DateTime<Utc>,
        late: bool,
    },
    /// `missed` fires will never run (outage; `catch_up: skip`, or all but one
    /// under `once`): record it and tell people.
    Skipped {
        id: String,
        missed: u32,
        latest: DateTime<Utc>,
    },
}

/// Decides and claims the actions due at `now`, and returns when to look again.
pub fn poll(
    entries: &[Entry],
    log: &dyn FireLog,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Vec<Action>, Option<DateTime<Utc>>) {
    let mut actions = Vec::new();
    let mut wake: Option<DateTime<Utc>> = None;
    for e in entries {
        let last = log.last(&e.id);
        // A schedule seen for the first time starts its history now, so a
        // restart later can tell what it missed.
        if last.is_none()
            && let Some(prev) = e.schedule.last_at_or_before(now)
            && now - prev > grace
        {
            log.claim(&e.id, prev);
        }
        match due(&e.schedule, last, now, grace, e.catch_up) {
            Due::Wait { next } => {
                wake = Some(wake.map_or(next, |w| w.min(next)));
            }
            Due::Fire { scheduled } => {
                if log.claim(&e.id, scheduled) {
                    actions.push(Action::Fire {
                        id: e.id.clone(),
                        scheduled,
                        late: false,
                    });
                }
            }
            Due::Missed {
                missed,
                latest,
                run,
            } => {
                // Claim the latest fire whatever the policy, so the next poll waits.
                if log.claim(&e.id, latest) {
                    let skipped = missed - u32::from(run.is_some());
                    if skipped > 0 {
                        actions.push(Action::Skipped {
                            id: e.id.clone(),
                            missed: skipped,
                            latest,
                        });
                    }
                    if let Some(scheduled) = run {
                        actions.push(Action::Fire {
                            id: e.id.clone(),
                            scheduled,
                            late: now - scheduled > grace,
                        });
                    }
                }
            }
        }
        if let Some(next) = e.schedule.next_after(now) {
            wake = Some(wake.map_or(next, |w| w.min(next)));
        }
    }
    (actions, wake)
}

/// A source of "now", so tests (and `sluice` e2e tests) can drive time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(id: &str, cron: &str, catch_up: CatchUp) -> Entry {
        Entry {
            id: id.into(),
            schedule: Schedule::parse(cron, None).unwrap(),
            catch_up,
        }
    }

    fn grace() -> Duration {
        Duration::seconds(60)
    }

    #[test]
    fn fires_once_per_scheduled_time_even_when_polled_repeatedly() {
        let log = MemoryFireLog::default();
        let entries = [entry("weekly#0", "0 2 * * 0", CatchUp::Skip)];
        let clock = ManualClock::new(utc("2026-11-28T12:00:00Z"));
        let (a, wake) = poll(&entries, &log, clock.now(), grace());
        assert!(a.is_empty());
        assert_eq!(wake, Some(utc("2026-11-29T02:00:00Z")));
        clock.set(utc("2026-11-29T02:00:01Z"));
        let (a, _) = poll(&entries, &log, clock.now(), grace());
        assert_eq!(
            a,
            vec![Action::Fire {
                id: "weekly#0".into(),
                scheduled: utc("2026-11-29T02:00:00Z"),
                late: false
            }]
        );
        clock.advance(Duration::seconds(5));
        assert!(poll(&entries, &log, clock.now(), grace()).0.is_empty());
    }

    #[test]
    fn two_instances_sharing_a_log_fire_once() {
        let log = MemoryFireLog::default();
        let entries = [entry("daily#0", "0 3 * * *", CatchUp::Skip)];
        let now = utc("2026-11-24T03:00:00Z");
        log.claim("daily#0", utc("2026-11-23T03:00:00Z"));
        let (a1, _) = poll(&entries, &log, now, grace());
        let (a2, _) = poll(&entries, &log, now, grace());
        assert_eq!(a1.len() + a2.len(), 1);
    }

    #[test]
    fn after_downtime_skip_reports_and_once_runs_a_single_late_fire() {
        for (catch_up, expect_fire) in [(CatchUp::Skip, false), (CatchUp::Once, true)] {
            let log = MemoryFireLog::default();
            log.claim("daily#0", utc("2026-11-20T03:00:00Z"));
            let entries = [entry("daily#0", "0 3 * * *", catch_up)];
            let (a, _) = poll(&entries, &log, utc("2026-11-24T12:00:00Z"), grace());
            assert!(
                a.contains(&Action::Skipped {
                    id: "daily#0".into(),
                    missed: 4,
                    latest: utc("2026-11-24T03:00:00Z")
                }) || (catch_up == CatchUp::Once
                    && a.iter().any(|x| matches!(x, Action::Skipped { .. })))
            );
            let fires = a
                .iter()
                .filter(|x| matches!(x, Action::Fire { late: true, .. }))
                .count();
            assert_eq!(fires, usize::from(expect_fire), "{catch_up:?}: {a:?}");
            // Polling again right after does nothing: no burst.
            assert!(
                poll(&entries, &log, utc("2026-11-24T12:00:05Z"), grace())
                    .0
                    .is_empty()
            );
        }
    }

    #[test]
    fn a_new_schedule_records_its_history_so_a_later_outage_is_detected() {
        let log = MemoryFireLog::default();
        let entries = [entry("daily#0", "0 3 * * *", CatchUp::Once)];
        assert!(
            poll(&entries, &log, utc("2026-11-24T12:00:00Z"), grace())
                .0
                .is_empty()
        );
        assert_eq!(log.last("daily#0"), Some(utc("2026-11-24T03:00:00Z")));
        // Down until two days later.
        let (a, _) = poll(&entries, &log, utc("2026-11-26T12:00:00Z"), grace());
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::Fire { late: true, .. })),
            "{a:?}"
        );
    }
}
