//! A stand-in for Slack's incoming-webhook endpoint (the one component tests
//! may fake): an HTTP server on 127.0.0.1 and a free port that records every
//! post and answers like Slack — `200 ok` for a valid payload, `400
//! invalid_payload` / `no_text` / `invalid_blocks` for what Slack rejects,
//! and scripted replies such as `429` with `Retry-After`.
//!
//! Payloads are checked against Slack's documented rules ([`check_payload`]):
//! a JSON object with `text` and/or `blocks`; at most 50 blocks of known
//! types, no unknown fields; `header` text `plain_text` of 1–150 characters;
//! `section` text (`plain_text`/`mrkdwn`) of 1–3000 characters or up to 10
//! `fields` of at most 2000; `block_id` at most 255 characters
//! (<https://api.slack.com/reference/block-kit/blocks>,
//! <https://api.slack.com/messaging/webhooks#handling_errors>). `actions`
//! blocks take buttons within Slack's limits (text 75, `action_id` 255,
//! `value` 2000 characters; `confirm` dialogs).
//!
//! It also stands in for the Web API of a Slack app ([`Slack::api_url`]):
//! `chat.postMessage` and `chat.update` need `Authorization: Bearer
//! {BOT_TOKEN}` and a `channel` (and `ts` to update), check the same Block
//! Kit rules and answer like Slack, HTTP 200 with `{"ok": true, "ts": …}` or
//! `{"ok": false, "error": "invalid_auth" | "channel_not_found" | …}`; and
//! for an interaction's `response_url` ([`Slack::response_url`]).
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use sluice_tests::slack::{Reply, Slack};
//! let slack = Slack::start().await?;
//! let url = slack.webhook_url();                    // http://127.0.0.1:PORT/services/T0/B0/…
//! slack.script([Reply::RateLimited { retry_after_secs: 1 }]); // then `200 ok` again
//! // … post …
//! let posts = slack.wait_for(2, std::time::Duration::from_secs(10)).await?;
//! assert_eq!(posts[1].status, 200);
//! # Ok(()) }
//! ```
//!
//! The server lives as long as the test's runtime.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value as J;

/// A scripted answer to the next post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `429 Too Many Requests` with `Retry-After: N` (body `rate_limited`).
    RateLimited { retry_after_secs: u64 },
    /// Any status with Slack's error string as the body (`404 no_service`, `500 …`).
    Error(u16, &'static str),
}

/// One post the server received.
#[derive(Debug, Clone)]
pub struct Post {
    /// When it arrived.
    pub at: Instant,
    /// Request path (the webhook's secret part).
    pub path: String,
    pub content_type: Option<String>,
    /// Body parsed as JSON (`Null` when it was not JSON).
    pub body: J,
    pub raw: String,
    /// What the server answered.
    pub status: u16,
    /// Why the payload was rejected, when it was.
    pub rejected: Option<String>,
}

#[derive(Default)]
struct Inner {
    posts: Mutex<Vec<Post>>,
    script: Mutex<VecDeque<Reply>>,
}

/// A running recording server.
pub struct Slack {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Slack {
    /// Starts the server on a free loopback port.
    pub async fn start() -> anyhow::Result<Slack> {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Slack { addr, inner })
    }

    /// A webhook URL on this server (its path stands in for Slack's secret).
    pub fn webhook_url(&self) -> String {
        format!(
            "http://{}/services/T0SLUICE/B0TEST/s3cretW3bhookToken",
            self.addr
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web API base for an app-mode channel (`api_url`): methods at
    /// `{base}/chat.postMessage`, `{base}/chat.update`, needing [`BOT_TOKEN`].
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// A `response_url` for interaction payloads (posts to it are recorded).
    pub fn response_url(&self) -> String {
        format!("http://{}/actions/T0SLUICE/1234/abcd", self.addr)
    }

    /// Answers the next posts with these replies, in order; then `200 ok` again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(replies);
    }

    /// Every post so far.
    pub fn posts(&self) -> Vec<Post> {
        self.inner
            .posts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits (bounded) until at least `n` posts arrived; returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> anyhow::Result<Vec<Post>> {
        let deadline = Instant::now() + limit;
        loop {
            let posts = self.posts();
            if posts.len() >= n {
                return Ok(posts);
            }
            if Instant::now() > deadline {
                anyhow::bail!("{} of {n} slack posts within {limit:?}", posts.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The bot token the Web API stand-in accepts.
pub const BOT_TOKEN: &str = "xoxb-0000-test-bot-token";

/// A Web API method: the bot token, then the method's own rules; answers
/// like Slack (`200` with `ok: true/false`).
fn web_api(method: &str, headers: &HeaderMap, body: &J) -> (u16, Option<String>, Response) {
    let fail = |error: &str| {
        (
            200,
            Some(error.to_string()),
            axum::Json(serde_json::json!({"ok": false, "error": error})).into_response(),
        )
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {BOT_TOKEN}")) {
        return fail(if auth.is_none() {
            "not_authed"
        } else {
            "invalid_auth"
        });
    }
    let channel = body["channel"].as_str().unwrap_or_default();
    if channel.is_empty() {
        return fail("channel_not_found");
    }
    if method == "chat.update" && body["ts"].as_str().is_none_or(str::is_empty) {
        return fail("message_not_found");
    }
    if !matches!(method, "chat.postMessage" | "chat.update") {
        return fail("unknown_method");
    }
    if let Err(e) = check_payload(body) {
        return fail(e.code);
    }
    let ts = match method {
        "chat.update" => body["ts"].as_str().unwrap_or_default().to_string(),
        _ => format!("1700000000.{:06}", rand_ts()),
    };
    (
        200,
        None,
        axum::Json(serde_json::json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"], "blocks": body["blocks"], "ts": ts}}))
            .into_response(),
    )
}

fn rand_ts() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let json: J = serde_json::from_slice(&body).unwrap_or(J::Null);
    if let Some(method) = uri.path().strip_prefix("/api/") {
        let (status, rejected, response) = web_api(method, &headers, &json);
        record(&inner, &uri, &headers, json, raw, status, rejected);
        return response;
    }
    let scripted = inner
        .script
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    let (status, rejected, response) = match scripted {
        Some(Reply::RateLimited { retry_after_secs }) => (
            429,
            None,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "rate_limited",
            )
                .into_response(),
        ),
        Some(Reply::Error(code, text)) => (
            code,
            None,
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                text,
            )
                .into_response(),
        ),
        None => match check_payload(&json) {
            Ok(()) => (200, None, (StatusCode::OK, "ok").into_response()),
            Err(PayloadError { code, detail }) => (
                400,
                Some(format!("{code}: {detail}")),
                (StatusCode::BAD_REQUEST, code).into_response(),
            ),
        },
    };
    record(&inner, &uri, &headers, json, raw, status, rejected);
    response
}

fn record(
    inner: &Inner,
    uri: &Uri,
    headers: &HeaderMap,
    body: J,
    raw: String,
    status: u16,
    rejected: Option<String>,
) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    inner
        .posts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Post {
            at: Instant::now(),
            path: uri.path().to_string(),
            content_type,
            body,
            raw,
            status,
            rejected,
        });
}

/// Why Slack would reject a payload: its error string and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// `invalid_payload`, `no_text` or `invalid_blocks`, as Slack answers.
    pub code: &'static str,
    pub detail: String,
}

fn bad(code: &'static str, detail: impl Into<String>) -> PayloadError {
    PayloadError {
        code,
        detail: detail.into(),
    }
}

/// Checks a payload against Slack's incoming-webhook and Block Kit rules (see the module doc).
pub fn check_payload(p: &J) -> Result<(), PayloadError> {
    let obj = p
        .as_object()
        .ok_or_else(|| bad("invalid_payload", "the body is not a JSON object"))?;
    let text = obj.get("text");
    if let Some(t) = text
        && !t.is_string()
    {
        return Err(bad("invalid_payload", "`text` is not a string"));
    }
    let blocks = match obj.get("blocks") {
        None => None,
        Some(J::Array(b)) => Some(b),
        Some(_) => return Err(bad("invalid_blocks", "`blocks` is not an array")),
    };
    let has_text = text.and_then(J::as_str).is_some_and(|t| !t.is_empty());
    if !has_text && blocks.is_none_or(|b| b.is_empty()) {
        return Err(bad("no_text", "neither `text` nor `blocks`"));
    }
    let Some(blocks) = blocks else {
        return Ok(());
    };
    if blocks.len() > 50 {
        return Err(bad("invalid_blocks", "more than 50 blocks"));
    }
    for (i, b) in blocks.iter().enumerate() {
        check_block(b).map_err(|d| bad("invalid_blocks", format!("block {i}: {d}")))?;
    }
    Ok(())
}

fn only_keys(o: &serde_json::Map<String, J>, allowed: &[&str]) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field `{k}`")),
        None => Ok(()),
    }
}

/// A text object: `{type: plain_text | mrkdwn, text}`, `text` of 1..=max characters.
fn check_text(t: &J, types: &[&str], max: usize) -> Result<(), String> {
    let o = t.as_object().ok_or("a text object must be an object")?;
    let ty = o.get("type").and_then(J::as_str).unwrap_or("");
    if !types.contains(&ty) {
        return Err(format!("text type `{ty}` where {types:?} is required"));
    }
    match ty {
        "plain_text" => only_keys(o, &["type", "text", "emoji"])?,
        _ => only_keys(o, &["type", "text", "verbatim"])?,
    }
    let s = o
        .get("text")
        .and_then(J::as_str)
        .ok_or("text without `text`")?;
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(format!("text of {n} characters (1..={max} allowed)"));
    }
    Ok(())
}

fn check_block(b: &J) -> Result<(), String> {
    let o = b.as_object().ok_or("a block must be an object")?;
    if let Some(id) = o.get("block_id") {
        let id = id.as_str().ok_or("`block_id` is not a string")?;
        if id.chars().count() > 255 {
            return Err("`block_id` longer than 255 characters".into());
        }
    }
    match o.get("type").and_then(J::as_str) {
        Some("header") => {
            only_keys(o, &["type", "block_id", "text"])?;
            check_text(
                o.get("text").ok_or("header without `text`")?,
                &["plain_text"],
                150,
            )
        }
        Some("section") => {
            only_keys(
                o,
                &["type", "block_id", "text", "fields", "accessory", "expand"],
            )?;
            if let Some(t) = o.get("text") {
                check_text(t, &["plain_text", "mrkdwn"], 3000)?;
            }
            match o.get("fields") {
                Some(J::Array(f)) if f.len() > 10 => Err("more than 10 fields".into()),
                Some(J::Array(f)) => f
                    .iter()
                    .try_for_each(|x| check_text(x, &["plain_text", "mrkdwn"], 2000)),
                Some(_) => Err("`fields` is not an array".into()),
                None if o.get("text").is_none() => Err("section without `text` or `fields`".into()),
                None => Ok(()),
            }
        }
        Some("divider") => only_keys(o, &["type", "block_id"]),
        Some("context") => {
            only_keys(o, &["type", "block_id", "elements"])?;
            match o.get("elements") {
                Some(J::Array(e)) if !e.is_empty() && e.len() <= 10 => Ok(()),
                _ => Err("context needs 1..=10 `elements`".into()),
            }
        }
        Some("actions") => {
            only_keys(o, &["type", "block_id", "elements"])?;
            match o.get("elements") {
                Some(J::Array(e)) if !e.is_empty() && e.len() <= 25 => {
                    e.iter().try_for_each(check_button)
                }
                _ => Err("actions needs 1..=25 `elements`".into()),
            }
        }
        Some(other) => Err(format!("unknown block type `{other}`")),
        None => Err("block without `type`".into()),
    }
}

/// A button element (<https://api.slack.com/reference/block-kit/block-elements#button>).
fn check_button(b: &J) -> Result<(), String> {
    let o = b.as_object().ok_or("an element must be an object")?;
    if o.get("type").and_then(J::as_str) != Some("button") {
        return Err("only button elements are checked here".into());
    }
    only_keys(
        o,
        &[
            "type",
            "text",
            "action_id",
            "url",
            "value",
            "style",
            "confirm",
            "accessibility_label",
        ],
    )?;
    check_text(
        o.get("text").ok_or("button without `text`")?,
        &["plain_text"],
        75,
    )?;
    let len = |k: &str| o.get(k).and_then(J::as_str).map(|s| s.chars().count());
    if len("action_id").is_some_and(|n| n > 255) || len("value").is_some_and(|n| n > 2000) {
        return Err("button `action_id` over 255 or `value` over 2000 characters".into());
    }
    if let Some(st) = o.get("style")
        && !matches!(st.as_str(), Some("primary" | "danger"))
    {
        return Err(format!("button style {st}"));
    }
    if let Some(c) = o.get("confirm") {
        let c = c.as_object().ok_or("`confirm` is not an object")?;
        only_keys(c, &["title", "text", "confirm", "deny", "style"])?;
        for (k, max) in [("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)] {
            check_text(
                c.get(k).ok_or(format!("confirm without `{k}`"))?,
                &["plain_text"],
                max,
            )?;
        }
    }
    Ok(())
}

/// The `<…>` control sequences Slack interprets in mrkdwn text: mentions
/// (`<!channel>`, `<!here>`, `<@U…>`), channel links and links. Escaped text
/// (`&lt;!channel&gt;`) has none.
pub fn control_sequences(mrkdwn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = mrkdwn;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        match after.find('>') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_what_slack_rejects() {
        let ok = json!({"text": "t", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Title"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "body"}}
        ]});
        assert_eq!(check_payload(&ok), Ok(()));
        let code = |p: J| check_payload(&p).unwrap_err().code;
        assert_eq!(code(json!([1])), "invalid_payload");
        assert_eq!(code(json!({})), "no_text");
        assert_eq!(
            code(json!({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]})),
            "invalid_blocks"
        );
        assert_eq!(
            code(
                json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]})
            ),
            "invalid_blocks"
        );
        assert_eq!(
            code(json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}]})),
            "invalid_blocks"
        );
        assert_eq!(
            code(json!({"blocks": [{"type": "section", "txt": {"type": "mrkdwn", "text": "x"}}]})),
            "invalid_blocks"
        );
        assert_eq!(
            control_sequences("hi <!channel> and <https://x|y> &lt;!here&gt;"),
            ["!channel", "https://x|y"]
        );
    }
}
