//! High availability: two `sluice serve` processes on one real PostgreSQL
//! store. A schedule fire, an alert delivered to both, and a webhook
//! delivery each run once; when one instance is killed (-9) mid-run the
//! other takes over its run within the lease and finishes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as J, json};
use sluice_tests::postgres::Postgres;

const TOKEN: &str = "operator-token-0123456789";

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http() -> reqwest::Client {
    sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn start(dir: &Path, name: &str) -> Serve {
    let port = free_port();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["serve", "--config"])
        .arg(dir.join(format!("sluice-{name}.yaml")))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice serve");
    let s = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if http()
            .get(format!("{}/health", s.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name} did not start: {}",
        std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
    );
}

impl Serve {
    async fn get(&self, path: &str) -> J {
        http()
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: J) -> (u16, J) {
        let r = http()
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(J::Null))
    }

    async fn runs(&self, runbook: &str) -> Vec<J> {
        self.get(&format!("/api/v1/runs?runbook={runbook}&limit=1000"))
            .await["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn setup(url: &str, work: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        write(
            dir.path(),
            &format!("sluice-{name}.yaml"),
            &format!(
                r#"
store: "{url}"
api:
  tokens:
    - {{name: alice, token: {TOKEN}, role: operator}}
service:
  instance: {name}
  data_dir: data-{name}
  lease: 2s
  shutdown_grace: 1s
"#
            ),
        );
    }
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    write(
        dir.path(),
        "runbooks/tick.yaml",
        &format!(
            r#"
name: tick
triggers:
  - schedule: "* * * * * *"
guards: {{concurrency: allow}}
steps:
  - shell: {{script: "echo {{{{run.scheduled_at}}}} >> {w}/ticks"}}
"#,
            w = work.display()
        ),
    );
    write(
        dir.path(),
        "runbooks/page.yaml",
        &format!(
            r#"
name: page
triggers:
  - alert: EngineDown
guards: {{cooldown: 1h}}
steps:
  - shell: {{script: "echo {{{{alert.labels.instance}}}} >> {w}/pages"}}
"#,
            w = work.display()
        ),
    );
    write(
        dir.path(),
        "runbooks/long.yaml",
        &format!(
            r#"
name: long
steps:
  - id: first
    shell: {{script: "echo first >> {w}/long"}}
  - id: wait
    idempotent: true
    shell: {{script: "n=$(cat {w}/long-attempts 2>/dev/null | wc -l); echo x >> {w}/long-attempts; if [ $n -eq 0 ]; then sleep 60; fi"}}
  - id: last
    shell: {{script: "echo last >> {w}/long"}}
"#,
            w = work.display()
        ),
    );
    dir
}

fn am_payload() -> J {
    json!({
        "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "sluice",
        "alerts": [{"status": "firing", "labels": {"alertname": "EngineDown", "instance": "engine-1"},
                    "annotations": {}, "startsAt": "2026-12-01T10:00:00Z"}]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_postgres_run_everything_once_and_take_over_a_dead_one() {
    let pg = Postgres::shared().expect("PostgreSQL (see .ci/install)");
    let url = pg.fresh_database().expect("database");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = setup(&url, w);
    let a = start(dir.path(), "a").await;
    let b = start(dir.path(), "b").await;

    // The same alert delivered to both instances: one run.
    let (sa, sb) = tokio::join!(
        a.post("/api/v1/alerts/webhook", am_payload()),
        b.post("/api/v1/alerts/webhook", am_payload())
    );
    assert_eq!((sa.0, sb.0), (200, 200));

    // A long run on `a`, then `a` dies in its middle.
    let (st, started) = a.post("/api/v1/runbooks/long/runs", json!({})).await;
    assert_eq!(st, 202, "{started}");
    let long_id = started["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(w.join("long-attempts")).map_or(0, |s| s.lines().count()) == 0 {
        assert!(Instant::now() < deadline, "the long step never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let both instances fire the every-second schedule a few times.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let a_id = a.get("/api/v1/status").await["instance"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();

    // `b` adopts the run and finishes it; finished steps are not repeated.
    let took_over = loop {
        let r = b.get(&format!("/api/v1/runs/{long_id}")).await;
        if r["run"]["owner"].as_str().is_some_and(|o| o != a_id) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no takeover: {r:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = b.get(&format!("/api/v1/runs/{long_id}")).await;
        if r["run"]["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the adopted run did not finish: {r:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(w.join("long")).unwrap(),
        "first\nlast\n"
    );
    println!("takeover after kill -9: {took_over:?} (lease 2 s)");
    // Lease 2 s + one heartbeat (2/3 s) + polling: bounded.
    assert!(
        took_over < Duration::from_secs(6),
        "takeover took {took_over:?}"
    );

    // The schedule kept firing on `b`; no fire ran twice, across both instances.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks = std::fs::read_to_string(w.join("ticks")).unwrap();
    let mut lines: Vec<&str> = ticks.lines().collect();
    let total = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert!(total >= 5, "the schedule fired only {total} times");
    assert_eq!(lines.len(), total, "a fire ran twice: {ticks}");
    let runs = b.runs("tick").await;
    let b_id = b.get("/api/v1/status").await["instance"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        runs.iter().any(|r| r["owner"] == b_id.as_str()),
        "the survivor kept the schedule"
    );

    // One alert run, whichever instance took it.
    assert_eq!(
        std::fs::read_to_string(w.join("pages")).unwrap(),
        "engine-1\n"
    );
    assert_eq!(b.runs("page").await.len(), 1);
}
