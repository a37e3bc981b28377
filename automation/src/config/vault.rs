//! Secrets from HashiCorp Vault or OpenBao (KV version 2):
//! `${VAULT:path#key}` in any string of `sluice.yaml` is replaced by field
//! `key` of the secret at `path` under the `vault.mount` engine, read when
//! the configuration is loaded. One login (a token, or AppRole) and one
//! read per secret path per load; every request has `vault.timeout`. Values
//! land in the fields that hold them (secret fields are masked like any
//! other); the token and the AppRole's secret ID are secrets themselves.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as J;

use crate::duration::Duration;
use crate::secret::Secret;
use crate::yaml::{DeError, Node, Pos};

/// The `vault:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `https://vault.example:8200`.
    pub address: super::HttpUrl,
    /// A token (e.g. `${VAULT_TOKEN}`); or `approle`.
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub approle: Option<AppRole>,
    /// The KV v2 engine's mount path.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

/// AppRole login (`POST /v1/auth/{mount}/login`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRole {
    pub role_id: Secret,
    pub secret_id: Secret,
    #[serde(default = "default_approle_mount")]
    pub mount: String,
}

fn default_mount() -> String {
    "secret".into()
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}

impl VaultConfig {
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.token
            .iter()
            .chain(self.approle.iter().flat_map(|a| [&a.role_id, &a.secret_id]))
    }
}

const OPEN: &str = "${VAULT:";

/// One `${VAULT:path#key}` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ref {
    path: String,
    key: String,
}

fn parse_ref(inner: &str) -> Result<Ref, String> {
    let (path, key) = inner
        .split_once('#')
        .ok_or_else(|| format!("`${{VAULT:{inner}}}` needs `path#key`"))?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    if !ok(path) || key.is_empty() {
        return Err(format!(
            "`${{VAULT:{inner}}}`: the path must be segments of letters, digits, `-`, `_`, `.`, and the key non-empty"
        ));
    }
    Ok(Ref {
        path: path.to_string(),
        key: key.to_string(),
    })
}

/// The references in a string, with the text around them.
fn refs_in(s: &str) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(OPEN) {
        let tail = &rest[i + OPEN.len()..];
        let end = tail
            .find('}')
            .ok_or_else(|| "unterminated `${VAULT:`".to_string())?;
        out.push(parse_ref(&tail[..end])?);
        rest = &tail[end + 1..];
    }
    Ok(out)
}

/// Replaces every `${VAULT:…}` in `node`, reading the secrets named with
/// the `vault:` section of the same document. Unchanged when none is used.
pub fn resolve(node: &Node) -> Result<Node, DeError> {
    let mut wanted: BTreeMap<String, Pos> = BTreeMap::new();
    node.try_map_str(&mut |s, pos| {
        for r in refs_in(s).map_err(|m| DeError::new(pos, m))? {
            wanted.entry(r.path).or_insert(pos);
        }
        Ok::<_, DeError>(s.to_string())
    })?;
    let section = node.get("vault");
    if wanted.is_empty() {
        if let Some(v) = section {
            check(&crate::yaml::from_node::<VaultConfig>(v, false)?, v.pos)?;
        }
        return Ok(node.clone());
    }
    let first = *wanted.values().next().expect("not empty");
    let Some(section) = section else {
        return Err(DeError::new(
            first,
            "`${VAULT:…}` needs a `vault:` section (address, token or approle)",
        ));
    };
    let cfg: VaultConfig = crate::yaml::from_node(section, false)?;
    check(&cfg, section.pos)?;
    let paths: Vec<String> = wanted.keys().cloned().collect();
    let read = fetch(&cfg, &paths).map_err(|m| DeError::new(section.pos, m))?;
    node.try_map_str(&mut |s, pos| {
        if !s.contains(OPEN) {
            return Ok(s.to_string());
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(OPEN) {
            out.push_str(&rest[..i]);
            let tail = &rest[i + OPEN.len()..];
            let end = tail.find('}').expect("checked above");
            let r = parse_ref(&tail[..end]).map_err(|m| DeError::new(pos, m))?;
            let data = read[&r.path]
                .as_ref()
                .map_err(|m| DeError::new(pos, format!("vault: secret `{}`: {m}", r.path)))?;
            let value = match data.get(&r.key) {
                Some(J::String(v)) => v.clone(),
                Some(v @ (J::Number(_) | J::Bool(_))) => v.to_string(),
                Some(_) => {
                    return Err(DeError::new(
                        pos,
                        format!("vault: `{}#{}` is not a string", r.path, r.key),
                    ));
                }
                None => {
                    let keys: Vec<&String> = data.keys().collect();
                    return Err(DeError::new(
                        pos,
                        format!(
                            "vault: secret `{}` has no key `{}` (it has: {keys:?})",
                            r.path, r.key
                        ),
                    ));
                }
            };
            out.push_str(&value);
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    })
}

fn check(cfg: &VaultConfig, pos: Pos) -> Result<(), DeError> {
    match (&cfg.token, &cfg.approle) {
        (Some(_), Some(_)) => Err(DeError::new(
            pos,
            "vault: give `token` or `approle`, not both",
        )),
        (None, None) => Err(DeError::new(
            pos,
            "vault: give `token` (e.g. ${VAULT_TOKEN}) or `approle: {role_id, secret_id}`",
        )),
        _ if cfg.timeout.std().is_zero() => {
            Err(DeError::new(pos, "vault: `timeout` must be above 0"))
        }
        _ => Ok(()),
    }
}

type Secrets = BTreeMap<String, Result<serde_json::Map<String, J>, String>>;

/// Logs in and reads each path, on a thread of its own (the configuration
/// is loaded both from plain and from async code).
fn fetch(cfg: &VaultConfig, paths: &[String]) -> Result<Secrets, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("vault: {e}"))?;
            rt.block_on(fetch_async(cfg, paths))
        })
        .join()
        .map_err(|_| "vault: the reader panicked".to_string())?
    })
}

async fn fetch_async(cfg: &VaultConfig, paths: &[String]) -> Result<Secrets, String> {
    let http = crate::http_client::builder()
        .timeout(cfg.timeout.std())
        .build()
        .map_err(|e| format!("vault: {e}"))?;
    let base = cfg.address.0.as_str().trim_end_matches('/').to_string();
    let with_ns = |r: reqwest::RequestBuilder| match &cfg.namespace {
        Some(ns) => r.header("X-Vault-Namespace", ns),
        None => r,
    };
    let failed = |what: &str, e: reqwest::Error| {
        format!(
            "vault: {what}: {}",
            crate::exec::steps::http::error_chain(&e.without_url())
        )
    };
    let token = match (&cfg.token, &cfg.approle) {
        (Some(t), _) => t.expose().to_string(),
        (None, Some(a)) => {
            let r = with_ns(http.post(format!("{base}/v1/auth/{}/login", a.mount)))
                .json(&serde_json::json!({"role_id": a.role_id.expose(), "secret_id": a.secret_id.expose()}))
                .send()
                .await
                .map_err(|e| failed("AppRole login", e))?;
            let status = r.status();
            let body: J = r.json().await.unwrap_or(J::Null);
            if !status.is_success() {
                return Err(format!(
                    "vault: AppRole login: HTTP {}: {}",
                    status.as_u16(),
                    errors(&body)
                ));
            }
            body["auth"]["client_token"]
                .as_str()
                .ok_or("vault: AppRole login: no client_token in the answer")?
                .to_string()
        }
        (None, None) => unreachable!("checked"),
    };
    let mut out = Secrets::new();
    for path in paths {
        let r = with_ns(http.get(format!("{base}/v1/{}/data/{path}", cfg.mount)))
            .header("X-Vault-Token", &token)
            .send()
            .await
            .map_err(|e| failed(&format!("reading `{path}`"), e))?;
        let status = r.status();
        let body: J = r.json().await.unwrap_or(J::Null);
        let got = if status.is_success() {
            body["data"]["data"]
                .as_object()
                .cloned()
                .ok_or_else(|| "not a KV version 2 secret (no data.data)".to_string())
        } else if status.as_u16() == 404 {
            Err("not found (KV v2 paths are read, never created)".to_string())
        } else {
            Err(format!("HTTP {}: {}", status.as_u16(), errors(&body)))
        };
        out.insert(path.clone(), got);
    }
    Ok(out)
}

/// Vault's `{"errors": [...]}`.
fn errors(body: &J) -> String {
    body["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(J::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "no error text".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_path_and_a_key() {
        assert_eq!(
            refs_in("x ${VAULT:sluice/slack#url} y ${VAULT:a#b}").unwrap(),
            [
                Ref {
                    path: "sluice/slack".into(),
                    key: "url".into()
                },
                Ref {
                    path: "a".into(),
                    key: "b".into()
                }
            ]
        );
        for bad in [
            "${VAULT:nokey}",
            "${VAULT:../x#k}",
            "${VAULT:a//b#k}",
            "${VAULT:a#}",
            "${VAULT:a b#k}",
            "${VAULT:a#k",
        ] {
            assert!(refs_in(bad).is_err(), "{bad}");
        }
    }
}
