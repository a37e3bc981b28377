//! The answer to "why didn't it run?": every time a trigger asked for a run,
//! what admission decided, newest first. Kept in memory (a bounded ring per
//! instance), served at `GET /api/v1/decisions` and shown in the console; the
//! `sluice_trigger_decisions_total` counter keeps the totals for Prometheus.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::runner::Decision;

/// How many decisions an instance remembers.
pub const CAPACITY: usize = 2000;

/// One admission decision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecisionEntry {
    pub at: DateTime<Utc>,
    pub runbook: String,
    /// `alert`, `schedule`, `webhook`, `manual`.
    pub trigger: String,
    pub decision: Decision,
    /// The run started, queued, or the one this request duplicates.
    pub run_id: Option<String>,
    pub detail: Option<String>,
    /// Guard scope (alert fingerprint, target); none for a start by a person.
    pub scope: Option<String>,
}

/// A bounded log of decisions.
#[derive(Debug, Default)]
pub struct DecisionLog {
    entries: Mutex<VecDeque<DecisionEntry>>,
}

impl DecisionLog {
    pub fn push(&self, entry: DecisionEntry) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() == CAPACITY {
            e.pop_back();
        }
        e.push_front(entry);
    }

    /// Newest first, at most `limit`, optionally of one runbook only.
    pub fn recent(&self, limit: usize, runbook: Option<&str>) -> Vec<DecisionEntry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| runbook.is_none_or(|r| d.runbook == r))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(runbook: &str, n: usize) -> DecisionEntry {
        DecisionEntry {
            at: Utc::now(),
            runbook: runbook.into(),
            trigger: "alert".into(),
            decision: Decision::Cooldown,
            run_id: None,
            detail: Some(format!("#{n}")),
            scope: Some("fp".into()),
        }
    }

    #[test]
    fn keeps_the_newest_first_and_forgets_the_oldest_past_capacity() {
        let log = DecisionLog::default();
        for n in 0..CAPACITY + 5 {
            log.push(entry(if n % 2 == 0 { "a" } else { "b" }, n));
        }
        let all = log.recent(usize::MAX, None);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(
            all[0].detail.as_deref(),
            Some(&*format!("#{}", CAPACITY + 4))
        );
        assert_eq!(all[CAPACITY - 1].detail.as_deref(), Some("#5"));
        let b = log.recent(3, Some("b"));
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|d| d.runbook == "b"));
        assert_eq!(b[0].detail.as_deref(), Some(&*format!("#{}", CAPACITY + 3)));
    }
}
