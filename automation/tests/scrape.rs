//! Scraping a real HTTP server on loopback whose metrics change between scrapes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sluice_automation::scrape::{SampleSink, ScrapeTarget, Scraper, SeriesLabels};

/// Records everything appended, in order. NaN with `stale` = staleness marker.
#[derive(Default)]
struct Recorder {
    rows: Mutex<Vec<(SeriesLabels, i64, f64, bool)>>,
}

impl SampleSink for Recorder {
    fn append(&self, labels: &SeriesLabels, t_ms: i64, v: f64) {
        self.rows
            .lock()
            .unwrap()
            .push((labels.clone(), t_ms, v, false));
    }
    fn append_stale(&self, labels: &SeriesLabels, t_ms: i64) {
        self.rows
            .lock()
            .unwrap()
            .push((labels.clone(), t_ms, f64::NAN, true));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(SeriesLabels, i64, f64, bool)> {
        std::mem::take(&mut *self.rows.lock().unwrap())
    }
}

fn name(l: &SeriesLabels) -> &str {
    l.iter()
        .find(|(k, _)| k == "__name__")
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn label<'a>(l: &'a SeriesLabels, k: &str) -> Option<&'a str> {
    l.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Serves a different exposition on each request: phase 0 has two series,
/// phase 1 drops one, phase 2 fails with 500, phase 3 is OpenMetrics.
async fn metrics(State(phase): State<Arc<AtomicU32>>) -> axum::response::Response {
    match phase.load(Ordering::SeqCst) {
        0 => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            "# TYPE sluice_backlog_size gauge\nsluice_backlog_size{topic=\"in\",job=\"inner\"} 10\nsluice_backlog_size{topic=\"out\"} 3\n",
        )
            .into_response(),
        1 => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            "sluice_backlog_size{topic=\"in\",job=\"inner\"} 12\n",
        )
            .into_response(),
        2 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        _ => (
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            "# TYPE sluice_records_processed counter\nsluice_records_processed_total 5\n# EOF\n",
        )
            .into_response(),
    }
}

async fn serve(phase: Arc<AtomicU32>) -> url::Url {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(phase);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url::Url::parse(&format!("http://{addr}/metrics")).unwrap()
}

#[tokio::test]
async fn scrape_reports_up_marks_stale_and_exports_conflicting_labels() {
    let phase = Arc::new(AtomicU32::new(0));
    let url = serve(phase.clone()).await;
    let sink = Arc::new(Recorder::default());
    let target = ScrapeTarget::new("engine", url.clone(), Duration::from_secs(1));
    let instance = target.instance();
    let mut scraper = Scraper::new(target, sink.clone()).unwrap();

    let r = scraper.scrape_at(1_000).await;
    assert!(r.up, "{r:?}");
    assert_eq!((r.samples, r.series_added, r.stale_marked), (2, 2, 0));
    let rows = sink.take();
    let backlog: Vec<_> = rows
        .iter()
        .filter(|r| name(&r.0) == "sluice_backlog_size")
        .collect();
    assert_eq!(backlog.len(), 2);
    let inn = backlog
        .iter()
        .find(|r| label(&r.0, "topic") == Some("in"))
        .unwrap();
    assert_eq!(label(&inn.0, "job"), Some("engine"));
    assert_eq!(label(&inn.0, "exported_job"), Some("inner"));
    assert_eq!(label(&inn.0, "instance"), Some(instance.as_str()));
    assert_eq!((inn.1, inn.2), (1_000, 10.0));
    let up = rows.iter().find(|r| name(&r.0) == "up").unwrap();
    assert_eq!((up.2, label(&up.0, "job")), (1.0, Some("engine")));
    assert!(
        rows.iter()
            .any(|r| name(&r.0) == "scrape_samples_scraped" && r.2 == 2.0)
    );
    assert!(
        rows.iter()
            .any(|r| name(&r.0) == "scrape_duration_seconds" && r.2 > 0.0)
    );

    // The `out` series disappears: it gets a staleness marker at the scrape time.
    phase.store(1, Ordering::SeqCst);
    let r = scraper.scrape_at(2_000).await;
    assert_eq!((r.samples, r.series_added, r.stale_marked), (1, 0, 1));
    let rows = sink.take();
    let stale: Vec<_> = rows.iter().filter(|r| r.3).collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(label(&stale[0].0, "topic"), Some("out"));
    assert_eq!(stale[0].1, 2_000);

    // A failed scrape: up = 0 and every scraped series goes stale.
    phase.store(2, Ordering::SeqCst);
    let r = scraper.scrape_at(3_000).await;
    assert!(!r.up);
    assert!(r.error.as_deref().unwrap_or("").contains("500"), "{r:?}");
    let rows = sink.take();
    assert!(rows.iter().any(|r| name(&r.0) == "up" && r.2 == 0.0));
    assert!(
        rows.iter()
            .any(|r| r.3 && label(&r.0, "topic") == Some("in"))
    );

    // OpenMetrics chosen from the Content-Type.
    phase.store(3, Ordering::SeqCst);
    let r = scraper.scrape_at(4_000).await;
    assert!(r.up, "{r:?}");
    assert!(
        sink.take()
            .iter()
            .any(|r| name(&r.0) == "sluice_records_processed_total" && r.2 == 5.0)
    );
}

#[tokio::test]
async fn honor_labels_keeps_scraped_values() {
    let url = serve(Arc::new(AtomicU32::new(0))).await;
    let sink = Arc::new(Recorder::default());
    let mut target = ScrapeTarget::new("engine", url, Duration::from_secs(1));
    target.honor_labels = true;
    let mut scraper = Scraper::new(target, sink.clone()).unwrap();
    assert!(scraper.scrape_at(1_000).await.up);
    let rows = sink.take();
    let inn = rows
        .iter()
        .find(|r| label(&r.0, "topic") == Some("in"))
        .unwrap();
    assert_eq!(label(&inn.0, "job"), Some("inner"));
    assert_eq!(label(&inn.0, "exported_job"), None);
}

#[tokio::test]
async fn a_scrape_over_its_sample_limit_fails_whole_and_marks_its_series_stale() {
    // Phase 1 exposes one series, phase 0 two.
    let phase = Arc::new(AtomicU32::new(1));
    let url = serve(phase.clone()).await;
    let sink = Arc::new(Recorder::default());
    let mut target = ScrapeTarget::new("engine", url, Duration::from_secs(1));
    target.sample_limit = 1;
    let mut scraper = Scraper::new(target, sink.clone()).unwrap();
    assert!(scraper.scrape_at(1_000).await.up, "1 sample is within 1");
    let first = sink.take();
    let kept = first
        .iter()
        .find(|r| name(&r.0) == "sluice_backlog_size")
        .expect("the one series")
        .0
        .clone();

    phase.store(0, Ordering::SeqCst);
    let r = scraper.scrape_at(2_000).await;
    assert!(!r.up);
    assert!(
        r.error
            .as_deref()
            .unwrap_or("")
            .contains("sample limit exceeded: 2 samples, limit 1"),
        "{:?}",
        r.error
    );
    let rows = sink.take();
    assert!(
        !rows
            .iter()
            .any(|r| name(&r.0) == "sluice_backlog_size" && !r.3),
        "samples of a refused scrape were appended: {rows:?}"
    );
    assert!(
        rows.iter().any(|r| r.0 == kept && r.3),
        "the earlier series was not marked stale: {rows:?}"
    );
    let up = rows
        .iter()
        .find(|r| name(&r.0) == "up")
        .expect("up written");
    assert_eq!(up.2, 0.0);
}

#[tokio::test]
async fn unreachable_target_is_down() {
    // Bind then drop a listener so the port is closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    let sink = Arc::new(Recorder::default());
    let mut scraper = Scraper::new(
        ScrapeTarget::new("gone", url, Duration::from_secs(1)),
        sink.clone(),
    )
    .unwrap();
    let r = scraper.scrape_at(1_000).await;
    assert!(!r.up);
    assert!(sink.take().iter().any(|r| name(&r.0) == "up" && r.2 == 0.0));
}

#[tokio::test]
async fn loop_scrapes_every_second_and_marks_stale_on_shutdown() {
    let url = serve(Arc::new(AtomicU32::new(0))).await;
    let sink = Arc::new(Recorder::default());
    let scraper = Scraper::new(
        ScrapeTarget::new("engine", url, Duration::from_secs(1)),
        sink.clone(),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(scraper.run(rx));
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
    let rows = sink.take();
    let ups: Vec<i64> = rows
        .iter()
        .filter(|r| name(&r.0) == "up" && !r.3)
        .map(|r| r.1)
        .collect();
    assert!(
        (2..=3).contains(&ups.len()),
        "expected 2-3 scrapes in 2.6 s, got {ups:?}"
    );
    for w in ups.windows(2) {
        let gap = w[1] - w[0];
        assert!((800..=1_200).contains(&gap), "scrapes {gap} ms apart");
    }
    // Shutdown marks every series of the target stale, report series included.
    let stale: Vec<&str> = rows.iter().filter(|r| r.3).map(|r| name(&r.0)).collect();
    assert!(
        stale.contains(&"up") && stale.contains(&"sluice_backlog_size"),
        "{stale:?}"
    );
}
