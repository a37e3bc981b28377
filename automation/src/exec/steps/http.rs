//! `http`: one HTTP request; checks the status, exposes status, headers and
//! body (parsed as JSON when it is JSON) as outputs.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as J, json};

use super::{Action, Kind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "http",
    summary: "Send an HTTP request and check its status.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["url"],
            "properties": {
                "url": {"type": "string", "description": "Absolute http(s) URL."},
                "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], "default": "GET"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "json": {"description": "Body sent as JSON."},
                "body": {"type": "string", "description": "Body sent as text."},
                "expect": {"description": "Accepted status codes (default: any 2xx).", "oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}
            }
        })
    },
};

/// An HTTP request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub url: String,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body.
    #[serde(default)]
    pub json: Option<J>,
    /// Text body.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl Method {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        }
    }
}

/// Accepted status codes: one code or a list.
#[derive(Debug, Clone)]
pub enum Expect {
    One(u16),
    Many(Vec<u16>),
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || {
            serde::de::Error::custom("`expect` must be a status code (e.g. 200) or a list of them")
        };
        let code = |v: &J| {
            v.as_u64()
                .or_else(|| v.as_str()?.trim().parse().ok())
                .and_then(|c| u16::try_from(c).ok())
        };
        match J::deserialize(d)? {
            J::Array(items) => items
                .iter()
                .map(|v| code(v).ok_or_else(bad))
                .collect::<Result<_, _>>()
                .map(Expect::Many),
            v if v.as_str().is_some_and(|s| s.contains("{{")) => Ok(Expect::Many(Vec::new())),
            v => code(&v).map(Expect::One).ok_or_else(bad),
        }
    }
}

impl Expect {
    fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::One(s) => *s == status,
            Expect::Many(list) => list.contains(&status),
        }
    }
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let config: HttpConfig = super::decode(node, lenient)?;
    if config.json.is_some() && config.body.is_some() {
        return Err(DeError::new(
            node.pos,
            "give either `json` or `body`, not both",
        ));
    }
    if !config.url.contains("{{") {
        check_url(&config.url)
            .map_err(|m| DeError::new(node.get("url").map_or(node.pos, |n| n.pos), m))?;
    }
    Ok(Box::new(config))
}

fn check_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("URL `{url}` must be http:// or https://"));
    }
    Ok(parsed)
}

impl Action for HttpConfig {
    fn describe(&self) -> String {
        format!("{} {}", self.method.as_reqwest(), self.url)
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let url = check_url(&self.url).map_err(StepError::permanent)?;
            let mut req = cx.services.http.request(self.method.as_reqwest(), url);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            if let Some(j) = &self.json {
                req = req.json(j);
            } else if let Some(b) = &self.body {
                req = req.body(b.clone());
            }
            let out = send(cx, req).await?;
            check_status(&out, self.expect.as_ref())?;
            Ok(out)
        })
    }
}

/// Sends a request and reads at most the output limit of its body.
pub async fn send(cx: &StepCx<'_>, req: reqwest::RequestBuilder) -> StepResult {
    let mut resp = req
        .send()
        .await
        .map_err(|e| StepError::transient(format!("request failed: {}", error_chain(&e))))?;
    let status = resp.status().as_u16();
    let headers: serde_json::Map<String, J> = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_string(),
                J::String(v.to_str().ok()?.to_string()),
            ))
        })
        .collect();
    let max = cx.limits().max_output_bytes;
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| StepError::transient(format!("reading response: {}", error_chain(&e))))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(StepError::permanent(format!(
                "response body exceeds the output limit of {max} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice::<J>(&bytes)
        .unwrap_or_else(|_| J::String(String::from_utf8_lossy(&bytes).into_owned()));
    cx.log(format!("HTTP {status}, {} bytes", bytes.len()));
    Ok(json!({"status": status, "headers": headers, "body": body}))
}

/// Fails unless the status is expected (default: 2xx). 5xx and 429 are transient.
pub fn check_status(out: &J, expect: Option<&Expect>) -> Result<(), StepError> {
    let status = out["status"].as_u64().unwrap_or(0) as u16;
    let ok = match expect {
        Some(e) => e.accepts(status),
        None => (200..300).contains(&status),
    };
    if ok {
        return Ok(());
    }
    let body = match &out["body"] {
        J::String(s) => s.chars().take(200).collect(),
        other => other.to_string().chars().take(200).collect::<String>(),
    };
    let message = format!("unexpected HTTP status {status}: {body}");
    if status >= 500 || status == 429 {
        Err(StepError::transient(message))
    } else {
        Err(StepError::permanent(message))
    }
}

/// The error with its causes (reqwest hides the interesting part in `source`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
