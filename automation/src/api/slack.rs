//! Slack interactivity: `POST /api/v1/slack/interactions`, where Slack sends
//! the clicks on the Approve / Reject buttons of approval requests.
//!
//! A click counts only when its request carries a valid Slack signature
//! (`X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">` with
//! the app's signing secret) made within five minutes (`X-Slack-Request-
//! Timestamp`, so a captured request cannot be replayed later), and when the
//! clicking user is one of that channel's `approvers`. The decision is
//! recorded on the run under the approver's name, with the Slack user ID in
//! the comment; the message is then updated (`chat.update`) to show who
//! decided, without buttons. Everything refused is answered with 401/403 (and
//! so appears as refused in the audit log); a person who may not decide is
//! told so privately through the click's `response_url`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value as J, json};
use sha2::Sha256;
use tracing::{info, warn};

use super::audit::PrincipalSlot;
use super::auth::{Principal, Role};
use super::error::ApiError;
use crate::config::{Channel, SlackChannel};
use crate::notify::slack::{APPROVE_ACTION, REJECT_ACTION, decided, web_api};
use crate::service::Service;
use crate::store::StoreError;

pub const PATH: &str = "/api/v1/slack/interactions";
/// Largest accepted age (either way) of a signed request, as Slack advises.
pub const MAX_AGE_SECS: i64 = 300;

/// The signature Slack sends for `body` at `timestamp` (also for tests).
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The interactive channel whose signing secret signed this request.
fn verify<'c>(
    channels: impl Iterator<Item = (&'c String, &'c SlackChannel)>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(&'c String, &'c SlackChannel), ApiError> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let ts = h("x-slack-request-timestamp").ok_or(ApiError::Unauthorized)?;
    let at: i64 = ts.trim().parse().map_err(|_| ApiError::Unauthorized)?;
    if (now - at).abs() > MAX_AGE_SECS {
        return Err(ApiError::Unauthorized);
    }
    let sig = h("x-slack-signature")
        .and_then(|s| s.trim().strip_prefix("v0="))
        .and_then(|s| hex::decode(s).ok())
        .ok_or(ApiError::Unauthorized)?;
    let mut found = None;
    for (name, ch) in channels {
        let Some(secret) = &ch.signing_secret else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .map_err(|_| ApiError::Unauthorized)?;
        mac.update(format!("v0:{}:", ts.trim()).as_bytes());
        mac.update(body);
        // verify_slice compares in constant time; every channel is tried.
        if mac.verify_slice(&sig).is_ok() && found.is_none() {
            found = Some((name, ch));
        }
    }
    found.ok_or(ApiError::Unauthorized)
}

/// What a click asks for.
#[derive(Debug)]
struct Click {
    approve: bool,
    run_id: String,
    /// The approval step the button was posted for.
    step: String,
    user_id: String,
    /// Where the message is, for `chat.update`.
    channel_id: Option<String>,
    message_ts: Option<String>,
    message: J,
    response_url: Option<String>,
}

fn parse(body: &[u8]) -> Result<Click, ApiError> {
    let bad = |m: &str| ApiError::BadRequest(format!("slack interaction: {m}"));
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| bad("no `payload` field"))?;
    let p: J = serde_json::from_str(&payload).map_err(|_| bad("`payload` is not JSON"))?;
    if p["type"] != "block_actions" {
        return Err(bad("only block_actions are handled"));
    }
    let action = &p["actions"][0];
    let approve = match action["action_id"].as_str() {
        Some(APPROVE_ACTION) => true,
        Some(REJECT_ACTION) => false,
        _ => return Err(bad("not a Sluice approval button")),
    };
    let value = action["value"]
        .as_str()
        .ok_or_else(|| bad("no button value"))?;
    let (run_id, step) = value
        .split_once('|')
        .ok_or_else(|| bad("the button value is not `run|step`"))?;
    let s = |v: &J| v.as_str().map(str::to_string);
    Ok(Click {
        approve,
        run_id: run_id.to_string(),
        step: step.to_string(),
        user_id: s(&p["user"]["id"]).ok_or_else(|| bad("no user id"))?,
        channel_id: s(&p["channel"]["id"]).or_else(|| s(&p["container"]["channel_id"])),
        message_ts: s(&p["container"]["message_ts"]).or_else(|| s(&p["message"]["ts"])),
        message: p["message"].clone(),
        response_url: s(&p["response_url"]),
    })
}

pub async fn interactions(
    State(svc): State<Arc<Service>>,
    slot: Option<Extension<PrincipalSlot>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let slack = svc.config.channels.iter().filter_map(|(n, c)| match c {
        Channel::Slack(s) if s.interactive() => Some((n, s)),
        _ => None,
    });
    let (channel, ch) = verify(slack, &headers, &body, chrono::Utc::now().timestamp())
        .inspect_err(|_| warn!("Refused a Slack interaction: bad or stale signature."))?;
    let click = parse(&body)?;
    let Some(approver) = ch.approvers.get(&click.user_id).cloned() else {
        if let Some(Extension(slot)) = &slot {
            slot.set(Principal {
                name: format!("slack:{}", click.user_id),
                role: Role::Viewer,
            });
        }
        warn!(user = %click.user_id, channel = %channel, run_id = %click.run_id, "A Slack user who is not an approver clicked an approval button.");
        tell(
            &svc,
            &click,
            "You are not one of Sluice's approvers for this channel; nothing was decided.",
        );
        return Ok(StatusCode::FORBIDDEN.into_response());
    };
    if let Some(Extension(slot)) = &slot {
        slot.set(Principal {
            name: approver.clone(),
            role: Role::Operator,
        });
    }
    let comment = format!("from Slack (user {})", click.user_id);
    // A button of an earlier request must not decide a later one of the same run.
    let pending = svc
        .store
        .approvals_of(&click.run_id)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .into_iter()
        .any(|a| a.status == "pending" && a.step_path == click.step);
    let decision = if pending {
        svc.store
            .decide(&click.run_id, click.approve, &approver, Some(&comment))
            .await
    } else {
        Err(StoreError::NoPendingApproval(click.run_id.clone()))
    };
    let line = match decision {
        Ok(_) => {
            let verb = if click.approve {
                "Approved"
            } else {
                "Rejected"
            };
            info!(run_id = %click.run_id, by = %approver, slack_user = %click.user_id, "{verb} from Slack.");
            format!(
                "{verb} by {approver} at {}",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
            )
        }
        Err(StoreError::NoPendingApproval(_)) => {
            // Decided elsewhere (API, CLI, timeout, another click): say by whom.
            let a = svc
                .store
                .approvals_of(&click.run_id)
                .await
                .unwrap_or_default();
            match a
                .iter()
                .rev()
                .find(|a| a.status != "pending" && a.step_path == click.step)
            {
                Some(a) => format!(
                    "Already {} by {}",
                    a.status,
                    a.decided_by.as_deref().unwrap_or("someone")
                ),
                None => "This run has no approval waiting".to_string(),
            }
        }
        Err(e @ (StoreError::NotAnApprover { .. } | StoreError::SelfApproval { .. })) => {
            // The step's own approvers or its self-approval rule say no.
            warn!(run_id = %click.run_id, by = %approver, error = %e, "A Slack approval was refused by the step's policy.");
            tell(&svc, &click, &format!("Not decided: {e}."));
            return Ok(StatusCode::FORBIDDEN.into_response());
        }
        Err(StoreError::NoSuchRun(id)) => return Err(ApiError::NotFound(format!("run `{id}`"))),
        Err(e) => return Err(ApiError::Internal(e.into())),
    };
    update(&svc, ch, &click, line);
    Ok(StatusCode::OK.into_response())
}

/// Replaces the buttons with who decided (in the background: Slack wants an
/// answer to the click within three seconds).
fn update(svc: &Arc<Service>, ch: &SlackChannel, click: &Click, line: String) {
    let (Some(token), Some(channel), Some(ts)) = (
        ch.bot_token.clone(),
        click.channel_id.clone(),
        click.message_ts.clone(),
    ) else {
        return;
    };
    let mut body = decided(&click.message, &line);
    body["channel"] = json!(channel);
    body["ts"] = json!(ts);
    let http = svc.runner.services.http.clone();
    let ch = ch.clone();
    let run_id = click.run_id.clone();
    tokio::spawn(async move {
        let update = || async {
            web_api(&http, &ch, token.expose(), "chat.update", &body)
                .await
                .map(|_| ())
        };
        if let (_, Err(e)) = crate::notify::retrying(update).await {
            warn!(run_id = %run_id, error = %e, "Could not update the Slack approval message.");
        }
    });
}

/// Tells the clicking user privately (an ephemeral reply through `response_url`).
fn tell(svc: &Arc<Service>, click: &Click, text: &str) {
    let Some(url) = click.response_url.clone() else {
        return;
    };
    // Only Slack's own hosts, or loopback (tests), receive it.
    let ok = url::Url::parse(&url).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host_str()
                .is_some_and(|h| h == "hooks.slack.com" || h.ends_with(".slack.com"))
            || u.host_str()
                .is_some_and(|h| h == "127.0.0.1" || h == "localhost")
    });
    if !ok {
        return;
    }
    let http = svc.runner.services.http.clone();
    let body = json!({"response_type": "ephemeral", "replace_original": false, "text": text});
    tokio::spawn(async move {
        let req = http.post(url);
        if let Err(e) = crate::notify::post_json("slack", req, &body).await {
            warn!(error = %e, "Could not answer a Slack click.");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn channel() -> SlackChannel {
        SlackChannel {
            webhook_url: None,
            bot_token: Some(Secret::new("xoxb-1")),
            channel: Some("C1".into()),
            signing_secret: Some(Secret::new("8f742231b10e8888abcd99yyyzzz85a5")),
            approvers: [("U1".to_string(), "alice".to_string())].into(),
            api_url: crate::config::HttpUrl(url::Url::parse("http://127.0.0.1:1").unwrap()),
        }
    }

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h.insert("x-slack-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn only_a_fresh_request_signed_with_the_signing_secret_is_accepted() {
        let ch = channel();
        let name = "oncall".to_string();
        let body = b"payload=%7B%7D";
        let now = 1_800_000_000;
        let ts = now.to_string();
        let good = signature("8f742231b10e8888abcd99yyyzzz85a5", &ts, body);
        let one = || std::iter::once((&name, &ch));
        assert!(verify(one(), &headers(&ts, &good), body, now + 10).is_ok());
        // Tampered body, wrong secret, replayed later, missing headers.
        assert!(verify(one(), &headers(&ts, &good), b"payload=%7B%7D%20", now).is_err());
        let wrong = signature("another-secret", &ts, body);
        assert!(verify(one(), &headers(&ts, &wrong), body, now).is_err());
        assert!(verify(one(), &headers(&ts, &good), body, now + MAX_AGE_SECS + 1).is_err());
        assert!(verify(one(), &HeaderMap::new(), body, now).is_err());
        // The timestamp is part of what is signed.
        let later = (now + 1).to_string();
        assert!(verify(one(), &headers(&later, &good), body, now).is_err());
    }

    #[test]
    fn a_click_names_the_run_the_decision_and_the_user() {
        let payload = json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "sluice_reject", "value": "r1|ask"}],
            "channel": {"id": "C1"}, "container": {"message_ts": "1.2"},
            "message": {"text": "t", "blocks": []}, "response_url": "https://hooks.slack.com/actions/x"});
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let c = parse(body.as_bytes()).unwrap();
        assert!(!c.approve);
        assert_eq!((c.run_id.as_str(), c.user_id.as_str()), ("r1", "U1"));
        assert_eq!(c.message_ts.as_deref(), Some("1.2"));
        let other = body.replace("sluice_reject", "someone_elses_button");
        assert!(parse(other.as_bytes()).is_err());
    }
}
