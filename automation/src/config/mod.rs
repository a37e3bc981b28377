//! `sluice.yaml`: the service configuration — engine targets, Kafka clusters,
//! metrics, rule and runbook paths, notification channels, store and API.
//!
//! `${NAME}` in any string is replaced by the environment variable `NAME`
//! (`$${` writes a literal `${`); a missing variable is an error at its
//! position. `${FILE:path}` is replaced by a file's content (relative to the
//! config file's folder; one trailing newline dropped), the container
//! secrets convention (`/run/secrets/…`), and `${CREDENTIAL:name}` by the
//! systemd credential `name` (`$CREDENTIALS_DIRECTORY/name`, from the unit's
//! `LoadCredential=`), and `${VAULT:path#key}` by a field of a Vault/OpenBao
//! KV v2 secret (see `vault.rs`). Tokens, passwords and webhook URLs are
//! [`Secret`]s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diagnostic::Diagnostic;
use crate::duration::Duration;
use crate::secret::{Redactor, Secret};
use crate::yaml::{self, DeError, Node, Pos};

mod channel;
mod check;
pub mod schema;
mod service;
mod target;
mod vault;

pub use channel::{
    Channel, EmailChannel, PagerDutyChannel, SlackChannel, Smtp, SmtpTls, TeamsChannel,
    WebhookChannel,
};
pub use service::{
    Alerting, HookAuthConfig, InhibitConfig, MaintenanceWindow, RouteConfig, ServiceSettings,
    SilenceConfig,
};
pub use target::{
    Commands, Compose, Host, Kubernetes, Process, Ssh, Systemd, Target, WorkloadKind,
};
pub use vault::{AppRole, VaultConfig};

/// The whole service configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Engines by name.
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
    /// Kafka clusters by name.
    #[serde(default)]
    pub kafka: BTreeMap<String, KafkaCluster>,
    /// Where metrics come from.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// Alert rule files or directories.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Runbook files or directories.
    #[serde(default)]
    pub runbooks: Vec<PathBuf>,
    /// Notification channels by name.
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    /// Run history store: `sqlite://path` (default `sqlite://sluice.db`) or `postgres://…`.
    #[serde(default)]
    pub store: Option<Secret>,
    /// The HTTP API.
    #[serde(default)]
    pub api: Api,
    /// Environment variables runbook templates may read as `env.NAME`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Named secrets runbook templates may use as `secrets.NAME` (redacted in run records).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// The long-running service (`sluice serve`).
    #[serde(default)]
    pub service: ServiceSettings,
    /// Alert notifications: routing, receivers, inhibition, silences, maintenance windows.
    #[serde(default)]
    pub alerting: Alerting,
    /// Webhook triggers `POST /api/v1/hooks/{name}`, each with its sender authentication.
    #[serde(default)]
    pub hooks: BTreeMap<String, HookAuthConfig>,
    /// Every host of every target's inventory as a target of its own,
    /// `name/host` (its URL, the target's token): filled at load time.
    #[serde(skip)]
    pub host_targets: BTreeMap<String, Target>,
    /// Vault / OpenBao for `${VAULT:path#key}`.
    #[serde(default)]
    pub vault: Option<VaultConfig>,
}

/// A Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCluster {
    /// `host:port,host:port`.
    pub brokers: String,
    /// Extra librdkafka properties (e.g. security settings).
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
}

/// Metrics source: scrape targets, or a remote Prometheus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Scrape interval.
    #[serde(default = "default_scrape_interval")]
    pub interval: Duration,
    /// Target names (from `targets`) or URLs of `/metrics` endpoints to
    /// scrape, each either as a string or with per-target settings.
    #[serde(default)]
    pub scrape: Vec<ScrapeEntry>,
    /// Query a remote Prometheus instead of scraping.
    #[serde(default)]
    pub prometheus_url: Option<HttpUrl>,
    /// `job` label of scraped targets (the shipped rules use `sluice-engine`).
    #[serde(default = "default_job")]
    pub job: String,
    /// How long scraped samples are kept in memory.
    #[serde(default = "default_retention")]
    pub retention: Duration,
}

/// One `metrics.scrape` entry: `primary`, a URL, or
/// `{target: primary, interval: 1s, honor_labels: true, sample_limit: 5000}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeEntry {
    /// A name from `targets` or an http(s) URL of a `/metrics` endpoint.
    pub target: String,
    /// Overrides `metrics.interval` for this target.
    pub interval: Option<Duration>,
    /// Per-scrape timeout (default: the interval, at most 10 s).
    pub timeout: Option<Duration>,
    /// Keep scraped labels that collide with target labels (Prometheus' `honor_labels`).
    pub honor_labels: bool,
    /// Use timestamps the exposition carries (default true).
    pub honor_timestamps: bool,
    /// A scrape with more samples fails as a whole (`up` 0), as Prometheus' `sample_limit`.
    pub sample_limit: usize,
    /// Extra labels on every series of this target.
    pub labels: BTreeMap<String, String>,
}

/// Samples one scrape may carry unless `sample_limit` says otherwise: with
/// `retention`, what bounds the memory scraped series take.
pub const DEFAULT_SAMPLE_LIMIT: usize = 200_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrapeSpec {
    target: String,
    #[serde(default)]
    interval: Option<Duration>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    honor_labels: bool,
    #[serde(default = "yes")]
    honor_timestamps: bool,
    #[serde(default)]
    sample_limit: Option<usize>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl ScrapeEntry {
    /// An entry with every default.
    pub fn named(target: impl Into<String>) -> Self {
        ScrapeEntry {
            target: target.into(),
            interval: None,
            timeout: None,
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: DEFAULT_SAMPLE_LIMIT,
            labels: BTreeMap::new(),
        }
    }
}

impl<'de> Deserialize<'de> for ScrapeEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ScrapeEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a target name, a URL, or a map with `target`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ScrapeEntry, E> {
                Ok(ScrapeEntry::named(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ScrapeEntry, A::Error> {
                let s = ScrapeSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ScrapeEntry {
                    target: s.target,
                    interval: s.interval,
                    timeout: s.timeout,
                    honor_labels: s.honor_labels,
                    honor_timestamps: s.honor_timestamps,
                    sample_limit: s.sample_limit.unwrap_or(DEFAULT_SAMPLE_LIMIT),
                    labels: s.labels,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn default_job() -> String {
    "sluice-engine".to_string()
}

fn default_retention() -> Duration {
    Duration::from_secs(6 * 3600)
}

fn default_scrape_interval() -> Duration {
    Duration::from_secs(15)
}

/// An absolute `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub url::Url);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let url = url::Url::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid URL `{s}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(serde::de::Error::custom(format!(
                "URL `{s}` must be http:// or https://"
            )));
        }
        Ok(HttpUrl(url))
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: default_listen(),
            tokens: Vec::new(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8081".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it (recorded in the audit log).
    pub name: String,
    pub token: Secret,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Config {
    /// Reads and checks a config file; every problem is a diagnostic.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![Diagnostic::whole_file(path, format!("cannot read: {e}"))])?;
        Config::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `env` resolves `${NAME}`.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<Diagnostic>> {
        let diag = |pos: Pos, msg: String| {
            Diagnostic::new(path, pos.line as usize, pos.column as usize, msg)
        };
        let node = yaml::parse(text).map_err(|e| vec![diag(e.pos, e.message)])?;
        let base = path.parent().unwrap_or(Path::new("."));
        let node = substitute_env(&node, env, base).map_err(|e| vec![diag(e.pos, e.message)])?;
        let node = vault::resolve(&node).map_err(|e| vec![diag(e.pos, e.message)])?;
        let mut config: Config = if node.value == yaml::Value::Null {
            Config::default()
        } else {
            yaml::from_node(&node, false).map_err(|e| vec![diag(e.pos, e.message)])?
        };
        config.host_targets = config
            .targets
            .iter()
            .flat_map(|(name, t)| {
                t.ssh.iter().flat_map(move |s| {
                    s.hosts
                        .iter()
                        .map(move |h| (format!("{name}/{}", h.name.value), t.as_host(h)))
                })
            })
            .collect();
        let problems = config.check(&node);
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|e| diag(e.pos, e.message))
                .collect());
        }
        Ok(config)
    }

    /// A target by name: one of `targets`, or `name/host` for one host of a target's inventory.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets
            .get(name)
            .or_else(|| self.host_targets.get(name))
    }

    /// Every name [`Config::target`] resolves.
    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets
            .keys()
            .chain(self.host_targets.keys())
            .map(String::as_str)
    }

    /// Every secret in the config, for scrubbing records.
    pub fn redactor(&self) -> Redactor {
        let mut secrets: Vec<&Secret> = Vec::new();
        secrets.extend(self.targets.values().filter_map(|t| t.token.as_ref()));
        secrets.extend(
            self.targets
                .values()
                .filter_map(|t| t.kubernetes.as_ref()?.token.as_ref()),
        );
        secrets.extend(self.kafka.values().flat_map(|k| k.properties.values()));
        for ch in self.channels.values() {
            secrets.extend(ch.secrets());
        }
        secrets.extend(self.store.as_ref());
        secrets.extend(self.api.tokens.iter().map(|t| &t.token));
        secrets.extend(self.secrets.values());
        secrets.extend(self.hooks.values().flat_map(|h| h.secrets()));
        secrets.extend(self.alerting.webhook.iter().flat_map(|h| h.secrets()));
        secrets.extend(self.vault.iter().flat_map(|v| v.secrets()));
        Redactor::new(secrets)
    }
}

/// Replaces `${NAME}`, `${FILE:path}` and `${CREDENTIAL:name}` in every string scalar.
fn substitute_env(
    node: &Node,
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
) -> Result<Node, DeError> {
    node.try_map_str(&mut |s, pos| expand(s, env, base).map_err(|m| DeError::new(pos, m)))
}

/// Largest secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret file's content without its one trailing newline.
fn secret_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read secret file `{shown}`: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "secret file `{shown}` is not a regular file of at most {MAX_SECRET_FILE} bytes"
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file `{shown}`: {e}"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// What `${…}` names: an environment variable, a file or a systemd credential.
fn lookup(name: &str, env: &dyn Fn(&str) -> Option<String>, base: &Path) -> Result<String, String> {
    if name.starts_with("VAULT:") {
        // Read in a second pass, once the `vault:` section is known.
        return Ok(format!("${{{name}}}"));
    }
    if let Some(file) = name.strip_prefix("FILE:") {
        if file.is_empty() {
            return Err("`${FILE:}` names no file".into());
        }
        return secret_file(&base.join(file));
    }
    if let Some(cred) = name.strip_prefix("CREDENTIAL:") {
        if cred.is_empty() || cred.contains('/') || cred == ".." {
            return Err(format!("invalid systemd credential name `{cred}`"));
        }
        let dir = env("CREDENTIALS_DIRECTORY").ok_or_else(|| {
            format!("`${{CREDENTIAL:{cred}}}` needs $CREDENTIALS_DIRECTORY (set by systemd for a unit with LoadCredential=)")
        })?;
        return secret_file(&Path::new(&dir).join(cred));
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid environment variable name `{name}`"));
    }
    env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))
}

fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>, base: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$${` for a literal)".to_string())?;
            out.push_str(&lookup(&tail[..end], env, base)?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret-value".to_string())
    }

    #[test]
    fn substitutes_env_and_masks_secrets() {
        let text = "targets:\n  primary:\n    url: http://127.0.0.1:8080\n    token: ${TOKEN}\n";
        let cfg = Config::parse(Path::new("s.yaml"), text, &env).unwrap();
        let t = &cfg.targets["primary"];
        assert_eq!(t.token.as_ref().unwrap().expose(), "s3cret-value");
        assert!(!format!("{cfg:?}").contains("s3cret-value"));
        assert_eq!(cfg.redactor().text("Bearer s3cret-value"), "Bearer ***");
    }

    #[test]
    fn scrape_entries_are_names_urls_or_maps_with_their_own_settings() {
        let text = "targets:\n  primary:\n    url: http://127.0.0.1:8080\nmetrics:\n  interval: 5s\n  scrape:\n    - primary\n    - {target: 'http://127.0.0.1:9100/metrics', interval: 1s, honor_labels: true, sample_limit: 500, labels: {role: node}}\n";
        let cfg = Config::parse(Path::new("s.yaml"), text, &env).unwrap();
        let m = cfg.metrics.unwrap();
        assert_eq!(m.scrape[0], ScrapeEntry::named("primary"));
        assert_eq!(m.scrape[0].sample_limit, DEFAULT_SAMPLE_LIMIT);
        let node = &m.scrape[1];
        assert_eq!(
            node.interval.unwrap().std(),
            std::time::Duration::from_secs(1)
        );
        assert!(node.honor_labels && node.honor_timestamps);
        assert_eq!(node.sample_limit, 500);
        assert_eq!(node.labels["role"], "node");

        let bad = "metrics:\n  scrape:\n    - {target: x, intervall: 1s}\n";
        let errs = Config::parse(Path::new("s.yaml"), bad, &env).unwrap_err();
        let msg = errs[0].to_string();
        assert!(msg.starts_with("s.yaml:3:"), "{msg}");
        assert!(msg.contains("intervall"), "{msg}");
    }

    #[test]
    fn secrets_come_from_files_and_systemd_credentials_and_stay_masked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-s3cret\n").unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(
            creds.join("slack"),
            "https://hooks.slack.com/services/T/B/cred",
        )
        .unwrap();
        let path = dir.path().join("sluice.yaml");
        let creds_dir = creds.display().to_string();
        let env = move |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| creds_dir.clone());
        let text = "targets:\n  primary:\n    url: http://x\n    token: ${FILE:token}\nchannels:\n  ops:\n    slack: {webhook_url: '${CREDENTIAL:slack}'}\n";
        let cfg = Config::parse(&path, text, &env).unwrap();
        assert_eq!(
            cfg.targets["primary"].token.as_ref().unwrap().expose(),
            "file-s3cret"
        );
        let Channel::Slack(s) = &cfg.channels["ops"] else {
            panic!("slack")
        };
        assert!(s.webhook_url.as_ref().unwrap().expose().ends_with("/cred"));
        assert!(!format!("{cfg:?}").contains("file-s3cret"));
        assert_eq!(cfg.redactor().text("t=file-s3cret"), "t=***");

        // A missing file, a credential name with a slash, no credentials dir.
        for (value, want) in [
            ("${FILE:nope}", "cannot read secret file"),
            ("${CREDENTIAL:../token}", "invalid systemd credential name"),
        ] {
            let text = format!("targets:\n  primary:\n    url: http://x\n    token: '{value}'\n");
            let errs = Config::parse(&path, &text, &env).unwrap_err();
            let msg = errs[0].to_string();
            assert!(msg.contains(":4:") && msg.contains(want), "{msg}");
        }
        let text = "targets:\n  primary:\n    url: http://x\n    token: ${CREDENTIAL:slack}\n";
        let errs = Config::parse(&path, text, &|_| None).unwrap_err();
        assert!(
            errs[0].to_string().contains("LoadCredential="),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn missing_env_points_at_the_value() {
        let text = "targets:\n  primary:\n    url: http://x\n    token: ${NOPE}\n";
        let errs = Config::parse(Path::new("s.yaml"), text, &env).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "s.yaml:4:12: environment variable `NOPE` is not set"
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_position() {
        let text = "channels:\n  ops:\n    slack:\n      webhook: http://x\n";
        let errs = Config::parse(Path::new("s.yaml"), text, &env).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "s.yaml:4:7: unknown field `webhook`, did you mean `webhook_url`?"
        );
    }

    #[test]
    fn the_shipped_configurations_parse() {
        let env = |name: &str| Some(format!("value-of-{name}-long-enough"));
        for (name, text) in [
            ("sluice.yaml", include_str!("../../../sluice.yaml")),
            (
                "deploy/sluice.compose.yaml",
                include_str!("../../../deploy/sluice.compose.yaml"),
            ),
        ] {
            let cfg = Config::parse(Path::new(name), text, &env)
                .unwrap_or_else(|d| panic!("{name}: {d:?}"));
            assert!(cfg.targets.contains_key("primary"), "{name}");
        }
    }

    #[test]
    fn cross_field_problems_point_at_their_place() {
        let text = "channels:\n  ops: {slack: {webhook_url: http://x}}\nalerting:\n  route:\n    receiver: opz\n  maintenance_windows:\n    - {name: w, schedule: '61 * * * *', duration: 1h}\nhooks:\n  deploy: {token: short}\n";
        let errs = Config::parse(Path::new("s.yaml"), text, &env).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|m| m.starts_with("s.yaml:5:15: unknown receiver `opz`")
                    && m.contains("did you mean `ops`?")),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|m| m.starts_with("s.yaml:7:") && m.contains("invalid cron")),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|m| m.starts_with("s.yaml:9:") && m.contains("shorter than 16")),
            "{shown:#?}"
        );
    }

    #[test]
    fn literal_dollar_brace() {
        assert_eq!(
            expand("a$${b}c $x", &env, Path::new(".")).unwrap(),
            "a${b}c $x"
        );
    }
}
