//! What a running step can see: shared services (config, HTTP client, store),
//! its run (id, template scope) and its own log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use handlebars::Context;
use serde_json::Value as J;

use super::steps::StepError;
use crate::config::{Config, Target};
use crate::runbook::model::{Runbook, Step};
use crate::runbook::template::{self, Escape, TemplateError};
use crate::secret::Redactor;
use crate::store::Store;

/// Limits that keep hostile or runaway steps from filling memory or the store.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest output (HTTP body, process output) kept from one step, in bytes; larger fails the step.
    pub max_output_bytes: usize,
    /// Log lines kept per step.
    pub max_log_lines: usize,
    /// Nesting depth of `runbook` steps calling runbooks.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 1 << 20,
            max_log_lines: 1000,
            max_depth: 8,
        }
    }
}

/// How a step ended, as [`Progress`] hears it.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    pub run_id: &'a str,
    pub runbook: &'a str,
    pub path: &'a str,
    pub kind: &'a str,
    pub status: &'a str,
    pub elapsed: StdDuration,
    pub error: Option<&'a str>,
    /// The step's configuration after templating, secrets redacted (`Null` when it did not render).
    pub inputs: &'a serde_json::Value,
}

/// Hears about steps as they run (the CLI prints progress lines, the service counts them).
pub trait Progress: Send + Sync {
    fn step_started(&self, run_id: &str, path: &str, kind: &str);
    fn step_finished(&self, event: &StepEvent<'_>);
}

/// Answers PromQL instant queries (the service's own scraped metrics) in the
/// Prometheus HTTP API's `data` shape.
pub trait InstantQuery: Send + Sync {
    fn query(&self, expr: &str, t_ms: i64) -> Result<serde_json::Value, String>;
}

/// Services shared by every run.
pub struct Services {
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    pub store: Option<Store>,
    pub redactor: Redactor,
    /// Runbooks by name, for `runbook` steps.
    pub library: RwLock<BTreeMap<String, Arc<Runbook>>>,
    pub limits: Limits,
    pub progress: Option<Arc<dyn Progress>>,
    /// How often a waiting approval step looks for a decision in the store.
    pub approval_poll: StdDuration,
    /// Base URL of the service's API, for links to runs in notifications.
    pub external_url: Option<String>,
    /// PromQL over the service's own metrics (used when no Prometheus is configured).
    pub local_query: Option<Arc<dyn InstantQuery>>,
    /// Set for `sluice test`: steps are answered by mocks, notifications recorded.
    pub rehearsal: Option<Arc<super::rehearsal::Rehearsal>>,
    /// Supervisor of local engine processes (`process.*` steps); `None` where
    /// nothing is supervised (`sluice run`), and those steps then fail.
    pub supervisor: Option<Arc<crate::process::Supervisor>>,
}

impl Services {
    pub fn new(config: Config, store: Option<Store>) -> Result<Services, reqwest::Error> {
        let redactor = config.redactor();
        Ok(Services {
            config: Arc::new(config),
            http: http_client()?,
            store,
            redactor,
            library: RwLock::new(BTreeMap::new()),
            limits: Limits::default(),
            progress: None,
            approval_poll: StdDuration::from_millis(500),
            external_url: None,
            local_query: None,
            supervisor: None,
            rehearsal: None,
        })
    }

    /// The run's page in the web console, for people following a link
    /// (`None` without an external URL).
    pub fn run_url(&self, run_id: &str) -> Option<String> {
        self.external_url
            .as_ref()
            .map(|base| format!("{}/ui/#/runs/{run_id}", base.trim_end_matches('/')))
    }

    pub fn add_runbook(&self, runbook: Arc<Runbook>) {
        if let Ok(mut lib) = self.library.write() {
            lib.insert(runbook.name.value.clone(), runbook);
        }
    }

    pub fn runbook(&self, name: &str) -> Option<Arc<Runbook>> {
        self.library.read().ok()?.get(name).cloned()
    }
}

/// The HTTP client every step uses. Step `timeout`s narrow the 5-minute ceiling.
///
/// Runbooks call a few hosts (targets, Slack, Prometheus) from many runs at
/// once: keeping up to [`MAX_IDLE_PER_HOST`] idle connections per host lets a
/// burst of concurrent runs reuse them instead of reconnecting on almost every
/// step (which at 64 cost more CPU than the steps themselves); idle ones close
/// after 30 s.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    crate::http_client::builder()
        .timeout(StdDuration::from_secs(300))
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .pool_idle_timeout(StdDuration::from_secs(30))
        .build()
}

/// Idle connections kept per host (see [`http_client`]).
pub const MAX_IDLE_PER_HOST: usize = usize::MAX;

/// The variables templates see. Cheap to read concurrently; written when a step finishes.
pub struct Scope {
    ctx: RwLock<Context>,
}

impl Scope {
    pub fn new(data: J) -> Scope {
        Scope {
            ctx: RwLock::new(Context::from(data)),
        }
    }

    pub fn render(&self, text: &str, escape: Escape) -> Result<String, TemplateError> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        let ctx = self
            .ctx
            .read()
            .map_err(|_| TemplateError("scope lock poisoned".into()))?;
        template::render(text, &ctx, escape)
    }

    /// Sets `steps.<id>` to the step's record.
    pub fn set_step(&self, id: &str, record: J) {
        if let Ok(mut ctx) = self.ctx.write()
            && let Some(steps) = ctx.data_mut().get_mut("steps").and_then(J::as_object_mut)
        {
            steps.insert(id.to_string(), record);
        }
    }

    pub fn set(&self, key: &str, value: J) {
        if let Ok(mut ctx) = self.ctx.write()
            && let Some(obj) = ctx.data_mut().as_object_mut()
        {
            obj.insert(key.to_string(), value);
        }
    }

    pub fn get(&self, key: &str) -> Option<J> {
        self.ctx.read().ok()?.data().get(key).cloned()
    }

    /// A copy with extra variables (a `for_each` iteration's `item` and `index`).
    pub fn child(&self, extra: &[(&str, J)]) -> Scope {
        let mut data = self.ctx.read().map(|c| c.data().clone()).unwrap_or(J::Null);
        if let Some(obj) = data.as_object_mut() {
            for (k, v) in extra {
                obj.insert((*k).to_string(), v.clone());
            }
        }
        Scope::new(data)
    }
}

/// One run in progress.
pub struct RunState {
    pub id: String,
    pub runbook: Arc<Runbook>,
    pub scope: Scope,
    pub dry_run: bool,
    /// How deep in `runbook` calls this run is (0 for a top-level run).
    pub depth: usize,
    pub who: String,
    /// Service instance executing it.
    pub owner: Option<String>,
    /// Records of a run being resumed after a crash.
    pub resume: Option<Arc<super::executor::Resume>>,
}

/// Log lines of one step, bounded.
#[derive(Default)]
pub struct StepLog {
    lines: Mutex<Vec<String>>,
    max: usize,
}

impl StepLog {
    pub fn new(max: usize) -> StepLog {
        StepLog {
            lines: Mutex::new(Vec::new()),
            max,
        }
    }

    pub fn push(&self, line: impl Into<String>) {
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() < self.max {
                lines.push(line.into());
            } else if lines.len() == self.max {
                lines.push("… further log lines dropped".to_string());
            }
        }
    }

    pub fn take(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// Everything a step's `run` gets.
pub struct StepCx<'a> {
    pub services: &'a Arc<Services>,
    pub run: &'a RunState,
    pub step: &'a Step,
    /// The scope this step renders in (an iteration's scope inside `for_each`).
    pub scope: &'a Scope,
    /// `for_each[2].child` style path of the step in the run.
    pub path: &'a str,
    pub log: &'a StepLog,
}

impl StepCx<'_> {
    pub fn log(&self, line: impl AsRef<str>) {
        self.log.push(self.services.redactor.text(line.as_ref()));
    }

    pub fn target(&self, name: &str) -> Result<&Target, StepError> {
        self.services.config.target(name).ok_or_else(|| {
            StepError::permanent(format!(
                "unknown target `{name}` (define it under `targets:` in sluice.yaml)"
            ))
        })
    }

    /// Resolves where an HTTP-reading step goes: an explicit `url` (no token),
    /// or a named target's URL plus `path` (`/` when absent) with its token.
    pub fn endpoint(
        &self,
        url: Option<&str>,
        target: Option<&str>,
        path: Option<&str>,
    ) -> Result<(String, Option<crate::secret::Secret>), StepError> {
        match (url, target) {
            (Some(u), _) => Ok((u.to_string(), None)),
            (_, Some(t)) => {
                let target = self.target(t)?;
                Ok((
                    format!("{}{}", target.url, path.unwrap_or("/")),
                    target.token.clone(),
                ))
            }
            _ => Err(StepError::permanent(
                "no `url` and no `target` to read from",
            )),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.services.limits
    }
}
