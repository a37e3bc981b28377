//! Cron schedules: crontab lines evaluated with POSIX semantics in an IANA time
//! zone, and the decision of what to do when fires were missed.
//!
//! `croner` gives the cron semantics users expect from crontab: five fields
//! (seconds optional), `@daily`/`@weekly`/`@monthly`, Sunday as 0 or 7, and
//! day-of-month OR day-of-week when both are restricted. It also resolves DST:
//! a wall-clock time skipped by a spring-forward gap fires at the first instant
//! after the gap, and a time repeated by a fall-back overlap fires once.

mod catch_up;
pub mod scheduler;

pub use catch_up::{CatchUp, Due, due};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::fmt;

/// Why a schedule line was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron { expr: String, reason: String },
    #[error("unknown time zone {0:?} (expected an IANA name such as \"Europe/Berlin\" or \"UTC\")")]
    TimeZone(String),
}

/// A parsed cron line bound to a time zone.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.expr, self.tz)
    }
}

impl Schedule {
    /// Parses a crontab line (`"0 2 * * 0"`, `"*/30 * * * * *"`, `"@daily"`) in
    /// the given IANA zone, UTC when `tz` is `None`.
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match tz {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expr).map_err(|e| ScheduleError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            expr: expr.to_string(),
            cron,
            tz,
        })
    }

    /// The line as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone the line is evaluated in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last fire at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The next `n` fires strictly after `t` (for `sluice schedule`).
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = t;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
