//! A remote Prometheus as the metrics source: instant queries through its HTTP
//! API (`GET /api/v1/query`), used instead of local scraping + evaluation when
//! `metrics.prometheus_url` is configured.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// One element of an instant-query result.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSample {
    pub labels: BTreeMap<String, String>,
    pub t_ms: i64,
    pub value: f64,
}

/// Why a remote query failed; `retryable` tells whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("request to Prometheus failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Prometheus answered HTTP {status}: {error_type}: {error}")]
    Api {
        status: u16,
        error_type: String,
        error: String,
    },
    #[error("unexpected response from Prometheus: {0}")]
    Decode(String),
}

impl RemoteError {
    /// Network problems and 5xx are worth retrying; a bad query is not.
    pub fn retryable(&self) -> bool {
        match self {
            RemoteError::Http(_) => true,
            RemoteError::Api { status, .. } => *status >= 500,
            RemoteError::Decode(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorElem {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Client for one Prometheus server.
#[derive(Debug, Clone)]
pub struct RemotePrometheus {
    base: url::Url,
    client: reqwest::Client,
    bearer_token: Option<String>,
}

impl RemotePrometheus {
    pub fn new(
        base: url::Url,
        timeout: Duration,
        bearer_token: Option<String>,
    ) -> reqwest::Result<Self> {
        Ok(RemotePrometheus {
            base,
            client: super::http_client(timeout)?,
            bearer_token,
        })
    }

    /// Instant query at `t_ms`. A scalar result comes back as one sample without labels.
    pub async fn instant(&self, query: &str, t_ms: i64) -> Result<Vec<RemoteSample>, RemoteError> {
        let url = self
            .base
            .join("api/v1/query")
            .map_err(|e| RemoteError::Decode(e.to_string()))?;
        let time = format!("{:.3}", t_ms as f64 / 1000.0);
        let mut req = self
            .client
            .get(url)
            .query(&[("query", query), ("time", time.as_str())]);
        if let Some(t) = &self.bearer_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let env: Envelope = resp
            .json()
            .await
            .map_err(|e| RemoteError::Decode(format!("HTTP {status}: {e}")))?;
        if env.status != "success" {
            return Err(RemoteError::Api {
                status,
                error_type: env.error_type.unwrap_or_default(),
                error: env.error.unwrap_or_default(),
            });
        }
        let data = env
            .data
            .ok_or_else(|| RemoteError::Decode("missing data".into()))?;
        let value = |(ts, v): (f64, String)| -> Result<(i64, f64), RemoteError> {
            let v = super::parse::parse_value(&v)
                .ok_or_else(|| RemoteError::Decode(format!("bad sample value {v:?}")))?;
            Ok(((ts * 1000.0).round() as i64, v))
        };
        match data.result_type.as_str() {
            "vector" => {
                let elems: Vec<VectorElem> = serde_json::from_value(data.result)
                    .map_err(|e| RemoteError::Decode(e.to_string()))?;
                elems
                    .into_iter()
                    .map(|e| {
                        let (t_ms, value) = value(e.value)?;
                        Ok(RemoteSample {
                            labels: e.metric,
                            t_ms,
                            value,
                        })
                    })
                    .collect()
            }
            "scalar" => {
                let pair: (f64, String) = serde_json::from_value(data.result)
                    .map_err(|e| RemoteError::Decode(e.to_string()))?;
                let (t_ms, value) = value(pair)?;
                Ok(vec![RemoteSample {
                    labels: BTreeMap::new(),
                    t_ms,
                    value,
                }])
            }
            other => Err(RemoteError::Decode(format!(
                "result type {other:?} is not usable for rules (want vector or scalar)"
            ))),
        }
    }
}
