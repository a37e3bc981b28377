//! Scraping `/metrics` endpoints into the time-series store, with Prometheus's
//! scrape semantics: `up` and the other per-target report series, staleness
//! markers when a series disappears or a scrape fails, `honor_labels`
//! conflict handling. A remote Prometheus (`/api/v1/query`) can stand in for
//! local scraping and evaluation (`remote`).

pub mod labels;
pub mod parse;
pub mod remote;
mod target;

pub use labels::SeriesLabels;
pub use target::{ScrapeReport, ScrapeTarget, Scraper};

/// Where scraped samples go. Keeps `scrape` independent of the store's internals.
pub trait SampleSink: Send + Sync {
    /// Appends one sample; `labels` are sorted by name and include `__name__`.
    fn append(&self, labels: &SeriesLabels, t_ms: i64, v: f64);
    /// Marks a series stale at `t_ms` (Prometheus's staleness marker).
    fn append_stale(&self, labels: &SeriesLabels, t_ms: i64);
}

/// Per-target report series, as Prometheus names them.
pub mod report_names {
    pub const UP: &str = "up";
    pub const DURATION: &str = "scrape_duration_seconds";
    pub const SAMPLES_SCRAPED: &str = "scrape_samples_scraped";
    pub const SAMPLES_POST_RELABELING: &str = "scrape_samples_post_metric_relabeling";
    pub const SERIES_ADDED: &str = "scrape_series_added";
}

/// An HTTP client whose whole request is bounded by `timeout`.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    crate::http_client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
}
