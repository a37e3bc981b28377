//! `sluice serve`: the long-running service. It scrapes the engines, evaluates
//! the alert rules, starts runbooks on alerts, schedules and webhooks (through
//! the guards), notifies people like Alertmanager does, serves the HTTP API,
//! hot-reloads runbooks and rules, and keeps every run durable: a crash never
//! loses a run record and never runs a step twice silently.
//!
//! Modules meet through narrow pieces: the [`runner::Runner`] starts runs, the
//! [`library::Library`] holds what is loaded, loops live in their own files.

pub mod alerts;
pub mod decisions;
pub mod lease;
pub mod library;
pub mod maintenance;
pub mod metrics;
pub mod notifier;
pub mod progress;
pub mod query;
pub mod runner;
pub mod schedules;
pub mod scrape;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use anyhow::{Context, bail};
use chrono::Utc;
use tokio::sync::{Notify, watch as tokio_watch};
use tracing::{info, warn};

use crate::alert::{AlertEvent, FileStateStore, LocalEngine, RuleManager, RuleManagerOptions};
use crate::api::audit::{AuditEvent, AuditSink, JsonlAuditLog};
use crate::api::auth::TokenSet;
use crate::config::Config;
use crate::dispatch::{Dispatcher, Silence};
use crate::exec::context::Services;
use crate::schedule::scheduler::Clock;
use crate::store::Store;
use library::{Library, ReloadReport};
use metrics::ServiceMetrics;
use runner::Runner;

/// How `sluice serve` was started.
pub struct Options {
    pub config_path: PathBuf,
    /// Overrides `api.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides the store URL.
    pub store_url: Option<String>,
    pub clock: Arc<dyn Clock>,
    /// Watch runbook and rule directories for changes.
    pub watch: bool,
    /// The supervisor of local engine processes (`sluice up` passes the one
    /// running its engine); `None`: the service makes its own.
    pub supervisor: Option<Arc<crate::process::Supervisor>>,
}

/// Who this instance is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Instance {
    /// Unique per process start (`name-xxxxxxxx`): the owner of its runs.
    pub id: String,
    pub name: String,
}

/// The audit log: the JSONL file plus the latest events in memory for the API.
pub struct Audit {
    file: Option<JsonlAuditLog>,
    recent: Mutex<std::collections::VecDeque<AuditEvent>>,
}

impl Audit {
    const KEEP: usize = 1000;

    pub fn recent(&self, limit: usize) -> Vec<AuditEvent> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().rev().take(limit).cloned().collect()
    }
}

impl AuditSink for Audit {
    fn record(&self, event: &AuditEvent) -> std::io::Result<()> {
        {
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() == Self::KEEP {
                r.pop_front();
            }
            r.push_back(event.clone());
        }
        match &self.file {
            Some(f) => f.record(event),
            None => Ok(()),
        }
    }
}

/// Everything the running service shares between its loops and the API.
pub struct Service {
    pub config: Arc<Config>,
    pub config_path: PathBuf,
    pub instance: Instance,
    pub store: Store,
    pub runner: Arc<Runner>,
    pub library: RwLock<Library>,
    pub runbook_paths: Vec<PathBuf>,
    pub rule_paths: Vec<PathBuf>,
    pub rules: Arc<RuleManager>,
    pub storage: Arc<sluice_promql::MemStorage>,
    pub dispatcher: Option<Mutex<Dispatcher>>,
    /// Firing alerts from the Alertmanager webhook, by fingerprint.
    pub external_alerts: Mutex<BTreeMap<String, AlertEvent>>,
    pub windows: maintenance::Windows,
    pub metrics: Arc<ServiceMetrics>,
    pub audit: Arc<Audit>,
    pub tokens: Arc<TokenSet>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the scheduler after a reload.
    pub schedules_changed: Notify,
    /// Wakes the notifier after new alerts.
    pub alerts_changed: Notify,
    pub scrape_reports: Mutex<BTreeMap<String, crate::scrape::ScrapeReport>>,
    pub started_at: chrono::DateTime<Utc>,
    /// Set when this instance lost its lease and stopped acting.
    pub fenced: std::sync::atomic::AtomicBool,
    shutdown: tokio_watch::Sender<bool>,
}

/// A running service.
pub struct Handle {
    pub service: Arc<Service>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    /// Processes the service started itself (autostart targets): stopped with it.
    owns_supervisor: bool,
}

impl Handle {
    /// Resolves when the service was told to stop (signal, lost lease).
    pub async fn stopped(&self) {
        let mut rx = self.service.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops the service: no new runs, running ones get the shutdown grace,
    /// the instance is marked stopped so another takes over at once.
    pub async fn shutdown(self) {
        let svc = self.service.clone();
        let _ = svc.shutdown.send(true);
        let left = svc
            .runner
            .drain(svc.config.service.shutdown_grace.std())
            .await;
        if left > 0 {
            warn!(
                runs = left,
                "Runs still running at shutdown; the next start resumes or reports them."
            );
        }
        if let Err(e) = svc.store.stop_instance(&svc.instance.id).await {
            warn!(error = %e, "Could not mark the instance stopped.");
        }
        if self.owns_supervisor
            && let Some(sup) = &svc.runner.services.supervisor
        {
            sup.stop_all().await;
        }
        let _ = self.server.await;
        info!(instance = %svc.instance.id, "Sluice stopped.");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sluice".to_string())
}

/// The store URL: option, sluice.yaml `store`, `$SLUICE_STORE`, else SQLite in the data dir.
pub fn store_url(config: &Config, explicit: Option<&str>, data_dir: &Path) -> String {
    explicit
        .map(str::to_string)
        .or_else(|| config.store.as_ref().map(|s| s.expose().to_string()))
        .or_else(|| std::env::var("SLUICE_STORE").ok())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("runs.db").display()))
}

impl Service {
    /// Loads everything and starts every loop and the HTTP API.
    pub async fn start(opts: Options) -> anyhow::Result<Handle> {
        let config = match Config::load(&opts.config_path) {
            Ok(c) => c,
            Err(diags) => {
                let text = std::fs::read_to_string(&opts.config_path).ok();
                let shown: Vec<String> = diags.iter().map(|d| d.render(text.as_deref())).collect();
                bail!("invalid configuration:\n{}", shown.join("\n"));
            }
        };
        // Relative paths in the config are relative to its directory.
        let base = opts
            .config_path
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf);
        let data_dir = if config.service.data_dir.is_absolute() {
            config.service.data_dir.clone()
        } else {
            base.join(&config.service.data_dir)
        };
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let redactor = config.redactor();
        let url = store_url(&config, opts.store_url.as_deref(), &data_dir);
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening the run store {}", redactor.text(&url)))?;

        let name = config.service.instance.clone().unwrap_or_else(hostname);
        let id = {
            use rand::RngExt;
            format!("{name}-{:08x}", rand::rng().random::<u32>())
        };
        store
            .register_instance(&id, &name)
            .await
            .context("registering the instance")?;
        let instance = Instance { id, name };

        let metrics = Arc::new(ServiceMetrics::default());
        let (runbook_paths, rule_paths) = library::default_paths(&config, &base);
        let retention = config
            .metrics
            .as_ref()
            .map_or(StdDuration::from_secs(6 * 3600), |m| m.retention.std());
        let storage = Arc::new(sluice_promql::MemStorage::new(retention));
        let query = Arc::new(query::LocalQuery::new(storage.clone()));

        let mut services = Services::new(config.clone(), Some(store.clone()))
            .context("building the HTTP client")?;
        services.external_url = config.service.external_url.as_ref().map(|u| u.to_string());
        services.progress = Some(Arc::new(progress::MetricsProgress(metrics.clone())));
        services.local_query = Some(query);
        let owns_supervisor = opts.supervisor.is_none();
        let supervisor = opts
            .supervisor
            .clone()
            .unwrap_or_else(|| Arc::new(crate::process::Supervisor::new()));
        services.supervisor = Some(supervisor.clone());
        let services = Arc::new(services);
        let runner = Arc::new(Runner::new(
            services.clone(),
            store.clone(),
            instance.id.clone(),
            metrics.clone(),
            config.service.max_concurrent_runs,
        ));

        let engine: Arc<dyn crate::alert::RuleQueryEngine> = match config
            .metrics
            .as_ref()
            .and_then(|m| m.prometheus_url.clone())
        {
            Some(url) => Arc::new(crate::alert::RemoteEngine {
                prometheus: crate::scrape::remote::RemotePrometheus::new(
                    url.0,
                    StdDuration::from_secs(10),
                    None,
                )?,
                runtime: tokio::runtime::Handle::current(),
            }),
            None => Arc::new(LocalEngine::new(storage.clone())),
        };
        let state_store = FileStateStore::open(data_dir.join("alert-state.json"))
            .context("opening the alert state file")?;
        let rules = Arc::new(RuleManager::new(
            engine,
            storage.clone(),
            Some(Arc::new(state_store)),
            rule_manager_options(&config),
        ));

        let dispatcher = config
            .alerting
            .route
            .as_ref()
            .map(|r| Mutex::new(notifier::build_dispatcher(r, &config.alerting)));
        let windows = maintenance::Windows::from_config(&config.alerting.maintenance_windows);

        let mut tokens = TokenSet::new();
        for t in &config.api.tokens {
            tokens.insert(t.token.expose(), &t.name, t.role.into());
        }
        let audit = Arc::new(Audit {
            file: Some(
                JsonlAuditLog::open(data_dir.join("audit.jsonl"))
                    .context("opening the audit log")?,
            ),
            recent: Mutex::new(Default::default()),
        });

        let (shutdown, _) = tokio_watch::channel(false);
        let svc = Arc::new(Service {
            config: Arc::new(config),
            config_path: opts.config_path.clone(),
            instance,
            store,
            runner,
            library: RwLock::new(Library::default()),
            runbook_paths,
            rule_paths,
            rules,
            storage,
            dispatcher,
            external_alerts: Mutex::new(BTreeMap::new()),
            windows,
            metrics,
            audit,
            tokens: Arc::new(tokens),
            clock: opts.clock,
            schedules_changed: Notify::new(),
            alerts_changed: Notify::new(),
            scrape_reports: Mutex::new(BTreeMap::new()),
            started_at: Utc::now(),
            fenced: std::sync::atomic::AtomicBool::new(false),
            shutdown,
        });

        let report = svc.reload();
        for f in &report.invalid {
            for p in &f.problems {
                warn!(file = %f.path, in_effect = f.in_effect, "{p}");
            }
        }
        svc.load_silences().await;
        svc.load_kill_switch().await;

        // Take over what a previous life of this instance (or a dead peer) left.
        match svc.store.release_finished_locks().await {
            Ok(n) if n > 0 => info!(locks = n, "Released locks of finished runs."),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "Could not clean up guard locks."),
        }
        lease::take_over(&svc).await;

        let listen: SocketAddr = match opts.listen {
            Some(a) => a,
            None => svc.config.api.listen.parse().with_context(|| {
                format!("api.listen `{}` is not an address", svc.config.api.listen)
            })?,
        };
        if !listen.ip().is_loopback() && svc.tokens.is_empty() {
            warn!(%listen, "The API listens beyond loopback without tokens: it is read-only for anyone who can reach it.");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the API to {listen}"))?;
        let addr = listener.local_addr()?;
        let app = crate::api::service::router(svc.clone());
        let mut stop = svc.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let result = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
            if let Err(e) = result {
                warn!(error = %e, "The API server stopped.");
            }
        });

        if owns_supervisor {
            autostart(&svc, &supervisor).await;
        }
        svc.spawn_loops(opts.watch);
        info!(
            instance = %svc.instance.id,
            api = %addr,
            runbooks = svc.library_read().runbooks().count(),
            store = svc.store.backend(),
            "Sluice is serving."
        );
        Ok(Handle {
            service: svc,
            addr,
            server,
            owns_supervisor,
        })
    }

    fn spawn_loops(self: &Arc<Self>, watch_files: bool) {
        let rules = self.rules.clone();
        tokio::spawn(rules.run(self.shutdown.subscribe()));
        tokio::spawn(alerts::consume(self.clone()));
        tokio::spawn(alerts::resend(self.clone()));
        tokio::spawn(notifier::run(self.clone()));
        tokio::spawn(schedules::run(self.clone()));
        tokio::spawn(lease::run(self.clone()));
        tokio::spawn(lease::pump(self.clone()));
        tokio::spawn(scrape::gc(self.clone()));
        scrape::spawn_all(self);
        if watch_files {
            watch::spawn(self.clone());
        }
    }

    /// A receiver that turns true when the service stops.
    pub fn shutdown_signal(&self) -> tokio_watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Asks the service to stop (signal handler, lost lease).
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn library_read(&self) -> std::sync::RwLockReadGuard<'_, Library> {
        self.library.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads runbooks and rules; valid changes take effect, invalid files
    /// keep their previous version and are reported.
    pub fn reload(&self) -> ReloadReport {
        let (report, rule_files) = {
            let mut lib = self.library.write().unwrap_or_else(|e| e.into_inner());
            let report = lib.reload(&self.config, &self.runbook_paths, &self.rule_paths);
            // Runbook steps calling runbooks see the same set.
            if let Ok(mut l) = self.runner.services.library.write() {
                l.clear();
                for rb in lib.runbooks() {
                    l.insert(rb.name().to_string(), rb.runbook.clone());
                }
            }
            (report, lib.rule_files())
        };
        let default_ms = evaluation_interval(&self.config).as_millis() as i64;
        if report.rules_changed {
            let groups = rule_files
                .iter()
                .flat_map(|f| {
                    f.groups
                        .iter()
                        .map(|g| crate::alert::Group::from_rule_group(g, default_ms))
                })
                .collect();
            self.rules.set_groups(groups);
        }
        let m = &self.metrics;
        m.reload_success.set(&[], f64::from(u8::from(report.ok)));
        if report.ok {
            m.reload_success_time
                .set(&[], Utc::now().timestamp_millis() as f64 / 1000.0);
        }
        m.file_valid
            .replace(self.library_read().files().into_iter().map(|f| {
                (
                    vec![f.path, f.kind.to_string()],
                    f64::from(u8::from(f.valid)),
                )
            }));
        self.schedules_changed.notify_one();
        if !report.changed.is_empty() || !report.removed.is_empty() {
            info!(changed = ?report.changed, removed = ?report.removed, invalid = report.invalid.len(), "Reloaded.");
        }
        for f in &report.invalid {
            warn!(file = %f.path, in_effect = f.in_effect, problems = f.problems.len(), "Invalid file; its previous version (if any) stays in effect.");
        }
        report
    }

    async fn load_silences(&self) {
        let Some(d) = &self.dispatcher else { return };
        let now = Utc::now();
        let mut silences: Vec<Silence> = notifier::config_silences(&self.config.alerting);
        match self.store.silences(now - chrono::Duration::hours(1)).await {
            Ok(recs) => silences.extend(recs.iter().filter_map(notifier::silence_of)),
            Err(e) => warn!(error = %e, "Could not load silences."),
        }
        let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
        for s in silences {
            let id = s.id.clone();
            if let Err(e) = d.silences.upsert(s) {
                warn!(silence = %id, error = %e, "Invalid silence ignored.");
            }
        }
    }

    pub async fn load_kill_switch(&self) {
        let on = match self.store.get_state(KILL_SWITCH).await {
            Ok(Some(v)) => v == "on",
            Ok(None) => self.config.service.kill_switch,
            Err(e) => {
                warn!(error = %e, "Could not read the kill switch; keeping automation off.");
                true
            }
        };
        self.set_kill_switch_local(on);
    }

    /// Applies the kill switch here (the database holds it for every instance).
    pub fn set_kill_switch_local(&self, on: bool) {
        self.runner.guards.set_kill_switch(on);
        self.metrics.kill_switch.set(&[], f64::from(u8::from(on)));
    }
}

/// Interval of rule groups that set none: `alerting.evaluation_interval`,
/// else `metrics.interval`, else 15 s.
pub fn evaluation_interval(config: &Config) -> StdDuration {
    config
        .alerting
        .evaluation_interval
        .or(config.metrics.as_ref().map(|m| m.interval))
        .map_or(StdDuration::from_secs(15), |d| d.std())
}

/// How the service's rule manager evaluates (`sluice replay` uses the same).
pub fn rule_manager_options(config: &Config) -> RuleManagerOptions {
    RuleManagerOptions {
        default_interval: evaluation_interval(config),
        external_labels: config.alerting.external_labels.clone(),
        external_url: config
            .service
            .external_url
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        ..RuleManagerOptions::default()
    }
}

/// Starts the `autostart` targets whose engine does not answer yet.
async fn autostart(svc: &Service, supervisor: &crate::process::Supervisor) {
    let http = match crate::http_client::builder()
        .timeout(StdDuration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    for (name, target) in &svc.config.targets {
        if !target.process.as_ref().is_some_and(|p| p.autostart) {
            continue;
        }
        let health = format!("{}/health", target.url);
        if http
            .get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            info!(target = %name, "Already running; not starting it.");
            continue;
        }
        match crate::process::instance::spec(name, target, 0, None)
            .map_err(|e| e.to_string())
            .and_then(|spec| supervisor.start(spec).map_err(|e| e.to_string()))
        {
            Ok(_) => info!(target = %name, "Started the supervised engine."),
            Err(e) => warn!(target = %name, error = %e, "Could not start the supervised engine."),
        }
    }
}

/// Resolves when `stop` turns true (holding nothing across awaits).
pub async fn until_stopped(stop: &mut tokio_watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Key of the kill switch in the service state table.
pub const KILL_SWITCH: &str = "kill_switch";
