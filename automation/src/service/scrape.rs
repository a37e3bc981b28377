//! Scrape loops for `metrics.scrape` (target names or URLs) into the
//! service's store, and the periodic cleanup of the store and the guards.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use tracing::info;

use super::Service;
use crate::scrape::{ScrapeTarget, Scraper};

/// One scrape: its name, `/metrics` URL, bearer token and the labels it adds.
type Place = (String, String, Option<String>, Vec<(&'static str, String)>);

/// The scrape targets `metrics.scrape` names.
pub fn targets(svc: &Service) -> Vec<(String, ScrapeTarget)> {
    let Some(m) = &svc.config.metrics else {
        return Vec::new();
    };
    if m.prometheus_url.is_some() {
        return Vec::new();
    }
    m.scrape
        .iter()
        .flat_map(|e| {
            let entry = &e.target;
            // A target with an ssh inventory is scraped on every host, each
            // series labelled with the target and the host.
            let places: Vec<Place> = match svc.config.target(entry) {
                Some(t) => {
                    let token = t.token.as_ref().map(|s| s.expose().to_string());
                    match t
                        .ssh
                        .as_ref()
                        .filter(|_| svc.config.targets.contains_key(entry))
                    {
                        Some(ssh) => ssh
                            .hosts
                            .iter()
                            .map(|h| {
                                (
                                    format!("{entry}/{}", h.name.value),
                                    format!("{}/metrics", t.host_url(h)),
                                    token.clone(),
                                    vec![("target", entry.clone()), ("host", h.name.value.clone())],
                                )
                            })
                            .collect(),
                        None => {
                            let labels = match entry.split_once('/') {
                                Some((name, host)) => {
                                    vec![("target", name.to_string()), ("host", host.to_string())]
                                }
                                None => vec![("target", entry.clone())],
                            };
                            vec![(entry.clone(), format!("{}/metrics", t.url), token, labels)]
                        }
                    }
                }
                None => vec![(entry.clone(), entry.clone(), None, Vec::new())],
            };
            places
                .into_iter()
                .filter_map(move |(name, url, token, labels)| {
                    let url = url::Url::parse(&url).ok()?;
                    let mut t =
                        ScrapeTarget::new(&m.job, url, e.interval.unwrap_or(m.interval).std());
                    if let Some(timeout) = e.timeout {
                        t.timeout = timeout.std().min(t.interval);
                    }
                    t.honor_labels = e.honor_labels;
                    t.honor_timestamps = e.honor_timestamps;
                    t.sample_limit = e.sample_limit;
                    t.labels = e.labels.clone();
                    t.bearer_token = token;
                    for (k, v) in labels {
                        t.labels.insert(k.into(), v);
                    }
                    Some((name, t))
                })
        })
        .collect()
}

/// Starts one loop per target.
pub fn spawn_all(svc: &Arc<Service>) {
    for (name, target) in targets(svc) {
        let svc = svc.clone();
        tokio::spawn(async move {
            let interval_ms = target.interval.as_millis().max(1) as i64;
            let Ok(mut scraper) = Scraper::new(target, svc.storage.clone()) else {
                return;
            };
            info!(target = %name, url = %scraper.target().url, "Scraping.");
            let mut stop = svc.shutdown_signal();
            loop {
                let now = chrono::Utc::now().timestamp_millis();
                let next = (now / interval_ms + 1) * interval_ms;
                tokio::select! {
                    _ = tokio::time::sleep(StdDuration::from_millis((next - now) as u64)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let report = scraper
                    .scrape_at(chrono::Utc::now().timestamp_millis())
                    .await;
                svc.metrics
                    .scrape_up
                    .set(&[&name], f64::from(u8::from(report.up)));
                svc.metrics
                    .scrape_duration
                    .set(&[&name], report.duration.as_secs_f64());
                svc.scrape_reports
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.clone(), report);
            }
            scraper.mark_all_stale(chrono::Utc::now().timestamp_millis());
        });
    }
}

/// Every minute: drop samples past retention, forget idle guard keys.
pub async fn gc(svc: Arc<Service>) {
    let mut stop = svc.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(StdDuration::from_secs(60)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let cutoff =
            chrono::Utc::now().timestamp_millis() - svc.storage.retention().as_millis() as i64;
        svc.storage.gc(cutoff);
        svc.runner
            .guards
            .prune(Instant::now(), StdDuration::from_secs(24 * 3600));
    }
}
