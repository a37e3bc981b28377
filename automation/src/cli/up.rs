//! `sluice up`: Sluice on a fresh machine with no broker and no configuration.
//!
//! Starts `sluice-engine` on its embedded Kafka (librdkafka's mock cluster) with
//! the demo generator as a supervised child process, waits until it is healthy,
//! prints where to look, and stops everything cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::ExitCode;
use crate::process::{ProcessSpec, RestartPolicy, Supervisor};

/// The engine configuration used when none is given: the repository's example,
/// compiled in so `sluice up` needs no file at all.
const DEFAULT_ENGINE_CONFIG: &str = include_str!("../../../engine.example.yaml");

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Engine configuration (default: the built-in embedded demo configuration).
    #[arg(long)]
    pub engine_config: Option<PathBuf>,
    /// Directory for generated configuration and logs.
    #[arg(long, default_value = ".sluice")]
    pub data_dir: PathBuf,
    /// The `sluice-engine` binary (default: next to this `sluice` binary, then $PATH).
    #[arg(long, env = "SLUICE_ENGINE_BIN")]
    pub engine_bin: Option<PathBuf>,
    /// Address of the engine's admin API and metrics (overrides the configuration).
    #[arg(long)]
    pub engine_listen: Option<SocketAddr>,
    /// How long to wait for the engine to become healthy.
    #[arg(long, default_value = "60s", value_parser = parse_secs)]
    pub ready_timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let digits = s.strip_suffix('s').unwrap_or(s);
    digits
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("expected seconds like 60s, got {s:?}"))
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(up(args))
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let source = match &args.engine_config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => DEFAULT_ENGINE_CONFIG.to_string(),
    };
    let (config_text, listen) = engine_config(&source, args.engine_listen)?;
    let config_path = args.data_dir.join("engine.yaml");
    std::fs::write(&config_path, config_text)
        .with_context(|| format!("writing {}", config_path.display()))?;

    let engine_bin = find_engine_bin(args.engine_bin.as_deref())?;
    let log_path = args.data_dir.join("engine.log");
    let mut spec = ProcessSpec::new("engine", &engine_bin);
    spec.args = vec!["--config".into(), config_path.display().to_string()];
    spec.log = Some(log_path.clone());
    spec.restart = RestartPolicy::default();

    let supervisor = Supervisor::new();
    supervisor.start(spec)?;
    let base = format!("http://{listen}");
    if let Err(err) = wait_healthy(&base, args.ready_timeout).await {
        supervisor.stop_all().await;
        bail!("{err:#} (engine log: {})", log_path.display());
    }

    println!("Sluice is up.");
    println!("  engine admin API  {base}/admin/   (health {base}/health, readiness {base}/ready)");
    println!("  engine metrics    {base}/metrics");
    println!("  engine config     {}", config_path.display());
    println!("  engine log        {}", log_path.display());
    println!("Press Ctrl-C to stop.");

    shutdown_signal().await;
    println!("Stopping…");
    supervisor.stop_all().await;
    println!("Stopped.");
    Ok(ExitCode::Success)
}

/// Applies command-line overrides to the engine configuration and returns it
/// with the admin address the engine will listen on.
fn engine_config(source: &str, listen: Option<SocketAddr>) -> anyhow::Result<(String, SocketAddr)> {
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(source).context("parsing the engine configuration")?;
    if !doc.is_object() {
        bail!("the engine configuration must be a YAML mapping");
    }
    if let Some(addr) = listen {
        let admin = doc
            .as_object_mut()
            .and_then(|m| {
                m.entry("admin")
                    .or_insert_with(|| serde_json::json!({}))
                    .as_object_mut()
            })
            .context("`admin` must be a mapping")?;
        admin.insert("listen".into(), addr.to_string().into());
    }
    let addr = doc
        .pointer("/admin/listen")
        .and_then(|v| v.as_str())
        .unwrap_or("127.0.0.1:8080")
        .parse::<SocketAddr>()
        .context("admin.listen is not an address")?;
    // JSON is valid YAML: the engine reads it as it is.
    Ok((serde_json::to_string_pretty(&doc)?, addr))
}

fn find_engine_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("sluice-engine")))
        .filter(|p| p.is_file())
    {
        return Ok(sibling);
    }
    if let Some(on_path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("sluice-engine"))
            .find(|p| p.is_file())
    }) {
        return Ok(on_path);
    }
    bail!(
        "cannot find the sluice-engine binary next to sluice or on $PATH; build it with `cargo build --release` or pass --engine-bin"
    )
}

async fn wait_healthy(base: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = crate::http_client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("{base}/health");
    loop {
        if let Ok(resp) = client.get(&url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the engine did not become healthy at {url} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_configuration_is_embedded_and_listens_on_loopback() {
        let (text, addr) = engine_config(DEFAULT_ENGINE_CONFIG, None).unwrap();
        assert!(addr.ip().is_loopback());
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["kafka"]["brokers"], "embedded");
    }

    #[test]
    fn listen_override_is_applied() {
        let addr: SocketAddr = "127.0.0.1:18080".parse().unwrap();
        let (text, got) = engine_config("kafka: {brokers: embedded}\n", Some(addr)).unwrap();
        assert_eq!(got, addr);
        assert!(text.contains("127.0.0.1:18080"));
    }

    #[test]
    fn a_non_mapping_configuration_is_refused() {
        assert!(engine_config("- a\n- b\n", None).is_err());
    }
}
