//! What a scheduler does when it looks at a schedule: fire now, wait, or deal
//! with fires missed while the service was down — never a burst.

use super::Schedule;
use chrono::{DateTime, Duration, Utc};

/// Policy for fires missed while the service was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed fires are dropped (recorded as skipped); the next regular fire runs.
    #[default]
    Skip,
    /// If any fire was missed, run once now, however many were missed.
    Once,
}

/// The outcome of looking at a schedule at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing to do before `next`.
    Wait { next: DateTime<Utc> },
    /// Run now for the fire scheduled at `scheduled` (on time, within the grace period).
    Fire { scheduled: DateTime<Utc> },
    /// Several fires fell in (last, now], or one fell too long ago. `missed`
    /// counts them all (bounded by the scan limit); `run` is the one to run now:
    /// the latest under `catch_up: once`, under `skip` only if it is on time.
    Missed {
        missed: u32,
        latest: DateTime<Utc>,
        run: Option<DateTime<Utc>>,
    },
}

/// How many missed fires are counted before giving up counting (a `* * * * * *`
/// schedule down for a week would otherwise take 600k steps to count).
const MISSED_SCAN_LIMIT: u32 = 10_000;

/// Decides what to do with `schedule` at `now`, given the scheduled time of the
/// last fire that was handled (`last`, persisted across restarts) and a grace
/// period: a fire observed up to `grace` late is on time, later than that it was
/// missed.
///
/// With no `last` (a schedule seen for the first time) nothing in the past counts
/// as missed.
pub fn due(
    schedule: &Schedule,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace: Duration,
    catch_up: CatchUp,
) -> Due {
    let Some(last) = last else {
        return match schedule.last_at_or_before(now) {
            Some(t) if now - t <= grace => Due::Fire { scheduled: t },
            _ => wait(schedule, now),
        };
    };
    let Some(first_pending) = schedule.next_after(last) else {
        return wait(schedule, now);
    };
    if first_pending > now {
        return Due::Wait {
            next: first_pending,
        };
    }
    // At least one fire in (last, now]. The latest one decides.
    let latest = schedule.last_at_or_before(now).unwrap_or(first_pending);
    let mut missed = 0u32;
    let mut cursor = first_pending;
    while cursor <= now && missed < MISSED_SCAN_LIMIT {
        missed += 1;
        match schedule.next_after(cursor) {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let on_time = now - latest <= grace;
    if missed == 1 && on_time {
        return Due::Fire { scheduled: latest };
    }
    // The latest fire may still be on time even though earlier ones were missed:
    // it runs as usual under either policy.
    let run = match catch_up {
        CatchUp::Skip => on_time.then_some(latest),
        CatchUp::Once => Some(latest),
    };
    Due::Missed {
        missed,
        latest,
        run,
    }
}

fn wait(schedule: &Schedule, now: DateTime<Utc>) -> Due {
    match schedule.next_after(now) {
        Some(next) => Due::Wait { next },
        // A pattern with no future fire (e.g. Feb 30) waits forever.
        None => Due::Wait {
            next: DateTime::<Utc>::MAX_UTC,
        },
    }
}
