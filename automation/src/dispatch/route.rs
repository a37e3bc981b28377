//! The routing tree: which receiver gets an alert, and how alerts are grouped
//! and timed on the way there — Alertmanager's `route` block.

use std::time::Duration;

use super::matcher::{LabelSet, Matcher, matches_all};

/// Which labels form a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label, i.e. one group per alert.
    All,
    /// The listed labels (empty: one group for everything on the route).
    Labels(Vec<String>),
}

impl GroupBy {
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        match self {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// Timings and grouping, inherited by child routes unless they set their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOpts {
    pub receiver: String,
    pub group_by: GroupBy,
    /// Wait before the first notification of a new group (collects its first alerts).
    pub group_wait: Duration,
    /// Wait before notifying about alerts added to a group already notified.
    pub group_interval: Duration,
    /// Wait before re-sending a notification whose alerts did not change.
    pub repeat_interval: Duration,
    /// Whether resolved alerts are notified.
    pub send_resolved: bool,
}

impl Default for RouteOpts {
    /// Alertmanager's defaults.
    fn default() -> Self {
        Self {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the tree (`0`, `0/1`, …): part of every group key.
    pub id: String,
    pub matchers: Vec<Matcher>,
    /// Keep looking at later siblings after this route matched.
    pub continue_matching: bool,
    pub opts: RouteOpts,
    pub routes: Vec<Route>,
}

impl Route {
    /// The routes an alert goes to: depth first, first matching child unless it
    /// says `continue`; a node none of whose children match takes it itself.
    pub fn matching(&self, labels: &LabelSet) -> Vec<&Route> {
        if !matches_all(&self.matchers, labels) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for child in &self.routes {
            let matched = child.matching(labels);
            let any = !matched.is_empty();
            out.extend(matched);
            if any && !child.continue_matching {
                break;
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// Numbers the tree (`0`, `0/0`, `0/1`, …).
    pub fn assign_ids(&mut self, id: String) {
        for (i, child) in self.routes.iter_mut().enumerate() {
            child.assign_ids(format!("{id}/{i}"));
        }
        self.id = id;
    }

    /// Every receiver named anywhere in the tree (for validation).
    pub fn receivers(&self) -> Vec<&str> {
        let mut out = vec![self.opts.receiver.as_str()];
        for c in &self.routes {
            out.extend(c.receivers());
        }
        out
    }
}
