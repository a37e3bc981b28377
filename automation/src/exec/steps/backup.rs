//! `backup`: files, directories and HTTP downloads (such as the engine's state
//! export) into one timestamped `NAME-YYYYmmddTHHMMSSZ.tar.gz` whose first
//! entry, `manifest.json`, lists every entry with its size and sha256 plus the
//! engine version. The archive is written under a temporary name and renamed,
//! so a half-written backup never looks complete. Retention by count and age
//! applies to this backup's archives only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value as J, json};
use sha2::{Digest, Sha256};

use super::cleanup::{existing_dir, matching_files, remove, select};
use super::{Action, Kind, Ref, RefKind, StepError, StepResult};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::yaml::de::At;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "backup",
    summary: "Archive files and HTTP downloads into a tar.gz with a sha256 manifest; apply retention.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["dest", "name"],
            "properties": {
                "dest": {"type": "string", "description": "Directory receiving archives."},
                "name": {"type": "string", "description": "Archive name prefix."},
                "files": {"type": "array", "items": {"type": "string"}, "description": "Files or directories."},
                "downloads": {"type": "array", "items": {"type": "object", "additionalProperties": false, "required": ["as"], "properties": {
                    "as": {"type": "string", "description": "Entry name in the archive."},
                    "url": {"type": "string"}, "target": {"type": "string"}, "path": {"type": "string"}
                }}},
                "engine_version_from": {"type": "string", "description": "Target whose /admin/version goes into the manifest."},
                "retention": {"type": "object", "additionalProperties": false, "properties": {
                    "keep": {"type": "integer", "minimum": 1}, "max_age": {"type": "string"}
                }}
            }
        })
    },
};

/// The manifest format this version writes and the only one `restore` accepts.
pub const MANIFEST_FORMAT: &str = "sluice-backup";
pub const MANIFEST_VERSION: u32 = 1;
/// Largest single download kept in a backup.
pub const MAX_DOWNLOAD_BYTES: usize = 512 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_at: String,
    pub name: String,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub engine_version: Option<J>,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Relative path inside the archive (`files/…` or `downloads/…`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Where it came from (file path or URL).
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub dest: String,
    pub name: String,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub downloads: Vec<Download>,
    #[serde(default)]
    pub engine_version_from: Option<At<String>>,
    #[serde(default)]
    pub retention: Option<Retention>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    #[serde(rename = "as")]
    pub name: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub target: Option<At<String>>,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub keep: Option<usize>,
    #[serde(default)]
    pub max_age: Option<Duration>,
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: BackupConfig = super::decode(node, lenient)?;
    let at = |f: &str| node.get(f).map_or(node.pos, |n| n.pos);
    if !c.name.contains("{{") && !plain_name(&c.name) {
        return Err(DeError::new(
            at("name"),
            "`name` may hold letters, digits, `-`, `_`, `.` only",
        ));
    }
    if c.files.is_empty() && c.downloads.is_empty() {
        return Err(DeError::new(
            node.pos,
            "`backup` needs `files`, `downloads` or both",
        ));
    }
    for d in &c.downloads {
        if !d.name.contains("{{") && !plain_name(&d.name) {
            return Err(DeError::new(
                at("downloads"),
                format!("download `as: {}` must be a plain file name", d.name),
            ));
        }
        if d.url.is_some() == d.target.is_some() {
            return Err(DeError::new(
                at("downloads"),
                "each download needs exactly one of `url` or `target` (+ `path`)",
            ));
        }
    }
    if let Some(r) = &c.retention
        && r.keep == Some(0)
    {
        return Err(DeError::new(
            at("retention"),
            "`retention.keep` must be at least 1 (the new backup)",
        ));
    }
    Ok(Box::new(c))
}

impl Action for BackupConfig {
    fn describe(&self) -> String {
        let mut what: Vec<String> = self.files.clone();
        what.extend(self.downloads.iter().map(|d| match (&d.url, &d.target) {
            (Some(u), _) => u.clone(),
            (_, Some(t)) => format!("{}{}", t.value, d.path.as_deref().unwrap_or("/")),
            _ => String::new(),
        }));
        format!(
            "back up {} into {}/{}-<time>.tar.gz",
            what.join(", "),
            self.dest,
            self.name
        )
    }

    fn refs(&self) -> Vec<Ref> {
        let mut refs: Vec<Ref> = self
            .downloads
            .iter()
            .filter_map(|d| d.target.as_ref())
            .map(|t| Ref::new(RefKind::Target, t))
            .collect();
        refs.extend(
            self.engine_version_from
                .iter()
                .map(|t| Ref::new(RefKind::Target, t)),
        );
        refs
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            // Downloads first: nothing is written if one fails.
            let mut downloads = Vec::new();
            for d in &self.downloads {
                let (url, token) = cx.endpoint(
                    d.url.as_deref(),
                    d.target.as_deref().map(|x| x.as_str()),
                    d.path.as_deref(),
                )?;
                let bytes = fetch(cx, &url, token.as_ref()).await?;
                cx.log(format!("downloaded {} ({} bytes)", d.name, bytes.len()));
                downloads.push((d.name.clone(), url, bytes));
            }
            let engine_version = match &self.engine_version_from {
                Some(t) => {
                    let target = cx.target(t)?;
                    let bytes = fetch(
                        cx,
                        &format!("{}/admin/version", target.url),
                        target.token.as_ref(),
                    )
                    .await?;
                    Some(serde_json::from_slice::<J>(&bytes).unwrap_or_else(|_| {
                        J::String(String::from_utf8_lossy(&bytes).trim().to_string())
                    }))
                }
                None => None,
            };
            let c = self.clone();
            let run_id = cx.run.id.clone();
            let result = tokio::task::spawn_blocking(move || {
                write_archive(&c, downloads, engine_version, Some(run_id))
            })
            .await
            .map_err(|e| StepError::permanent(format!("backup task: {e}")))?
            .map_err(StepError::permanent)?;
            cx.log(format!(
                "wrote {}",
                result["archive"].as_str().unwrap_or("")
            ));
            Ok(result)
        })
    }
}

async fn fetch(
    cx: &StepCx<'_>,
    url: &str,
    token: Option<&crate::secret::Secret>,
) -> Result<Vec<u8>, StepError> {
    let mut req = cx.services.http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let mut resp = req.send().await.map_err(|e| {
        StepError::transient(format!("download {url}: {}", super::http::error_chain(&e)))
    })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let msg = format!("download {url}: HTTP {status}");
        return Err(if status >= 500 {
            StepError::transient(msg)
        } else {
            StepError::permanent(msg)
        });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| StepError::transient(format!("download {url}: {e}")))?
    {
        if bytes.len() + chunk.len() > MAX_DOWNLOAD_BYTES {
            return Err(StepError::permanent(format!(
                "download {url} exceeds {MAX_DOWNLOAD_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// One file to archive: its path inside the archive and on disk.
struct Source {
    inner: String,
    disk: PathBuf,
}

fn collect_files(paths: &[String]) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for p in paths {
        let path = Path::new(p);
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{p}: {e}"))?;
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{p}: has no file name"))?;
        if meta.is_file() {
            out.push(Source {
                inner: format!("files/{base}"),
                disk: path.to_path_buf(),
            });
        } else if meta.is_dir() {
            let mut stack = vec![(path.to_path_buf(), format!("files/{base}"))];
            while let Some((dir, inner)) = stack.pop() {
                let mut entries: Vec<_> = std::fs::read_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                entries.sort_by_key(|e| e.file_name());
                for e in entries {
                    let m = std::fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
                    let name = format!("{inner}/{}", e.file_name().to_string_lossy());
                    if m.is_dir() {
                        stack.push((e.path(), name));
                    } else if m.is_file() {
                        out.push(Source {
                            inner: name,
                            disk: e.path(),
                        });
                    }
                    // Symlinks are not archived: restoring them could point anywhere.
                }
            }
        } else {
            return Err(format!("{p}: not a regular file or directory"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &out {
        if !seen.insert(&s.inner) {
            return Err(format!(
                "two sources map to `{}` in the archive; back them up separately",
                s.inner
            ));
        }
    }
    Ok(out)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn write_archive(
    c: &BackupConfig,
    downloads: Vec<(String, String, Vec<u8>)>,
    engine_version: Option<J>,
    run_id: Option<String>,
) -> Result<J, String> {
    if !plain_name(&c.name) {
        return Err(format!("invalid backup name `{}`", c.name));
    }
    std::fs::create_dir_all(&c.dest).map_err(|e| format!("creating {}: {e}", c.dest))?;
    let dest = existing_dir(&c.dest)?;
    let sources = collect_files(&c.files)?;
    let now = chrono::Utc::now();
    let mut entries = Vec::new();
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for s in &sources {
        let data = std::fs::read(&s.disk).map_err(|e| format!("{}: {e}", s.disk.display()))?;
        entries.push(ManifestEntry {
            path: s.inner.clone(),
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            source: s.disk.display().to_string(),
        });
        blobs.push((s.inner.clone(), data));
    }
    for (name, url, data) in downloads {
        let inner = format!("downloads/{name}");
        if blobs.iter().any(|(p, _)| *p == inner) {
            return Err(format!("two downloads named `{name}`"));
        }
        entries.push(ManifestEntry {
            path: inner.clone(),
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            source: url,
        });
        blobs.push((inner, data));
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        name: c.name.clone(),
        run_id,
        engine_version,
        entries,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    let file_name = format!("{}-{}.tar.gz", c.name, now.format("%Y%m%dT%H%M%S%.3fZ"));
    let final_path = dest.join(&file_name);
    let partial = dest.join(format!(".{file_name}.partial"));
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&partial)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut append = |path: &str, data: &[u8]| -> std::io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(now.timestamp().max(0) as u64);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, data)
        };
        append("manifest.json", &manifest_json)?;
        for (path, data) in &blobs {
            append(path, data)?;
        }
        let gz = tar.into_inner()?;
        let mut file = gz.finish()?;
        file.flush()?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("writing {}: {e}", partial.display()));
    }
    std::fs::rename(&partial, &final_path)
        .map_err(|e| format!("renaming into {}: {e}", final_path.display()))?;
    let archive_bytes = std::fs::read(&final_path).map_err(|e| e.to_string())?;

    let mut removed = Vec::new();
    if let Some(r) = &c.retention {
        let pattern = format!("{}-*.tar.gz", c.name);
        let files = matching_files(&dest, &pattern, false).map_err(|e| e.to_string())?;
        let chosen: Vec<_> = select(
            &files,
            Some(r.keep.unwrap_or(1).max(1)),
            r.max_age,
            SystemTime::now(),
        )
        .into_iter()
        .filter(|f| f.path != final_path)
        .collect();
        removed = remove(&dest, &chosen)?;
    }
    Ok(json!({
        "archive": final_path.display().to_string(),
        "sha256": sha256_hex(&archive_bytes),
        "bytes": archive_bytes.len(),
        "entries": manifest.entries.len(),
        "manifest": manifest,
        "removed": removed,
    }))
}
