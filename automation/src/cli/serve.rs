//! `sluice serve --config sluice.yaml`: the long-running service (see
//! [`crate::service`]). Stops cleanly on Ctrl-C / SIGTERM; SIGHUP reloads
//! runbooks and rules. Exit 0 after a clean stop, 1 when this instance lost
//! its lease (another one took over its runs), 2 on an invalid configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::ExitCode;
use crate::schedule::scheduler::{Clock, SystemClock};
use crate::service::{Options, Service};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Service configuration.
    #[arg(short, long, default_value = "sluice.yaml")]
    pub config: PathBuf,
    /// Address of the HTTP API (overrides `api.listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Run store URL (overrides `store`): sqlite://PATH or postgres://…
    #[arg(long, env = "SLUICE_STORE")]
    pub store: Option<String>,
    /// Do not watch runbook and rule directories (reload with SIGHUP or the API).
    #[arg(long)]
    pub no_watch: bool,
    /// Testing: start the service clock at this RFC 3339 time (it then runs at
    /// normal speed), so schedules can be exercised without waiting for them.
    #[arg(long, hide = true)]
    pub clock_start: Option<String>,
}

/// Real time shifted by a fixed offset.
struct OffsetClock(chrono::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

/// Logs to stderr: JSON when SLUICE_LOG_FORMAT=json; level from RUST_LOG (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,rdkafka=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|v| v == "json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let clock: Arc<dyn Clock> = match &args.clock_start {
        Some(s) => {
            let start = DateTime::parse_from_rfc3339(s)
                .with_context(|| format!("--clock-start `{s}` is not an RFC 3339 time"))?
                .with_timezone(&Utc);
            Arc::new(OffsetClock(start - Utc::now()))
        }
        None => Arc::new(SystemClock),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let handle = match Service::start(Options {
            config_path: args.config.clone(),
            listen: args.listen,
            store_url: args.store.clone(),
            clock,
            watch: !args.no_watch,
            supervisor: None,
        })
        .await
        {
            Ok(h) => h,
            Err(e) if format!("{e}").starts_with("invalid configuration") => {
                eprintln!("sluice: {e:#}");
                return Ok(ExitCode::Invalid);
            }
            Err(e) => return Err(e),
        };
        eprintln!("sluice: serving on http://{}", handle.addr);
        let svc = handle.service.clone();
        serve_until_signal(&handle, &svc).await;
        let fenced = svc.fenced.load(std::sync::atomic::Ordering::SeqCst);
        handle.shutdown().await;
        Ok(if fenced {
            ExitCode::Failed
        } else {
            ExitCode::Success
        })
    })
}

/// Waits for Ctrl-C, SIGTERM or the service stopping by itself; reloads on SIGHUP.
pub async fn serve_until_signal(handle: &crate::service::Handle, svc: &Arc<Service>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = handle.stopped() => {}
            }
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = handle.stopped() => return,
                _ = hup.recv() => {
                    let s = svc.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = handle.stopped() => {}
    }
}
