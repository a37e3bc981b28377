//! Detection latency: a metric crosses a threshold on a real HTTP endpoint →
//! the alert's firing event, with a 1 s scrape and a 1 s rule interval
//! (`for: 0`). Prints per-trial latencies and min/median/max.
//!
//! cargo bench -p sluice-automation --bench detection_latency

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sluice_automation::alert::{AlertEventKind, LocalEngine, RuleManager, RuleManagerOptions};
use sluice_automation::scrape::{ScrapeTarget, Scraper};
use sluice_promql::MemStorage;

/// The allocator the `sluice` binary ships with (see its `main.rs`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: &str = "groups:\n  - name: latency\n    interval: 1s\n    rules:\n      - alert: Crossed\n        expr: sluice_backlog_size > 100\n";

async fn metrics(State(v): State<Arc<AtomicU64>>) -> String {
    format!(
        "sluice_backlog_size{{topic=\"in\"}} {}\n",
        v.load(Ordering::SeqCst)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let value = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(value.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("sluice-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let storage = Arc::new(MemStorage::new(Duration::from_secs(600)));
    let mgr = Arc::new(RuleManager::new(
        Arc::new(LocalEngine::new(storage.clone())),
        storage.clone(),
        None,
        RuleManagerOptions::default(),
    ));
    mgr.set_groups(mgr.load_files(&[rules]).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let url = url::Url::parse(&format!("http://{addr}/metrics")).unwrap();
    let scraper = Scraper::new(
        ScrapeTarget::new("engine", url, Duration::from_secs(1)),
        storage.clone(),
    )
    .unwrap();
    let scrape_task = tokio::spawn(scraper.run(stop_rx.clone()));
    let rule_task = tokio::spawn(mgr.clone().run(stop_rx));
    let mut events = mgr.subscribe();

    let trials = 10;
    let mut lat = Vec::new();
    for i in 0..trials {
        // Below the threshold until the alert has resolved, then cross it at an uneven offset.
        value.store(0, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2_500 + 137 * i)).await;
        while events.try_recv().is_ok() {}
        let crossed = Instant::now();
        value.store(1_000, Ordering::SeqCst);
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .unwrap()
                .unwrap();
            if ev.kind == AlertEventKind::Firing {
                break;
            }
        }
        let ms = crossed.elapsed().as_secs_f64() * 1000.0;
        println!("trial {i}: {ms:.0} ms");
        lat.push(ms);
    }
    stop_tx.send(true).unwrap();
    let _ = scrape_task.await;
    let _ = rule_task.await;
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "detection latency (1 s scrape, 1 s eval, for: 0): min {:.0} ms, median {:.0} ms, max {:.0} ms over {trials} trials",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    std::fs::remove_dir_all(&dir).ok();
}
