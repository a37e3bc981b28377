//! The runbook test file format (`runbooks/tests/*.yaml`), in the spirit of
//! promtool's rule tests: a runbook, and cases each giving a trigger, mocked
//! step results and expectations. Expectations keep their positions, so a
//! failure points at the line that expected otherwise.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as J;

use crate::yaml::de::At;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The runbook under test, relative to this file.
    pub runbook: At<String>,
    /// A sluice.yaml to check and run it against (targets, channels), relative to this file.
    #[serde(default)]
    pub config: Option<At<String>>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: At<String>,
    /// What starts the run (default: manual).
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default)]
    pub params: BTreeMap<String, J>,
    #[serde(default)]
    pub mocks: Vec<MockSpec>,
    #[serde(default)]
    pub expect: Expect,
    /// Instead of one run: a sequence of automatic starts and the guard
    /// decision each gets (runs are taken to end at once).
    #[serde(default)]
    pub guards: Vec<GuardStep>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Manual,
    /// A firing alert.
    Alert(AlertTrigger),
    /// A schedule fire at an RFC 3339 instant.
    Schedule(String),
    /// A webhook with this JSON body.
    Webhook(J),
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTrigger {
    /// Alert name (default: the runbook's first `alert:` trigger).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub value: f64,
}

/// Results for the steps a mock matches (by path or id, or every step of a kind).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSpec {
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// One result for every call.
    #[serde(flatten)]
    pub result: MockResult,
    /// Or one per call (retries), the last repeating.
    #[serde(default)]
    pub results: Vec<MockResult>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockResult {
    #[serde(default)]
    pub output: Option<J>,
    /// Fails with this message (transient unless `permanent: true`).
    #[serde(default)]
    pub fail: Option<String>,
    #[serde(default)]
    pub permanent: bool,
    #[serde(default)]
    pub timeout: bool,
    /// An approval rejected.
    #[serde(default)]
    pub reject: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `succeeded` or `failed`.
    #[serde(default)]
    pub status: Option<At<String>>,
    /// The steps that ran (succeeded or failed), in the order they started.
    #[serde(default)]
    pub steps: Option<At<Vec<String>>>,
    /// Steps whose `if` was false.
    #[serde(default)]
    pub skipped: Option<At<Vec<String>>>,
    /// The step the run failed at.
    #[serde(default)]
    pub failed_step: Option<At<String>>,
    /// The run's error contains this.
    #[serde(default)]
    pub error_contains: Option<At<String>>,
    /// Rendered inputs of steps (by path): every field given must match
    /// (numbers and booleans also match their rendered text).
    #[serde(default)]
    pub inputs: BTreeMap<String, At<J>>,
    /// Text each step's rendered inputs contain (for values holding a run id or a time).
    #[serde(default)]
    pub inputs_contain: BTreeMap<String, At<Vec<String>>>,
    /// `false`: the trigger alert must not start this runbook (nothing runs).
    #[serde(default)]
    pub triggered: Option<At<bool>>,
    /// The run is refused before it starts (invalid parameters): the reason contains this.
    #[serde(default)]
    pub refused: Option<At<String>>,
    /// Attempts a step took (retries).
    #[serde(default)]
    pub attempts: BTreeMap<String, At<u32>>,
    /// Notifications that went out, in order (`channel`, and text it `contains`).
    #[serde(default)]
    pub notifications: Option<At<Vec<NotificationExpect>>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationExpect {
    pub channel: String,
    #[serde(default)]
    pub contains: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardStep {
    /// Offset from the first start: `0s`, `5m`, `1h`.
    pub at: crate::duration::Duration,
    /// The alert (default: the case's trigger alert).
    #[serde(default)]
    pub alert: Option<AlertTrigger>,
    /// How long the run it starts lasts (default: it ends at once), so a
    /// later start can find it active (`skip_active`, `queued`).
    #[serde(default)]
    pub runs_for: Option<crate::duration::Duration>,
    /// `start`, `cooldown`, `skip_active`, `queued`, `escalate`.
    pub expect: At<String>,
}
