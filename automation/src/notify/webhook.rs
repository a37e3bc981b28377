//! A generic webhook: one JSON document per notification, signed.
//!
//! Body (`Content-Type: application/json`):
//! `{"version": "1", "title", "text", "event": {"kind", "dedup_key",
//! "severity", "link", "source"}, "sent_at": RFC 3339}`.
//! With a `secret`: `X-Sluice-Timestamp: <unix seconds>` and
//! `X-Sluice-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`;
//! a receiver recomputes it over the raw body and refuses a timestamp older
//! than its replay window (5 minutes is usual).

use futures::future::BoxFuture;
use hmac::{KeyInit, Mac};
use serde_json::json;

use super::{Message, Notifier, NotifyError};
use crate::config::WebhookChannel;

pub struct Webhook<'c>(pub &'c WebhookChannel);

/// The documented body of a notification.
pub fn body(msg: &Message, sent_at: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    json!({
        "version": "1",
        "title": msg.title,
        "text": msg.text,
        "event": msg.event,
        "sent_at": sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// `sha256=<hex>` of `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Notifier for Webhook<'_> {
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let now = chrono::Utc::now();
            // Signed over the exact bytes sent.
            let bytes = serde_json::to_vec(&body(msg, now)).unwrap_or_default();
            let mut req = http
                .post(self.0.url.0.clone())
                .header("content-type", "application/json");
            for (k, v) in &self.0.headers {
                req = req.header(k.as_str(), v.expose());
            }
            if let Some(secret) = &self.0.secret {
                let ts = now.timestamp();
                req = req
                    .header("x-sluice-timestamp", ts.to_string())
                    .header("x-sluice-signature", signature(secret.expose(), ts, &bytes));
            }
            super::send("webhook", req.body(bytes)).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently with
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac 'k3y-k3y-k3y-k3y!' -hex
        let s = super::signature("k3y-k3y-k3y-k3y!", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "sha256=d847bb1ccd9539c399aa3c2cdcaa00ad543a6622fb4ddc15410120b28df03a0e"
        );
        assert_ne!(
            s,
            super::signature("k3y-k3y-k3y-k3y?", 1_700_000_000, b"{}")
        );
        assert_ne!(
            s,
            super::signature("k3y-k3y-k3y-k3y!", 1_700_000_001, b"{}")
        );
    }
}
