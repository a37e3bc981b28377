//! Loopback helpers shared by the harnesses.

use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1 (a server started on it
/// may still lose a race; the harnesses retry a few times).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `ready` every 20 ms until it holds or `limit` passes (then an error naming `what`).
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
