//! Metric history for a replay, loaded into the same in-memory store the
//! service evaluates its rules on: a promtool series file (`load` blocks of
//! the promqltest notation), an OpenMetrics / Prometheus text dump with a
//! timestamp on every sample (one or many scrapes), or a Prometheus server's
//! `/api/v1/query_range` over the raw series selectors the rules use.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promql_parser::parser::Expr;
use sluice_promql::{Labels, MemStorage};

use crate::diagnostic::Diagnostic;
use crate::scrape::parse::{Format, ParsedSample, parse};

/// Samples older than this behind the newest are never dropped (a replay
/// covers weeks, not the service's hours).
const RETENTION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Which series the history keeps: the replay recomputes `ALERTS`,
/// `ALERTS_FOR_STATE` and the recording rules' series itself.
pub struct Keep {
    pub dropped_names: HashSet<String>,
}

impl Keep {
    /// Keeps everything but `ALERTS`, `ALERTS_FOR_STATE` and `recorded` names.
    pub fn new(recorded: impl IntoIterator<Item = String>) -> Keep {
        let mut dropped_names: HashSet<String> = recorded.into_iter().collect();
        dropped_names.insert(crate::alert::series_names::ALERTS.to_string());
        dropped_names.insert(crate::alert::series_names::ALERTS_FOR_STATE.to_string());
        Keep { dropped_names }
    }

    pub fn keeps(&self, name: Option<&str>) -> bool {
        name.is_none_or(|n| !self.dropped_names.contains(n))
    }
}

/// A loaded history.
pub struct History {
    pub storage: Arc<MemStorage>,
    /// Oldest and newest sample (Unix ms); `None` when nothing was loaded.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub series: usize,
    pub samples: usize,
}

impl History {
    fn new() -> History {
        History {
            storage: Arc::new(MemStorage::new(RETENTION)),
            first_ms: None,
            last_ms: None,
            series: 0,
            samples: 0,
        }
    }

    fn saw(&mut self, t: i64) {
        self.first_ms = Some(self.first_ms.map_or(t, |f| f.min(t)));
        self.last_ms = Some(self.last_ms.map_or(t, |l| l.max(t)));
    }

    fn finish(mut self) -> History {
        self.series = self.storage.stats().series;
        self
    }
}

/// Loads a series file; its step 0 is at `base_ms`.
pub fn series_file(path: &Path, base_ms: i64, keep: &Keep) -> Result<History, Diagnostic> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::whole_file(path, format!("cannot read: {e}")))?;
    let mut h = History::new();
    let keep_fn = |l: &Labels| keep.keeps(l.metric_name());
    let range = sluice_promql::promqltest::load_series_file(&h.storage, &text, base_ms, &keep_fn)
        .map_err(|e| {
        let column = text
            .lines()
            .nth(e.line.saturating_sub(1))
            .map_or(1, |l| l.len() - l.trim_start().len() + 1);
        Diagnostic::new(path, e.line, column, e.message)
    })?;
    if let Some((f, l)) = range {
        h.saw(f);
        h.saw(l);
    }
    h.samples = h.storage.stats().samples;
    Ok(h.finish())
}

/// One scrape of a dump: its text and the line it starts on.
struct Chunk {
    first_line: usize,
    text: String,
}

/// Splits a dump into scrapes at `# EOF` lines (OpenMetrics); a dump without
/// any is one scrape in the Prometheus text format.
fn chunks(text: &str) -> (Format, Vec<Chunk>) {
    let om = text.lines().any(|l| l.trim_end() == "# EOF");
    if !om {
        return (
            Format::Text,
            vec![Chunk {
                first_line: 1,
                text: text.to_string(),
            }],
        );
    }
    let mut out = Vec::new();
    let mut cur: Option<Chunk> = None;
    for (i, line) in text.lines().enumerate() {
        if cur.is_none() && line.trim().is_empty() {
            continue;
        }
        let c = cur.get_or_insert_with(|| Chunk {
            first_line: i + 1,
            text: String::new(),
        });
        c.text.push_str(line);
        c.text.push('\n');
        if line.trim_end() == "# EOF" {
            out.extend(cur.take());
        }
    }
    if let Some(c) = cur {
        // Data after the last `# EOF`: the parser reports what is missing.
        out.push(c);
    }
    (Format::OpenMetrics, out)
}

fn labels_of(s: &ParsedSample) -> Labels {
    Labels::new(
        std::iter::once(("__name__", s.name.as_str()))
            .chain(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    )
}

/// The line (1-based, within `chunk`) of the first sample without a timestamp.
fn line_without_timestamp(chunk: &str, format: Format) -> usize {
    for (i, line) in chunk.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let body = match format {
            Format::OpenMetrics => format!("{line}\n# EOF\n"),
            Format::Text => format!("{line}\n"),
        };
        if let Ok(samples) = parse(&body, format)
            && samples.iter().any(|s| s.timestamp_ms.is_none())
        {
            return i + 1;
        }
    }
    1
}

/// Loads an OpenMetrics / Prometheus text dump. Every sample needs a
/// timestamp. When the dump is several scrapes (OpenMetrics bodies each
/// ending in `# EOF`), a series missing from a scrape gets a staleness
/// marker at that scrape's time, as the scraper writes it.
pub fn openmetrics_file(path: &Path, keep: &Keep) -> Result<History, Diagnostic> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::whole_file(path, format!("cannot read: {e}")))?;
    let (format, chunks) = chunks(&text);
    let mut h = History::new();
    let several = chunks.len() > 1;
    let mut previous: HashSet<Labels> = HashSet::new();
    for chunk in chunks {
        let samples = parse(&chunk.text, format).map_err(|e| {
            Diagnostic::new(path, chunk.first_line + e.line - 1, 1, e.message.clone())
        })?;
        if samples.iter().any(|s| s.timestamp_ms.is_none()) {
            let line = chunk.first_line + line_without_timestamp(&chunk.text, format) - 1;
            return Err(Diagnostic::new(
                path,
                line,
                1,
                "sample without a timestamp: a replay needs the time of every sample (`name{labels} value timestamp`)",
            ));
        }
        let mut seen: HashSet<Labels> = HashSet::new();
        let mut scrape_t: Option<i64> = None;
        for s in &samples {
            if !keep.keeps(Some(&s.name)) {
                continue;
            }
            let t = s.timestamp_ms.unwrap_or_default();
            scrape_t = Some(scrape_t.map_or(t, |x| x.min(t)));
            let labels = labels_of(s);
            h.storage.append(&labels, t, s.value).map_err(|e| {
                Diagnostic::new(
                    path,
                    chunk.first_line,
                    1,
                    format!("in the scrape starting here: {e}"),
                )
            })?;
            h.saw(t);
            h.samples += 1;
            if several {
                seen.insert(labels);
            }
        }
        if several {
            if let Some(t) = scrape_t {
                for gone in previous.difference(&seen) {
                    // A marker behind a newer sample of the series is moot.
                    let _ = h.storage.append_stale(gone, t);
                }
            }
            previous = seen;
        }
    }
    Ok(h.finish())
}

/// Every series selector in `expr` (without offset and `@`), and the longest
/// range or subquery window seen on the way, so the fetch can start early enough.
pub fn selectors(expr: &Expr, out: &mut BTreeMap<String, ()>, longest: &mut Duration) {
    use promql_parser::parser::Offset;
    let offset_of = |o: &Option<Offset>| match o {
        Some(Offset::Pos(d)) => *d,
        _ => Duration::ZERO,
    };
    match expr {
        Expr::Aggregate(a) => {
            selectors(&a.expr, out, longest);
            if let Some(p) = &a.param {
                selectors(p, out, longest);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out, longest),
        Expr::Binary(b) => {
            selectors(&b.lhs, out, longest);
            selectors(&b.rhs, out, longest);
        }
        Expr::Paren(p) => selectors(&p.expr, out, longest),
        Expr::Subquery(s) => {
            *longest = (*longest).max(s.range + offset_of(&s.offset));
            selectors(&s.expr, out, longest);
        }
        Expr::VectorSelector(vs) => {
            *longest = (*longest).max(offset_of(&vs.offset));
            let mut plain = vs.clone();
            plain.offset = None;
            plain.at = None;
            out.insert(Expr::VectorSelector(plain).to_string(), ());
        }
        Expr::MatrixSelector(ms) => {
            *longest = (*longest).max(ms.range + offset_of(&ms.vs.offset));
            let mut plain = ms.vs.clone();
            plain.offset = None;
            plain.at = None;
            out.insert(Expr::VectorSelector(plain).to_string(), ());
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, out, longest);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Where and how to read a Prometheus server.
pub struct PrometheusSource {
    pub url: url::Url,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step: Duration,
    /// Bound on every request.
    pub timeout: Duration,
    pub bearer_token: Option<String>,
}

/// Prometheus refuses a range query of more than 11,000 points per series.
const MAX_POINTS: i64 = 10_000;

#[derive(serde::Deserialize)]
struct RangeEnvelope {
    status: String,
    #[serde(default)]
    data: Option<RangeData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct RangeData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RangeSeries>,
}

#[derive(serde::Deserialize)]
struct RangeSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Fetches `selectors` from a Prometheus server: `/api/v1/query_range` of
/// each raw selector at `step`, in windows of at most 10,000 steps. A series
/// that has a point at one step and none at the next gets a staleness marker
/// there, so it ends in the replay where it ended in Prometheus.
pub async fn prometheus(
    src: &PrometheusSource,
    selectors: &[String],
    keep: &Keep,
) -> anyhow::Result<History> {
    use anyhow::{Context as _, bail};
    let client = crate::scrape::http_client(src.timeout).context("building the HTTP client")?;
    let step_ms = (src.step.as_millis() as i64).max(1);
    let url = src
        .url
        .join("api/v1/query_range")
        .context("the Prometheus URL")?;
    let mut h = History::new();
    for sel in selectors {
        // Last step time with a point per series, to place staleness markers.
        let mut last: BTreeMap<Vec<(String, String)>, (Labels, i64)> = BTreeMap::new();
        let mut from = src.start_ms;
        while from <= src.end_ms {
            let to = (from + step_ms * (MAX_POINTS - 1)).min(src.end_ms);
            let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
            let mut req = client.get(url.clone()).query(&[
                ("query", sel.as_str()),
                ("start", &secs(from)),
                ("end", &secs(to)),
                ("step", &secs(step_ms)),
            ]);
            if let Some(t) = &src.bearer_token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("query_range {sel} from {}", src.url))?;
            let status = resp.status().as_u16();
            let env: RangeEnvelope = resp
                .json()
                .await
                .with_context(|| format!("query_range {sel}: HTTP {status}"))?;
            if env.status != "success" {
                bail!(
                    "query_range {sel}: HTTP {status}: {}: {}",
                    env.error_type.unwrap_or_default(),
                    env.error.unwrap_or_default()
                );
            }
            let Some(data) = env.data else {
                bail!("query_range {sel}: no data in the answer");
            };
            if data.result_type != "matrix" {
                bail!("query_range {sel}: result type {}", data.result_type);
            }
            for s in data.result {
                if !keep.keeps(s.metric.get("__name__").map(String::as_str)) {
                    continue;
                }
                let key: Vec<(String, String)> = s.metric.clone().into_iter().collect();
                let labels = Labels::new(s.metric.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                for (ts, v) in s.values {
                    let t = (ts * 1000.0).round() as i64;
                    let Some(v) = crate::scrape::parse::parse_value(&v) else {
                        bail!("query_range {sel}: bad sample value {v:?}");
                    };
                    if let Some((l, prev)) = last.get(&key)
                        && t - prev > step_ms
                    {
                        let _ = h.storage.append_stale(l, prev + step_ms);
                    }
                    // Two selectors may overlap (`up` and `up{job="x"}`): the first wins.
                    if h.storage.append(&labels, t, v).is_ok() {
                        h.samples += 1;
                    }
                    h.saw(t);
                    last.insert(key.clone(), (labels.clone(), t));
                }
            }
            from = to + step_ms;
        }
        for (l, t) in last.values() {
            if *t + step_ms <= src.end_ms {
                let _ = h.storage.append_stale(l, t + step_ms);
            }
        }
    }
    Ok(h.finish())
}
