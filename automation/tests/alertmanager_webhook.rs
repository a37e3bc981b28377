//! A real Alertmanager (Debian `prometheus-alertmanager`) delivers alerts to
//! Sluice's webhook intake, which turns them into alert events.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sluice_automation::alert::{AlertEventKind, AlertSource, fingerprint};
use sluice_automation::api::alertmanager::{WebhookAuth, WebhookIntake, WebhookSecret, router};
use tokio::sync::broadcast;

const TOKEN: &str = "am-test-token";

fn alertmanager_bin() -> PathBuf {
    let bin = std::env::var_os("ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"));
    assert!(
        bin.exists(),
        "Alertmanager not found at {}: install the Debian package `prometheus-alertmanager` (see .ci/install) or set ALERTMANAGER",
        bin.display()
    );
    bin
}

/// Kills the child when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..150 {
        if let Ok(r) = client.get(format!("{base}/-/ready")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Alertmanager at {base} did not become ready within 15 s");
}

async fn next_event(
    rx: &mut broadcast::Receiver<sluice_automation::alert::AlertEvent>,
    kind: AlertEventKind,
) -> sluice_automation::alert::AlertEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = rx.recv().await.unwrap();
            if ev.kind == kind {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event from Alertmanager within 20 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_delivers_firing_and_resolved_alerts() {
    let bin = alertmanager_bin();
    let (tx, mut rx) = broadcast::channel(64);
    let intake = Arc::new(WebhookIntake {
        events: Arc::new(tx),
        auth: WebhookAuth::Bearer(WebhookSecret::new(TOKEN)),
        max_body_bytes: 1 << 20,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(intake)).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sluice\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: sluice\n    webhook_configs:\n      - url: http://{hook}/api/v1/alerts/webhook\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            credentials: {TOKEN}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _am = Guard(
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start Alertmanager"),
    );
    let client = sluice_automation::http_client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_ready(&client, &base).await;

    let starts = chrono::Utc::now() - chrono::Duration::seconds(30);
    let alert = serde_json::json!([{
        "labels": {"alertname": "EngineDown", "job": "sluice-engine", "instance": "engine:8080", "severity": "critical"},
        "annotations": {"summary": "Sluice engine is down"},
        "startsAt": starts.to_rfc3339(),
        "generatorURL": "http://prometheus.example/graph"
    }]);
    let r = client
        .post(format!("{base}/api/v2/alerts"))
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "Alertmanager refused the alert: {}",
        r.status()
    );

    let ev = next_event(&mut rx, AlertEventKind::Firing).await;
    assert_eq!(ev.name, "EngineDown");
    assert_eq!(ev.labels["instance"], "engine:8080");
    assert_eq!(ev.annotations["summary"], "Sluice engine is down");
    assert_eq!(
        ev.source,
        AlertSource::Webhook {
            receiver: "sluice".into()
        }
    );
    assert_eq!(ev.since_ms / 1000, starts.timestamp());
    assert_eq!(
        ev.generator_url.as_deref(),
        Some("http://prometheus.example/graph")
    );
    // Alertmanager's fingerprint is the one Sluice computes for its own alerts.
    assert_eq!(ev.fingerprint, fingerprint(&ev.labels));

    // Resolve it: endsAt in the past.
    let mut resolved = alert.clone();
    resolved[0]["endsAt"] = serde_json::json!(chrono::Utc::now().to_rfc3339());
    let r = client
        .post(format!("{base}/api/v2/alerts"))
        .json(&resolved)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let ev2 = next_event(&mut rx, AlertEventKind::Resolved).await;
    assert_eq!(ev2.fingerprint, ev.fingerprint);
    assert!(ev2.ended_ms.is_some());
}
