//! The one way to build HTTP clients in Sluice.
//!
//! reqwest is built with rustls but without a bundled crypto provider (ring is
//! installed here instead of aws-lc, which is slow to build). Building a client
//! before a provider is installed panics, so every client is built through
//! [`builder`], which installs it once. `clippy.toml` forbids the direct
//! constructors so no code path can forget.

use std::sync::Once;
use std::time::Duration;

/// Installs the process-wide rustls crypto provider (ring). Idempotent.
pub fn ensure_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client builder with the TLS provider installed and conservative
/// defaults: connect timeout 10 s, overall timeout 30 s (callers narrow it).
#[allow(clippy::disallowed_methods)]
pub fn builder() -> reqwest::ClientBuilder {
    ensure_tls();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_without_a_preinstalled_provider() {
        assert!(super::builder().build().is_ok());
        // Twice: the provider is installed only once.
        assert!(super::builder().build().is_ok());
    }
}
