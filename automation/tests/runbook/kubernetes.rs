//! Kubernetes driver against a stand-in API server: an axum app on loopback
//! that serves one Deployment (`engine`) and one StatefulSet (`ledger`) in
//! namespace `streaming` the way `apps/v1` does — bearer token checked,
//! the exact patch content type per endpoint enforced, merge patches applied
//! to the stored object, `metadata.generation` bumped on spec changes — and
//! plays the controller: each GET of a workload moves its status one step
//! toward the spec. Every request is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::get;
use serde_json::{Value as J, json};
use sluice_automation::exec::executor::{RunOutcome, RunStatus};

use crate::harness::{config, run, runbook, serve, services, step_record, tempdir};

const TOKEN: &str = "k8s-token-5ecret-abc123";
const NS: &str = "streaming";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const BEFORE_STOP: &str = "sluice.dev/replicas-before-stop";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    content_type: Option<String>,
    auth: Option<String>,
    body: Option<J>,
}

/// A workload and the pods its controller runs: `old` (an outdated
/// template, all ready), `new` (the current template), `ready_new` of them ready.
struct Sim {
    obj: J,
    observed: i64,
    template: J,
    old: i64,
    new: i64,
    ready_new: i64,
    statefulset: bool,
}

impl Sim {
    fn new(kind: &str, name: &str, replicas: i64) -> Sim {
        let template = json!({"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "engine", "image": "sluice-engine:1"}]}});
        Sim {
            obj: json!({
                "apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": name, "namespace": NS, "generation": 1, "annotations": {}},
                "spec": {"replicas": replicas, "template": template.clone()},
            }),
            observed: 1,
            template,
            old: 0,
            new: replicas,
            ready_new: replicas,
            statefulset: kind == "StatefulSet",
        }
    }

    fn spec(&self) -> i64 {
        self.obj["spec"]["replicas"].as_i64().unwrap()
    }

    /// The object with its status; zero counts are left out, as the API server does.
    fn view(&self) -> J {
        let mut status = serde_json::Map::new();
        status.insert("observedGeneration".into(), json!(self.observed));
        for (k, v) in [
            ("replicas", self.old + self.new),
            ("updatedReplicas", self.new),
            ("readyReplicas", self.old + self.ready_new),
            ("availableReplicas", self.old + self.ready_new),
        ] {
            if v != 0 {
                status.insert(k.into(), json!(v));
            }
        }
        let mut obj = self.obj.clone();
        obj["status"] = J::Object(status);
        obj
    }

    fn scale(&self) -> J {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": self.obj["metadata"].clone(),
               "spec": {"replicas": self.spec()}, "status": {"replicas": self.old + self.new}})
    }

    /// One step of the controller toward the spec.
    fn step(&mut self) {
        let generation = self.obj["metadata"]["generation"].as_i64().unwrap();
        if self.observed < generation {
            self.observed = generation;
            if self.obj["spec"]["template"] != self.template {
                self.template = self.obj["spec"]["template"].clone();
                self.old += self.new;
                (self.new, self.ready_new) = (0, 0);
            }
        } else if self.statefulset && self.old > 0 {
            self.old -= 1; // replaced in place, one at a time
        } else if self.new < self.spec() {
            self.new += 1;
        } else if self.ready_new < self.new {
            self.ready_new += 1;
        } else if self.old > 0 {
            self.old -= 1;
        } else if self.new > self.spec() {
            self.new -= 1;
            self.ready_new = self.ready_new.min(self.new);
        }
    }

    /// Applies a JSON merge patch; a changed spec is a new generation.
    fn patch(&mut self, patch: &J) {
        let before = self.obj["spec"].clone();
        merge(&mut self.obj, patch);
        if self.obj["spec"] != before {
            let g = self.obj["metadata"]["generation"].as_i64().unwrap();
            self.obj["metadata"]["generation"] = json!(g + 1);
        }
    }
}

/// RFC 7386.
fn merge(target: &mut J, patch: &J) {
    let J::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(J::Null), v);
        }
    }
}

#[derive(Default)]
struct Api {
    objs: Mutex<BTreeMap<(String, String), Sim>>,
    calls: Mutex<Vec<Call>>,
    /// The controller stops: status never moves again.
    frozen: AtomicBool,
}

fn status(code: StatusCode, message: &str) -> (StatusCode, Json<J>) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code.as_u16()});
    (code, Json(body))
}

impl Api {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn api_calls(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path.starts_with("/apis/"))
            .collect()
    }

    fn view(&self, res: &str, name: &str) -> J {
        self.objs.lock().unwrap()[&(res.to_string(), name.to_string())].view()
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        &self,
        method: Method,
        uri: &Uri,
        (ns, res, name): (String, String, String),
        scale: bool,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> (StatusCode, Json<J>) {
        let header = |h| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type");
        let auth = header("authorization");
        let patch: Option<J> = serde_json::from_slice(body).ok();
        self.calls.lock().unwrap().push(Call {
            method: method.to_string(),
            path: uri.path().to_string(),
            content_type: content_type.clone(),
            auth: auth.clone(),
            body: patch.clone(),
        });
        if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        let mut objs = self.objs.lock().unwrap();
        let sim = match objs.get_mut(&(res.clone(), name.clone())) {
            Some(sim) if ns == NS => sim,
            _ => {
                return status(
                    StatusCode::NOT_FOUND,
                    &format!("{res}.apps \"{name}\" not found"),
                );
            }
        };
        match (method, scale) {
            (Method::GET, false) => {
                if !self.frozen.load(Ordering::SeqCst) {
                    sim.step();
                }
                (StatusCode::OK, Json(sim.view()))
            }
            (Method::GET, true) => (StatusCode::OK, Json(sim.scale())),
            (Method::PATCH, _) => {
                let Some(patch) = patch else {
                    return status(StatusCode::BAD_REQUEST, "the body is not JSON");
                };
                // Restarts touch the pod template (kubectl sends a strategic
                // merge patch); scales and annotations are merge patches.
                let want = if patch.pointer("/spec/template").is_some() {
                    STRATEGIC
                } else {
                    MERGE
                };
                if content_type.as_deref() != Some(want) {
                    return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, &format!("want {want}"));
                }
                if scale {
                    let Some(n) = patch.pointer("/spec/replicas").and_then(J::as_i64) else {
                        return status(StatusCode::UNPROCESSABLE_ENTITY, "no spec.replicas");
                    };
                    sim.patch(&json!({"spec": {"replicas": n}}));
                    (StatusCode::OK, Json(sim.scale()))
                } else {
                    sim.patch(&patch);
                    (StatusCode::OK, Json(sim.view()))
                }
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }
}

type Key = Path<(String, String, String)>;

/// The stand-in on a free loopback port, with `engine` at `replicas` and `ledger` at 1.
async fn stand_in(replicas: i64) -> (Arc<Api>, SocketAddr) {
    let api = Arc::new(Api::default());
    {
        let mut objs = api.objs.lock().unwrap();
        objs.insert(
            ("deployments".into(), "engine".into()),
            Sim::new("Deployment", "engine", replicas),
        );
        objs.insert(
            ("statefulsets".into(), "ledger".into()),
            Sim::new("StatefulSet", "ledger", 1),
        );
    }
    let router = axum::Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/{res}/{name}",
            get(workload).patch(workload),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/{res}/{name}/scale",
            get(scale).patch(scale),
        )
        .route(
            "/healthz",
            get(|State(api): State<Arc<Api>>, uri: Uri| async move {
                api.calls.lock().unwrap().push(Call {
                    method: "GET".into(),
                    path: uri.path().into(),
                    content_type: None,
                    auth: None,
                    body: None,
                });
                "ok"
            }),
        )
        .with_state(api.clone());
    let addr = serve(router).await;
    (api, addr)
}

async fn workload(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    Path(key): Key,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<J>) {
    api.handle(method, &uri, key, false, &headers, &body)
}

async fn scale(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    Path(key): Key,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<J>) {
    api.handle(method, &uri, key, true, &headers, &body)
}

/// sluice.yaml with target `engine` (the Deployment) and `ledger` (the StatefulSet).
fn targets(addr: SocketAddr) -> String {
    format!(
        r#"
targets:
  engine:
    url: http://{addr}
    health: /healthz
    kubernetes: {{name: engine, namespace: {NS}, api_url: "http://{addr}", token: {TOKEN}}}
  ledger:
    url: http://{addr}
    health: /healthz
    kubernetes: {{kind: StatefulSet, name: ledger, namespace: {NS}, api_url: "http://{addr}", token: {TOKEN}}}
"#
    )
}

async fn run_yaml(
    cfg: &str,
    dir: &std::path::Path,
    rb: &str,
) -> (Arc<sluice_automation::exec::context::Services>, RunOutcome) {
    let sv = services(config(cfg), dir).await;
    let out = run(&sv, &runbook(rb), &[]).await;
    (sv, out)
}

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/streaming/deployments/engine";

#[tokio::test]
async fn kubernetes_scale_patches_the_scale_subresource_and_waits_for_the_rollout() {
    let (api, addr) = stand_in(1).await;
    let dir = tempdir();
    let (sv, out) = run_yaml(
        &targets(addr),
        dir.path(),
        "name: k8s-scale\nsteps:\n  - id: scale\n    process.scale: {target: engine, replicas: 3, ready_timeout: 20s}\n",
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let o = &out.steps["scale"]["output"];
    assert_eq!(
        (
            o["previous"].clone(),
            o["replicas"].clone(),
            o["requested"].clone(),
            o["clamped"].clone()
        ),
        (json!(1), json!(3), json!(3), json!(false))
    );
    assert_eq!(
        (
            o["workload"]["ready"].clone(),
            o["workload"]["rolled_out"].clone()
        ),
        (json!(3), json!(true))
    );
    let calls = api.api_calls();
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("GET", &*format!("{DEPLOYMENT}/scale"))
    );
    assert_eq!(
        (calls[1].method.as_str(), calls[1].path.as_str()),
        ("PATCH", &*format!("{DEPLOYMENT}/scale"))
    );
    assert_eq!(calls[1].content_type.as_deref(), Some(MERGE));
    assert_eq!(calls[1].body, Some(json!({"spec": {"replicas": 3}})));
    // Then only looks at the workload, until it rolled out (5 controller steps).
    assert!(
        calls[2..]
            .iter()
            .all(|c| c.method == "GET" && c.path == DEPLOYMENT),
        "{calls:#?}"
    );
    assert!(calls.len() >= 2 + 5, "{calls:#?}");
    assert_eq!(
        api.view("deployments", "engine")["status"]["readyReplicas"],
        3
    );
    assert_eq!(
        api.calls().last().unwrap().path,
        "/healthz",
        "health checked after the rollout"
    );
    let rec = step_record(&sv, &out.id, "scale").await;
    assert!(
        rec.logs
            .iter()
            .any(|l| l == &format!("PATCH {DEPLOYMENT}/scale")),
        "{:?}",
        rec.logs
    );
}

#[tokio::test]
async fn kubernetes_restart_sends_the_kubectl_rollout_restart_patch_and_waits() {
    let (api, addr) = stand_in(1).await;
    let dir = tempdir();
    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let (_, out) = run_yaml(
        &targets(addr),
        dir.path(),
        "name: k8s-restart\nsteps:\n  - id: restart\n    process.restart: {target: engine, ready_timeout: 20s}\n",
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let calls = api.api_calls();
    let patch = &calls[0];
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", DEPLOYMENT)
    );
    assert_eq!(patch.content_type.as_deref(), Some(STRATEGIC));
    let body = patch.body.clone().unwrap();
    let at = body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        body,
        json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at.clone()}}}}})
    );
    let at_time = chrono::DateTime::parse_from_rfc3339(&at).expect("RFC 3339");
    assert!(
        at_time >= before && at_time <= chrono::Utc::now() + chrono::Duration::seconds(2),
        "{at}"
    );
    assert_eq!(out.steps["restart"]["output"]["restarted_at"], json!(at));
    // Waited until the new pod was ready and the old one gone.
    let w = api.view("deployments", "engine");
    assert_eq!(w["metadata"]["generation"], 2);
    assert_eq!(
        w["status"],
        json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1})
    );
    assert_eq!(
        out.steps["restart"]["output"]["workload"]["rolled_out"],
        true
    );
    assert!(
        calls.len() >= 5,
        "observe, surge, ready, retire: {calls:#?}"
    );
}

#[tokio::test]
async fn kubernetes_stop_then_start_restores_the_replica_count() {
    let (api, addr) = stand_in(3).await;
    let dir = tempdir();
    let (_, out) = run_yaml(
        &targets(addr),
        dir.path(),
        r#"
name: k8s-stop-start
steps:
  - id: stop
    process.stop: {target: engine}
  - id: status
    process.status: {target: engine}
  - id: start
    process.start: {target: engine, ready_timeout: 20s}
  - id: again
    process.start: {target: engine, ready_timeout: 20s}
"#,
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let s = &out.steps;
    assert_eq!(
        (
            s["stop"]["output"]["stopped"].clone(),
            s["stop"]["output"]["previous"].clone()
        ),
        (json!(true), json!(3))
    );
    assert_eq!(s["stop"]["output"]["workload"]["pods"], 0);
    assert_eq!(
        (
            s["status"]["output"]["replicas"].clone(),
            s["status"]["output"]["running"].clone()
        ),
        (json!(0), json!(0))
    );
    assert_eq!(s["start"]["output"]["started"], true);
    assert_eq!(
        (
            s["start"]["output"]["workload"]["replicas"].clone(),
            s["start"]["output"]["workload"]["ready"].clone()
        ),
        (json!(3), json!(3))
    );
    assert_eq!(s["again"]["output"]["started"], false);
    let patches: Vec<(String, Option<String>, Option<J>)> = api
        .api_calls()
        .into_iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| (c.path, c.content_type, c.body))
        .collect();
    let scale = format!("{DEPLOYMENT}/scale");
    assert_eq!(
        patches,
        vec![
            (
                DEPLOYMENT.to_string(),
                Some(MERGE.into()),
                Some(json!({"metadata": {"annotations": {BEFORE_STOP: "3"}}}))
            ),
            (
                scale.clone(),
                Some(MERGE.into()),
                Some(json!({"spec": {"replicas": 0}}))
            ),
            (
                scale,
                Some(MERGE.into()),
                Some(json!({"spec": {"replicas": 3}}))
            ),
        ]
    );
    let w = api.view("deployments", "engine");
    assert_eq!(
        (
            w["spec"]["replicas"].clone(),
            w["status"]["readyReplicas"].clone()
        ),
        (json!(3), json!(3))
    );
}

#[tokio::test]
async fn kubernetes_wrong_token_fails_for_good_without_showing_it() {
    let (api, addr) = stand_in(1).await;
    let dir = tempdir();
    let token_file = dir.path().join("token");
    let wrong = "wrong-token-zzz-987654";
    std::fs::write(&token_file, format!("{wrong}\n")).unwrap();
    // A token file: the redactor does not know its value, so only the driver keeps it out.
    let cfg = format!(
        "targets:\n  engine:\n    url: http://{addr}\n    health: /healthz\n    kubernetes: {{name: engine, namespace: {NS}, api_url: 'http://{addr}', token_file: '{}'}}\n",
        token_file.display()
    );
    let rb = "name: k8s-auth\nsteps:\n  - id: scale\n    process.scale: {target: engine, replicas: 2, ready_timeout: 20s}\n    retry: {attempts: 3, backoff: 10ms}\n";
    let (sv, out) = run_yaml(&cfg, dir.path(), rb).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.clone().unwrap();
    assert!(
        err.contains("kubernetes API refused") && err.contains("401"),
        "{err}"
    );
    assert_eq!(out.steps["scale"]["attempts"], 1, "permanent: not retried");
    let calls = api.api_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].auth.as_deref(), Some(&*format!("Bearer {wrong}")));
    let (run_rec, steps) = sv.store.as_ref().unwrap().get_run(&out.id).await.unwrap();
    let dump = format!(
        "{}{}{err}{}",
        serde_json::to_string(&run_rec).unwrap(),
        serde_json::to_string(&steps).unwrap(),
        out.steps
    );
    assert!(!dump.contains(wrong), "{dump}");
    assert!(
        steps[0].logs.iter().any(|l| l.starts_with("GET /apis/")),
        "{:?}",
        steps[0].logs
    );

    // The file is read at every call: the right token works without a restart.
    std::fs::write(&token_file, TOKEN).unwrap();
    let out = run(&sv, &runbook(rb), &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["scale"]["output"]["replicas"], 2);
}

#[tokio::test]
async fn kubernetes_rollout_that_never_completes_times_out_transiently() {
    let (api, addr) = stand_in(1).await;
    api.frozen.store(true, Ordering::SeqCst);
    let dir = tempdir();
    let clock = Instant::now();
    let (sv, out) = run_yaml(
        &targets(addr),
        dir.path(),
        "name: k8s-stuck\nsteps:\n  - id: scale\n    process.scale: {target: engine, replicas: 3, ready_timeout: 2s}\n    retry: {attempts: 2, backoff: 10ms}\n",
    )
    .await;
    let took = clock.elapsed();
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert!(
        err.contains("Deployment streaming/engine did not roll out within 2s (ready_timeout)"),
        "{err}"
    );
    assert!(err.contains("not observed generation 2"), "{err}");
    // Two attempts of ~2s each: transient, so retried, and each bounded by ready_timeout.
    assert_eq!(out.steps["scale"]["attempts"], 2);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "{took:?}"
    );
    let rec = step_record(&sv, &out.id, "scale").await;
    assert!(
        rec.logs
            .iter()
            .any(|l| l.contains("attempt 1 failed (Transient)")),
        "{:?}",
        rec.logs
    );
}

#[tokio::test]
async fn kubernetes_statefulset_uses_statefulset_paths() {
    let (api, addr) = stand_in(1).await;
    let dir = tempdir();
    let (_, out) = run_yaml(
        &targets(addr),
        dir.path(),
        "name: k8s-sts\nsteps:\n  - id: scale\n    process.scale: {target: ledger, replicas: 2, ready_timeout: 20s}\n  - id: status\n    process.status: {target: ledger}\n",
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let calls = api.api_calls();
    assert!(
        calls.iter().all(|c| c
            .path
            .starts_with("/apis/apps/v1/namespaces/streaming/statefulsets/ledger")),
        "{calls:#?}"
    );
    assert_eq!(
        calls[1].path,
        "/apis/apps/v1/namespaces/streaming/statefulsets/ledger/scale"
    );
    let st = &out.steps["status"]["output"];
    assert_eq!(
        (
            st["kind"].clone(),
            st["replicas"].clone(),
            st["ready"].clone(),
            st["rolled_out"].clone()
        ),
        (json!("StatefulSet"), json!(2), json!(2), json!(true))
    );
    assert_eq!(
        api.view("deployments", "engine")["spec"]["replicas"],
        1,
        "the Deployment was left alone"
    );
}

#[tokio::test]
async fn kubernetes_kubeconfig_works_like_api_url() {
    let (api, addr) = stand_in(1).await;
    let dir = tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            r#"apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: local
  cluster:
    server: http://{addr}
contexts:
- name: admin
  context: {{cluster: local, user: admin}}
- name: sluice
  context: {{cluster: local, user: sluice, namespace: {NS}}}
users:
- name: admin
  user:
    client-certificate-data: QUJDRA==
    client-key-data: QUJDRA==
- name: sluice
  user:
    token: {TOKEN}
"#
        ),
    )
    .unwrap();
    let k = kubeconfig.display();
    let cfg = format!(
        "targets:\n  engine:\n    url: http://{addr}\n    health: /healthz\n    kubernetes: {{name: engine, kubeconfig: '{k}', context: sluice}}\n  admin:\n    url: http://{addr}\n    kubernetes: {{name: engine, kubeconfig: '{k}'}}\n"
    );
    let (_, out) = run_yaml(
        &cfg,
        dir.path(),
        "name: k8s-kubeconfig\nsteps:\n  - id: scale\n    process.scale: {target: engine, replicas: 2, ready_timeout: 20s}\n  - id: status\n    process.status: {target: engine}\n  - id: admin\n    process.status: {target: admin}\n    continue_on_error: true\n",
    )
    .await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(out.steps["scale"]["output"]["previous"], 1);
    assert_eq!(out.steps["status"]["output"]["ready"], 2);
    let calls = api.api_calls();
    assert_eq!(
        calls[1].path,
        format!("{DEPLOYMENT}/scale"),
        "namespace from the context"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.auth.as_deref() == Some(&*format!("Bearer {TOKEN}")))
    );
    // The current context's user has a client certificate: refused, by name.
    let err = out.steps["admin"]["error"].as_str().unwrap();
    assert!(
        err.contains("user `admin`") && err.contains("client certificate"),
        "{err}"
    );
}
