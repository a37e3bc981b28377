//! The seed runbook's own scripts (tests/testdata/seed_scripts: health check,
//! emergency stop, emergency recovery, circuit-breaker reset, weekly
//! maintenance) run with bash against a running engine on the embedded
//! default (`engine.example.yaml`): every curl they make gets a real answer.
//! The scripts' `http://localhost:8080` becomes the engine's free port and
//! `/tmp/` a fresh directory; `sleep` is shortened.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::engine_process::{EngineProcess, wait_for};

use crate::engine_support::engine_bin;

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/seed_scripts")
}

/// Copies script `name` into `dir`, executable, with the engine's URL and `dir` for /tmp.
fn install(e: &EngineProcess, dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let text = std::fs::read_to_string(scripts_dir().join(name)).unwrap();
    let text = text
        .replace("http://localhost:8080", &e.url)
        .replace("/tmp/", &format!("{}/", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Installs script `name` and runs it with bash; returns its output.
fn run_script(e: &EngineProcess, dir: &Path, name: &str, stdin: &str, start: &str) -> String {
    let path = install(e, dir, name);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "sleep() {{ command sleep 0.1; }}; export -f sleep; printf '{stdin}' | bash {}",
            path.display()
        ))
        .env("ENGINE_LOG", e.log_path())
        .env(
            "ENGINE_PID",
            e.pid().map(|p| p.to_string()).unwrap_or_default(),
        )
        .env("ENGINE_START", start)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_scripts_get_real_answers() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine.example.yaml"),
    )
    .unwrap();
    let yaml = example.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0");
    assert_ne!(yaml, example, "engine.example.yaml listens on 8080");
    let mut e = EngineProcess::start(engine_bin(), &yaml, &["--enable-fault-injection"])
        .await
        .unwrap();
    e.wait_ready(Duration::from_secs(60)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Demo data flowing and one history sample taken.
    wait_for(Duration::from_secs(30), "a history sample", || async {
        let x = e.get("/admin/metrics/export?days=1").await?.body;
        Ok((x["count"].as_u64().unwrap_or(0) >= 1).then_some(()))
    })
    .await
    .unwrap();

    let out = run_script(&e, dir.path(), "health_check.sh", "", ":");
    for want in [
        r#""status":"healthy""#,
        r#""status": "ready""#,
        r#"sluice_circuit_breaker_state{name="sink"} 0"#,
        r#"sluice_memory_usage_bytes{component="process"}"#,
        r#"sluice_processing_latency_ms{operation="record_processing"}"#,
        "Pipeline started",
        "=== Health Check Complete ===",
    ] {
        assert!(out.contains(want), "health_check.sh lacks {want}:\n{out}");
    }
    assert!(
        out.contains(&e.pid().unwrap().to_string()),
        "ps line of the engine:\n{out}"
    );

    let out = run_script(&e, dir.path(), "emergency_stop.sh", "", ":");
    assert!(out.contains(r#""maintenance":true"#), "{out}");
    assert!(out.contains(r#""drained":true"#), "{out}");
    assert!(out.contains(r#""windows_flushed":"#), "{out}");
    assert_eq!(
        e.wait_exit(Duration::from_secs(30)).unwrap(),
        0,
        "stopped cleanly"
    );

    // The recovery script starts the service; here the harness does, the script waits for it.
    e.start_again().unwrap();
    let out = run_script(&e, dir.path(), "emergency_recovery.sh", "", ":");
    assert!(out.contains(r#""status":"ready""#), "{out}");
    assert!(out.contains(r#""maintenance":false"#), "{out}");
    assert!(out.contains("Emergency recovery complete"), "{out}");

    // Open the sink breaker with injected failures, then the seed's emergency reset.
    e.post_ok("/admin/fault-injection", Some(r#"{"sink_failures": 500}"#))
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "breaker open", || async {
        Ok((e
            .metric("sluice_circuit_breaker_state{name=\"sink\"}")
            .await?
            == Some(1.0))
        .then_some(()))
    })
    .await
    .unwrap();
    e.call("DELETE", "/admin/fault-injection", None)
        .await
        .unwrap();
    let out = run_script(&e, dir.path(), "cb_emergency_reset.sh", "yes\\n", ":");
    assert!(out.contains(r#""previous_state":"open""#), "{out}");
    assert_eq!(out.matches("Failures:").count(), 12, "{out}");
    let failures: Vec<&str> = out
        .lines()
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()) && !l.is_empty())
        .collect();
    assert!(!failures.is_empty(), "failure counts printed:\n{out}");

    // The weekly script runs the health check beside it (against the restarted engine).
    install(&e, dir.path(), "health_check.sh");
    let out = run_script(&e, dir.path(), "weekly_maintenance.sh", "", ":");
    assert!(out.contains(r#""removed_samples":"#), "{out}");
    let today = today();
    let read =
        |f: &str| std::fs::read_to_string(dir.path().join(format!("{f}_{today}.json"))).unwrap();
    let analysis: Value = serde_json::from_str(&read("resource_analysis")).unwrap();
    assert_eq!(analysis["largest_operator"]["name"], "revenue_per_minute");
    let report: Value = serde_json::from_str(&read("performance_report")).unwrap();
    assert!(
        report["summary"]["samples"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let health =
        std::fs::read_to_string(dir.path().join(format!("health_check_{today}.log"))).unwrap();
    assert!(health.contains("=== Health Check Complete ==="), "{health}");
}

/// Today as `date +%Y%m%d` prints it (the scripts name their files so).
fn today() -> String {
    let out = Command::new("date").arg("+%Y%m%d").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
