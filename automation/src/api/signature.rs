//! Authenticating machine-to-machine posts (webhook triggers, the Alertmanager
//! receiver): either a shared bearer token or an HMAC-SHA256 signature of the
//! body, `X-Sluice-Signature: sha256=<hex>` (the GitHub convention, so common
//! senders can be configured without code). With a timestamp header the
//! signature also covers the time, and stale requests are refused (replay).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-sluice-signature";
/// Optional header with the Unix time the sender signed at; when present the
/// signed message is `"{timestamp}.{body}"`.
pub const TIMESTAMP_HEADER: &str = "x-sluice-timestamp";

/// How a hook authenticates its sender.
#[derive(Clone)]
pub enum HookAuth {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// HMAC-SHA256 of the body with this secret.
    Hmac(String),
}

impl std::fmt::Debug for HookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookAuth::Token(_) => f.write_str("Token(***)"),
            HookAuth::Hmac(_) => f.write_str("Hmac(***)"),
        }
    }
}

/// Largest accepted clock difference for timestamped signatures.
pub const MAX_SKEW_SECS: i64 = 300;

impl HookAuth {
    /// Verifies a request. `now` is Unix seconds.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), ApiError> {
        match self {
            HookAuth::Token(expected) => {
                let presented = authorization
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .ok_or(ApiError::Unauthorized)?;
                let a: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
                let b: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
                if a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
                    Ok(())
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
            HookAuth::Hmac(secret) => {
                let hex_sig = signature
                    .and_then(|s| s.trim().strip_prefix("sha256="))
                    .ok_or(ApiError::Unauthorized)?;
                let sig = hex::decode(hex_sig).map_err(|_| ApiError::Unauthorized)?;
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|_| ApiError::Unauthorized)?;
                if let Some(ts) = timestamp {
                    let at: i64 = ts.trim().parse().map_err(|_| ApiError::Unauthorized)?;
                    if (now - at).abs() > MAX_SKEW_SECS {
                        return Err(ApiError::Unauthorized);
                    }
                    mac.update(ts.trim().as_bytes());
                    mac.update(b".");
                }
                mac.update(body);
                // verify_slice compares in constant time.
                mac.verify_slice(&sig).map_err(|_| ApiError::Unauthorized)
            }
        }
    }
}

/// Computes the signature header value a sender would send (tests, docs, CLI).
pub fn sign(secret: &str, timestamp: Option<i64>, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    if let Some(ts) = timestamp {
        mac.update(ts.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn hmac_accepts_the_right_signature_only() {
        let auth = HookAuth::Hmac("s3cret".into());
        let body = br#"{"status":"firing"}"#;
        let good = sign("s3cret", None, body);
        assert!(auth.verify(None, Some(&good), None, body, NOW).is_ok());
        let wrong_key = sign("other", None, body);
        assert!(
            auth.verify(None, Some(&wrong_key), None, body, NOW)
                .is_err()
        );
        assert!(
            auth.verify(None, Some(&good), None, b"tampered", NOW)
                .is_err()
        );
        assert!(auth.verify(None, None, None, body, NOW).is_err());
        assert!(
            auth.verify(None, Some("sha256=zz"), None, body, NOW)
                .is_err()
        );
    }

    #[test]
    fn timestamped_signatures_expire() {
        let auth = HookAuth::Hmac("k".into());
        let body = b"{}";
        let sig = sign("k", Some(NOW), body);
        let ts = NOW.to_string();
        assert!(
            auth.verify(None, Some(&sig), Some(&ts), body, NOW + 10)
                .is_ok()
        );
        assert!(
            auth.verify(None, Some(&sig), Some(&ts), body, NOW + MAX_SKEW_SECS + 1)
                .is_err()
        );
        // The timestamp is signed: changing it breaks the signature.
        let later = (NOW + 1).to_string();
        assert!(
            auth.verify(None, Some(&sig), Some(&later), body, NOW)
                .is_err()
        );
    }

    #[test]
    fn token_auth() {
        let auth = HookAuth::Token("tok".into());
        assert!(
            auth.verify(Some("Bearer tok"), None, None, b"", NOW)
                .is_ok()
        );
        assert!(
            auth.verify(Some("Bearer tok2"), None, None, b"", NOW)
                .is_err()
        );
        assert!(auth.verify(None, None, None, b"", NOW).is_err());
        assert_eq!(format!("{auth:?}"), "Token(***)");
    }
}
