//! Cross-field checks of `sluice.yaml`, done at load time so a bad reference
//! is reported with its position instead of failing at 3 a.m.: route
//! receivers and receiver channels exist, matchers parse, maintenance windows
//! have valid cron lines and zones, hooks authenticate, scrape entries name
//! targets or URLs.

use super::{Config, HookAuthConfig, RouteConfig};
use crate::dispatch::Matcher;
use crate::yaml::de::{At, did_you_mean};
use crate::yaml::{DeError, Node, Pos};

/// Position of the node at `path` under `root` (the deepest one that exists).
fn locate(root: &Node, path: &[&str]) -> Pos {
    let mut node = root;
    for key in path {
        match node.get(key) {
            Some(n) => node = n,
            None => break,
        }
    }
    node.pos
}

impl Config {
    /// Every cross-field problem, in no particular order; `root` is the
    /// parsed file, for positions of problems found through map keys.
    pub fn check(&self, root: &Node) -> Vec<DeError> {
        let at = |path: &[&str]| locate(root, path);
        let mut p = Vec::new();
        for (name, t) in &self.targets {
            t.check(name, at(&["targets", name]), &mut p);
        }
        for (name, ch) in &self.channels {
            match ch {
                crate::config::Channel::Webhook(w)
                    if w.secret.as_ref().is_some_and(|s| s.expose().len() < 16) =>
                {
                    p.push(DeError::new(
                        at(&["channels", name, "webhook", "secret"]),
                        format!("channel `{name}`: the signing secret is shorter than 16 characters; use a long random value"),
                    ));
                }
                crate::config::Channel::Pagerduty(pd) => {
                    if pd.routing_key.expose().trim().is_empty() {
                        p.push(DeError::new(
                            at(&["channels", name, "pagerduty", "routing_key"]),
                            format!("channel `{name}`: `routing_key` is empty"),
                        ));
                    }
                    if !crate::notify::pagerduty::SEVERITIES.contains(&pd.severity.as_str()) {
                        p.push(DeError::new(
                            at(&["channels", name, "pagerduty", "severity"]),
                            format!(
                                "channel `{name}`: severity `{}` is not one of {}",
                                pd.severity,
                                crate::notify::pagerduty::SEVERITIES.join(", ")
                            ),
                        ));
                    }
                }
                crate::config::Channel::Slack(sl) => {
                    slack(name, sl, &|f| at(&["channels", name, "slack", f]), &mut p);
                }
                _ => {}
            }
        }
        let a = &self.alerting;
        for (name, channels) in &a.receivers {
            if self.channels.contains_key(name) {
                let pos = at(&["alerting", "receivers", name]);
                p.push(DeError::new(
                    pos,
                    format!("receiver `{name}` has the name of a channel; pick another name"),
                ));
            }
            for ch in channels {
                self.check_channel(ch, &mut p);
            }
        }
        if let Some(route) = &a.route {
            if route.receiver.is_none() {
                p.push(DeError::new(
                    at(&["alerting", "route"]),
                    "the root route needs a `receiver`",
                ));
            }
            if !route.matchers.is_empty() {
                p.push(DeError::new(
                    route.matchers[0].pos,
                    "the root route matches every alert; it cannot have `matchers`",
                ));
            }
            self.check_route(route, &mut p);
        }
        for rule in &a.inhibit_rules {
            matchers(&rule.source_matchers, &mut p);
            matchers(&rule.target_matchers, &mut p);
        }
        for s in &a.silences {
            matchers(&s.matchers, &mut p);
            if s.matchers.is_empty() {
                p.push(DeError::new(
                    at(&["alerting", "silences"]),
                    "a silence needs at least one matcher",
                ));
            }
            for t in [&s.starts_at, &s.ends_at].into_iter().flatten() {
                if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                    p.push(DeError::new(
                        t.pos,
                        format!("`{}` is not an RFC 3339 time", t.value),
                    ));
                }
            }
        }
        for w in &a.maintenance_windows {
            let tz = w.timezone.as_ref().map(|t| t.value.as_str());
            if let Err(e) = crate::schedule::Schedule::parse(&w.schedule, tz) {
                let pos = match e {
                    crate::schedule::ScheduleError::TimeZone(_) => {
                        w.timezone.as_ref().map_or(w.schedule.pos, |t| t.pos)
                    }
                    _ => w.schedule.pos,
                };
                p.push(DeError::new(pos, e.to_string()));
            }
            matchers(&w.matchers, &mut p);
        }
        if let Some(h) = &a.webhook {
            hook_auth("alerting.webhook", h, at(&["alerting", "webhook"]), &mut p);
        }
        for (name, h) in &self.hooks {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                p.push(DeError::new(
                    at(&["hooks", name]),
                    format!("hook name `{name}`: use letters, digits, `-`, `_`, `.`"),
                ));
            }
            hook_auth(&format!("hooks.{name}"), h, at(&["hooks", name]), &mut p);
        }
        if let Some(m) = &self.metrics {
            for e in &m.scrape {
                let entry = &e.target;
                if e.interval.is_some_and(|i| i.std().is_zero()) {
                    p.push(DeError::new(
                        at(&["metrics", "scrape"]),
                        format!("metrics.scrape `{entry}`: interval must be more than 0"),
                    ));
                }
                if e.sample_limit == 0 {
                    p.push(DeError::new(
                        at(&["metrics", "scrape"]),
                        format!("metrics.scrape `{entry}`: sample_limit must be more than 0"),
                    ));
                }
                let is_url = entry.starts_with("http://") || entry.starts_with("https://");
                if is_url {
                    if url::Url::parse(entry).is_err() {
                        p.push(DeError::new(
                            at(&["metrics", "scrape"]),
                            format!("metrics.scrape: `{entry}` is not a valid URL"),
                        ));
                    }
                } else if self.target(entry).is_none() {
                    let hint = did_you_mean(entry, self.target_names())
                        .map(|b| format!(", did you mean `{b}`?"))
                        .unwrap_or_default();
                    p.push(DeError::new(
                        at(&["metrics", "scrape"]),
                        format!(
                            "metrics.scrape: `{entry}` is neither a target nor an http(s) URL{hint}"
                        ),
                    ));
                }
            }
            if m.interval.std().is_zero() {
                p.push(DeError::new(
                    at(&["metrics", "interval"]),
                    "metrics.interval must be more than 0",
                ));
            }
        }
        if self.service.max_concurrent_runs == 0 {
            p.push(DeError::new(
                at(&["service", "max_concurrent_runs"]),
                "service.max_concurrent_runs must be at least 1",
            ));
        }
        if self.service.lease.std() < std::time::Duration::from_secs(1) {
            p.push(DeError::new(
                at(&["service", "lease"]),
                "service.lease must be at least 1s",
            ));
        }
        p
    }

    fn check_route(&self, route: &RouteConfig, p: &mut Vec<DeError>) {
        if let Some(r) = &route.receiver
            && !self.alerting.receivers.contains_key(&r.value)
            && !self.channels.contains_key(&r.value)
        {
            let names = self
                .alerting
                .receivers
                .keys()
                .chain(self.channels.keys())
                .map(String::as_str);
            let hint = did_you_mean(r, names)
                .map(|b| format!(", did you mean `{b}`?"))
                .unwrap_or_default();
            p.push(DeError::new(
                r.pos,
                format!(
                    "unknown receiver `{}` (not under `alerting.receivers` nor `channels`){hint}",
                    r.value
                ),
            ));
        }
        matchers(&route.matchers, p);
        for child in &route.routes {
            self.check_route(child, p);
        }
    }

    fn check_channel(&self, ch: &At<String>, p: &mut Vec<DeError>) {
        if !self.channels.contains_key(&ch.value) {
            let hint = did_you_mean(ch, self.channels.keys().map(String::as_str))
                .map(|b| format!(", did you mean `{b}`?"))
                .unwrap_or_default();
            p.push(DeError::new(
                ch.pos,
                format!("unknown channel `{}`{hint}", ch.value),
            ));
        }
    }
}

/// A Slack channel is one mode or the other, and an interactive app has
/// everything a click needs: who may click, and the secret that proves it.
fn slack(
    name: &str,
    s: &crate::config::SlackChannel,
    at: &dyn Fn(&str) -> Pos,
    p: &mut Vec<DeError>,
) {
    let mut err = |field: &str, m: String| {
        p.push(DeError::new(at(field), format!("channel `{name}`: {m}")));
    };
    match (&s.webhook_url, &s.bot_token) {
        (None, None) => err(
            "webhook_url",
            "give `webhook_url` (incoming webhook) or `bot_token` and `channel` (a Slack app)"
                .into(),
        ),
        (Some(_), Some(_)) => err(
            "bot_token",
            "give `webhook_url` or `bot_token`, not both".into(),
        ),
        (Some(_), None) => {
            for (field, set) in [
                ("channel", s.channel.is_some()),
                ("signing_secret", s.signing_secret.is_some()),
                ("approvers", !s.approvers.is_empty()),
            ] {
                if set {
                    err(
                        field,
                        format!(
                            "`{field}` needs a Slack app (`bot_token`); an incoming webhook posts to its own channel and has no buttons"
                        ),
                    );
                }
            }
        }
        (None, Some(_)) => {
            if s.channel.as_deref().is_none_or(|c| c.trim().is_empty()) {
                err(
                    "channel",
                    "a Slack app needs `channel` (an ID such as C0123ABCD, or #name) to post to"
                        .into(),
                );
            }
            match (&s.signing_secret, s.approvers.is_empty()) {
                (Some(k), _) if k.expose().trim().is_empty() => {
                    err("signing_secret", "`signing_secret` is empty".into());
                }
                (Some(_), true) => err(
                    "approvers",
                    "approval buttons need `approvers`: the Slack user IDs allowed to decide, each with the name recorded on the run".into(),
                ),
                (None, false) => err(
                    "signing_secret",
                    "`approvers` need the app's `signing_secret`, which proves a click came from Slack".into(),
                ),
                _ => {}
            }
            for id in s.approvers.keys() {
                if !id.starts_with(['U', 'W']) || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                    err(
                        "approvers",
                        format!("`{id}` is not a Slack user ID (U… or W…)"),
                    );
                }
            }
        }
    }
}

fn matchers(list: &[At<String>], p: &mut Vec<DeError>) {
    for m in list {
        if let Err(e) = Matcher::parse(m) {
            p.push(DeError::new(m.pos, e.to_string()));
        }
    }
}

fn hook_auth(what: &str, h: &HookAuthConfig, pos: Pos, p: &mut Vec<DeError>) {
    let n = usize::from(h.token.is_some()) + usize::from(h.hmac.is_some());
    if n != 1 {
        p.push(DeError::new(
            pos,
            format!("{what}: set exactly one of `token` and `hmac`"),
        ));
    }
    for s in h.secrets() {
        if s.expose().len() < 16 {
            p.push(DeError::new(
                pos,
                format!(
                    "{what}: the secret is shorter than 16 characters; use a long random value"
                ),
            ));
        }
    }
}
