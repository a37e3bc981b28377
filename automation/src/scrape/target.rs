//! One scrape target and its loop.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::labels::{SeriesLabels, merge};
use super::parse::{Format, parse};
use super::{SampleSink, http_client, report_names};

/// Accept header Prometheus sends: OpenMetrics preferred, text format accepted.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// A `/metrics` endpoint to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// `job` label.
    pub job: String,
    pub url: url::Url,
    /// Time between scrapes (1 s works).
    pub interval: Duration,
    /// Per-scrape timeout; at most the interval.
    pub timeout: Duration,
    /// Keep scraped labels that collide with target labels (see `labels::merge`).
    pub honor_labels: bool,
    /// Use timestamps from the exposition when present.
    pub honor_timestamps: bool,
    /// Extra target labels.
    pub labels: BTreeMap<String, String>,
    /// Bearer token sent with each scrape.
    pub bearer_token: Option<String>,
    /// Largest body accepted; bigger scrapes fail.
    pub body_size_limit: usize,
    /// Most samples one scrape may carry; a bigger one fails as a whole
    /// (nothing appended, `up` 0), as Prometheus' `sample_limit`.
    pub sample_limit: usize,
}

impl ScrapeTarget {
    /// A target with Prometheus's defaults for everything but job, URL and interval.
    pub fn new(job: impl Into<String>, url: url::Url, interval: Duration) -> Self {
        ScrapeTarget {
            job: job.into(),
            url,
            interval,
            timeout: interval.min(Duration::from_secs(10)),
            honor_labels: false,
            honor_timestamps: true,
            labels: BTreeMap::new(),
            bearer_token: None,
            body_size_limit: 64 << 20,
            sample_limit: usize::MAX,
        }
    }

    /// `instance` label: host:port of the URL.
    pub fn instance(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// Target labels: extras, then `job` and `instance`.
    pub fn target_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("job".to_string(), self.job.clone());
        l.insert("instance".to_string(), self.instance());
        l
    }
}

/// What one scrape did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeReport {
    pub t_ms: i64,
    pub up: bool,
    pub duration: Duration,
    pub samples: usize,
    /// Series seen for the first time.
    pub series_added: usize,
    /// Series that disappeared and were marked stale.
    pub stale_marked: usize,
    pub error: Option<String>,
}

/// Scrapes one target into a sink, remembering last scrape's series for staleness.
pub struct Scraper {
    target: ScrapeTarget,
    client: reqwest::Client,
    sink: Arc<dyn SampleSink>,
    target_labels: BTreeMap<String, String>,
    previous: HashSet<SeriesLabels>,
}

#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("server returned HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("invalid exposition: {0}")]
    Parse(#[from] super::parse::ParseError),
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
    #[error("body is not UTF-8")]
    Utf8,
    #[error("sample limit exceeded: {0} samples, limit {1}")]
    SampleLimit(usize, usize),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Scraper {
    pub fn new(target: ScrapeTarget, sink: Arc<dyn SampleSink>) -> reqwest::Result<Self> {
        let client = http_client(target.timeout)?;
        let target_labels = target.target_labels();
        Ok(Scraper {
            target,
            client,
            sink,
            target_labels,
            previous: HashSet::new(),
        })
    }

    pub fn target(&self) -> &ScrapeTarget {
        &self.target
    }

    async fn fetch(&self) -> Result<(String, Format), ScrapeError> {
        let mut req = self
            .client
            .get(self.target.url.clone())
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.target.timeout.as_secs_f64()),
            );
        if let Some(token) = &self.target.bearer_token {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status(resp.status()));
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            if body.len() + chunk.len() > self.target.body_size_limit {
                return Err(ScrapeError::TooLarge(self.target.body_size_limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((
            String::from_utf8(body).map_err(|_| ScrapeError::Utf8)?,
            format,
        ))
    }

    /// Scrapes once at wall-clock now.
    pub async fn scrape_once(&mut self) -> ScrapeReport {
        self.scrape_at(now_ms()).await
    }

    /// Scrapes once, stamping samples without their own timestamp with `t_ms`.
    pub async fn scrape_at(&mut self, t_ms: i64) -> ScrapeReport {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.target.timeout, self.fetch()).await {
            Ok(r) => r.and_then(|(body, format)| Ok(parse(&body, format)?)),
            Err(_) => Err(ScrapeError::Timeout(self.target.timeout)),
        }
        .and_then(|parsed| {
            if parsed.len() > self.target.sample_limit {
                Err(ScrapeError::SampleLimit(
                    parsed.len(),
                    self.target.sample_limit,
                ))
            } else {
                Ok(parsed)
            }
        });
        let mut current = HashSet::new();
        let mut added = 0;
        let mut samples = 0;
        let error = match result {
            Ok(parsed) => {
                samples = parsed.len();
                for s in &parsed {
                    let labels = merge(s, &self.target_labels, self.target.honor_labels);
                    if current.contains(&labels) {
                        continue; // duplicate series in one scrape: first wins
                    }
                    let t = match (self.target.honor_timestamps, s.timestamp_ms) {
                        (true, Some(ts)) => ts,
                        _ => t_ms,
                    };
                    self.sink.append(&labels, t, s.value);
                    if !self.previous.contains(&labels) {
                        added += 1;
                    }
                    current.insert(labels);
                }
                None
            }
            Err(e) => {
                warn!(job = %self.target.job, instance = %self.target.instance(), error = %e, "Scrape failed.");
                Some(e.to_string())
            }
        };
        let mut stale = 0;
        for gone in self.previous.difference(&current) {
            self.sink.append_stale(gone, t_ms);
            stale += 1;
        }
        self.previous = current;
        let duration = started.elapsed();
        let up = error.is_none();
        self.report(t_ms, up, duration, samples, added);
        debug!(job = %self.target.job, samples, up, "Scraped.");
        ScrapeReport {
            t_ms,
            up,
            duration,
            samples,
            series_added: added,
            stale_marked: stale,
            error,
        }
    }

    fn report_labels(&self, name: &str) -> SeriesLabels {
        let mut l: BTreeMap<String, String> = self.target_labels.clone();
        l.insert("__name__".to_string(), name.to_string());
        l.into_iter().collect()
    }

    fn report(&self, t_ms: i64, up: bool, duration: Duration, samples: usize, added: usize) {
        let values = [
            (report_names::UP, if up { 1.0 } else { 0.0 }),
            (report_names::DURATION, duration.as_secs_f64()),
            (report_names::SAMPLES_SCRAPED, samples as f64),
            (report_names::SAMPLES_POST_RELABELING, samples as f64),
            (report_names::SERIES_ADDED, added as f64),
        ];
        for (name, v) in values {
            self.sink.append(&self.report_labels(name), t_ms, v);
        }
    }

    /// Marks every series of this target stale, as Prometheus does when a target goes away.
    pub fn mark_all_stale(&mut self, t_ms: i64) {
        for gone in self.previous.drain() {
            self.sink.append_stale(&gone, t_ms);
        }
        for name in [
            report_names::UP,
            report_names::DURATION,
            report_names::SAMPLES_SCRAPED,
            report_names::SAMPLES_POST_RELABELING,
            report_names::SERIES_ADDED,
        ] {
            self.sink.append_stale(&self.report_labels(name), t_ms);
        }
    }

    /// Scrapes every `interval` until `shutdown` turns true, then marks the
    /// target's series stale. Ticks are aligned to multiples of the interval.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let interval_ms = self.target.interval.as_millis().max(1) as i64;
        loop {
            let now = now_ms();
            let next = (now / interval_ms + 1) * interval_ms;
            let sleep = tokio::time::sleep(Duration::from_millis((next - now) as u64));
            tokio::select! {
                _ = sleep => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            if *shutdown.borrow() {
                break;
            }
            self.scrape_at(now_ms()).await;
        }
        self.mark_all_stale(now_ms());
    }
}
