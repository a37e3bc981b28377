//! `sluice up`: Sluice on a fresh machine with no broker and no configuration.
//!
//! Starts `sluice-engine` on its embedded Kafka (librdkafka's mock cluster) with
//! the demo generator as a supervised child process, waits until it is healthy,
//! then starts the service (`sluice serve`) in this process with the shipped
//! `runbooks/` and `alerts/` and a local SQLite store, prints where to look
//! and an admin API token, and stops everything cleanly on Ctrl-C or SIGTERM.
//! `--chaos` injects faults into the engine now and then so alerts fire and
//! runbooks remediate them while you watch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::ExitCode;
use crate::process::Supervisor;

/// The engine configuration used when none is given: the repository's example,
/// compiled in so `sluice up` needs no file at all.
const DEFAULT_ENGINE_CONFIG: &str = include_str!("../../../engine.example.yaml");

/// The service configuration used when there is no ./sluice.yaml.
const DEFAULT_SERVICE_CONFIG: &str = include_str!("../../../sluice.yaml");

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
    /// Service configuration (default: ./sluice.yaml, else the built-in default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the service API (default: the configuration's `api.listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Inject faults into the engine every `--chaos-every` (sink failures,
    /// processing delay, memory pressure, in turn) so alerts fire and runbooks act.
    #[arg(long)]
    pub chaos: bool,
    /// Time between chaos faults.
    #[arg(long, default_value = "600s", value_parser = parse_secs)]
    pub chaos_every: Duration,
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
    crate::cli::serve::init_logging();
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
    let mut command = vec![
        engine_bin.display().to_string(),
        "--config".to_string(),
        std::fs::canonicalize(&config_path)
            .unwrap_or(config_path.clone())
            .display()
            .to_string(),
    ];
    if args.chaos {
        command.push("--enable-fault-injection".into());
    }
    let base = format!("http://{listen}");
    // The engine is the service's `primary` target, supervised under that
    // name, so `process.*` steps (restart, scale) act on it.
    let (service_config, token) = service_config(&args, &base, &command)?;
    let config = crate::config::Config::load(&service_config).map_err(|d| {
        anyhow::anyhow!(
            "generated configuration is invalid: {}",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let primary = config
        .targets
        .get("primary")
        .context("the configuration has no `primary` target")?;
    let spec = crate::process::instance::spec("primary", primary, 0, None)?;
    let log_path = spec
        .log
        .clone()
        .unwrap_or_else(|| args.data_dir.join("engine.log"));

    let supervisor = std::sync::Arc::new(Supervisor::new());
    supervisor.start(spec)?;
    if let Err(err) = wait_healthy(&base, args.ready_timeout).await {
        supervisor.stop_all().await;
        bail!("{err:#} (engine log: {})", log_path.display());
    }

    let handle = match crate::service::Service::start(crate::service::Options {
        config_path: service_config.clone(),
        listen: args.listen,
        store_url: None,
        clock: std::sync::Arc::new(crate::schedule::scheduler::SystemClock),
        watch: true,
        supervisor: Some(supervisor.clone()),
    })
    .await
    {
        Ok(h) => h,
        Err(e) => {
            supervisor.stop_all().await;
            return Err(e.context("starting the service"));
        }
    };
    let api = format!("http://{}", handle.addr);

    println!("Sluice is up.");
    println!(
        "  service API       {api}/api/v1/   (runbooks, runs, alerts; OpenAPI {api}/api/openapi.json)"
    );
    println!("  service metrics   {api}/metrics");
    println!("  engine admin API  {base}/admin/   (health {base}/health, readiness {base}/ready)");
    println!("  engine metrics    {base}/metrics");
    println!("  service config    {}", service_config.display());
    println!("  engine log        {}", log_path.display());
    if let Some((file, _)) = &token {
        println!(
            "  admin token       in {} (curl -H \"Authorization: Bearer $(cat {})\" {api}/api/v1/runs)",
            file.display(),
            file.display()
        );
    }
    if args.chaos {
        println!(
            "  chaos             a fault every {}s; watch {api}/api/v1/alerts and {api}/api/v1/runs",
            args.chaos_every.as_secs()
        );
        tokio::spawn(chaos(
            base.clone(),
            args.chaos_every,
            handle.service.shutdown_signal(),
        ));
    }
    println!("Press Ctrl-C to stop.");

    let svc = handle.service.clone();
    crate::cli::serve::serve_until_signal(&handle, &svc).await;
    println!("Stopping…");
    handle.shutdown().await;
    supervisor.stop_all().await;
    println!("Stopped.");
    Ok(ExitCode::Success)
}

/// Writes the service configuration `sluice up` runs with: the given one (or
/// the built-in default) pointed at the engine just started, the runbook and
/// rule paths made absolute, and an admin token when none is configured.
fn service_config(
    args: &UpArgs,
    engine_url: &str,
    engine_command: &[String],
) -> anyhow::Result<(PathBuf, Option<(PathBuf, String)>)> {
    let (text, dir) = match &args.config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None if Path::new("sluice.yaml").is_file() => (
            std::fs::read_to_string("sluice.yaml").context("reading sluice.yaml")?,
            PathBuf::new(),
        ),
        None => (DEFAULT_SERVICE_CONFIG.to_string(), PathBuf::new()),
    };
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(&text).context("parsing the service configuration")?;
    if doc.is_null() {
        doc = serde_json::json!({});
    }
    let obj = doc
        .as_object_mut()
        .context("the service configuration must be a mapping")?;
    let cwd = std::env::current_dir().context("current directory")?;
    let abs = |p: &str| -> String {
        let p = Path::new(p);
        if p.is_absolute() {
            p.display().to_string()
        } else {
            cwd.join(&dir).join(p).display().to_string()
        }
    };
    for (key, default) in [("runbooks", "runbooks"), ("rules", "alerts")] {
        let list: Vec<String> = match obj.get(key).and_then(|v| v.as_array()) {
            Some(items) => items.iter().filter_map(|v| v.as_str()).map(abs).collect(),
            None => vec![abs(default)],
        };
        for p in &list {
            if !Path::new(p).exists() {
                bail!(
                    "{p} does not exist: run `sluice up` where the shipped runbooks/ and alerts/ are (the repository or the Docker image), or pass --config"
                );
            }
        }
        obj.insert(key.into(), serde_json::json!(list));
    }
    // The engine this command started is the `primary` target.
    let targets = obj
        .entry("targets")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .context("`targets` must be a mapping")?;
    let primary = targets
        .entry("primary")
        .or_insert_with(|| serde_json::json!({}));
    primary["url"] = serde_json::json!(engine_url);
    primary["process"] = serde_json::json!({"command": engine_command});
    let metrics = obj
        .entry("metrics")
        .or_insert_with(|| serde_json::json!({"interval": "5s"}));
    if metrics.get("scrape").is_none() && metrics.get("prometheus_url").is_none() {
        metrics["scrape"] = serde_json::json!(["primary"]);
    }
    let service = obj
        .entry("service")
        .or_insert_with(|| serde_json::json!({}));
    if service.get("data_dir").is_none() {
        service["data_dir"] = serde_json::json!(abs(&args.data_dir.display().to_string()));
    }
    let api = obj.entry("api").or_insert_with(|| serde_json::json!({}));
    let mut token = None;
    if api
        .get("tokens")
        .and_then(|t| t.as_array())
        .is_none_or(|t| t.is_empty())
    {
        let file = args.data_dir.join("api-token");
        let value = match std::fs::read_to_string(&file) {
            Ok(t) if t.trim().len() >= 32 => t.trim().to_string(),
            _ => {
                use rand::RngExt;
                let bytes: [u8; 24] = rand::rng().random();
                let t = hex::encode(bytes);
                write_private(&file, &t)?;
                t
            }
        };
        api["tokens"] =
            serde_json::json!([{"name": "local-admin", "token": value, "role": "admin"}]);
        token = Some((file, value));
    }
    let out = args.data_dir.join("sluice.yaml");
    // JSON is valid YAML; `$${` keeps literal `${` that are not variables.
    write_private(&out, &serde_json::to_string_pretty(&doc)?)?;
    Ok((out, token))
}

/// Writes a file only the owner can read (it may hold tokens).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Injects one fault after another into the engine, each for a while.
async fn chaos(engine: String, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Ok(client) = crate::http_client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return;
    };
    let faults = [
        (
            "sink failures (the circuit breaker opens)",
            serde_json::json!({"sink_failure_rate": 1.0}),
            Duration::from_secs(150),
        ),
        (
            "processing delay (latency rises)",
            serde_json::json!({"processing_delay_ms": 50.0}),
            Duration::from_secs(420),
        ),
        (
            "memory pressure (utilization above 95%)",
            serde_json::json!({"memory_ballast_mb": 1000}),
            Duration::from_secs(200),
        ),
    ];
    let url = format!("{engine}/admin/fault-injection");
    for (what, body, lasts) in faults.iter().cycle() {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::service::until_stopped(&mut stop) => return,
        }
        tracing::warn!(
            fault = *what,
            seconds = lasts.as_secs(),
            "Chaos: injecting a fault."
        );
        let _ = client.post(&url).json(body).send().await;
        tokio::select! {
            _ = tokio::time::sleep(*lasts) => {}
            _ = crate::service::until_stopped(&mut stop) => {}
        }
        tracing::info!(fault = *what, "Chaos: fault cleared.");
        let _ = client.delete(&url).send().await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
    fn the_service_configuration_points_at_the_engine_and_gets_a_private_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rb")).unwrap();
        std::fs::create_dir_all(dir.path().join("al")).unwrap();
        let cfg = dir.path().join("sluice.yaml");
        std::fs::write(
            &cfg,
            "runbooks: [rb]\nrules: [al]\ntargets:\n  primary: {url: http://elsewhere:1}\n",
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let args = UpArgs::parse_from_for_test(&cfg, &data);
        let cmd = vec![
            "/bin/engine".to_string(),
            "--config".to_string(),
            "e.yaml".to_string(),
        ];
        let (path, token) = service_config(&args, "http://127.0.0.1:18080", &cmd).unwrap();
        let written = Config::load(&path).unwrap();
        assert_eq!(
            written.targets["primary"].url.to_string(),
            "http://127.0.0.1:18080"
        );
        assert_eq!(written.runbooks, vec![dir.path().join("rb")]);
        assert_eq!(
            written.metrics.as_ref().unwrap().scrape,
            vec![crate::config::ScrapeEntry::named("primary")]
        );
        let (file, value) = token.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), value);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The token is stable across starts.
        assert_eq!(
            written.targets["primary"].process.as_ref().unwrap().command,
            cmd
        );
        let (_, again) = service_config(&args, "http://127.0.0.1:18080", &cmd).unwrap();
        assert_eq!(again.unwrap().1, value);
    }

    impl UpArgs {
        fn parse_from_for_test(config: &Path, data: &Path) -> UpArgs {
            use clap::Parser as _;
            #[derive(clap::Parser)]
            struct Wrap {
                #[command(flatten)]
                up: UpArgs,
            }
            Wrap::parse_from([
                "up",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .up
        }
    }

    #[test]
    fn a_non_mapping_configuration_is_refused() {
        assert!(engine_config("- a\n- b\n", None).is_err());
    }
}
