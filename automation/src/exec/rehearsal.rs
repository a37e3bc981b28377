//! A rehearsal: a run in which no step acts. Every leaf step's result comes
//! from a mock (by step path, step id or kind; a sequence serves retries),
//! notifications are recorded instead of sent, and a step without a mock
//! fails with a message saying so — so `sluice test` can run a runbook's
//! real control flow (templates, `if`, retries, `on_failure`, nesting) with
//! no side effect. Nesting kinds (`parallel`, `for_each`) run for real; their
//! children are mocked. `sleep` is answered at once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value as J, json};

use super::steps::{Failure, StepError, StepResult};

/// One mocked result.
#[derive(Debug, Clone, PartialEq)]
pub enum Mocked {
    Output(J),
    /// A failure (`transient` decides whether retries apply).
    Fail {
        message: String,
        transient: bool,
    },
    Timeout,
    /// An approval rejected.
    Rejected,
}

/// Results for the steps a mock matches: the n-th call gets the n-th, the last repeats.
#[derive(Debug, Clone)]
pub struct Mock {
    /// A step path (`ready.0.answers`) or id (`answers`).
    pub step: Option<String>,
    /// A kind (`engine.circuit_breaker.reset`), for every step of it.
    pub kind: Option<String>,
    pub results: Vec<Mocked>,
}

/// A step as the rehearsal saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Call {
    pub path: String,
    pub kind: String,
    pub attempt: u32,
    /// The step's configuration after templating (secrets redacted).
    pub inputs: J,
}

/// A notification that would have gone out.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Notification {
    pub channel: String,
    pub title: String,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Rehearsal {
    mocks: Vec<Mock>,
    used: Mutex<BTreeMap<usize, usize>>,
    pub calls: Mutex<Vec<Call>>,
    pub notifications: Mutex<Vec<Notification>>,
}

impl Rehearsal {
    pub fn new(mocks: Vec<Mock>) -> Rehearsal {
        Rehearsal {
            mocks,
            ..Rehearsal::default()
        }
    }

    fn find(&self, path: &str, kind: &str) -> Option<usize> {
        let id = path.rsplit('.').next().unwrap_or(path);
        let by = |f: &dyn Fn(&Mock) -> bool| self.mocks.iter().position(f);
        by(&|m| m.step.as_deref() == Some(path))
            .or_else(|| by(&|m| m.step.as_deref() == Some(id)))
            .or_else(|| by(&|m| m.step.is_none() && m.kind.as_deref() == Some(kind)))
    }

    /// The result of one attempt of a leaf step.
    pub fn answer(&self, path: &str, kind: &str, attempt: u32, inputs: &J) -> StepResult {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Call {
                path: path.to_string(),
                kind: kind.to_string(),
                attempt,
                inputs: inputs.clone(),
            });
        let Some(i) = self.find(path, kind) else {
            return match kind {
                "sleep" => Ok(json!({"slept_ms": 0})),
                "notify" => {
                    let title = inputs["title"].as_str().unwrap_or_default().to_string();
                    let text = inputs["text"].as_str().unwrap_or_default().to_string();
                    let mut sent = Vec::new();
                    for ch in inputs["channels"].as_array().into_iter().flatten() {
                        let channel = ch.as_str().unwrap_or_default().to_string();
                        sent.push(json!({"channel": channel, "ok": true}));
                        self.notify(&channel, &title, &text);
                    }
                    Ok(json!({"sent": sent}))
                }
                _ => Err(StepError::permanent(format!(
                    "no mock for step `{path}` ({kind}): a test runs no real step; add one under `mocks:` (step: {path})"
                ))),
            };
        };
        let n = {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            let n = used.entry(i).or_default();
            *n += 1;
            *n - 1
        };
        let results = &self.mocks[i].results;
        match results.get(n).or(results.last()) {
            Some(Mocked::Output(j)) => Ok(j.clone()),
            Some(Mocked::Fail { message, transient }) => Err(if *transient {
                StepError::transient(message.clone())
            } else {
                StepError::permanent(message.clone())
            }),
            Some(Mocked::Timeout) => Err(StepError {
                failure: Failure::Timeout,
                message: "timed out (mocked)".into(),
            }),
            Some(Mocked::Rejected) => Err(StepError {
                failure: Failure::Rejected,
                message: "rejected (mocked)".into(),
            }),
            None => Ok(J::Object(Default::default())),
        }
    }

    /// Records a notification instead of sending it.
    pub fn notify(&self, channel: &str, title: &str, text: &str) {
        self.notifications
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Notification {
                channel: channel.to_string(),
                title: title.to_string(),
                text: text.to_string(),
            });
    }
}
