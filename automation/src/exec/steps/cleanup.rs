//! `cleanup`: delete files under a root by age, count and name pattern. Never
//! outside the root: the root must be an existing directory that is not `/`,
//! a top-level directory, a system tree or the home directory (symlinks
//! resolved first); below it symlinks are neither followed nor deleted, and
//! only regular files go.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{Action, Kind, StepError, StepResult};
use crate::duration::Duration;
use crate::exec::context::StepCx;
use crate::yaml::{DeError, Node};

pub const KIND: Kind = Kind {
    name: "cleanup",
    summary: "Delete files under a root by age, count and pattern.",
    nests: false,
    shell_fields: &[],
    parse,
    schema: |_| {
        json!({
            "type": "object", "additionalProperties": false, "required": ["root"],
            "properties": {
                "root": {"type": "string", "description": "Directory to clean (never `/`)."},
                "pattern": {"type": "string", "default": "*", "description": "File-name glob (`*`, `?`)."},
                "older_than": {"type": "string", "description": "Delete files older than this."},
                "keep": {"type": "integer", "minimum": 0, "description": "Always keep the newest N matching files."},
                "recursive": {"type": "boolean", "default": false}
            }
        })
    },
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupConfig {
    pub root: String,
    #[serde(default = "star")]
    pub pattern: String,
    #[serde(default)]
    pub older_than: Option<Duration>,
    #[serde(default)]
    pub keep: Option<usize>,
    #[serde(default)]
    pub recursive: bool,
}

fn star() -> String {
    "*".to_string()
}

fn parse(_: &'static str, node: &Node, lenient: bool) -> Result<Box<dyn Action>, DeError> {
    let c: CleanupConfig = super::decode(node, lenient)?;
    if c.older_than.is_none() && c.keep.is_none() {
        return Err(DeError::new(
            node.pos,
            "`cleanup` needs `older_than`, `keep` or both (refusing to delete everything)",
        ));
    }
    if !c.root.contains("{{") {
        lexical_root_check(&c.root)
            .map_err(|m| DeError::new(node.get("root").map_or(node.pos, |n| n.pos), m))?;
    }
    if c.pattern.contains('/') {
        return Err(DeError::new(
            node.get("pattern").map_or(node.pos, |n| n.pos),
            "`pattern` matches file names; it cannot contain `/`",
        ));
    }
    Ok(Box::new(c))
}

/// Refusals that need no file system: empty, `/`, `..` components.
fn lexical_root_check(root: &str) -> Result<(), String> {
    let p = Path::new(root);
    if root.trim().is_empty() {
        return Err("`root` is empty".into());
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("`root` {root} contains `..`"));
    }
    if p.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::CurDir
        )
    }) {
        return Err(format!(
            "refusing to clean `{root}`: it is the file system root"
        ));
    }
    Ok(())
}

/// System trees no cleanup may run in, at any depth.
pub const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys", "/usr",
];

/// Why a resolved root is too dangerous to clean, if it is.
pub fn dangerous_root(canonical: &Path, home: Option<&Path>) -> Option<String> {
    let depth = canonical
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count();
    if depth == 0 {
        return Some("it resolves to `/`".into());
    }
    if depth == 1 {
        return Some(format!(
            "it resolves to the top-level directory `{}`",
            canonical.display()
        ));
    }
    if let Some(tree) = SYSTEM_TREES.iter().find(|t| canonical.starts_with(t)) {
        return Some(format!(
            "it resolves to `{}`, inside the system tree `{tree}`",
            canonical.display()
        ));
    }
    if home.is_some_and(|h| h == canonical) {
        return Some(format!(
            "it resolves to the home directory `{}`",
            canonical.display()
        ));
    }
    None
}

/// The root, resolved (symlinks followed): an existing directory that is not
/// `/`, not a top-level directory (`/home`, `/var`, `/tmp`…), not inside a
/// system tree ([`SYSTEM_TREES`]) and not the home directory.
pub fn safe_root(root: &str) -> Result<PathBuf, String> {
    let canonical = existing_dir(root)?;
    let home = std::env::var_os("HOME").and_then(|h| std::fs::canonicalize(h).ok());
    if let Some(why) = dangerous_root(&canonical, home.as_deref()) {
        return Err(format!("refusing to clean `{root}`: {why}"));
    }
    Ok(canonical)
}

/// A directory resolved (symlinks followed) that exists and is not `/`
/// (where `backup` writes; its retention only touches its own archives).
pub fn existing_dir(root: &str) -> Result<PathBuf, String> {
    lexical_root_check(root)?;
    let canonical = std::fs::canonicalize(root).map_err(|e| format!("root `{root}`: {e}"))?;
    if canonical.parent().is_none() {
        return Err(format!("refusing to clean `{root}`: it resolves to `/`"));
    }
    if !canonical.is_dir() {
        return Err(format!("root `{root}` is not a directory"));
    }
    Ok(canonical)
}

/// `*` and `?` glob over a file name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub size: u64,
}

/// Regular files under `root` matching `pattern`, newest first. Symlinks are skipped.
pub fn matching_files(
    root: &Path,
    pattern: &str,
    recursive: bool,
) -> std::io::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.is_dir() {
                if recursive {
                    dirs.push(entry.path());
                }
                continue;
            }
            if meta.is_file() && glob_match(pattern, &entry.file_name().to_string_lossy()) {
                out.push(Candidate {
                    path: entry.path(),
                    modified: meta.modified()?,
                    size: meta.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then_with(|| b.path.cmp(&a.path))
    });
    Ok(out)
}

/// Which files retention removes: beyond the newest `keep`, and older than `older_than` (both when both are set).
pub fn select(
    files: &[Candidate],
    keep: Option<usize>,
    older_than: Option<Duration>,
    now: SystemTime,
) -> Vec<Candidate> {
    files
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            let beyond_keep = keep.is_none_or(|k| *i >= k);
            let too_old = older_than
                .is_none_or(|age| now.duration_since(f.modified).unwrap_or_default() > age.std());
            beyond_keep && too_old
        })
        .map(|(_, f)| f.clone())
        .collect()
}

/// Deletes the selected files, re-checking each one is still inside `root` and not a symlink.
pub fn remove(root: &Path, files: &[Candidate]) -> Result<Vec<String>, String> {
    let mut removed = Vec::new();
    for f in files {
        let meta =
            std::fs::symlink_metadata(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
        let parent = f.path.parent().and_then(|p| std::fs::canonicalize(p).ok());
        if meta.file_type().is_symlink()
            || !meta.is_file()
            || !parent.is_some_and(|p| p.starts_with(root))
        {
            return Err(format!(
                "refusing to delete `{}`: not a regular file inside the root",
                f.path.display()
            ));
        }
        std::fs::remove_file(&f.path).map_err(|e| format!("deleting {}: {e}", f.path.display()))?;
        removed.push(f.path.display().to_string());
    }
    Ok(removed)
}

impl Action for CleanupConfig {
    fn describe(&self) -> String {
        let mut rules = Vec::new();
        if let Some(a) = self.older_than {
            rules.push(format!("older than {a}"));
        }
        if let Some(k) = self.keep {
            rules.push(format!("beyond the newest {k}"));
        }
        format!(
            "delete `{}` files under {} {}",
            self.pattern,
            self.root,
            rules.join(" and ")
        )
    }

    fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let c = self.clone();
            let result = tokio::task::spawn_blocking(move || -> Result<_, String> {
                let root = safe_root(&c.root)?;
                let files = matching_files(&root, &c.pattern, c.recursive)
                    .map_err(|e| format!("listing {}: {e}", root.display()))?;
                let chosen = select(&files, c.keep, c.older_than, SystemTime::now());
                let freed: u64 = chosen.iter().map(|f| f.size).sum();
                let removed = remove(&root, &chosen)?;
                Ok((removed, files.len(), freed))
            })
            .await
            .map_err(|e| StepError::permanent(format!("cleanup task: {e}")))?;
            let (removed, matched, freed) = result.map_err(StepError::permanent)?;
            cx.log(format!(
                "removed {} of {matched} matching files",
                removed.len()
            ));
            Ok(json!({"deleted": removed, "kept": matched - removed.len(), "freed_bytes": freed}))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.tar.gz", "engine-2026.tar.gz"));
        assert!(!glob_match("*.tar.gz", "engine.tar.gz.partial"));
        assert!(glob_match("log-??.txt", "log-01.txt"));
        assert!(glob_match("*", "x"));
    }

    #[test]
    fn refuses_the_file_system_root() {
        for root in ["/", "//", "/./", "", "/tmp/../"] {
            assert!(safe_root(root).is_err(), "{root:?} accepted");
        }
    }

    #[test]
    fn refuses_dangerous_roots() {
        let home = Path::new("/home/ops");
        for bad in [
            "/",
            "/home",
            "/var",
            "/tmp",
            "/etc/ssl",
            "/usr/local/lib",
            "/home/ops",
        ] {
            assert!(
                dangerous_root(Path::new(bad), Some(home)).is_some(),
                "{bad} accepted"
            );
        }
        for ok in [
            "/var/log/sluice",
            "/home/ops/backups",
            "/tmp/x",
            "/srv/engine/logs",
        ] {
            assert_eq!(dangerous_root(Path::new(ok), Some(home)), None, "{ok}");
        }
    }
}
