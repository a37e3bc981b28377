//! The parts of `sluice.yaml` only the long-running service reads: its own
//! settings, alert notification routing (Alertmanager's `route`, receivers,
//! inhibition, silences), maintenance windows and webhook hooks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::HttpUrl;
use crate::duration::Duration;
use crate::secret::Secret;
use crate::yaml::de::At;

/// `service:` — the running service itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Directory for the alert `for` state and the audit log (default `.sluice`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The URL people reach this API at, used in links to runs in notifications.
    #[serde(default)]
    pub external_url: Option<HttpUrl>,
    /// Name of this instance in run records and the audit log (default: host name).
    #[serde(default)]
    pub instance: Option<String>,
    /// How long an instance's lease lasts without a heartbeat; after it a
    /// survivor takes over its runs (two instances on one PostgreSQL store).
    #[serde(default = "default_lease")]
    pub lease: Duration,
    /// Most runs executing at once; further runs wait for a slot.
    #[serde(default = "default_max_runs")]
    pub max_concurrent_runs: usize,
    /// On shutdown, how long running runs get to finish before they are left
    /// for the next start to resume or report.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// A fire observed up to this late still counts as on time.
    #[serde(default = "default_schedule_grace")]
    pub schedule_grace: Duration,
    /// Start with automatic runs switched off (the kill switch; also settable through the API).
    #[serde(default)]
    pub kill_switch: bool,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            data_dir: default_data_dir(),
            external_url: None,
            instance: None,
            lease: default_lease(),
            max_concurrent_runs: default_max_runs(),
            shutdown_grace: default_shutdown_grace(),
            schedule_grace: default_schedule_grace(),
            kill_switch: false,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".sluice")
}
fn default_lease() -> Duration {
    Duration::from_secs(10)
}
fn default_max_runs() -> usize {
    256
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}
fn default_schedule_grace() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}

/// `alerting:` — what happens to alerts besides triggering runbooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    /// Evaluation interval of rule groups that set none (default: the scrape interval).
    #[serde(default)]
    pub evaluation_interval: Option<Duration>,
    /// Labels added to every alert (`$externalLabels` in templates).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Notification routing tree (Alertmanager's `route`). Without it alerts are not notified.
    #[serde(default)]
    pub route: Option<RouteConfig>,
    /// Named receivers: lists of channels. A route's receiver may also be a channel name.
    #[serde(default)]
    pub receivers: BTreeMap<String, Vec<At<String>>>,
    /// Mute target alerts while a source alert fires.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitConfig>,
    /// Silences that always apply (API silences come on top).
    #[serde(default)]
    pub silences: Vec<SilenceConfig>,
    /// Don't notify about an alert while a runbook run it triggered is handling it.
    #[serde(default = "yes")]
    pub mute_handled: bool,
    /// Recurring windows during which matching alerts are silenced.
    #[serde(default)]
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// Authentication of the Alertmanager webhook receiver (`/api/v1/alerts/webhook`).
    #[serde(default)]
    pub webhook: Option<HookAuthConfig>,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            evaluation_interval: None,
            external_labels: BTreeMap::new(),
            route: None,
            receivers: BTreeMap::new(),
            inhibit_rules: Vec::new(),
            silences: Vec::new(),
            mute_handled: true,
            maintenance_windows: Vec::new(),
            webhook: None,
        }
    }
}

/// One node of the routing tree; unset options inherit from the parent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A receiver name (from `receivers`) or a channel name.
    #[serde(default)]
    pub receiver: Option<At<String>>,
    /// Alertmanager matchers, e.g. `severity="critical"`, `alertname=~"Engine.*"`.
    #[serde(default)]
    pub matchers: Vec<At<String>>,
    /// Labels that form a group; `['...']` groups by every label.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub group_wait: Option<Duration>,
    #[serde(default)]
    pub group_interval: Option<Duration>,
    #[serde(default)]
    pub repeat_interval: Option<Duration>,
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// Keep matching later siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    pub source_matchers: Vec<At<String>>,
    pub target_matchers: Vec<At<String>>,
    /// Labels that must have equal values in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    pub matchers: Vec<At<String>>,
    #[serde(default)]
    pub comment: String,
    /// RFC 3339; default: always.
    #[serde(default)]
    pub starts_at: Option<At<String>>,
    /// RFC 3339; default: never ends.
    #[serde(default)]
    pub ends_at: Option<At<String>>,
}

/// A recurring window (a cron line and a length) during which matching alerts
/// are silenced and, unless `suppress_runs: false`, trigger no runbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub name: String,
    /// When the window opens (crontab line).
    pub schedule: At<String>,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default)]
    pub timezone: Option<At<String>>,
    pub duration: Duration,
    /// Alerts it applies to (default: all).
    #[serde(default)]
    pub matchers: Vec<At<String>>,
    #[serde(default = "yes")]
    pub suppress_runs: bool,
}

/// How a sender authenticates: a bearer token or an HMAC-SHA256 signature of
/// the body (`X-Sluice-Signature: sha256=<hex>`, optionally with `X-Sluice-Timestamp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookAuthConfig {
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub hmac: Option<Secret>,
}

impl HookAuthConfig {
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.token.iter().chain(self.hmac.iter())
    }
}
