//! Free loopback ports and small HTTP helpers.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value as J;

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A port free on 127.0.0.1 with `base + 100·i` free too for i < `n` (the
/// ports extra engine instances of a target derive).
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port();
        if u32::from(base) + 100 * u32::from(n) > 65_000 {
            continue;
        }
        let held: Vec<TcpListener> = (0..n)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", base + 100 * i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} free loopback ports 100 apart");
}

pub fn client() -> reqwest::Client {
    sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
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
