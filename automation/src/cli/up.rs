//! `sluice up`: Sluice on a fresh machine with no broker and no configuration.
//!
//! Starts `sluice-engine` on its embedded Kafka (librdkafka's mock cluster) with
//! the demo generator as a supervised child process, waits until it is healthy,
//! then starts the service (`sluice serve`) in this process with the shipped
//! `runbooks/` and `alerts/` and a local SQLite store, prints where to look
//! and an admin API token, and stops everything cleanly on Ctrl-C or SIGTERM.
//!
//! Everything the generated configuration (`.sluice/sluice.yaml`) names is
//! something this command started: Kafka cluster `main` is a loopback
//! forwarder to the engine's embedded broker ([`kafka_forward`]), and the
//! loopback notification channels (`oncall-slack`, `ops-email`) are built-in
//! receivers ([`receivers`]) that keep every message in
//! `.sluice/notifications.log`. The alert rules are evaluated from a demo copy
//! in `.sluice/demo-rules/` with short `for:` durations, so an alert fires
//! seconds after its fault. `--chaos` injects faults into the engine one after
//! another ([`chaos`]) so alerts fire and runbooks remediate them while you
//! watch; the terminal tells the story one line per event ([`story`]), the
//! service's JSON log goes to `.sluice/sluice.log`.

mod chaos;
mod kafka_forward;
mod receivers;
mod story;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::ExitCode;
use crate::process::Supervisor;

/// The engine configuration used when none is given: the repository's example,
/// compiled in so `sluice up` needs no file at all.
const DEFAULT_ENGINE_CONFIG: &str = include_str!("../../../engine.example.yaml");

/// The service configuration used when there is no ./sluice.yaml.
const DEFAULT_SERVICE_CONFIG: &str = include_str!("../../../sluice.yaml");

/// `for:` of the demo rules (longer ones are shortened to this).
const DEMO_FOR: &str = "10s";
/// Alerts whose `for:` the demo keeps: `memory-exhausted` restarts the engine
/// on purpose, and `EngineDown` / `EngineClusterDown` would start a failover
/// to a standby that `sluice up` does not run.
const DEMO_KEEPS_FOR: &[&str] = &["EngineDown", "EngineClusterDown"];
/// Scrape and rule evaluation interval of the demo.
const DEMO_INTERVAL: &str = "2s";

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
    /// Inject faults into the engine (sink failures, processing delay, memory
    /// pressure, in turn): the first 15 s after start, each next one
    /// `--chaos-every` after the previous fault's run ended.
    #[arg(long)]
    pub chaos: bool,
    /// Pause between one chaos fault's run ending and the next fault.
    #[arg(long, default_value = "20s", value_parser = parse_secs)]
    pub chaos_every: Duration,
    /// Evaluate the alert rules with their own `for:` durations and the
    /// configuration's intervals (default: a demo copy with 10 s `for:` and
    /// 2 s scrape / evaluation).
    #[arg(long)]
    pub shipped_durations: bool,
    /// Also print the service's JSON log on stderr (it is always written to
    /// `<data-dir>/sluice.log`; setting RUST_LOG prints it too).
    #[arg(long)]
    pub log: bool,
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

/// The service's log: JSON lines to `<dir>/sluice.log`, and to stderr with
/// `--log` or RUST_LOG.
fn init_logging(dir: &Path, echo: bool) -> anyhow::Result<PathBuf> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,sqlx=warn,rdkafka=warn,hyper=warn")
        })
    };
    let path = dir.join("sluice.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let to_file = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::sync::Mutex::new(file))
        .with_filter(filter());
    let echo = echo || std::env::var_os("RUST_LOG").is_some();
    let to_stderr = echo.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(to_file)
        .with(to_stderr)
        .try_init();
    Ok(path)
}

/// What `sluice up` started that the service configuration points at.
struct Wiring {
    engine_url: String,
    engine_command: Vec<String>,
    /// Kafka cluster `main` (and every other one when the engine runs embedded).
    kafka: Option<KafkaWiring>,
    /// Base URL of the Slack receiver (`…/slack/<channel>`).
    slack: Option<String>,
    /// Port of the SMTP receiver on 127.0.0.1.
    smtp_port: Option<u16>,
    /// Short demo durations: rules from this directory, 2 s intervals.
    demo_rules: Option<PathBuf>,
}

enum KafkaWiring {
    /// The engine's embedded broker, through the forwarder at this address:
    /// every cluster points there.
    Embedded(String),
    /// The engine's own brokers: `main` when the configuration has none.
    Brokers(String),
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let service_log = init_logging(&args.data_dir, args.log)?;
    let teller = Arc::new(story::Teller::new());
    let source = match &args.engine_config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => DEFAULT_ENGINE_CONFIG.to_string(),
    };
    let (config_text, listen) = engine_config(&source, args.engine_listen)?;
    let embedded = engine_brokers(&config_text).is_none();
    let config_path = args.data_dir.join("engine.yaml");
    std::fs::write(&config_path, &config_text)
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

    // What the channels and Kafka cluster `main` point at, started first so
    // the configuration is written once, with their addresses.
    let notifications_log = args.data_dir.join("notifications.log");
    let inbox = receivers::Inbox::new(Some(&notifications_log), teller.clone())?;
    let slack = receivers::slack(inbox.clone()).await?;
    let smtp = receivers::smtp(inbox.clone()).await?;
    let forwarder = if embedded {
        Some(kafka_forward::start(base.clone(), String::new()).await?)
    } else {
        None
    };
    let kafka = match (&forwarder, engine_brokers(&config_text)) {
        (Some(f), _) => Some(KafkaWiring::Embedded(f.addr.to_string())),
        (None, Some(b)) => Some(KafkaWiring::Brokers(b)),
        (None, None) => None,
    };
    let demo_rules = (!args.shipped_durations).then(|| args.data_dir.join("demo-rules"));
    let wiring = Wiring {
        engine_url: base.clone(),
        engine_command: command,
        kafka,
        slack: Some(format!("http://{}", slack.addr)),
        smtp_port: Some(smtp.addr.port()),
        demo_rules,
    };
    // The engine is the service's `primary` target, supervised under that
    // name, so `process.*` steps (restart, scale) act on it.
    let (service_config, token) = service_config(&args, &wiring)?;
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

    println!("Starting the engine (log: {}) …", log_path.display());
    let supervisor = std::sync::Arc::new(Supervisor::new());
    supervisor.start(spec)?;
    let brokers = match wait_healthy(&base, args.ready_timeout).await {
        Ok(()) if embedded => kafka_forward::wait_brokers(&base, args.ready_timeout).await,
        Ok(()) => Ok(engine_brokers(&config_text).unwrap_or_default()),
        Err(e) => Err(e),
    };
    let brokers = match brokers {
        Ok(b) => b,
        Err(err) => {
            supervisor.stop_all().await;
            bail!("{err:#} (engine log: {})", log_path.display());
        }
    };

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
    println!("  console           {api}/ui/   (sign in with the token in .sluice/api-token)");
    println!(
        "  service API       {api}/api/v1/   (runbooks, runs, alerts; OpenAPI {api}/api/openapi.json)"
    );
    println!("  service metrics   {api}/metrics");
    println!("  engine admin API  {base}/admin/   (health {base}/health, readiness {base}/ready)");
    println!("  engine metrics    {base}/metrics");
    match &forwarder {
        Some(f) => println!(
            "  kafka main        {} (forwards to the engine's embedded broker, now {brokers})",
            f.addr
        ),
        None => println!("  kafka main        {brokers}"),
    }
    println!(
        "  notifications     Slack http://{}/slack/<channel>, SMTP 127.0.0.1:{}; kept in {}",
        slack.addr,
        smtp.addr.port(),
        notifications_log.display()
    );
    println!("  service config    {}", service_config.display());
    if let Some(dir) = &wiring.demo_rules {
        println!(
            "  alert rules       demo copy in {} (`for:` {DEMO_FOR}; --shipped-durations for the shipped ones)",
            dir.display()
        );
    }
    println!(
        "  logs              service {} (JSON; --log prints it), engine {}",
        service_log.display(),
        log_path.display()
    );
    if let Some((file, _)) = &token {
        println!(
            "  admin token       in {} (curl -H \"Authorization: Bearer $(cat {})\" {api}/api/v1/runs)",
            file.display(),
            file.display()
        );
    }
    if args.chaos {
        println!(
            "  chaos             first fault in {}s, then one {}s after each fault's run ended",
            chaos::FIRST.as_secs(),
            args.chaos_every.as_secs()
        );
        tokio::spawn(
            chaos::Chaos {
                svc: handle.service.clone(),
                teller: teller.clone(),
                engine: base.clone(),
                api: api.clone(),
                token: token.as_ref().map(|(_, t)| t.clone()),
                every: args.chaos_every,
            }
            .run(handle.service.shutdown_signal()),
        );
    }
    println!("Press Ctrl-C to stop. What happens:");
    tokio::spawn(story::watch(
        handle.service.clone(),
        teller.clone(),
        handle.service.shutdown_signal(),
    ));

    let svc = handle.service.clone();
    crate::cli::serve::serve_until_signal(&handle, &svc).await;
    println!("Stopping…");
    handle.shutdown().await;
    supervisor.stop_all().await;
    drop((slack, smtp, forwarder));
    println!("Stopped.");
    Ok(ExitCode::Success)
}

/// The engine's brokers when they are not `embedded`.
fn engine_brokers(config_json: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(config_json).ok()?;
    doc.pointer("/kafka/brokers")
        .and_then(|b| b.as_str())
        .filter(|b| !b.is_empty() && *b != "embedded")
        .map(str::to_string)
}

/// Whether a URL or host names this machine's loopback (what a placeholder
/// in the default configuration points at).
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(is_loopback_host))
        .unwrap_or(false)
}

/// Points the loopback channels (and the `oncall-slack` / `ops-email` the
/// shipped runbooks name, when missing) at the built-in receivers.
fn wire_channels(obj: &mut serde_json::Map<String, serde_json::Value>, w: &Wiring) {
    let channels = obj
        .entry("channels")
        .or_insert_with(|| serde_json::json!({}));
    if !channels.is_object() {
        *channels = serde_json::json!({});
    }
    let Some(channels) = channels.as_object_mut() else {
        return;
    };
    if w.slack.is_some() {
        channels
            .entry("oncall-slack")
            .or_insert_with(|| serde_json::json!({"slack": {"webhook_url": "http://127.0.0.1/"}}));
    }
    if w.smtp_port.is_some() {
        channels.entry("ops-email").or_insert_with(|| {
            serde_json::json!({"email": {"smtp": {"host": "127.0.0.1"}, "from": "sluice@localhost", "to": ["ops@localhost"]}})
        });
    }
    for (name, ch) in channels.iter_mut() {
        if let (Some(base), Some(s)) = (&w.slack, ch.get_mut("slack"))
            && s.get("webhook_url")
                .and_then(|u| u.as_str())
                .is_some_and(is_loopback_url)
        {
            let short = name.strip_suffix("-slack").unwrap_or(name);
            s["webhook_url"] = serde_json::json!(format!("{base}/slack/{short}"));
        }
        if let (Some(port), Some(e)) = (w.smtp_port, ch.get_mut("email"))
            && let Some(smtp) = e.get_mut("smtp")
            && smtp
                .get("host")
                .and_then(|h| h.as_str())
                .is_some_and(is_loopback_host)
        {
            smtp["host"] = serde_json::json!("127.0.0.1");
            smtp["port"] = serde_json::json!(port);
            smtp["tls"] = serde_json::json!("none");
            if let Some(m) = smtp.as_object_mut() {
                m.remove("username");
                m.remove("password");
            }
        }
    }
}

/// Writes the service configuration `sluice up` runs with: the given one (or
/// the built-in default) pointed at what this command started (the engine,
/// Kafka, the notification receivers), the runbook and rule paths made
/// absolute, and an admin token when none is configured.
fn service_config(
    args: &UpArgs,
    w: &Wiring,
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
        let list = match (key, &w.demo_rules) {
            ("rules", Some(out)) => demo_rules(&list, out)?,
            _ => list,
        };
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
    primary["url"] = serde_json::json!(w.engine_url);
    primary["process"] = serde_json::json!({"command": w.engine_command});
    match &w.kafka {
        Some(KafkaWiring::Embedded(addr)) => {
            let kafka = obj.entry("kafka").or_insert_with(|| serde_json::json!({}));
            if !kafka.is_object() {
                *kafka = serde_json::json!({});
            }
            if let Some(m) = kafka.as_object_mut() {
                m.entry("main").or_insert_with(|| serde_json::json!({}));
                for cluster in m.values_mut() {
                    // The embedded broker is the only one there is.
                    *cluster = serde_json::json!({"brokers": addr});
                }
            }
        }
        Some(KafkaWiring::Brokers(b)) => {
            let kafka = obj.entry("kafka").or_insert_with(|| serde_json::json!({}));
            if let Some(m) = kafka.as_object_mut() {
                m.entry("main")
                    .or_insert_with(|| serde_json::json!({"brokers": b}));
            }
        }
        None => {}
    }
    wire_channels(obj, w);
    let metrics = obj
        .entry("metrics")
        .or_insert_with(|| serde_json::json!({"interval": "5s"}));
    if metrics.get("scrape").is_none() && metrics.get("prometheus_url").is_none() {
        metrics["scrape"] = serde_json::json!(["primary"]);
    }
    if w.demo_rules.is_some() {
        metrics["interval"] = serde_json::json!(DEMO_INTERVAL);
        let alerting = obj
            .entry("alerting")
            .or_insert_with(|| serde_json::json!({}));
        alerting["evaluation_interval"] = serde_json::json!(DEMO_INTERVAL);
        if alerting.get("route").is_none() {
            alerting["route"] = serde_json::json!({
                "receiver": "oncall-slack",
                "group_by": ["alertname"],
                "group_wait": "2s",
                "group_interval": "5s",
            });
        }
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

/// Copies the rule files under `paths` into `out` (emptied first) with
/// short `for:` durations; returns `[out]`. Other files (rule tests) are
/// left out: the service does not run them.
fn demo_rules(paths: &[String], out: &Path) -> anyhow::Result<Vec<String>> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    for p in paths {
        collect_yaml(Path::new(p), 0, &mut files);
    }
    let mut n = 0;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if !text.lines().any(|l| l.starts_with("groups:")) {
            continue;
        }
        n += 1;
        let name = f
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = out.join(format!("{n:02}-{name}"));
        std::fs::write(&dest, demo_durations(&text))
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    let abs = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    Ok(vec![abs.display().to_string()])
}

fn collect_yaml(p: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if p.is_file() {
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p.to_path_buf());
        }
        return;
    }
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(p) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for e in entries {
        collect_yaml(&e, depth + 1, out);
    }
}

/// A rule file with every `for:` longer than [`DEMO_FOR`] shortened to it
/// (except [`DEMO_KEEPS_FOR`]) and group `interval:`s to [`DEMO_INTERVAL`];
/// expressions, labels and annotations unchanged.
fn demo_durations(text: &str) -> String {
    let short = DEMO_FOR
        .parse::<crate::duration::Duration>()
        .map(|d| d.std());
    let mut alert = String::new();
    let mut out: Vec<String> = text
        .lines()
        .map(|line| {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            if let Some(name) = t
                .strip_prefix("- alert:")
                .or_else(|| t.strip_prefix("alert:"))
            {
                alert = name.trim().trim_matches(['"', '\'']).to_string();
            }
            let value = |key: &str| {
                t.strip_prefix(key)
                    .map(|v| {
                        v.split('#')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .trim_matches(['"', '\''])
                    })
                    .and_then(|v| v.parse::<crate::duration::Duration>().ok())
                    .map(|d| d.std())
            };
            match (value("for:"), &short) {
                (Some(d), Ok(s)) if d > *s && !DEMO_KEEPS_FOR.contains(&alert.as_str()) => {
                    return format!("{indent}for: {DEMO_FOR}");
                }
                _ => {}
            }
            if value("interval:").is_some() {
                return format!("{indent}interval: {DEMO_INTERVAL}");
            }
            line.to_string()
        })
        .collect();
    out.push(String::new());
    out.join("\n")
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
        let wiring = |cmd: &[String]| Wiring {
            engine_url: "http://127.0.0.1:18080".into(),
            engine_command: cmd.to_vec(),
            kafka: None,
            slack: None,
            smtp_port: None,
            demo_rules: None,
        };
        let (path, token) = service_config(&args, &wiring(&cmd)).unwrap();
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
        let (_, again) = service_config(&args, &wiring(&cmd)).unwrap();
        assert_eq!(again.unwrap().1, value);
    }

    impl UpArgs {
        pub(super) fn parse_from_for_test(config: &Path, data: &Path) -> UpArgs {
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

#[cfg(test)]
mod wiring_tests {
    use super::*;
    use crate::config::{Channel, Config};

    #[test]
    fn demo_rules_shorten_for_and_intervals_but_keep_engine_down() {
        let text = "groups:\n  - name: g\n    interval: 30s\n    rules:\n      - alert: A\n        expr: x > 1\n        for: 5m\n      - alert: EngineDown\n        expr: up == 0\n        for: 1m\n      - alert: B\n        expr: y\n        for: 2s\n        annotations: {runbook: \"for: 1h\"}\n";
        let out = demo_durations(text);
        assert!(out.contains("    interval: 2s\n"), "{out}");
        assert!(
            out.contains("      - alert: A\n        expr: x > 1\n        for: 10s\n"),
            "{out}"
        );
        assert!(out.contains("for: 1m"), "{out}");
        assert!(out.contains("for: 2s"), "{out}");
        assert!(out.contains("expr: up == 0"), "{out}");
        // The shipped rules still parse after the edit.
        let shipped = include_str!("../../../alerts/sluice.yaml");
        let demo = demo_durations(shipped);
        crate::rules::parse_rule_file(Path::new("demo.yaml"), &demo).unwrap();
        for long in ["for: 2m", "for: 3m", "for: 5m", "for: 10m", "for: 15m"] {
            assert!(!demo.contains(long), "{long} in {demo}");
        }
        assert!(demo.contains("for: 10s"), "{demo}");
    }

    #[test]
    fn the_built_in_default_is_pointed_at_what_up_started() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rb")).unwrap();
        std::fs::create_dir_all(dir.path().join("al/tests")).unwrap();
        std::fs::write(
            dir.path().join("al/r.yaml"),
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1)\n        for: 5m\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("al/tests/t.yaml"),
            "rule_files: [../r.yaml]\ntests: []\n",
        )
        .unwrap();
        let shipped = include_str!("../../../sluice.yaml").replace(
            "kafka:\n",
            "runbooks: [rb]\nrules: [al]\nkafka:\n  other: {brokers: 'k:9092'}\n",
        );
        let cfg = dir.path().join("sluice.yaml");
        std::fs::write(&cfg, shipped).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let args = UpArgs::parse_from_for_test(&cfg, &data);
        let w = Wiring {
            engine_url: "http://127.0.0.1:18080".into(),
            engine_command: vec!["/bin/engine".into()],
            kafka: Some(KafkaWiring::Embedded("127.0.0.1:19092".into())),
            slack: Some("http://127.0.0.1:19099".into()),
            smtp_port: Some(12525),
            demo_rules: Some(data.join("demo-rules")),
        };
        let (path, _) = service_config(&args, &w).unwrap();
        let c = Config::load(&path).unwrap();
        for (name, k) in &c.kafka {
            assert_eq!(k.brokers, "127.0.0.1:19092", "{name}");
        }
        match &c.channels["oncall-slack"] {
            Channel::Slack(s) => {
                assert_eq!(
                    s.webhook_url.as_ref().map(|u| u.expose()),
                    Some("http://127.0.0.1:19099/slack/oncall")
                )
            }
            other => panic!("{other:?}"),
        }
        match &c.channels["ops-email"] {
            Channel::Email(e) => {
                assert_eq!(
                    (e.smtp.host.as_str(), e.smtp.port),
                    ("127.0.0.1", Some(12525))
                );
                assert_eq!(e.smtp.tls, crate::config::SmtpTls::None);
            }
            other => panic!("{other:?}"),
        }
        // The demo copy of the rules: only rule files, `for:` shortened.
        assert_eq!(
            c.rules,
            vec![std::fs::canonicalize(data.join("demo-rules")).unwrap()]
        );
        let files: Vec<_> = std::fs::read_dir(data.join("demo-rules"))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1);
        let demo = std::fs::read_to_string(data.join("demo-rules/01-r.yaml")).unwrap();
        assert!(demo.contains("for: 10s"), "{demo}");
    }

    #[test]
    fn a_real_slack_channel_is_left_alone() {
        let mut obj = serde_json::json!({"channels": {"team": {"slack": {"webhook_url": "https://hooks.slack.com/services/x"}}}});
        let w = Wiring {
            engine_url: String::new(),
            engine_command: vec![],
            kafka: None,
            slack: Some("http://127.0.0.1:1".into()),
            smtp_port: Some(2),
            demo_rules: None,
        };
        wire_channels(obj.as_object_mut().unwrap(), &w);
        assert_eq!(
            obj["channels"]["team"]["slack"]["webhook_url"],
            "https://hooks.slack.com/services/x"
        );
        assert_eq!(
            obj["channels"]["oncall-slack"]["slack"]["webhook_url"],
            "http://127.0.0.1:1/slack/oncall"
        );
        assert_eq!(obj["channels"]["ops-email"]["email"]["smtp"]["port"], 2);
    }
}
