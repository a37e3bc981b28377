//! Silences: label matchers with a time range, created by people (API) or by
//! Sluice itself (an alert handled by a running runbook, a maintenance window).

use chrono::{DateTime, Utc};

use super::Muter;
use super::matcher::{LabelSet, Matcher, matches_all};

#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl Silence {
    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    pub fn mutes(&self, labels: &LabelSet, now: DateTime<Utc>) -> bool {
        self.state(now) == SilenceState::Active && matches_all(&self.matchers, labels)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error("a silence must end after it starts")]
    EmptyRange,
    #[error("every matcher of a silence matches the empty string, so it would silence every alert")]
    MatchesEverything,
    #[error("no silence with id {0:?}")]
    Unknown(String),
}

/// The set of silences, expired ones kept for a retention period (so they can
/// be shown and re-created), then dropped.
#[derive(Debug, Default)]
pub struct Silences {
    items: Vec<Silence>,
}

impl Silences {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces (same id) a silence after validating it.
    pub fn upsert(&mut self, silence: Silence) -> Result<(), SilenceError> {
        if silence.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if silence.ends_at <= silence.starts_at {
            return Err(SilenceError::EmptyRange);
        }
        let empty = LabelSet::new();
        if silence.matchers.iter().all(|m| m.matches(&empty)) {
            return Err(SilenceError::MatchesEverything);
        }
        match self.items.iter_mut().find(|s| s.id == silence.id) {
            Some(existing) => *existing = silence,
            None => self.items.push(silence),
        }
        Ok(())
    }

    /// Expires a silence now (it stays listed as expired).
    pub fn expire(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), SilenceError> {
        let s = self
            .items
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| SilenceError::Unknown(id.to_string()))?;
        match s.state(now) {
            SilenceState::Active => s.ends_at = now,
            SilenceState::Pending => {
                s.starts_at = now;
                s.ends_at = now;
            }
            SilenceState::Expired => {}
        }
        Ok(())
    }

    /// Drops silences expired for longer than `retention`.
    pub fn gc(&mut self, now: DateTime<Utc>, retention: chrono::Duration) {
        self.items.retain(|s| s.ends_at + retention > now);
    }

    pub fn list(&self) -> &[Silence] {
        &self.items
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.items.iter().find(|s| s.id == id)
    }
}

impl Muter for Silences {
    fn mutes(&self, labels: &LabelSet, now: DateTime<Utc>) -> bool {
        self.items.iter().any(|s| s.mutes(labels, now))
    }
}
