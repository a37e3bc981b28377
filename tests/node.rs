//! A real filesystem that tests can fill, and the real node_exporter
//! (Debian `prometheus-node-exporter`) reporting on it.
//!
//! [`LoopFs::mount`] makes an ext4 image of a given size and loop-mounts it
//! on a directory (needs root, as the test machines run; the error says so
//! otherwise); it is unmounted when dropped. [`NodeExporter::start`] runs
//! node_exporter on a free loopback port with only its filesystem collector,
//! excluding every mount point but the given one, so an alert on disk space
//! sees exactly the filesystem the test fills — not the machine's own disks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::net;

/// An ext4 filesystem in an image file, loop-mounted.
pub struct LoopFs {
    pub mountpoint: PathBuf,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl LoopFs {
    /// `size_mib` MiB of ext4 (image at `image`) mounted on `mountpoint` (created).
    pub fn mount(image: &Path, mountpoint: &Path, size_mib: u64) -> anyhow::Result<LoopFs> {
        std::fs::File::create(image)?.set_len(size_mib << 20)?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(image))?;
        std::fs::create_dir_all(mountpoint)?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(mountpoint))
        .context("loop-mounting a test filesystem (needs root and a loop device)")?;
        Ok(LoopFs {
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// (available, size) bytes as statvfs reports them (what node_exporter reads).
    pub fn space(&self) -> (u64, u64) {
        Self::space_of(&self.mountpoint)
    }

    /// [`LoopFs::space`] of the filesystem holding `path`.
    pub fn space_of(path: &Path) -> (u64, u64) {
        let c =
            std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
        // SAFETY: statvfs fills the zeroed struct for a valid NUL-terminated path.
        let st = unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0, "statvfs");
            st
        };
        (st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not keep it mounted.
        let _ = run(Command::new("umount").arg("-l").arg(&self.mountpoint));
    }
}

/// A running node_exporter; stopped when dropped.
pub struct NodeExporter {
    child: Child,
    pub url: String,
}

/// The binary: `$SLUICE_NODE_EXPORTER_BIN`, or Debian's.
fn binary() -> PathBuf {
    std::env::var_os("SLUICE_NODE_EXPORTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-node-exporter"))
}

/// A regex matching every mount point but `keep` (node_exporter's regexes
/// have no look-ahead, so the others are listed).
fn all_mounts_but(keep: &Path) -> anyhow::Result<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    let keep = keep.to_string_lossy();
    let mut others: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // /proc/mounts escapes spaces and such as octal; match them as any character.
        .map(|m| {
            regex_escape(m)
                .replace("\\\\040", ".")
                .replace("\\\\011", ".")
        })
        .filter(|m| *m != regex_escape(&keep))
        .collect();
    others.sort();
    others.dedup();
    Ok(format!("^({})$", others.join("|")))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl NodeExporter {
    /// node_exporter reporting only the filesystem mounted on `mountpoint`.
    pub async fn start(mountpoint: &Path) -> anyhow::Result<NodeExporter> {
        let bin = binary();
        if !bin.exists() {
            bail!(
                "{} not found: install Debian's prometheus-node-exporter (.ci/install does) \
                 or set SLUICE_NODE_EXPORTER_BIN",
                bin.display()
            );
        }
        let port = net::free_port();
        let child = Command::new(&bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(["--collector.disable-defaults", "--collector.filesystem"])
            .arg(format!(
                "--collector.filesystem.mount-points-exclude={}",
                all_mounts_but(mountpoint)?
            ))
            // Not its warning about running as root (tests do, for the loop mount).
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let ne = NodeExporter {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let want = format!("mountpoint=\"{}\"", mountpoint.display());
        net::eventually(
            "node_exporter to report the test filesystem",
            Duration::from_secs(20),
            || async {
                let text = net::get_text(&format!("{}/metrics", ne.url)).await?;
                text.lines()
                    .any(|l| l.starts_with("node_filesystem_avail_bytes") && l.contains(&want))
                    .then_some(())
            },
        )
        .await;
        Ok(ne)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mount_but_the_kept_one_is_excluded() {
        let re = all_mounts_but(Path::new("/no/such/mount")).unwrap();
        assert!(re.starts_with("^(") && re.ends_with(")$"), "{re}");
        assert!(re.contains("|/proc|") || re.contains("(/proc|"), "{re}");
        assert_eq!(regex_escape("/a.b"), "/a\\.b");
    }
}
