//! `targets:` in sluice.yaml: what a target is (its URL, token, health path)
//! and how it is managed — at most one of `process` (a local child process
//! Sluice supervises), `systemd` (a unit, locally or on `ssh` hosts),
//! `compose` (a service of a docker compose project) or `kubernetes` (a
//! Deployment or StatefulSet). `ssh` is the inventory of hosts a target runs
//! on; alone, with `ssh.commands`, it is a driver of its own. The drivers
//! themselves live in [`crate::target`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::HttpUrl;
use crate::duration::Duration;
use crate::secret::Secret;
use crate::yaml::de::At;
use crate::yaml::{DeError, Pos};

/// A system the runbooks act on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Base URL of its HTTP interface (admin API for `sluice-engine`), e.g. `http://127.0.0.1:8080`.
    pub url: HttpUrl,
    /// Bearer token for that interface.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Path that answers 2xx when an instance is healthy (default `/health`;
    /// `""` when the target has no HTTP health check: readiness then comes
    /// from the driver's own state alone).
    #[serde(default = "default_health")]
    pub health: String,
    /// A local process Sluice supervises (driver `local`).
    #[serde(default)]
    pub process: Option<Process>,
    /// Hosts the target runs on, reached over SSH (driver `ssh` unless
    /// `systemd` or `compose` says how it is managed there).
    #[serde(default)]
    pub ssh: Option<Ssh>,
    /// A systemd unit, on every `ssh` host or on this machine.
    #[serde(default)]
    pub systemd: Option<Systemd>,
    /// A docker compose service, on every `ssh` host or on this machine.
    #[serde(default)]
    pub compose: Option<Compose>,
    /// A Deployment or StatefulSet, through the Kubernetes API.
    #[serde(default)]
    pub kubernetes: Option<Kubernetes>,
}

fn default_health() -> String {
    "/health".to_string()
}

/// A supervised local process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `sluice serve` starts it (instance 0) when the service starts, unless
    /// its URL already answers `/health`; the service stops what it started.
    #[serde(default)]
    pub autostart: bool,
}

/// An inventory of hosts and how to reach them. Sluice runs the system's
/// OpenSSH client (`ssh`) with `BatchMode` (never a prompt) and strict host
/// key checking.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// The hosts, in order (scaling uses them in this order).
    pub hosts: Vec<Host>,
    /// Login user (default: the ssh client's own default).
    #[serde(default)]
    pub user: Option<At<String>>,
    /// Port (default 22).
    #[serde(default)]
    pub port: Option<u16>,
    /// Private key file; without it the ssh agent and the client's defaults are used.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file (default: the client's, `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Accept and record the key of a host never seen before
    /// (`StrictHostKeyChecking=accept-new`). Off by default: an unknown host key is refused.
    #[serde(default)]
    pub accept_new_host_keys: bool,
    /// An ssh client config file (`ssh -F`), e.g. for `ProxyJump`.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// How long the TCP connection and SSH handshake may take (default 10s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// How long one remote command may run before it is killed (default 5m;
    /// an `ssh` step's own `timeout` bounds it too).
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Duration,
    /// The `ssh` program (default `ssh`).
    #[serde(default = "default_ssh_program")]
    pub program: String,
    /// Lifecycle commands (argv, run on each host) when neither `systemd`
    /// nor `compose` manages the target: `status` exits 0 when the service
    /// runs on that host (LSB: 3 when it does not).
    #[serde(default)]
    pub commands: Option<Commands>,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_ssh_program() -> String {
    "ssh".to_string()
}

/// One host of an inventory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Its name in runbooks (`hosts: [p1]`, `target: primary/p1`).
    pub name: At<String>,
    /// Address or DNS name (default: `name`).
    #[serde(default)]
    pub host: Option<At<String>>,
    /// Overrides `ssh.port`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Overrides `ssh.user`.
    #[serde(default)]
    pub user: Option<At<String>>,
    /// This host's URL (default: the target's URL with this host's address).
    #[serde(default)]
    pub url: Option<HttpUrl>,
    /// Labels a step selects hosts by (`hosts: {role: standby}`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Host {
    /// The address ssh connects to.
    pub fn address(&self) -> &str {
        self.host.as_ref().map_or(&self.name.value, |h| &h.value)
    }
}

/// Lifecycle commands of a plain `ssh` target, each an argv run on the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    #[serde(default)]
    pub start: Option<Vec<String>>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Exits 0 when the service runs on the host, non-zero when it does not.
    #[serde(default)]
    pub status: Option<Vec<String>>,
    /// Default: `stop` then `start`.
    #[serde(default)]
    pub restart: Option<Vec<String>>,
}

/// A systemd unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Systemd {
    /// Unit name, e.g. `sluice-engine.service`.
    pub unit: At<String>,
    /// Talk to the user's service manager (`systemctl --user`).
    #[serde(default)]
    pub user_manager: bool,
    /// The systemctl program and leading arguments (default `[systemctl]`;
    /// e.g. `[sudo, -n, systemctl]`).
    #[serde(default = "default_systemctl")]
    pub systemctl: Vec<String>,
}

fn default_systemctl() -> Vec<String> {
    vec!["systemctl".to_string()]
}

/// A docker compose service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    /// Compose project name (`-p`).
    pub project: At<String>,
    /// The service in that project.
    pub service: At<String>,
    /// Compose files (`-f`), in order; default: compose's own lookup in `project_dir`.
    #[serde(default)]
    pub files: Vec<String>,
    /// Project directory (`--project-directory`).
    #[serde(default)]
    pub project_dir: Option<String>,
    /// The compose program and leading arguments (default `[docker, compose]`).
    #[serde(default = "default_compose_command")]
    pub command: Vec<String>,
}

fn default_compose_command() -> Vec<String> {
    vec!["docker".to_string(), "compose".to_string()]
}

/// A Kubernetes workload, managed through the API server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// `Deployment` (default) or `StatefulSet`.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// The workload's name.
    pub name: At<String>,
    /// Namespace (default: the kubeconfig context's, the pod's own in-cluster, else `default`).
    #[serde(default)]
    pub namespace: Option<At<String>>,
    /// API server URL; with `token`/`token_file` and `ca_file`, instead of a kubeconfig.
    #[serde(default)]
    pub api_url: Option<HttpUrl>,
    /// A kubeconfig file (its current context, or `context`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig.
    #[serde(default)]
    pub context: Option<String>,
    /// Use the pod's service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    #[serde(default)]
    pub in_cluster: bool,
    /// Bearer token.
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the bearer token (re-read at every call: projected tokens rotate).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM file of the API server's CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Replicas `process.start` brings a stopped workload back to when it
    /// does not remember its own count (default 1).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Timeout of one API request (default 10s).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
}

fn one() -> u32 {
    1
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    /// The resource's plural in `apps/v1` paths.
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
        }
    }
}

/// Names that go into remote command lines are checked at load time, so a
/// quoting slip can never become an injection: letters, digits and `extra`.
fn plain(value: &At<String>, what: &str, extra: &str, p: &mut Vec<DeError>) {
    let v = &value.value;
    let bad = v.is_empty()
        || v.starts_with('-')
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if bad {
        p.push(DeError::new(
            value.pos,
            format!(
                "{what} `{v}` may hold only letters, digits and `{extra}` and not start with `-`"
            ),
        ));
    }
}

impl Target {
    /// The driver that manages it: `local`, `ssh`, `systemd`, `compose`,
    /// `kubernetes`, or `None` when nothing does (a target only read over HTTP).
    pub fn driver(&self) -> Option<&'static str> {
        if self.process.is_some() {
            Some("local")
        } else if self.systemd.is_some() {
            Some("systemd")
        } else if self.compose.is_some() {
            Some("compose")
        } else if self.kubernetes.is_some() {
            Some("kubernetes")
        } else if self.ssh.is_some() {
            Some("ssh")
        } else {
            None
        }
    }

    /// Cross-field problems of one target (`pos` is its node's position).
    pub fn check(&self, name: &str, pos: Pos, p: &mut Vec<DeError>) {
        let managers = [
            ("process", self.process.is_some()),
            ("systemd", self.systemd.is_some()),
            ("compose", self.compose.is_some()),
            ("kubernetes", self.kubernetes.is_some()),
        ];
        let set: Vec<&str> = managers.iter().filter(|m| m.1).map(|m| m.0).collect();
        if set.len() > 1 {
            p.push(DeError::new(
                pos,
                format!(
                    "target `{name}` has {}: a target is managed one way; pick one",
                    set.join(" and ")
                ),
            ));
        }
        if !self.health.is_empty() && !self.health.starts_with('/') {
            p.push(DeError::new(
                pos,
                format!("target `{name}`: `health` must be a path starting with `/` (or \"\")"),
            ));
        }
        if let Some(ssh) = &self.ssh {
            if self.process.is_some() || self.kubernetes.is_some() {
                p.push(DeError::new(
                    pos,
                    format!(
                        "target `{name}`: `ssh` hosts go with `systemd`, `compose` or `ssh.commands`, not with `{}`",
                        set[0]
                    ),
                ));
            }
            ssh.check(name, pos, p);
            if self.systemd.is_none() && self.compose.is_none() {
                if let Some(c) = &ssh.commands {
                    for (field, argv) in [
                        ("start", &c.start),
                        ("stop", &c.stop),
                        ("status", &c.status),
                        ("restart", &c.restart),
                    ] {
                        if argv
                            .as_ref()
                            .is_some_and(|a| a.is_empty() || a[0].is_empty())
                        {
                            p.push(DeError::new(
                                pos,
                                format!("target `{name}`: `ssh.commands.{field}` needs at least the program"),
                            ));
                        }
                    }
                }
            } else if ssh.commands.is_some() {
                p.push(DeError::new(
                    pos,
                    format!(
                        "target `{name}`: `ssh.commands` is for targets no `systemd`/`compose` manages; remove one"
                    ),
                ));
            }
        }
        if let Some(s) = &self.systemd {
            plain(&s.unit, "systemd unit", "@._:-\\", p);
            if s.systemctl.is_empty() || s.systemctl[0].is_empty() {
                p.push(DeError::new(
                    s.unit.pos,
                    "`systemctl` needs at least the program",
                ));
            }
        }
        if let Some(c) = &self.compose {
            plain(&c.project, "compose project", "_-", p);
            if c.project.value.chars().any(|ch| ch.is_ascii_uppercase()) {
                p.push(DeError::new(
                    c.project.pos,
                    "compose project names are lower case",
                ));
            }
            plain(&c.service, "compose service", "._-", p);
            if c.command.is_empty() || c.command[0].is_empty() {
                p.push(DeError::new(
                    c.project.pos,
                    "`command` needs at least the program",
                ));
            }
        }
        if let Some(k) = &self.kubernetes {
            dns_label(&k.name, "workload name", 253, p);
            if let Some(ns) = &k.namespace {
                dns_label(ns, "namespace", 63, p);
            }
            let sources = usize::from(k.api_url.is_some())
                + usize::from(k.kubeconfig.is_some())
                + usize::from(k.in_cluster);
            if sources != 1 {
                p.push(DeError::new(
                    k.name.pos,
                    format!(
                        "target `{name}`: set exactly one of `api_url`, `kubeconfig` and `in_cluster: true`"
                    ),
                ));
            }
            if k.api_url.is_some() && k.token.is_some() && k.token_file.is_some() {
                p.push(DeError::new(
                    k.name.pos,
                    format!("target `{name}`: set `token` or `token_file`, not both"),
                ));
            }
        }
    }

    /// The host named `host` of this target's inventory.
    pub fn host(&self, host: &str) -> Option<&Host> {
        self.ssh
            .as_ref()
            .and_then(|s| s.hosts.iter().find(|h| h.name.value == host))
    }

    /// The URL of one host: its own, or the target's with the host's address.
    pub fn host_url(&self, host: &Host) -> HttpUrl {
        if let Some(u) = &host.url {
            return u.clone();
        }
        let mut url = self.url.0.clone();
        if url.set_host(Some(host.address())).is_err() {
            return self.url.clone();
        }
        HttpUrl(url)
    }

    /// A target only read over HTTP, managed by nothing.
    pub fn at(url: HttpUrl, token: Option<Secret>) -> Target {
        Target {
            url,
            token,
            health: default_health(),
            process: None,
            ssh: None,
            systemd: None,
            compose: None,
            kubernetes: None,
        }
    }

    /// This target as seen through one of its hosts (for `target: name/host`).
    pub fn as_host(&self, host: &Host) -> Target {
        Target {
            health: self.health.clone(),
            ..Target::at(self.host_url(host), self.token.clone())
        }
    }
}

fn dns_label(v: &At<String>, what: &str, max: usize, p: &mut Vec<DeError>) {
    let s = &v.value;
    let ok = !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.']);
    if !ok {
        p.push(DeError::new(
            v.pos,
            format!(
                "{what} `{s}` is not a valid Kubernetes name (lower-case letters, digits, `-`, `.`; at most {max})"
            ),
        ));
    }
}

impl Ssh {
    fn check(&self, name: &str, pos: Pos, p: &mut Vec<DeError>) {
        if self.hosts.is_empty() {
            p.push(DeError::new(
                pos,
                format!("target `{name}`: `ssh.hosts` lists no host"),
            ));
        }
        if let Some(u) = &self.user {
            plain(u, "ssh user", "._-", p);
        }
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        for h in &self.hosts {
            plain(&h.name, "host name", "._-", p);
            if let Some(a) = &h.host {
                // DNS names, IPv4 and IPv6 literals.
                plain(a, "host address", "._-:", p);
            }
            if let Some(u) = &h.user {
                plain(u, "ssh user", "._-", p);
            }
            if seen.insert(&h.name.value, h.name.pos).is_some() {
                p.push(DeError::new(
                    h.name.pos,
                    format!("target `{name}`: host `{}` is listed twice", h.name.value),
                ));
            }
        }
        if self.connect_timeout.std().is_zero() || self.command_timeout.std().is_zero() {
            p.push(DeError::new(
                pos,
                format!("target `{name}`: ssh timeouts must be more than 0"),
            ));
        }
    }
}
