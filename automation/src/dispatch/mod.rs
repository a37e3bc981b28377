//! Alert notifications the way Alertmanager does them: a routing tree decides
//! the receiver, alerts are grouped (`group_by`) and the group is notified
//! after `group_wait`, again after `group_interval` when it changed, and every
//! `repeat_interval` while unchanged; resolved alerts are notified once;
//! silences and inhibition rules mute alerts at notification time.
//!
//! The [`Dispatcher`] is pure and clock-driven: alerts go in with
//! [`Dispatcher::ingest`], and [`Dispatcher::tick`] returns the notifications
//! due at the given instant. The service calls `tick` on a timer and hands the
//! notifications to the channels; tests drive time directly.

pub mod inhibit;
pub mod matcher;
pub mod route;
pub mod silence;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};

pub use inhibit::{InhibitRule, Inhibitor};
pub use matcher::{LabelSet, MatchOp, Matcher, MatcherError};
pub use route::{GroupBy, Route, RouteOpts};
pub use silence::{Silence, SilenceError, SilenceState, Silences};

/// Something that can mute an alert: silences and inhibition share this.
pub trait Muter {
    fn mutes(&self, labels: &LabelSet, now: DateTime<Utc>) -> bool;
}

/// Mutes nothing.
pub struct NoMute;

impl Muter for NoMute {
    fn mutes(&self, _: &LabelSet, _: DateTime<Utc>) -> bool {
        false
    }
}

/// An alert as the dispatcher sees it, from internal rules or the webhook.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alert {
    pub labels: LabelSet,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// Set when resolved (or when the sender set an expiry, as Prometheus does).
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
}

impl Alert {
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn is_resolved(&self, now: DateTime<Utc>) -> bool {
        self.ends_at.is_some_and(|e| e <= now)
    }
}

/// A stable 64-bit identity of a label set (FNV-1a over name/value pairs).
pub fn fingerprint(labels: &LabelSet) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// One notification to send to a receiver.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: LabelSet,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

/// What was last sent for a group (Alertmanager's notification log entry).
#[derive(Debug, Clone)]
struct Sent {
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    at: DateTime<Utc>,
}

#[derive(Debug)]
struct Group {
    opts: RouteOpts,
    group_labels: LabelSet,
    alerts: BTreeMap<u64, Alert>,
    next_flush: DateTime<Utc>,
    flushed: bool,
    sent: Option<Sent>,
}

/// Routes, groups, mutes and times alert notifications.
pub struct Dispatcher {
    root: Route,
    groups: HashMap<String, Group>,
    pub silences: Silences,
    inhibitor: Inhibitor,
}

impl Dispatcher {
    pub fn new(mut root: Route, inhibit_rules: Vec<InhibitRule>) -> Self {
        root.assign_ids("0".to_string());
        Self {
            root,
            groups: HashMap::new(),
            silences: Silences::new(),
            inhibitor: Inhibitor::new(inhibit_rules),
        }
    }

    /// Adds or updates an alert (same label set = same alert).
    pub fn ingest(&mut self, alert: Alert, now: DateTime<Utc>) {
        let fp = alert.fingerprint();
        for route in self.root.matching(&alert.labels) {
            let group_labels = route.opts.group_by.group_labels(&alert.labels);
            let key = group_key(&route.id, &group_labels);
            let group = self.groups.entry(key).or_insert_with(|| Group {
                opts: route.opts.clone(),
                group_labels,
                alerts: BTreeMap::new(),
                next_flush: now + to_chrono(route.opts.group_wait),
                flushed: false,
                sent: None,
            });
            // An alert that has been firing longer than group_wait needs no wait.
            if !group.flushed && alert.starts_at + to_chrono(group.opts.group_wait) <= now {
                group.next_flush = group.next_flush.min(now);
            }
            group.alerts.insert(fp, alert.clone());
        }
    }

    /// When the next notification could be due (for the service's timer).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.groups.values().map(|g| g.next_flush).min()
    }

    /// Returns the notifications due at `now` and advances the groups' timers.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Notification> {
        self.tick_with(now, &NoMute)
    }

    /// [`Dispatcher::tick`] with one more muter (alerts handled by a running
    /// runbook, maintenance windows), applied like silences.
    pub fn tick_with(&mut self, now: DateTime<Utc>, extra: &dyn Muter) -> Vec<Notification> {
        let all: Vec<&Alert> = self
            .groups
            .values()
            .flat_map(|g| g.alerts.values())
            .collect();
        self.inhibitor.update(all, now);
        let mut out = Vec::new();
        let mut empty = Vec::new();
        let mut keys: Vec<&String> = self.groups.keys().collect();
        keys.sort();
        let keys: Vec<String> = keys.into_iter().cloned().collect();
        for key in keys {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            if group.next_flush > now {
                continue;
            }
            group.flushed = true;
            group.next_flush = now + to_chrono(group.opts.group_interval);
            let visible: Vec<&Alert> = group
                .alerts
                .values()
                .filter(|a| {
                    !self.silences.mutes(&a.labels, now)
                        && !self.inhibitor.mutes(&a.labels, now)
                        && !extra.mutes(&a.labels, now)
                })
                .collect();
            let (resolved, firing): (Vec<&Alert>, Vec<&Alert>) =
                visible.into_iter().partition(|a| a.is_resolved(now));
            let firing_fps: BTreeSet<u64> = firing.iter().map(|a| a.fingerprint()).collect();
            let resolved_fps: BTreeSet<u64> = resolved.iter().map(|a| a.fingerprint()).collect();
            if needs_update(
                group.sent.as_ref(),
                &firing_fps,
                &resolved_fps,
                group.opts.send_resolved,
                to_chrono(group.opts.repeat_interval),
                now,
            ) {
                let resolved_out: Vec<Alert> = if group.opts.send_resolved {
                    resolved.iter().map(|a| (*a).clone()).collect()
                } else {
                    Vec::new()
                };
                // Without send_resolved an all-resolved group only clears the log.
                if !firing.is_empty() || !resolved_out.is_empty() {
                    out.push(Notification {
                        receiver: group.opts.receiver.clone(),
                        group_key: key.clone(),
                        group_labels: group.group_labels.clone(),
                        firing: firing.iter().map(|a| (*a).clone()).collect(),
                        resolved: resolved_out,
                    });
                }
                group.sent = Some(Sent {
                    firing: firing_fps,
                    resolved: resolved_fps,
                    at: now,
                });
            }
            // Resolved alerts have been dealt with: drop them from the group.
            group.alerts.retain(|_, a| !a.is_resolved(now));
            if group.alerts.is_empty() {
                empty.push(key);
            }
        }
        for key in empty {
            self.groups.remove(&key);
        }
        out
    }

    /// Alerts currently held, with whether they are muted now (for the API).
    pub fn alerts(&self, now: DateTime<Utc>) -> Vec<(Alert, bool)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for g in self.groups.values() {
            for (fp, a) in &g.alerts {
                if seen.insert(*fp) {
                    let muted =
                        self.silences.mutes(&a.labels, now) || self.inhibitor.mutes(&a.labels, now);
                    out.push((a.clone(), muted));
                }
            }
        }
        out
    }
}

/// Alertmanager's dedup rule: notify when firing alerts appeared that were not
/// in the last notification, when everything resolved after something fired,
/// when (with send_resolved) alerts resolved that were not reported yet, or
/// when the repeat interval has passed since the last notification.
fn needs_update(
    sent: Option<&Sent>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(sent) = sent else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&sent.firing) {
        return true;
    }
    if firing.is_empty() {
        return !sent.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&sent.resolved) {
        return true;
    }
    // Strictly before, as Alertmanager: the repeat lands on a group_interval tick.
    sent.at + repeat < now
}

fn group_key(route_id: &str, group_labels: &LabelSet) -> String {
    let labels: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{route_id}:{{{}}}", labels.join(","))
}

fn to_chrono(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests;
