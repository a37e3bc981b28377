//! Driver `kubernetes`: a Deployment or StatefulSet through the API server
//! (`apps/v1`, plain HTTP(S) with a bearer token; no kubectl, no client
//! library). The connection comes from `api_url` (+ `token`/`token_file`,
//! `ca_file`), a kubeconfig (its current context or `context`; token users
//! only — client certificates and exec plugins are refused), or the pod's
//! service account (`in_cluster`). `token`, `token_file` and `ca_file` in
//! the config override what the kubeconfig or service account gives; a
//! token file is re-read at every call (projected tokens rotate).
//!
//! - status: the workload's replica counts and whether its rollout is done.
//! - scale: `PATCH …/scale` (merge patch), then wait for the rollout.
//! - restart: what `kubectl rollout restart` sends (a strategic merge patch
//!   of the pod template's `kubectl.kubernetes.io/restartedAt`), then wait.
//! - stop: remember the replica count in the annotation
//!   `sluice.dev/replicas-before-stop`, scale to 0, wait until no pod is left.
//! - start: a stopped workload is scaled back to the remembered count (else
//!   the config's `replicas`), then waited on; a running one is only waited on.
//!
//! "Rolled out" is what `kubectl rollout status` waits for; after it the
//! target's `health` path (when set) must answer 2xx on the target's URL —
//! the Service in front of the pods. Host selectors do not apply (validation
//! refuses them) and `drain` is ignored: pods get SIGTERM and their
//! `terminationGracePeriodSeconds`, which is how they flush and commit.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant};

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value as J, json};

use super::{Driver, Request, Want, healthy};
use crate::config::{Kubernetes, Target, WorkloadKind};
use crate::exec::context::StepCx;
use crate::exec::steps::{StepError, StepResult, clip};

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long the rollout wait sleeps between looks.
const POLL: StdDuration = StdDuration::from_millis(500);
/// Where `stop` remembers the replica count `start` brings back.
pub const BEFORE_STOP: &str = "sluice.dev/replicas-before-stop";
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    None,
    Value(String),
    /// Read at every call.
    File(PathBuf),
}

/// Where the API server is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Conn {
    /// Base URL without a trailing `/`.
    server: String,
    token: Token,
    /// PEM of the CA that signs the server's certificate, and where it came from.
    ca: Option<(String, Vec<u8>)>,
    namespace: Option<String>,
}

fn connect(k: &Kubernetes) -> Result<Conn, String> {
    let mut conn = if let Some(url) = &k.api_url {
        Conn {
            server: url.to_string().trim_end_matches('/').to_string(),
            token: Token::None,
            ca: None,
            namespace: None,
        }
    } else if let Some(path) = &k.kubeconfig {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        kubeconfig(&text, dir, k.context.as_deref())
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
    } else if k.in_cluster {
        in_cluster()?
    } else {
        return Err("set one of `api_url`, `kubeconfig` and `in_cluster: true`".into());
    };
    if let Some(t) = &k.token {
        conn.token = Token::Value(t.expose().to_string());
    } else if let Some(f) = &k.token_file {
        conn.token = Token::File(f.clone());
    }
    if let Some(f) = &k.ca_file {
        conn.ca = Some(read_ca(f)?);
    }
    Ok(conn)
}

fn read_ca(path: &Path) -> Result<(String, Vec<u8>), String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    Ok((path.display().to_string(), pem))
}

/// The pod's own service account: `KUBERNETES_SERVICE_HOST`/`_PORT` and the mounted files.
fn in_cluster() -> Result<Conn, String> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (Some(host), Some(port)) = (
        var("KUBERNETES_SERVICE_HOST"),
        var("KUBERNETES_SERVICE_PORT"),
    ) else {
        return Err(
            "`in_cluster: true` but KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not in a pod?)"
                .into(),
        );
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let dir = Path::new(SERVICE_ACCOUNT);
    Ok(Conn {
        server: format!("https://{host}:{port}"),
        token: Token::File(dir.join("token")),
        ca: Some(read_ca(&dir.join("ca.crt"))?),
        namespace: std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    })
}

/// The connection a kubeconfig's `context` (default: its current context)
/// describes; relative file names are relative to `dir`, as kubectl reads them.
fn kubeconfig(text: &str, dir: &Path, context: Option<&str>) -> Result<Conn, String> {
    let kc: J = serde_saphyr::from_str(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
    // `- {name: N, FIELD: {...}}` of list `list`.
    let find = |list: &str, name: &str, field: &str| {
        let all = kc[list].as_array()?;
        all.iter().find(|e| e["name"] == name).map(|e| &e[field])
    };
    let s = |v: &J, k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let file = |p: String| dir.join(p); // an absolute `p` replaces `dir`
    let name = context
        .map(str::to_string)
        .or_else(|| s(&kc, "current-context"))
        .ok_or("no `current-context` and no `context` in the config")?;
    let ctx = find("contexts", &name, "context").ok_or_else(|| format!("no context `{name}`"))?;
    let cname = s(ctx, "cluster").ok_or_else(|| format!("context `{name}` names no cluster"))?;
    let cluster = find("clusters", &cname, "cluster")
        .ok_or_else(|| format!("context `{name}` names cluster `{cname}`, which is not listed"))?;
    let server = s(cluster, "server").ok_or_else(|| format!("cluster `{cname}` has no server"))?;
    let ca = match (
        s(cluster, "certificate-authority-data"),
        s(cluster, "certificate-authority"),
    ) {
        (Some(data), _) => {
            let what = format!("cluster `{cname}` certificate-authority-data");
            let pem = base64(&data).map_err(|e| format!("{what}: {e}"))?;
            Some((what, pem))
        }
        (None, Some(p)) => Some(read_ca(&file(p))?),
        (None, None) => None,
    };
    let token = match s(ctx, "user") {
        None => Token::None,
        Some(u) => {
            let user = find("users", &u, "user")
                .ok_or_else(|| format!("context `{name}` names user `{u}`, which is not listed"))?;
            let other = [
                ("client-certificate", "a client certificate"),
                ("client-certificate-data", "a client certificate"),
                ("exec", "an exec plugin"),
                ("auth-provider", "an auth provider"),
            ];
            if let Some(t) = s(user, "token") {
                Token::Value(t)
            } else if let Some(f) = s(user, "tokenFile") {
                Token::File(file(f))
            } else if let Some((_, how)) = other.iter().find(|(k, _)| !user[k].is_null()) {
                return Err(format!(
                    "user `{u}` authenticates with {how}, which sluice does not support; give it a `token` or `tokenFile` (e.g. a service account token)"
                ));
            } else {
                Token::None
            }
        }
    };
    Ok(Conn {
        server: server.trim_end_matches('/').to_string(),
        token,
        ca,
        namespace: s(ctx, "namespace"),
    })
}

/// Standard (or URL-safe) base64, padding optional, whitespace ignored.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return Err(format!("not base64 (byte {c:#04x})")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn int(obj: &J, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(J::as_i64).unwrap_or(0)
}

/// `spec.replicas` (the API defaults it to 1).
fn spec_replicas(obj: &J) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(J::as_i64)
        .unwrap_or(1)
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Done,
    /// Still going: what it waits for.
    Waiting(String),
    /// It will not finish by itself (a Deployment past its progress deadline).
    Failed(String),
}

/// Whether the rollout of `obj` is complete, as `kubectl rollout status` decides.
pub fn rollout(kind: WorkloadKind, obj: &J) -> Rollout {
    let generation = int(obj, "/metadata/generation");
    let observed = int(obj, "/status/observedGeneration");
    if observed < generation {
        return Rollout::Waiting(format!(
            "the controller has not observed generation {generation} yet (at {observed})"
        ));
    }
    let spec = spec_replicas(obj);
    let updated = int(obj, "/status/updatedReplicas");
    let ready = int(obj, "/status/readyReplicas");
    match kind {
        WorkloadKind::Deployment => {
            let deadline = obj
                .pointer("/status/conditions")
                .and_then(J::as_array)
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
            if let Some(c) = deadline {
                return Rollout::Failed(format!(
                    "progress deadline exceeded: {}",
                    c["message"].as_str().unwrap_or("")
                ));
            }
            let pods = int(obj, "/status/replicas");
            let available = int(obj, "/status/availableReplicas");
            if updated != spec {
                Rollout::Waiting(format!("{updated} of {spec} replicas updated"))
            } else if pods != updated {
                Rollout::Waiting(format!(
                    "{} old replicas pending termination",
                    pods - updated
                ))
            } else if available != updated {
                Rollout::Waiting(format!(
                    "{available} of {updated} updated replicas available"
                ))
            } else {
                Rollout::Done
            }
        }
        WorkloadKind::StatefulSet => {
            let revision = |f: &str| obj.pointer(f).and_then(J::as_str);
            let same_revision = revision("/status/updateRevision").is_some()
                && revision("/status/updateRevision") == revision("/status/currentRevision");
            if ready != spec {
                Rollout::Waiting(format!("{ready} of {spec} replicas ready"))
            } else if updated != spec && !same_revision {
                Rollout::Waiting(format!("{updated} of {spec} replicas updated"))
            } else {
                Rollout::Done
            }
        }
    }
}

/// Whether no pod of `obj` is left (after a scale to 0).
pub fn stopped(obj: &J) -> Rollout {
    let generation = int(obj, "/metadata/generation");
    if int(obj, "/status/observedGeneration") < generation {
        return Rollout::Waiting(format!(
            "the controller has not observed generation {generation} yet"
        ));
    }
    match int(obj, "/status/replicas") {
        0 => Rollout::Done,
        n => Rollout::Waiting(format!("{n} pod(s) still running")),
    }
}

/// A workload's figures, as steps report them.
pub fn summary(kind: WorkloadKind, obj: &J) -> J {
    let ready = int(obj, "/status/readyReplicas");
    json!({
        "kind": format!("{kind:?}"),
        "name": obj.pointer("/metadata/name"),
        "namespace": obj.pointer("/metadata/namespace"),
        "replicas": spec_replicas(obj),
        "pods": int(obj, "/status/replicas"),
        "ready": ready,
        "updated": int(obj, "/status/updatedReplicas"),
        "available": int(obj, "/status/availableReplicas"),
        "observed_generation": int(obj, "/status/observedGeneration"),
        "generation": int(obj, "/metadata/generation"),
        "rolled_out": rollout(kind, obj) == Rollout::Done,
        "running": ready,
        "healthy": ready,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    RolledOut,
    Stopped,
}

/// A Deployment or StatefulSet of a target.
pub struct Workload<'t> {
    target: &'t Target,
    k: &'t Kubernetes,
    conn: Conn,
    namespace: String,
    client: reqwest::Client,
}

impl fmt::Display for Workload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}/{}",
            self.k.kind, self.namespace, self.k.name.value
        )
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

impl<'t> Workload<'t> {
    pub fn new(name: &'t str, target: &'t Target) -> Result<Self, StepError> {
        let k = target.kubernetes.as_ref().ok_or_else(|| {
            StepError::permanent(format!("target `{name}` has no `kubernetes` section"))
        })?;
        let conn = connect(k).map_err(|e| StepError::permanent(format!("target `{name}`: {e}")))?;
        let namespace = k
            .namespace
            .as_ref()
            .map(|n| n.value.clone())
            .or_else(|| conn.namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        let mut builder = crate::http_client::builder().timeout(k.request_timeout.std());
        if let Some((from, pem)) = &conn.ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    StepError::permanent(format!("target `{name}`: no PEM certificate in {from}"))
                })?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| {
            StepError::permanent(format!(
                "target `{name}`: cannot build the HTTP client: {e}"
            ))
        })?;
        Ok(Workload {
            target,
            k,
            conn,
            namespace,
            client,
        })
    }

    fn path(&self, scale: bool) -> String {
        format!(
            "/apis/apps/v1/namespaces/{}/{}/{}{}",
            self.namespace,
            self.k.kind.resource(),
            self.k.name.value,
            if scale { "/scale" } else { "" }
        )
    }

    async fn token(&self) -> Result<Option<String>, StepError> {
        match &self.conn.token {
            Token::None => Ok(None),
            Token::Value(v) => Ok(Some(v.clone())),
            Token::File(p) => tokio::fs::read_to_string(p)
                .await
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| {
                    StepError::permanent(format!("cannot read token file {}: {e}", p.display()))
                }),
        }
    }

    /// One API call (logged as `METHOD path`): `patch` is a content type and body.
    async fn call(
        &self,
        cx: &StepCx<'_>,
        method: Method,
        scale: bool,
        patch: Option<(&str, J)>,
    ) -> Result<J, StepError> {
        let path = self.path(scale);
        cx.log(format!("{method} {path}"));
        let token = self.token().await?;
        let mut rb = self
            .client
            .request(method.clone(), format!("{}{path}", self.conn.server))
            .timeout(self.k.request_timeout.std())
            .header(ACCEPT, "application/json");
        if let Some(t) = &token {
            rb = rb.bearer_auth(t);
        }
        if let Some((content_type, body)) = patch {
            rb = rb.header(CONTENT_TYPE, content_type).body(body.to_string());
        }
        let what = format!("kubernetes API {method} {path}");
        let resp = rb
            .send()
            .await
            .map_err(|e| StepError::transient(format!("{what}: {}", chain(&e))))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| StepError::transient(format!("{what}: {}", chain(&e))))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| StepError::permanent(format!("{what}: the answer is not JSON: {e}")));
        }
        let mut why = serde_json::from_str::<J>(&text)
            .ok()
            .and_then(|j| j["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| clip(text, 300).0);
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            why = why.replace(&t, "***");
        }
        Err(match status.as_u16() {
            401 | 403 => StepError::permanent(format!(
                "kubernetes API refused {method} {path}: {status}: {why}"
            )),
            404 => StepError::permanent(format!(
                "no {:?} `{}` in namespace `{}` ({what}: {status})",
                self.k.kind, self.k.name.value, self.namespace
            )),
            409 | 429 | 500..=599 => StepError::transient(format!("{what}: {status}: {why}")),
            _ => StepError::permanent(format!("{what}: {status}: {why}")),
        })
    }

    async fn get(&self, cx: &StepCx<'_>) -> Result<J, StepError> {
        self.call(cx, Method::GET, false, None).await
    }

    async fn set_replicas(&self, cx: &StepCx<'_>, n: i64) -> Result<(), StepError> {
        let body = json!({"spec": {"replicas": n}});
        self.call(cx, Method::PATCH, true, Some((MERGE_PATCH, body)))
            .await?;
        Ok(())
    }

    /// Polls the workload until `goal` (and, rolled out, the health check)
    /// holds or the step's `ready_timeout` passes; the workload's figures.
    async fn wait(&self, cx: &StepCx<'_>, req: &Request<'_>, goal: Goal) -> StepResult {
        let clock = Instant::now();
        let limit = req.ready_timeout;
        let url = self.target.url.to_string();
        loop {
            let obj = self.get(cx).await?;
            let state = match goal {
                Goal::RolledOut => rollout(self.k.kind, &obj),
                Goal::Stopped => stopped(&obj),
            };
            let last = match state {
                Rollout::Failed(why) => {
                    return Err(StepError::permanent(format!(
                        "{self}: rollout failed: {why}"
                    )));
                }
                Rollout::Done if goal == Goal::Stopped => return Ok(summary(self.k.kind, &obj)),
                Rollout::Done => match healthy(cx, self.target, &url).await {
                    Some(false) => format!(
                        "rolled out, but {}{} does not answer 2xx",
                        url.trim_end_matches('/'),
                        self.target.health
                    ),
                    _ => return Ok(summary(self.k.kind, &obj)),
                },
                Rollout::Waiting(why) => why,
            };
            let Some(left) = limit
                .std()
                .checked_sub(clock.elapsed())
                .filter(|d| !d.is_zero())
            else {
                let verb = match goal {
                    Goal::RolledOut => "roll out",
                    Goal::Stopped => "stop",
                };
                return Err(StepError::transient(format!(
                    "{self} did not {verb} within {limit} (ready_timeout); last seen: {last}"
                )));
            };
            tokio::time::sleep(POLL.min(left)).await;
        }
    }

    async fn do_status(&self, cx: &StepCx<'_>) -> StepResult {
        Ok(summary(self.k.kind, &self.get(cx).await?))
    }

    async fn do_scale(&self, cx: &StepCx<'_>, req: &Request<'_>, want: Want<'_>) -> StepResult {
        let scale = self.call(cx, Method::GET, true, None).await?;
        let previous = int(&scale, "/spec/replicas").max(0) as usize;
        let (requested, replicas) = want(previous);
        if replicas != previous {
            self.set_replicas(cx, replicas as i64).await?;
            cx.log(format!("{self}: {previous} -> {replicas} replicas"));
        } else {
            cx.log(format!("{self}: already {replicas} replicas"));
        }
        let workload = self.wait(cx, req, Goal::RolledOut).await?;
        Ok(json!({
            "requested": requested,
            "replicas": replicas,
            "clamped": replicas as i64 != requested,
            "previous": previous,
            "workload": workload,
        }))
    }

    async fn do_restart(&self, cx: &StepCx<'_>, req: &Request<'_>) -> StepResult {
        if req.drain {
            cx.log("`drain` does not apply on Kubernetes: pods get SIGTERM and their grace period");
        }
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}});
        self.call(cx, Method::PATCH, false, Some((STRATEGIC_PATCH, body)))
            .await?;
        cx.log(format!("{self}: restart requested at {at}"));
        let workload = self.wait(cx, req, Goal::RolledOut).await?;
        Ok(json!({"restarted_at": at, "workload": workload}))
    }

    async fn do_stop(&self, cx: &StepCx<'_>, req: &Request<'_>) -> StepResult {
        if req.drain {
            cx.log("`drain` does not apply on Kubernetes: pods get SIGTERM and their grace period");
        }
        let previous = spec_replicas(&self.get(cx).await?);
        if previous > 0 {
            let body = json!({"metadata": {"annotations": {BEFORE_STOP: previous.to_string()}}});
            self.call(cx, Method::PATCH, false, Some((MERGE_PATCH, body)))
                .await?;
            self.set_replicas(cx, 0).await?;
            cx.log(format!("{self}: {previous} -> 0 replicas"));
        } else {
            cx.log(format!("{self}: already at 0 replicas"));
        }
        let workload = self.wait(cx, req, Goal::Stopped).await?;
        Ok(json!({"stopped": previous > 0, "previous": previous, "workload": workload}))
    }

    async fn do_start(&self, cx: &StepCx<'_>, req: &Request<'_>) -> StepResult {
        let obj = self.get(cx).await?;
        let current = spec_replicas(&obj);
        let started = current == 0;
        if started {
            let remembered = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(BEFORE_STOP))
                .and_then(J::as_str)
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| *n > 0);
            let n = remembered.unwrap_or(self.k.replicas.max(1));
            let source = if remembered.is_some() {
                BEFORE_STOP
            } else {
                "the config's `replicas`"
            };
            cx.log(format!("{self}: 0 -> {n} replicas (from {source})"));
            self.set_replicas(cx, i64::from(n)).await?;
        } else {
            cx.log(format!(
                "{self}: runs {current} replicas; waiting for its rollout"
            ));
        }
        let workload = self.wait(cx, req, Goal::RolledOut).await?;
        Ok(json!({"started": started, "workload": workload}))
    }
}

impl Driver for Workload<'_> {
    fn start<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(self.do_start(cx, req))
    }
    fn stop<'a>(&'a self, cx: &'a StepCx<'a>, req: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(self.do_stop(cx, req))
    }
    fn restart<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(self.do_restart(cx, req))
    }
    fn scale<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
        req: &'a Request<'a>,
        want: Want<'a>,
    ) -> BoxFuture<'a, StepResult> {
        Box::pin(self.do_scale(cx, req, want))
    }
    fn status<'a>(&'a self, cx: &'a StepCx<'a>, _: &'a Request<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(self.do_status(cx))
    }
}

#[cfg(test)]
#[path = "kubernetes_tests.rs"]
mod tests;
