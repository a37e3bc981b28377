//! `restore`: unpack a `backup` archive after verifying it completely — a
//! known manifest format and version, only plain relative paths (no `..`, no
//! absolute paths), only regular files (no symlinks or hardlinks), every
//! entry's sha256 and size as in the manifest, nothing missing and nothing
//! extra, bounded sizes. Then every destination is checked (no symlinks or
//! non-directories on the way, nothing overwritten unless `overwrite`), and
//! only then is anything written: each file is unpacked into a staging
//! directory under `dest` (verified again on the way) and renamed into place,
//! so an existing file is replaced, never written through (a hardlink to a
//! file elsewhere keeps its content). A failure before the renames leaves
//! `dest` as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
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

/// What one archive may hold, so a hostile archive cannot fill memory or disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest entry.
    pub max_entry_bytes: u64,
    /// Sum of all entries.
    pub max_total_bytes: u64,
    /// Number of entries.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 1 << 30,
            max_total_bytes: 8 << 30,
            max_entries: 100_000,
        }
    }
}

/// Largest `manifest.json` read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

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
                restore(
                    Path::new(&c.archive),
                    Path::new(&c.dest),
                    c.overwrite,
                    Limits::default(),
                )
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

/// Opens the archive for one pass over its entries.
fn open(archive: &Path) -> Result<tar::Archive<flate2::read::GzDecoder<File>>, String> {
    let file = File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
}

/// The relative path of a regular-file entry; `None` for a (safe) directory entry.
fn entry_path<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<String>, String> {
    let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        safe_relative(&raw_path)?;
        return Ok(None);
    }
    if !kind.is_file() {
        return Err(format!(
            "archive entry `{raw_path}` is a {kind:?}, not a regular file (links are refused)"
        ));
    }
    Ok(Some(key_of(&safe_relative(&raw_path)?)))
}

fn key_of(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

/// Copies an entry into `sink`, failing beyond `limit` bytes; its sha256 and size.
fn copy_hashed(
    entry: &mut impl Read,
    limit: u64,
    sink: &mut dyn Write,
) -> Result<(String, u64), String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| format!("corrupt archive: {e}"))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Reads `manifest.json` (the first entry) and checks its format and version.
fn read_manifest<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Manifest, String> {
    if entry_path(entry)?.as_deref() != Some("manifest.json") {
        return Err("the archive does not start with manifest.json".into());
    }
    let mut data = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("corrupt archive: {e}"))?;
    if data.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "manifest.json is larger than {MAX_MANIFEST_BYTES} bytes"
        ));
    }
    let m: Manifest =
        serde_json::from_slice(&data).map_err(|e| format!("invalid manifest: {e}"))?;
    if m.format != MANIFEST_FORMAT || m.version != MANIFEST_VERSION {
        return Err(format!(
            "unknown manifest `{}` version {} (this Sluice reads `{MANIFEST_FORMAT}` version {MANIFEST_VERSION})",
            m.format, m.version
        ));
    }
    Ok(m)
}

/// The manifest's entries by relative path: each path safe, none twice, sizes within the limits.
fn manifest_index(m: &Manifest, limits: Limits) -> Result<BTreeMap<String, usize>, String> {
    if m.entries.len() > limits.max_entries {
        return Err(format!(
            "the manifest lists {} entries (at most {} are accepted)",
            m.entries.len(),
            limits.max_entries
        ));
    }
    let mut index = BTreeMap::new();
    let mut total = 0u64;
    for (i, e) in m.entries.iter().enumerate() {
        let key = key_of(&safe_relative(&e.path)?);
        if e.size > limits.max_entry_bytes {
            return Err(format!(
                "`{}` is larger than {} bytes",
                e.path, limits.max_entry_bytes
            ));
        }
        total = total.saturating_add(e.size);
        if total > limits.max_total_bytes {
            return Err(format!(
                "the archive holds more than {} bytes",
                limits.max_total_bytes
            ));
        }
        if index.insert(key, i).is_some() {
            return Err(format!("`{}` appears twice in the manifest", e.path));
        }
    }
    Ok(index)
}

/// Where a pass over the archive puts each verified entry's bytes.
type Stage<'a> = dyn FnMut(&str) -> Result<Box<dyn Write>, String> + 'a;

/// One pass over the archive: the manifest first, then every entry must be a
/// regular file listed in the manifest, once, with its size and sha256;
/// nothing listed may be missing. Each entry's bytes stream into `stage(key)`
/// (a sink when only verifying) — never more than the limits allow.
fn pass(archive: &Path, limits: Limits, stage: &mut Stage<'_>) -> Result<Manifest, String> {
    let mut tar = open(archive)?;
    let mut entries = tar
        .entries()
        .map_err(|e| format!("not a tar.gz archive: {e}"))?;
    let mut first = entries
        .next()
        .ok_or("the archive has no manifest.json")?
        .map_err(|e| format!("corrupt archive: {e}"))?;
    let manifest = read_manifest(&mut first)?;
    drop(first);
    let index = manifest_index(&manifest, limits)?;
    let mut seen = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        let Some(key) = entry_path(&entry)? else {
            continue;
        };
        let Some(&i) = index.get(&key) else {
            return Err(format!("archive entry `{key}` is not in the manifest"));
        };
        if !seen.insert(key.clone()) {
            return Err(format!("archive entry `{key}` appears twice"));
        }
        let want = &manifest.entries[i];
        let size = entry
            .header()
            .size()
            .map_err(|e| format!("corrupt archive: {e}"))?;
        if size != want.size {
            return Err(format!(
                "`{}`: size {size} differs from the manifest's {}",
                want.path, want.size
            ));
        }
        let mut sink = stage(&key)?;
        let (sum, got) = copy_hashed(&mut entry, want.size, &mut *sink)
            .map_err(|e| format!("`{}`: {e}", want.path))?;
        sink.flush().map_err(|e| format!("`{}`: {e}", want.path))?;
        if got != want.size {
            return Err(format!(
                "`{}`: size {got} differs from the manifest's {}",
                want.path, want.size
            ));
        }
        if sum != want.sha256 {
            return Err(format!(
                "`{}`: sha256 {sum} differs from the manifest's {}",
                want.path, want.sha256
            ));
        }
    }
    if let Some((_, &i)) = index.iter().find(|(k, _)| !seen.contains(*k)) {
        return Err(format!(
            "`{}` is in the manifest but not in the archive",
            manifest.entries[i].path
        ));
    }
    Ok(manifest)
}

/// Reads and checks every entry without keeping any; returns the manifest.
pub fn verify(archive: &Path, limits: Limits) -> Result<Manifest, String> {
    pass(archive, limits, &mut |_| Ok(Box::new(std::io::sink())))
}

/// Checks where every file would go, writing nothing: each directory on the
/// way is a real directory (or missing), the file itself no symlink and no
/// directory, and absent unless `overwrite`.
fn check_targets(dest: &Path, rels: &[PathBuf], overwrite: bool) -> Result<(), String> {
    match std::fs::metadata(dest) {
        Ok(m) if !m.is_dir() => {
            return Err(format!("{} is not a directory", dest.display()));
        }
        Ok(_) => {}
        Err(_) => return Ok(()), // created fresh: nothing in the way
    }
    for rel in rels {
        let mut dir = dest.to_path_buf();
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
                Err(_) => break, // missing: everything below is created fresh
            }
        }
        let target = dest.join(rel);
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if m.file_type().is_symlink() {
                return Err(format!(
                    "{} is a symlink; refusing to write through it",
                    target.display()
                ));
            }
            if m.is_dir() {
                return Err(format!("{} is a directory", target.display()));
            }
            if !overwrite {
                return Err(format!(
                    "{} exists (set `overwrite: true` to replace it)",
                    target.display()
                ));
            }
        }
    }
    Ok(())
}

/// Undoes what a failed restore created (staging files, new directories).
struct Undo {
    staging: Option<PathBuf>,
    dirs: Vec<PathBuf>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(s) = &self.staging {
            let _ = std::fs::remove_dir_all(s);
        }
        if self.armed {
            for d in self.dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// Verifies, checks every destination, then unpacks under `dest` (see the module doc).
pub fn restore(
    archive: &Path,
    dest: &Path,
    overwrite: bool,
    limits: Limits,
) -> Result<(Manifest, Vec<String>), String> {
    let manifest = verify(archive, limits)?;
    let rels: Vec<PathBuf> = manifest
        .entries
        .iter()
        .map(|e| safe_relative(&e.path))
        .collect::<Result<_, _>>()?;
    check_targets(dest, &rels, overwrite)?;

    let mut undo = Undo {
        staging: None,
        dirs: Vec::new(),
        armed: true,
    };
    let mut missing = Vec::new();
    let mut up = Some(dest);
    while let Some(d) = up.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        up = d.parent();
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    undo.dirs.extend(missing.into_iter().rev());
    let root = std::fs::canonicalize(dest).map_err(|e| e.to_string())?;
    let staging = root.join(format!(
        ".sluice-restore-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir(&staging).map_err(|e| format!("creating {}: {e}", staging.display()))?;
    undo.staging = Some(staging.clone());

    // Second pass: unpack into staging, verifying again (the archive may have changed).
    let mut staged: BTreeMap<String, PathBuf> = BTreeMap::new();
    let again = pass(archive, limits, &mut |key| {
        let file = staging.join(format!("{}", staged.len()));
        let f = File::create(&file).map_err(|e| format!("creating {}: {e}", file.display()))?;
        staged.insert(key.to_string(), file);
        Ok(Box::new(std::io::BufWriter::new(f)))
    })?;
    if again != manifest {
        return Err("the archive changed while it was being restored".into());
    }
    check_targets(&root, &rels, overwrite)?;

    let mut written = Vec::new();
    for rel in &rels {
        let target = root.join(rel);
        let mut dir = root.clone();
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            dir.push(c);
            if std::fs::symlink_metadata(&dir).is_err() {
                std::fs::create_dir(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                undo.dirs.push(dir.clone());
            }
        }
        let from = staged
            .get(&key_of(rel))
            .ok_or_else(|| format!("`{}` was not unpacked", rel.display()))?;
        // From here on files are in place; a later failure leaves them (and the reported error).
        undo.armed = false;
        std::fs::rename(from, &target)
            .map_err(|e| format!("moving into {}: {e}", target.display()))?;
        written.push(target.display().to_string());
    }
    Ok((manifest, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsafe_paths() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "", ".", "a/../.."] {
            assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(safe_relative("./a/b").unwrap(), PathBuf::from("a/b"));
    }
}
