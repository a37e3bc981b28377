//! Maintenance windows: recurring periods (a cron line and a length) during
//! which matching alerts are silenced and, unless configured otherwise, start
//! no runbook — so automation does not fight planned work.

use chrono::{DateTime, Utc};

use crate::config::MaintenanceWindow;
use crate::dispatch::{LabelSet, Matcher, Muter};
use crate::schedule::Schedule;

#[derive(Debug)]
struct Window {
    name: String,
    schedule: Schedule,
    length: chrono::Duration,
    matchers: Vec<Matcher>,
    suppress_runs: bool,
}

/// Every configured window.
#[derive(Debug, Default)]
pub struct Windows(Vec<Window>);

impl Windows {
    /// Compiles the configured windows (the config was checked at load).
    pub fn from_config(list: &[MaintenanceWindow]) -> Windows {
        Windows(
            list.iter()
                .filter_map(|w| {
                    let tz = w.timezone.as_ref().map(|t| t.value.as_str());
                    Some(Window {
                        name: w.name.clone(),
                        schedule: Schedule::parse(&w.schedule, tz).ok()?,
                        length: chrono::Duration::from_std(w.duration.std()).ok()?,
                        matchers: w
                            .matchers
                            .iter()
                            .filter_map(|m| Matcher::parse(m).ok())
                            .collect(),
                        suppress_runs: w.suppress_runs,
                    })
                })
                .collect(),
        )
    }

    /// The window open at `now` that covers an alert with `labels`.
    pub fn active(&self, labels: &LabelSet, now: DateTime<Utc>) -> Option<&str> {
        self.0
            .iter()
            .find(|w| {
                w.schedule
                    .last_at_or_before(now)
                    .is_some_and(|start| now < start + w.length)
                    && w.matchers.iter().all(|m| m.matches(labels))
            })
            .map(|w| w.name.as_str())
    }

    /// Whether runs triggered by such an alert are held back now.
    pub fn suppresses_runs(&self, labels: &LabelSet, now: DateTime<Utc>) -> Option<&str> {
        self.0
            .iter()
            .find(|w| {
                w.suppress_runs
                    && w.schedule
                        .last_at_or_before(now)
                        .is_some_and(|start| now < start + w.length)
                    && w.matchers.iter().all(|m| m.matches(labels))
            })
            .map(|w| w.name.as_str())
    }

    /// Names and whether each is open now (for the API).
    pub fn status(&self, now: DateTime<Utc>) -> Vec<serde_json::Value> {
        self.0
            .iter()
            .map(|w| {
                let start = w.schedule.last_at_or_before(now);
                let open = start.is_some_and(|s| now < s + w.length);
                serde_json::json!({
                    "name": w.name,
                    "open": open,
                    "opened_at": start.filter(|_| open).map(|s| s.to_rfc3339()),
                    "next_open": w.schedule.next_after(now).map(|s| s.to_rfc3339()),
                    "suppress_runs": w.suppress_runs,
                })
            })
            .collect()
    }
}

impl Muter for Windows {
    fn mutes(&self, labels: &LabelSet, now: DateTime<Utc>) -> bool {
        self.active(labels, now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Pos;
    use crate::yaml::de::At;

    fn at(s: &str) -> At<String> {
        At::new(Pos::UNKNOWN, s.to_string())
    }

    #[test]
    fn a_window_is_open_for_its_length_after_each_fire() {
        let w = Windows::from_config(&[MaintenanceWindow {
            name: "sunday".into(),
            schedule: at("0 2 * * 0"),
            timezone: None,
            duration: crate::duration::Duration::from_secs(7200),
            matchers: vec![at("severity=\"warning\"")],
            suppress_runs: true,
        }]);
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let warn: LabelSet = [("severity".to_string(), "warning".to_string())].into();
        let crit: LabelSet = [("severity".to_string(), "critical".to_string())].into();
        assert_eq!(w.active(&warn, t("2026-11-29T03:59:00Z")), Some("sunday"));
        assert_eq!(w.active(&crit, t("2026-11-29T03:59:00Z")), None);
        assert_eq!(w.active(&warn, t("2026-11-29T04:00:00Z")), None);
        assert_eq!(w.active(&warn, t("2026-11-29T01:59:00Z")), None);
        assert!(w.mutes(&warn, t("2026-11-29T02:00:00Z")));
    }
}
