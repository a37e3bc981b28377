//! Free loopback ports and small HTTP helpers.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as J;

/// Ports handed out in this process, so parallel tests never share one.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The lowest ephemeral port: ports below it are never picked by `bind(…:0)`,
/// so an engine's embedded broker (or anything else binding port 0) cannot
/// take a port reserved here before the engine that needs it starts.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

/// A port free on 127.0.0.1, below the ephemeral range, not given out before.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A port free on 127.0.0.1 with `base + 100·i` free too for i < `n` (the
/// ports extra engine instances of a target derive), all below the
/// ephemeral range and not given out before in this process.
pub fn free_ports(n: u16) -> u16 {
    let high = u32::from(ephemeral_low().max(12_000)) - 100 * u32::from(n);
    let mut x = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..10_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let base = 10_000 + (x >> 8) % (high - 10_000);
        let base = base as u16;
        let all: Vec<u16> = (0..n).map(|i| base + 100 * i).collect();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if all
            .iter()
            .all(|p| !given.contains(p) && TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            given.extend(&all);
            return base;
        }
    }
    panic!("no {n} free loopback ports 100 apart below the ephemeral range");
}

pub fn client() -> reqwest::Client {
    sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// `GET url` as text; `None` if it cannot be fetched (not up yet, say).
pub async fn get_text(url: &str) -> Option<String> {
    client().get(url).send().await.ok()?.text().await.ok()
}

pub async fn get_json(url: &str) -> J {
    let resp = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

pub async fn post_json(url: &str, body: J) -> J {
    let resp = client()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    let j: J = resp.json().await.unwrap_or(J::Null);
    assert!(status.is_success(), "POST {url}: {status} {j}");
    j
}

pub async fn delete(url: &str) {
    let resp = client()
        .delete(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
    assert!(
        resp.status().is_success(),
        "DELETE {url}: {}",
        resp.status()
    );
}

/// Polls `check` every 100 ms until it returns `Some`, at most `limit`; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Blocking: polls `ready` (harnesses that start servers from sync code).
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what}: not ready within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
