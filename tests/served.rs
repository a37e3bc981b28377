//! A [`World`] with the real automation service in front of it: `sluice
//! serve` (in this process) scraping the engine every second, evaluating the
//! shipped `alerts/sluice.yaml` and running the shipped runbooks when their
//! alerts fire, with its API on a free loopback port.
//!
//! The shipped rules wait minutes (`for: 1m` … `15m`, `rate(…[5m])`) so a
//! page means something; here their expressions stay as shipped and only the
//! durations are compressed ([`compress_rules`]) so a fault is detected in
//! seconds. The rule files' own promtool-format tests (`alerts/tests/`) check
//! the shipped durations.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value as J, json};
use sluice_automation::schedule::scheduler::{Clock, SystemClock};
use sluice_automation::service::{Handle, Options, Service};

use crate::net::eventually;
use crate::sluice::repo;
use crate::world::{World, WorldOpts};

pub const VIEWER: &str = "e2e-viewer-token-0123456789";
pub const OPERATOR: &str = "e2e-operator-token-0123456789";
pub const ADMIN: &str = "e2e-admin-token-0123456789";

/// Wall time moved by an offset tests set: schedules fire when the test
/// says it is 02:00, while timers and timeouts still run in real time.
#[derive(Default)]
pub struct JumpClock(std::sync::Mutex<chrono::Duration>);

impl JumpClock {
    /// From now on the clock reads `t` (and runs on from there).
    pub fn set(&self, t: chrono::DateTime<chrono::Utc>) {
        *self.0.lock().unwrap() = t - chrono::Utc::now();
    }
}

impl Clock for JumpClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + *self.0.lock().unwrap()
    }
}

/// `for:` of every compressed rule.
pub const FOR: &str = "2s";
/// What a `[5m]` range of a shipped rule becomes.
pub const RANGE: &str = "[15s]";

pub struct Served {
    pub w: World,
    pub base: String,
    handle: Option<Handle>,
    http: reqwest::Client,
}

/// How the service runs beside the world.
pub struct ServeOpts {
    pub clock: Arc<dyn Clock>,
    /// `metrics.scrape` entries besides the primary (YAML flow values).
    pub scrape: Vec<String>,
}

impl Default for ServeOpts {
    fn default() -> Self {
        ServeOpts {
            clock: Arc::new(SystemClock),
            scrape: Vec::new(),
        }
    }
}

/// The shipped rule file with every `for:` set to [`FOR`], every `[5m]` range
/// to [`RANGE`] and group intervals to 1 s; expressions, labels and
/// annotations unchanged.
pub fn compress_rules(text: &str) -> String {
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            if t.starts_with("for:") {
                format!("{indent}for: {FOR}")
            } else if t.starts_with("interval:") {
                format!("{indent}interval: 1s")
            } else {
                line.replace("[5m]", RANGE)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Served {
    /// A world, then the service with the shipped runbooks named in
    /// `runbooks`, each edited by `edit` (its defaults pointed into the test's
    /// directory, say) and the compressed shipped rules.
    pub async fn start(
        opts: WorldOpts,
        runbooks: &[&str],
        edit: impl Fn(&Path, &str, String) -> String,
    ) -> Served {
        Self::start_with(opts, runbooks, edit, ServeOpts::default()).await
    }

    /// [`Served::start`] with the service's clock and scrape targets set.
    pub async fn start_with(
        opts: WorldOpts,
        runbooks: &[&str],
        edit: impl Fn(&Path, &str, String) -> String,
        serve: ServeOpts,
    ) -> Served {
        Self::serve(World::new(opts).await, runbooks, edit, serve).await
    }

    /// The service beside a world already running: a test that must settle
    /// the world first (a backlog drained, say) so the rules see only what it
    /// then does.
    pub async fn serve(
        w: World,
        runbooks: &[&str],
        edit: impl Fn(&Path, &str, String) -> String,
        serve: ServeOpts,
    ) -> Served {
        let dir = w.path().to_path_buf();
        write(
            &dir.join("svc/alerts/sluice.yaml"),
            &compress_rules(&read(&repo().join("alerts/sluice.yaml"))),
        );
        for name in runbooks {
            let text = read(&repo().join("runbooks").join(format!("{name}.yaml")));
            write(
                &dir.join(format!("svc/runbooks/{name}.yaml")),
                &edit(&dir, name, text),
            );
        }
        let config = format!(
            r#"{world}
runbooks: [svc/runbooks]
rules: [svc/alerts]
store: "sqlite://{store}"
api:
  tokens:
    - {{name: grafana, token: {VIEWER}, role: viewer}}
    - {{name: oncall, token: {OPERATOR}, role: operator}}
    - {{name: root, token: {ADMIN}, role: admin}}
service:
  lease: 2s
  shutdown_grace: 2s
metrics:
  interval: 1s
  scrape: [{scrape}]
alerting:
  evaluation_interval: 1s
  route:
    receiver: oncall-slack
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
"#,
            world = w.sluice_yaml,
            store = dir.join("service.db").display(),
            scrape = std::iter::once("primary".to_string())
                .chain(serve.scrape)
                .collect::<Vec<_>>()
                .join(", "),
        );
        let cfg = dir.join("sluice.yaml");
        write(&cfg, &config);
        let handle = Service::start(Options {
            config_path: cfg,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            store_url: None,
            clock: serve.clock,
            watch: false,
            supervisor: Some(w.supervisor.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("the service starts: {e:#}\n{config}"));
        let base = format!("http://{}", handle.addr);
        let s = Served {
            w,
            base,
            handle: Some(handle),
            http: crate::net::client(),
        };
        // Every shipped runbook the test asked for loaded and valid.
        let (_, list) = s.get("/api/v1/runbooks").await;
        for f in list["files"].as_array().into_iter().flatten() {
            assert_eq!(f["valid"], true, "{f:#}");
        }
        for name in runbooks {
            assert!(
                list["runbooks"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|r| r["name"] == *name)),
                "runbook {name} not served: {list:#}"
            );
        }
        s
    }

    pub async fn call(&self, method: &str, path: &str, token: &str, body: Option<J>) -> (u16, J) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(J::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, J) {
        self.call("GET", path, VIEWER, None).await
    }

    /// Runs of `runbook`, newest first.
    pub async fn runs(&self, runbook: &str) -> Vec<J> {
        let (_, body) = self
            .get(&format!("/api/v1/runs?runbook={runbook}&limit=100"))
            .await;
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for the first run of `runbook` started by `trigger` (`alert`,
    /// `schedule`, …); returns its id. The trigger matters: a shipped
    /// runbook's own schedule may fire while a test waits for its alert.
    pub async fn first_run(&self, runbook: &str, trigger: &str, limit: Duration) -> String {
        eventually(
            &format!("a run of {runbook} by {trigger}"),
            limit,
            || async {
                self.runs(runbook)
                    .await
                    .iter()
                    .rev()
                    .find(|r| r["trigger"] == trigger)
                    .and_then(|r| r["id"].as_str().map(str::to_string))
            },
        )
        .await
    }

    /// The run with its steps.
    pub async fn run(&self, id: &str) -> J {
        self.get(&format!("/api/v1/runs/{id}")).await.1
    }

    /// Waits until the run ended; returns it with its steps.
    pub async fn finished(&self, id: &str, limit: Duration) -> J {
        eventually(&format!("run {id} to end"), limit, || async {
            let r = self.run(id).await;
            matches!(
                r["run"]["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "interrupted")
            )
            .then_some(r)
        })
        .await
    }

    /// A step record of a run by id.
    pub fn step<'a>(run: &'a J, id: &str) -> &'a J {
        run["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["path"] == id))
            .unwrap_or(&J::Null)
    }

    /// Approves the run's pending approval as the operator.
    pub async fn approve(&self, id: &str, comment: &str) {
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/runs/{id}/approve"),
                OPERATOR,
                Some(json!({"comment": comment})),
            )
            .await;
        assert!(status < 300, "approve {id}: {status} {body}");
    }

    /// Reloads (which also wakes the scheduler, say after the clock jumped).
    pub async fn reload(&self) {
        let (status, body) = self.call("POST", "/api/v1/reload", ADMIN, None).await;
        assert_eq!(status, 200, "reload: {body}");
    }

    /// The state of alert `name` (`pending`, `firing`) as the service sees it.
    pub async fn alert_state(&self, name: &str) -> Option<String> {
        let (_, body) = self.get("/api/v1/alerts").await;
        body["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str().map(str::to_string))
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.w.stop().await;
    }
}

/// Times of one remediation, from the moment the fault was injected.
pub struct Timing {
    pub fault: Instant,
    pub marks: Vec<(&'static str, Duration)>,
}

impl Timing {
    pub fn start() -> Timing {
        Timing {
            fault: Instant::now(),
            marks: Vec::new(),
        }
    }

    pub fn mark(&mut self, what: &'static str) {
        self.marks.push((what, self.fault.elapsed()));
    }

    /// Prints `e2e-timing name: fault→what 1.23 s, …` (read by docs/runbook-library.md).
    pub fn report(&self, name: &str) {
        let parts: Vec<String> = self
            .marks
            .iter()
            .map(|(w, d)| format!("fault→{w} {:.2} s", d.as_secs_f64()))
            .collect();
        println!("e2e-timing {name}: {}", parts.join(", "));
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).expect("mkdir");
    std::fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}
