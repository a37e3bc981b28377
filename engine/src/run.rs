//! The engine process: admin API, pipeline, demo generator and the periodic
//! sampler/cleanup, until SIGINT/SIGTERM; then delivers, commits and exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tokio::sync::watch;

use crate::admin;
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::history::Sample;
use crate::resources::CpuSampler;

/// Options of one engine process.
pub struct RunOptions {
    pub config: EngineConfig,
    pub config_path: Option<std::path::PathBuf>,
    pub fault_injection: bool,
}

/// Runs until a termination signal.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let engine = Engine::new(opts.config, opts.config_path, opts.fault_injection);
    let cfg = engine.config();
    let listener = tokio::net::TcpListener::bind(&cfg.admin.listen.value)
        .await
        .with_context(|| format!("bind admin listener {}", cfg.admin.listen.value))?;
    let addr = listener.local_addr()?;
    // Printed for scripts and tests that bind port 0.
    println!("sluice-engine admin listening on http://{addr}");
    tracing::info!(%addr, "Admin API listening.");
    let mut shutdown = engine.shutdown_signal();
    let server = {
        let engine = engine.clone();
        let mut sd = engine.shutdown_signal();
        tokio::spawn(async move {
            let stop = async move {
                let _ = sd.wait_for(|v| *v).await;
            };
            if let Err(error) = admin::serve(engine, listener, stop).await {
                tracing::error!(%error, "Admin server failed.");
            }
        })
    };

    engine.start_pipeline().await.context("start pipeline")?;
    let (demo_stop_tx, demo_stop_rx) = watch::channel(false);
    let demo = if cfg.kafka.demo.enabled {
        let brokers = engine.brokers()?;
        let demo_cfg = cfg.kafka.demo.clone();
        Some(tokio::spawn(async move {
            if let Err(error) = crate::demo::run(demo_cfg, brokers, demo_stop_rx).await {
                tracing::error!(error = format!("{error:#}"), "Demo generator stopped.");
            }
        }))
    } else {
        None
    };
    let sampler = tokio::spawn(sample_loop(engine.clone()));

    let signal = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            _ = shutdown.wait_for(|v| *v) => {}
        }
    };
    signal.await;
    tracing::info!("Shutting down: delivering pending results and committing offsets.");
    engine.request_shutdown();
    let _ = demo_stop_tx.send(true);
    if let Some(d) = demo {
        let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
    }
    sampler.abort();
    engine.stop_pipeline().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    engine
        .embedded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    Ok(())
}

/// Every few seconds: OS figures into gauges, a history sample; every
/// `cleanup_interval` (or earlier above `gc_threshold`): state cleanup.
async fn sample_loop(engine: Arc<Engine>) {
    let mut cpu = CpuSampler::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last_cleanup = std::time::Instant::now();
    let mut latency_before = engine.metrics.record_latency.bucket_counts();
    loop {
        tick.tick().await;
        let pct = cpu.sample();
        admin::routes_support::refresh(&engine, Some(pct));
        let m = &engine.metrics;
        let totals = m.totals();
        engine
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Sample {
                at: Utc::now(),
                records_processed: m.records_processed.get(),
                records_failed: m.records_failed.get(),
                results_produced: m.results_produced.get(),
                throughput: totals.throughput,
                // p99 of this interval's records, not since start.
                latency_p99_seconds: m.record_latency.quantile_since(&latency_before, 0.99),
                memory_bytes: m.memory_total.get(),
                cpu_percent: pct,
                breaker_open: engine.breaker.state() == crate::circuit_breaker::BreakerState::Open,
                backlog: totals.backlog_total(),
            });
        latency_before = m.record_latency.bucket_counts();
        let cfg = engine.config();
        let interval = Duration::from_secs(cfg.memory_management.cleanup_interval.value.max(1));
        let pressure = m.memory_percent.get() >= cfg.memory_management.gc_threshold.value * 100.0;
        if last_cleanup.elapsed() >= interval || pressure {
            last_cleanup = std::time::Instant::now();
            if let Some(p) = engine.pipeline.lock().await.as_ref() {
                match p.cleanup().await {
                    Ok(r) => tracing::debug!(
                        windows = r.windows_closed,
                        bytes = r.bytes_freed,
                        "Periodic cleanup."
                    ),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "Periodic cleanup failed.")
                    }
                }
            }
        }
    }
}
