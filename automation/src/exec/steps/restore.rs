//! `restore`: unpack a `backup` archive after verifying it completely — a
//! known manifest format and version, only plain relative paths (no `..`, no
//! absolute paths), only regular files (no links), every entry's sha256 and
//! size as in the manifest, nothing missing and nothing extra. Only then is
//! anything written, under `dest` and nowhere else.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::backup::{MANIFEST_FORMAT, MANIFEST_VERSION, Manifest};
use super::{Action, Kind, StepError, StepResult};
use crate::exec::context::StepCx;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "restore",
    summary: "Verify a backup archive (manifest, sha256, safe paths) and unpack it.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["archive", "dest"],
            "properties": {
                "archive": {"type": "string", "description": "Path of a .tar.gz written by `backup`."},
                "dest": {"type": "string", "description": "Directory to unpack into (created if missing)."},
                "overwrite": {"type": "boolean", "default": false}
            }
        })
    },
};

/// Largest archive entry accepted (a hostile archive cannot fill the disk through one entry).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    pub archive: String,
    pub dest: String,
    #[serde(default)]
    pub overwrite: bool,
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    Ok(Box::new(super::decode::<RestoreConfig>(node, lenient)?))
}

impl Action for RestoreConfig {
    fn describe(&self) -> String {
        format!("verify {} and unpack it into {}", self.archive, self.dest)
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let c = self.clone();
            let (manifest, written) = tokio::task::spawn_blocking(move || {
                restore(Path::new(&c.archive), Path::new(&c.dest), c.overwrite)
            })
            .await
            .map_err(|e| StepError::permanent(format!("restore task: {e}")))?
            .map_err(StepError::permanent)?;
            cx.log(format!("restored {} files", written.len()));
            let state_file = written
                .iter()
                .find(|p| p.ends_with("downloads/state.json"))
                .cloned();
            Ok(json!({"files": written, "manifest": manifest, "state_file": state_file}))
        })
    }
}

/// A relative path of plain components only.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.starts_with('/') || path.starts_with('\\') {
        return Err(format!("archive entry `{path}` has an absolute path"));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("archive entry `{path}` contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("archive entry `{path}` has an absolute path"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("archive entry `{path}` is empty"));
    }
    Ok(out)
}

/// Verified archive contents: relative path and bytes of each file.
pub type Files = Vec<(PathBuf, Vec<u8>)>;

/// Reads and checks every entry; returns the manifest and the verified contents.
pub fn verify(archive: &Path) -> Result<(Manifest, Files), String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut manifest: Option<Manifest> = None;
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, entry) in tar
        .entries()
        .map_err(|e| format!("not a tar.gz archive: {e}"))?
        .enumerate()
    {
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            safe_relative(&raw_path)?;
            continue;
        }
        if !kind.is_file() {
            return Err(format!(
                "archive entry `{raw_path}` is a {kind:?}, not a regular file (links are refused)"
            ));
        }
        let rel = safe_relative(&raw_path)?;
        let size = entry
            .header()
            .size()
            .map_err(|e| format!("corrupt archive: {e}"))?;
        if size > MAX_ENTRY_BYTES {
            return Err(format!(
                "archive entry `{raw_path}` is larger than {MAX_ENTRY_BYTES} bytes"
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("corrupt archive: {e}"))?;
        let key = rel.to_string_lossy().into_owned();
        if i == 0 && key == "manifest.json" {
            let m: Manifest =
                serde_json::from_slice(&data).map_err(|e| format!("invalid manifest: {e}"))?;
            if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
                return Err(format!(
                    "unknown manifest `{}` version {} (this Sluice reads `{MANIFEST_FORMAT}` version {MANIFEST_VERSION})",
                    m.format, m.version
                ));
            }
            manifest = Some(m);
            continue;
        }
        if manifest.is_none() {
            return Err("the archive does not start with manifest.json".into());
        }
        if contents.insert(key.clone(), data).is_some() {
            return Err(format!("archive entry `{key}` appears twice"));
        }
    }
    let manifest = manifest.ok_or("the archive has no manifest.json")?;
    let mut verified = Vec::new();
    for e in &manifest.entries {
        let rel = safe_relative(&e.path)?;
        let key = rel.to_string_lossy().into_owned();
        let data = contents
            .remove(&key)
            .ok_or_else(|| format!("`{}` is in the manifest but not in the archive", e.path))?;
        if data.len() as u64 != e.size {
            return Err(format!(
                "`{}`: size {} differs from the manifest's {}",
                e.path,
                data.len(),
                e.size
            ));
        }
        let sum = hex::encode(Sha256::digest(&data));
        if sum != e.sha256 {
            return Err(format!(
                "`{}`: sha256 {sum} differs from the manifest's {}",
                e.path, e.sha256
            ));
        }
        verified.push((rel, data));
    }
    if let Some(extra) = contents.keys().next() {
        return Err(format!("archive entry `{extra}` is not in the manifest"));
    }
    Ok((manifest, verified))
}

/// Verifies, then writes every file under `dest`. Refuses to write through symlinks.
pub fn restore(
    archive: &Path,
    dest: &Path,
    overwrite: bool,
) -> Result<(Manifest, Vec<String>), String> {
    let (manifest, files) = verify(archive)?;
    for (rel, _) in &files {
        let target = dest.join(rel);
        if !overwrite && target.exists() {
            return Err(format!(
                "{} exists (set `overwrite: true` to replace it)",
                target.display()
            ));
        }
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let root = std::fs::canonicalize(dest).map_err(|e| e.to_string())?;
    let mut written = Vec::new();
    for (rel, data) in files {
        let target = root.join(&rel);
        // Every directory on the way must be a real directory inside the root.
        let mut dir = root.clone();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            dir.push(c);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                    return Err(format!(
                        "{} is not a plain directory; refusing to write through it",
                        dir.display()
                    ));
                }
                Ok(_) => {}
                Err(_) => std::fs::create_dir(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?,
            }
        }
        if let Ok(m) = std::fs::symlink_metadata(&target)
            && m.file_type().is_symlink()
        {
            return Err(format!(
                "{} is a symlink; refusing to write through it",
                target.display()
            ));
        }
        std::fs::write(&target, &data).map_err(|e| format!("writing {}: {e}", target.display()))?;
        written.push(target.display().to_string());
    }
    Ok((manifest, written))
}
