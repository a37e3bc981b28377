//! `wait_until`: poll a condition until it holds — an HTTP check (status,
//! body text, JSON field) or a PromQL expression that returns a non-empty
//! result — every `every`, failing after `timeout`.
//!
//! PromQL is evaluated by a Prometheus-compatible query API: `query_url` or
//! sluice.yaml `metrics.prometheus_url` (`/api/v1/query`); without either, in
//! the service, over the metrics it scrapes itself.

use std::time::Instant;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::http::{Expect, error_chain};
use super::{Action, Failure, Kind, Ref, RefKind, StepError, StepResult};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "wait_until",
    summary: "Poll an HTTP check or a PromQL condition until it holds.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "http": {"type": "object", "additionalProperties": false, "properties": {
                    "url": {"type": "string"}, "target": {"type": "string"}, "path": {"type": "string"},
                    "expect": {"oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]},
                    "contains": {"type": "string"}, "json_pointer": {"type": "string"}, "equals": {},
                    "below": {"type": "number", "description": "Holds when the number at `json_pointer` is below this."},
                    "above": {"type": "number", "description": "Holds when the number at `json_pointer` is above this."}
                }},
                "promql": {"type": "string", "description": "Holds when the query returns a non-empty result."},
                "query_url": {"type": "string", "description": "Prometheus base URL (default: metrics.prometheus_url)."},
                "every": {"type": "string", "default": "5s"},
                "timeout": {"type": "string", "default": "5m"}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitConfig {
    #[serde(default)]
    pub http: Option<HttpCheck>,
    #[serde(default)]
    pub promql: Option<At<String>>,
    #[serde(default)]
    pub query_url: Option<String>,
    #[serde(default = "default_every")]
    pub every: Duration,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub target: Option<At<String>>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub json_pointer: Option<String>,
    #[serde(default)]
    pub equals: Option<J>,
    /// The number at `json_pointer` must be below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// The number at `json_pointer` must be above this.
    #[serde(default)]
    pub above: Option<f64>,
}

fn default_every() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: WaitConfig = super::decode(node, lenient)?;
    if c.http.is_some() == c.promql.is_some() {
        return Err(DeError::new(
            node.pos,
            "`wait_until` needs exactly one of `http` or `promql`",
        ));
    }
    if let Some(h) = &c.http {
        let pos = node.get("http").map_or(node.pos, |n| n.pos);
        if h.url.is_some() == h.target.is_some() {
            return Err(DeError::new(
                pos,
                "`http` needs exactly one of `url` or `target` (+ `path`)",
            ));
        }
        if h.equals.is_some() && h.json_pointer.is_none() {
            return Err(DeError::new(pos, "`equals` needs `json_pointer`"));
        }
        if (h.below.is_some() || h.above.is_some()) && h.json_pointer.is_none() {
            return Err(DeError::new(pos, "`below` and `above` need `json_pointer`"));
        }
    }
    if c.every.std().is_zero() {
        return Err(DeError::new(
            node.get("every").map_or(node.pos, |n| n.pos),
            "`every` must be more than 0s",
        ));
    }
    Ok(Box::new(c))
}

impl Action for WaitConfig {
    fn describe(&self) -> String {
        let what = match (&self.http, &self.promql) {
            (Some(h), _) => match (&h.url, &h.target) {
                (Some(u), _) => format!("GET {u}"),
                (_, Some(t)) => format!(
                    "GET {} on target `{}`",
                    h.path.as_deref().unwrap_or("/"),
                    t.value
                ),
                _ => String::new(),
            },
            (_, Some(q)) => format!("PromQL `{}`", q.value),
            _ => String::new(),
        };
        format!(
            "wait until {what} holds (every {}, up to {})",
            self.every, self.timeout
        )
    }

    fn refs(&self) -> Vec<Ref> {
        self.http
            .iter()
            .filter_map(|h| h.target.as_ref())
            .map(|t| Ref::new(RefKind::Target, t))
            .collect()
    }

    fn promql(&self) -> Vec<At<String>> {
        self.promql.iter().cloned().collect()
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let start = Instant::now();
            let mut attempts = 0u64;
            loop {
                attempts += 1;
                let check = match (&self.http, &self.promql) {
                    (Some(h), _) => http_check(cx, h).await,
                    (_, Some(q)) => promql_check(cx, self.query_url.as_deref(), q).await,
                    _ => Err(StepError::permanent("nothing to wait for")),
                };
                let last = match check {
                    Ok((true, detail)) => {
                        return Ok(
                            json!({"attempts": attempts, "elapsed_ms": start.elapsed().as_millis() as u64, "last": detail}),
                        );
                    }
                    Ok((false, detail)) => detail.to_string(),
                    Err(e) if e.failure == Failure::Permanent => return Err(e),
                    Err(e) => e.message,
                };
                if start.elapsed() + self.every.std() > self.timeout.std() {
                    return Err(StepError {
                        failure: Failure::Timeout,
                        message: format!(
                            "condition not met within {} ({attempts} checks; last: {last})",
                            self.timeout
                        ),
                    });
                }
                cx.log(format!("check {attempts}: not yet ({last})"));
                tokio::time::sleep(self.every.std()).await;
            }
        })
    }
}

async fn http_check(cx: &StepCx<'_>, h: &HttpCheck) -> Result<(bool, J), StepError> {
    let (url, token) = cx.endpoint(
        h.url.as_deref(),
        h.target.as_deref().map(|x| x.as_str()),
        h.path.as_deref(),
    )?;
    let mut req = cx
        .services
        .http
        .get(&url)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok((
                false,
                J::String(format!("request failed: {}", error_chain(&e))),
            ));
        }
    };
    let status = resp.status().as_u16();
    let max = cx.limits().max_output_bytes;
    let body = resp
        .bytes()
        .await
        .map_err(|e| StepError::transient(e.to_string()))?;
    if body.len() > max {
        return Err(StepError::permanent(format!(
            "response body exceeds the output limit of {max} bytes"
        )));
    }
    let text = String::from_utf8_lossy(&body);
    let status_ok = match &h.expect {
        Some(Expect::One(s)) => *s == status,
        Some(Expect::Many(l)) => l.contains(&status),
        None => (200..300).contains(&status),
    };
    let contains_ok = h
        .contains
        .as_ref()
        .is_none_or(|c| text.contains(c.as_str()));
    let json_ok = match (&h.json_pointer, &h.equals) {
        (Some(ptr), _) if h.below.is_some() || h.above.is_some() => {
            let doc: J = serde_json::from_str(&text).unwrap_or(J::Null);
            let n = doc.pointer(ptr).and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            });
            match n {
                Some(n) => {
                    h.below.is_none_or(|b| n < b)
                        && h.above.is_none_or(|a| n > a)
                        && h.equals.as_ref().is_none_or(|e| e.as_f64() == Some(n))
                }
                None => false,
            }
        }
        (Some(ptr), expected) => {
            let doc: J = serde_json::from_str(&text).unwrap_or(J::Null);
            match (doc.pointer(ptr), expected) {
                (Some(v), Some(e)) => {
                    v == e
                        || v.as_str().is_some_and(|s| Some(s) == e.as_str())
                        || &J::String(v.to_string()) == e
                }
                (Some(v), None) => !v.is_null(),
                (None, _) => false,
            }
        }
        _ => true,
    };
    let mut detail = json!({"status": status});
    if let Some(ptr) = &h.json_pointer {
        let doc: J = serde_json::from_str(&text).unwrap_or(J::Null);
        detail["value"] = doc.pointer(ptr).cloned().unwrap_or(J::Null);
    }
    Ok((status_ok && contains_ok && json_ok, detail))
}

async fn promql_check(
    cx: &StepCx<'_>,
    query_url: Option<&str>,
    q: &str,
) -> Result<(bool, J), StepError> {
    let configured = query_url.map(str::to_string).or_else(|| {
        cx.services
            .config
            .metrics
            .as_ref()
            .and_then(|m| m.prometheus_url.as_ref())
            .map(|u| u.to_string())
    });
    if configured.is_none()
        && let Some(local) = &cx.services.local_query
    {
        let data = local
            .query(q, chrono::Utc::now().timestamp_millis())
            .map_err(|e| StepError::permanent(format!("query failed: {e}")))?;
        return Ok(query_holds(&data["result"]));
    }
    let base = match configured {
        Some(u) => u,
        None => {
            return Err(StepError::permanent(
                "a PromQL condition needs `query_url`, `metrics.prometheus_url` in sluice.yaml, or the service's own scraped metrics (`sluice serve`)",
            ));
        }
    };
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let resp = cx
        .services
        .http
        .get(&url)
        .query(&[("query", q)])
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| StepError::transient(format!("query failed: {}", error_chain(&e))))?;
    let doc: J = resp
        .json()
        .await
        .map_err(|e| StepError::transient(format!("query answer is not JSON: {e}")))?;
    if doc["status"] != "success" {
        return Err(StepError::permanent(format!(
            "query failed: {}",
            doc["error"]
        )));
    }
    Ok(query_holds(&doc["data"]["result"]))
}

/// A query holds when it returns something (an empty vector does not).
fn query_holds(result: &J) -> (bool, J) {
    let holds = match result {
        J::Array(items) => !items.is_empty(),
        J::Null => false,
        _ => true,
    };
    (holds, json!({"result": result}))
}
