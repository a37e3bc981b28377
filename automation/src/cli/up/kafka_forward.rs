//! The address `sluice up` gives Kafka cluster `main`: a loopback TCP
//! forwarder to the engine's embedded broker. The embedded (mock) broker
//! listens on a random port that changes whenever the supervised engine is
//! restarted (a `process.restart` step, say), so the forwarder looks the
//! broker up at the engine's `GET /admin/threads` → `pipeline.brokers` for
//! each connection. Kafka clients only bootstrap through it: the metadata
//! they get back names the broker's own address, which is on loopback too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Concurrent forwarded connections.
const MAX_CONNECTIONS: usize = 64;

/// A running forwarder; stopped when dropped.
pub struct Forwarder {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The engine's bootstrap address as it reports it (empty until its
/// pipeline connected).
pub async fn brokers_of(client: &reqwest::Client, engine: &str) -> Option<String> {
    let doc: serde_json::Value = client
        .get(format!("{engine}/admin/threads"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    doc.pointer("/pipeline/brokers")
        .and_then(|b| b.as_str())
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

/// Waits (up to `timeout`) until the engine reports its brokers.
pub async fn wait_brokers(engine: &str, timeout: Duration) -> anyhow::Result<String> {
    let client = crate::http_client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(b) = brokers_of(&client, engine).await {
            return Ok(b);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the engine at {engine} reported no Kafka brokers within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts forwarding 127.0.0.1:<free port> to the brokers `engine` reports
/// (`known`: what it reported last).
pub async fn start(engine: String, known: String) -> anyhow::Result<Forwarder> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the Kafka forwarder")?;
    let addr = listener.local_addr()?;
    let client = crate::http_client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let last = Arc::new(Mutex::new(known));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let (client, engine, last) = (client.clone(), engine.clone(), last.clone());
            tokio::spawn(async move {
                let target = match brokers_of(&client, &engine).await {
                    Some(b) => {
                        *last.lock().unwrap_or_else(|p| p.into_inner()) = b.clone();
                        b
                    }
                    None => last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                };
                let first = target.split(',').next().unwrap_or("").trim().to_string();
                if let Ok(Ok(mut outbound)) =
                    tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&first)).await
                {
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                drop(permit);
            });
        }
    });
    Ok(Forwarder { addr, task })
}
