//! Simulated hosts: one real OpenSSH server (`sshd -D -f CONFIG`) per host
//! on its own loopback port, with generated host keys and one client key.
//! Each host has a directory (`SLUICE_HOST_DIR` in its sessions, set by
//! sshd's `SetEnv`) holding its systemd unit files for the recording
//! `systemctl` stand-in (`testdata/fake-systemctl`), the processes that
//! stand-in started, and its call log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net;

/// The systemctl stand-in every simulated host uses.
pub fn fake_systemctl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fake-systemctl")
}

pub struct SshHost {
    pub name: String,
    pub port: u16,
    /// `SLUICE_HOST_DIR` of this host.
    pub dir: PathBuf,
    child: Child,
}

impl SshHost {
    /// Writes the unit file `unit` whose `ExecStart=` is `argv`.
    pub fn install_unit(&self, unit: &str, argv: &[String]) {
        let units = self.dir.join("units");
        std::fs::create_dir_all(&units).expect("units dir");
        std::fs::write(
            units.join(unit),
            format!("[Service]\nExecStart={}\n", argv.join(" ")),
        )
        .expect("unit file");
    }

    /// Every systemctl call made on this host, one line each.
    pub fn systemctl_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs the stand-in here directly, as the host's own init would (test setup).
    pub fn systemctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(fake_systemctl())
            .args(args)
            .env("SLUICE_HOST_DIR", &self.dir)
            .output()
            .expect("run fake systemctl")
    }

    /// The pid of `unit`'s main process, if it runs.
    pub fn main_pid(&self, unit: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join(format!("{unit}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }
}

/// Several simulated hosts and the client key that reaches them all.
pub struct SshHosts {
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub user: String,
    pub hosts: Vec<SshHost>,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (Debian openssh-client)");
    assert!(st.success(), "ssh-keygen failed");
}

fn sshd() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/sshd");
    assert!(
        p.exists(),
        "/usr/sbin/sshd is missing: install Debian's openssh-server (.ci/install does)"
    );
    p
}

impl SshHosts {
    /// Starts one sshd per name under `dir`.
    pub fn start(dir: &Path, names: &[&str]) -> SshHosts {
        let base = dir.join("ssh");
        std::fs::create_dir_all(&base).expect("ssh dir");
        // sshd checks for its privilege-separation directory even when it is not root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let identity = base.join("client_key");
        keygen(&identity);
        let authorized = base.join("authorized_keys");
        std::fs::copy(base.join("client_key.pub"), &authorized).expect("authorized_keys");
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
                    .trim()
                    .to_string()
            });
        let mut known = String::new();
        let mut hosts = Vec::new();
        for name in names {
            let hdir = base.join(name);
            std::fs::create_dir_all(&hdir).expect("host dir");
            let key = hdir.join("host_key");
            keygen(&key);
            let port = net::free_port();
            let pubkey = std::fs::read_to_string(hdir.join("host_key.pub")).unwrap();
            let mut parts = pubkey.split_whitespace();
            known.push_str(&format!(
                "[127.0.0.1]:{port} {} {}\n",
                parts.next().unwrap(),
                parts.next().unwrap()
            ));
            let config = hdir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nAuthorizedKeysFile {auth}\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     UsePAM no\nStrictModes no\nPidFile {pid}\nLogLevel ERROR\n\
                     SetEnv SLUICE_HOST_DIR={hdir} SLUICE_HOST_NAME={name}\n",
                    key = key.display(),
                    auth = authorized.display(),
                    pid = hdir.join("sshd.pid").display(),
                    hdir = hdir.display(),
                ),
            )
            .expect("sshd_config");
            let child = Command::new(sshd())
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(hdir.join("sshd.log"))
                .stdin(Stdio::null())
                .spawn()
                .expect("start sshd");
            hosts.push(SshHost {
                name: name.to_string(),
                port,
                dir: hdir,
                child,
            });
        }
        let known_hosts = base.join("known_hosts");
        std::fs::write(&known_hosts, known).expect("known_hosts");
        for h in &hosts {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", h.port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "sshd of {} did not listen: {}",
                    h.name,
                    std::fs::read_to_string(h.dir.join("sshd.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        SshHosts {
            identity,
            known_hosts,
            user,
            hosts,
        }
    }

    pub fn host(&self, name: &str) -> &SshHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no simulated host {name}"))
    }

    /// The `ssh:` section of a target (indented for `targets.<name>`) over
    /// the hosts `names`, each with `labels` and the URL `url(host)`.
    pub fn section(
        &self,
        names: &[&str],
        labels: &str,
        url: impl Fn(&SshHost) -> String,
    ) -> String {
        let mut s = format!(
            "    ssh:\n      user: {}\n      identity_file: {}\n      known_hosts: {}\n      connect_timeout: 5s\n      command_timeout: 60s\n      hosts:\n",
            self.user,
            self.identity.display(),
            self.known_hosts.display()
        );
        for n in names {
            let h = self.host(n);
            s.push_str(&format!(
                "        - {{name: {n}, host: 127.0.0.1, port: {}, url: '{}', labels: {labels}}}\n",
                h.port,
                url(h)
            ));
        }
        s
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            // What the stand-in started on this host, then the host's sshd.
            if let Ok(entries) = std::fs::read_dir(&h.dir) {
                for e in entries.flatten() {
                    if e.path().extension().is_some_and(|x| x == "pid")
                        && e.file_name() != "sshd.pid"
                        && let Ok(pid) = std::fs::read_to_string(e.path())
                        && let Ok(pid) = pid.trim().parse::<i32>()
                    {
                        // SAFETY: kill(2) of a process this test's stand-in started.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = h.child.kill();
            let _ = h.child.wait();
        }
    }
}
