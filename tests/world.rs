//! One test's world: a temporary directory, the primary engine supervised by
//! Sluice (so `process.*` steps act on it), optionally a separate broker
//! process and a standby engine, the notification receivers, and `Services`
//! whose sluice.yaml names them the way the shipped runbooks expect
//! (`primary`, `standby`, kafka `main`, channels `oncall-slack`, `ops-email`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_automation::exec::context::Services;
use sluice_automation::exec::executor::RunOutcome;
use sluice_automation::process::{Supervisor, instance};

use crate::engine::{self, Broker, EngineOpts};
use crate::notify::{SlackRecorder, Smtp};
use crate::{net, sluice};

#[derive(Debug, Clone, Default)]
pub struct WorldOpts {
    /// Engines connect to a separate broker process instead of the primary's embedded one.
    pub broker: bool,
    /// A standby target (supervised, not started).
    pub standby: bool,
    /// A real SMTP server for `ops-email`.
    pub smtp: bool,
    /// Demo records per second (default 200).
    pub demo_rate: Option<u32>,
    /// `resource_limits.max_total_memory` (default 64 MiB).
    pub max_total_memory: Option<u64>,
    /// Only the stateless query: offsets are committed as soon as results are delivered.
    pub stateless: bool,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub services: Arc<Services>,
    pub supervisor: Arc<Supervisor>,
    pub slack: SlackRecorder,
    pub smtp: Option<Smtp>,
    pub broker: Option<Broker>,
    pub primary: String,
    pub primary_config: PathBuf,
    pub standby: Option<String>,
    pub bootstrap: String,
    /// The sluice.yaml sections `services` was built from (targets, kafka, channels).
    pub sluice_yaml: String,
}

impl World {
    pub async fn new(o: WorldOpts) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let rate = o.demo_rate.unwrap_or(200);
        let broker = if o.broker {
            Some(Broker::start(dir.path(), rate).await)
        } else {
            None
        };
        let brokers = broker
            .as_ref()
            .map_or("embedded".to_string(), |b| b.bootstrap.clone());
        let port = net::free_ports(3);
        let mut opts = EngineOpts::new(port, &brokers);
        opts.demo_rate = rate;
        if let Some(m) = o.max_total_memory {
            opts.max_total_memory = m;
        }
        opts.windowed = !o.stateless;
        let primary_config =
            engine::write_config(dir.path(), "primary", &engine::engine_yaml(&opts));
        let mut targets = sluice::supervised_target("primary", port, &primary_config, dir.path());
        let standby = if o.standby {
            let sport = net::free_port();
            let mut s = EngineOpts::new(sport, &brokers);
            s.demo = false;
            s.max_total_memory = opts.max_total_memory;
            s.windowed = opts.windowed;
            let cfg = engine::write_config(dir.path(), "standby", &engine::engine_yaml(&s));
            targets.push_str(&sluice::supervised_target(
                "standby",
                sport,
                &cfg,
                dir.path(),
            ));
            Some(format!("http://127.0.0.1:{sport}"))
        } else {
            None
        };

        // Start the primary first: the embedded broker's address goes into sluice.yaml.
        let pre = sluice::config(&format!("targets:\n{targets}"));
        let supervisor = Arc::new(Supervisor::new());
        let spec = instance::spec("primary", &pre.targets["primary"], 0, None).expect("spec");
        supervisor.start(spec).expect("start primary");
        let primary = format!("http://127.0.0.1:{port}");
        engine::wait_healthy(&primary).await;
        let bootstrap = match &broker {
            Some(b) => b.bootstrap.clone(),
            None => engine::brokers_of(&primary).await,
        };

        let slack = SlackRecorder::start().await;
        let smtp = if o.smtp {
            Some(Smtp::start(dir.path()).await)
        } else {
            None
        };
        let smtp_port = smtp.as_ref().map_or_else(net::free_port, |s| s.port);
        let yaml = format!(
            "targets:\n{targets}kafka:\n  main: {{brokers: '{bootstrap}'}}\n{}",
            sluice::channels(&slack.url, smtp_port)
        );
        let services =
            sluice::services(sluice::config(&yaml), dir.path(), Some(supervisor.clone())).await;
        let sluice_yaml = yaml;
        World {
            dir,
            services,
            supervisor,
            slack,
            smtp,
            broker,
            primary,
            primary_config,
            standby,
            bootstrap,
            sluice_yaml,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the shipped runbook `name` with `params`.
    pub async fn run(&self, name: &str, params: &[(&str, &str)]) -> RunOutcome {
        let rb = sluice::library(name, &self.services.config);
        sluice::run(&self.services, &rb, params).await
    }

    /// The pid of a supervised process (`primary`, `primary-1`, `standby` …).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.supervisor.status(name).and_then(|s| s.pid)
    }

    /// Waits until the primary holds open windows (state worth backing up).
    pub async fn wait_open_windows(&self) {
        let url = self.primary.clone();
        net::eventually("open windows", std::time::Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let s = engine::get_json_at(&url, "/admin/state/export").await;
                let windows: usize = s["queries"]
                    .as_array()?
                    .iter()
                    .map(|q| q["windows"].as_array().map_or(0, |w| w.len()))
                    .sum();
                (windows > 0).then_some(())
            }
        })
        .await
    }

    /// Runs `config-backup` of a config directory holding the primary's
    /// engine config into `dest`; returns the run, the archive and the
    /// archive's verified `state.json`.
    pub async fn backup(&self, dest: &Path) -> (RunOutcome, PathBuf, serde_json::Value) {
        let etc = self.path().join("etc");
        std::fs::create_dir_all(&etc).expect("etc");
        std::fs::copy(&self.primary_config, etc.join("engine.yaml")).expect("copy config");
        let out = self
            .run(
                "config-backup",
                &[
                    ("config_dir", etc.to_str().unwrap()),
                    ("dest", dest.to_str().unwrap()),
                ],
            )
            .await;
        sluice::assert_succeeded(&out);
        let archive = PathBuf::from(
            sluice::output(&out, "backup")["archive"]
                .as_str()
                .expect("archive path"),
        );
        let state = sluice::state_in(&archive);
        (out, archive, state)
    }

    /// Stops every supervised engine (the broker and receivers go when dropped).
    pub async fn stop(&self) {
        self.supervisor.stop_all().await;
    }
}
