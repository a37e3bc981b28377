//! `approval`: pause the run until someone approves or rejects it (`sluice
//! approve RUN_ID [--reject] [--comment …]` or the API). Who, when and the
//! comment are recorded. With `timeout`, the `default` decision is taken when
//! nobody answers in time. The request lives in the store, so it survives a
//! restart of the service.

use std::time::Instant;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{Action, Failure, Kind, Ref, RefKind, StepError, StepResult};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::exec::executor::RunStatus;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "approval",
    summary: "Pause until a person approves or rejects.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["message"],
            "properties": {
                "message": {"type": "string", "description": "What is being approved."},
                "channels": {"type": "array", "items": {"type": "string"}, "description": "Also ask these channels (besides notify.on_approval)."},
                "timeout": {"type": "string", "description": "Take `default` after this long."},
                "default": {"type": "string", "enum": ["approve", "reject"], "default": "reject"},
                "approvers": {"type": "array", "items": {"type": "string"}, "description": "Only these may decide (API token names; Slack approvers by their mapped name). Default: anyone with the operator role."},
                "self_approval": {"type": "boolean", "default": true, "description": "With false, the person who started the run may not approve it (rejecting stays possible)."}
            }
        })
    },
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    #[default]
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    pub message: String,
    #[serde(default)]
    pub channels: Vec<At<String>>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub default: Decision,
    /// Only these names may decide.
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// Whether the run's starter may approve it.
    #[serde(default = "yes")]
    pub self_approval: bool,
}

fn yes() -> bool {
    true
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    Ok(Box::new(super::decode::<ApprovalConfig>(node, lenient)?))
}

impl Action for ApprovalConfig {
    fn describe(&self) -> String {
        match self.timeout {
            Some(t) => format!(
                "wait for approval: {} (after {t}: {:?})",
                self.message, self.default
            ),
            None => format!("wait for approval: {}", self.message),
        }
    }

    fn refs(&self) -> Vec<Ref> {
        self.channels
            .iter()
            .map(|c| Ref::new(RefKind::Channel, c))
            .collect()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let store = cx
                .services
                .store
                .as_ref()
                .ok_or_else(|| StepError::permanent("an approval step needs a run store"))?;
            let run_id = &cx.run.id;
            let err = |e: crate::store::StoreError| StepError::transient(format!("store: {e}"));
            // The status first: whoever sees the pending approval sees a waiting run.
            store
                .set_run_status(run_id, RunStatus::WaitingApproval)
                .await
                .map_err(err)?;
            let policy = crate::store::ApprovalPolicy {
                approvers: self.approvers.clone(),
                not_by: (!self.self_approval).then(|| cx.run.who.clone()),
            };
            store
                .request_approval(run_id, cx.path, &self.message, &policy)
                .await
                .map_err(err)?;
            cx.log(format!("waiting for approval: run `sluice approve {run_id}` or `sluice approve {run_id} --reject`"));
            let mut channels = cx.run.runbook.notify.on_approval.clone();
            channels.extend(self.channels.iter().cloned());
            let text = format!(
                "{}\nApprove: sluice approve {run_id}\nReject: sluice approve {run_id} --reject",
                self.message
            );
            super::notify::approval_request(cx.services, cx.run, cx.path, &channels, &text).await;

            // The clock runs from the request, so a restart does not extend the wait.
            let requested = store
                .approval(run_id, cx.path)
                .await
                .map_err(err)?
                .and_then(|a| chrono::DateTime::parse_from_rfc3339(&a.requested_at).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            let waited = requested
                .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
                .unwrap_or_default();
            let start = Instant::now()
                .checked_sub(waited)
                .unwrap_or_else(Instant::now);
            let decided = loop {
                if let Some(a) = store.approval(run_id, cx.path).await.map_err(err)?
                    && a.status != "pending"
                {
                    break a;
                }
                if let Some(limit) = self.timeout
                    && start.elapsed() >= limit.std()
                {
                    let status = match self.default {
                        Decision::Approve => "approved",
                        Decision::Reject => "rejected",
                    };
                    let note = format!("no decision within {limit}");
                    // Someone may have decided in the meantime; then their decision stands.
                    let _ = store
                        .decide_as(run_id, status, "timeout", Some(&note))
                        .await;
                    continue;
                }
                tokio::time::sleep(cx.services.approval_poll).await;
            };
            store
                .set_run_status(run_id, RunStatus::Running)
                .await
                .map_err(err)?;
            let by = decided.decided_by.clone().unwrap_or_default();
            let output = json!({
                "decision": decided.status,
                "by": by,
                "at": decided.decided_at,
                "comment": decided.comment,
            });
            cx.log(format!("{} by {by}", decided.status));
            if decided.status == "approved" {
                Ok(output)
            } else {
                let comment = decided
                    .comment
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                Err(StepError {
                    failure: Failure::Rejected,
                    message: format!("rejected by {by}{comment}"),
                })
            }
        })
    }
}
