//! Step kinds: the [`Action`] trait every kind implements, and the one
//! registry ([`KINDS`]) that maps a YAML key (`http`, `engine.drain`, …) to its
//! parser. Each kind lives in its own file with its config struct beside it.
//! Retry, timeout, `if` and `continue_on_error` are applied around every step
//! by the executor, never inside a kind.

pub mod approval;
pub mod backup;
pub mod cleanup;
pub mod engine;
pub mod exec;
pub mod for_each;
pub mod http;
pub mod kafka;
pub mod notify;
pub mod parallel;
pub mod process;
pub mod restore;
pub mod runbook;
pub mod shell;
pub mod sleep;
pub mod ssh;
pub mod wait_until;

use std::fmt;
use std::sync::LazyLock;

use futures::future::BoxFuture;
use serde_json::Value as J;

use crate::exec::context::StepCx;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

/// Whose fault a failure is, which decides whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Network trouble, 5xx, 429, broker not reachable: may pass by itself.
    Transient,
    /// Wrong input, 4xx, a refused operation: retrying will not help.
    Permanent,
    /// The step's timeout elapsed (the step was cancelled).
    Timeout,
    /// An approval was rejected.
    Rejected,
}

/// A failed step: what happened and whether it is worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub failure: Failure,
    pub message: String,
}

impl StepError {
    pub fn transient(message: impl Into<String>) -> Self {
        StepError {
            failure: Failure::Transient,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError {
            failure: Failure::Permanent,
            message: message.into(),
        }
    }
}

pub type StepResult = Result<J, StepError>;

/// What a step refers to by name, checked by `sluice validate` against sluice.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Target,
    /// A target whose driver must carry out `op` (`process.*`), on selected hosts when `hosts`.
    Managed {
        op: crate::target::Op,
        hosts: bool,
    },
    /// A target with an `ssh` inventory (the `ssh` step), with the step's host selector.
    SshHosts,
    Channel,
    Kafka,
    Runbook,
}

impl fmt::Display for RefKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefKind::Target => "target",
            RefKind::Managed { .. } => "target",
            RefKind::SshHosts => "target",
            RefKind::Channel => "channel",
            RefKind::Kafka => "kafka cluster",
            RefKind::Runbook => "runbook",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Ref {
    pub kind: RefKind,
    pub name: At<String>,
    /// The host selector of a lifecycle step, checked against the target's inventory.
    pub hosts: Option<crate::target::HostSelector>,
}

impl Ref {
    pub fn new(kind: RefKind, name: &At<String>) -> Ref {
        Ref {
            kind,
            name: name.clone(),
            hosts: None,
        }
    }

    pub fn with_hosts(mut self, hosts: Option<crate::target::HostSelector>) -> Ref {
        self.hosts = hosts;
        self
    }
}

/// A step kind's decoded configuration, ready to run.
pub trait Action: Send + Sync + fmt::Debug {
    /// One line saying what the step does (for `sluice plan` and `--dry-run`).
    fn describe(&self) -> String;

    /// Names this step refers to.
    fn refs(&self) -> Vec<Ref> {
        Vec::new()
    }

    /// PromQL expressions this step evaluates (checked by validation).
    fn promql(&self) -> Vec<At<String>> {
        Vec::new()
    }

    /// Runs the step; the output becomes `steps.<id>.output`.
    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult>;
}

/// Parses a kind's config node; `lenient` accepts templates where numbers are expected.
pub type ParseFn =
    fn(name: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError>;

/// One step kind.
pub struct Kind {
    pub name: &'static str,
    pub summary: &'static str,
    /// Holds child steps under `steps:` (parallel, for_each).
    pub nests: bool,
    /// Top-level config fields whose templated values are shell-quoted (`shell`'s `script`).
    pub shell_fields: &'static [&'static str],
    pub parse: ParseFn,
    /// JSON Schema of the config.
    pub schema: fn(name: &'static str) -> J,
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.name)
    }
}

/// Every step kind, in documentation order.
pub static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    let mut kinds = vec![
        http::KIND,
        exec::KIND,
        shell::KIND,
        wait_until::KIND,
        sleep::KIND,
        backup::KIND,
        restore::KIND,
        cleanup::KIND,
        kafka::CHECK,
        kafka::LAG,
        kafka::RESET_OFFSETS,
        notify::KIND,
        approval::KIND,
        runbook::KIND,
        parallel::KIND,
        for_each::KIND,
        process::start::KIND,
        process::stop::KIND,
        process::restart::KIND,
        process::scale::KIND,
        process::status::KIND,
        ssh::KIND,
    ];
    kinds.extend(engine::kinds());
    kinds
});

pub fn lookup(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn names() -> Vec<String> {
    KINDS.iter().map(|k| k.name.to_string()).collect()
}

/// Decodes a kind's config with serde (positions kept).
pub fn decode<'a, T: serde::Deserialize<'a>>(node: &'a Node, lenient: bool) -> Result<T, DeError> {
    crate::yaml::from_node(node, lenient)
}

/// Truncates long text recorded from a step (bodies, process output).
pub fn clip(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    (s, true)
}
