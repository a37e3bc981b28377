//! `sluice replay`: alert rules and runbooks over a recorded metric history
//! — when rules would have fired, which runbooks would have run, what the
//! guards would have suppressed (see `replay` and docs/replay.md). Exit 0,
//! 1 when `--max-runs-per-day` is exceeded, 2 on invalid input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::ExitCode;
use super::run::{load_config, print_diagnostics};
use crate::replay::{self, history, timeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["series", "openmetrics", "prometheus"])))]
pub struct ReplayArgs {
    /// Alert rule files or directories (default: the config's `rules`, else ./alerts).
    #[arg(long, value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Runbook files or directories (default: the config's `runbooks`, else ./runbooks).
    #[arg(long, value_name = "PATH")]
    pub runbooks: Vec<PathBuf>,
    /// sluice.yaml (evaluation interval, external labels, maintenance windows,
    /// kill switch, targets the runbooks name). Default: ./sluice.yaml when present.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// History as a promtool series file (`load <interval>` blocks); its
    /// first step is at `--start` (default 1970-01-01T00:00:00Z).
    #[arg(long, value_name = "FILE")]
    pub series: Option<PathBuf>,
    /// History as an OpenMetrics / Prometheus text dump with a timestamp on
    /// every sample (one scrape or many concatenated).
    #[arg(long, value_name = "FILE")]
    pub openmetrics: Option<PathBuf>,
    /// History from a Prometheus server (`/api/v1/query_range` of the series
    /// the rules select); needs `--start`.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<url::Url>,
    /// First evaluation: RFC 3339, Unix seconds, `now` or `now-7d`
    /// (default: the first sample).
    #[arg(long, value_name = "T")]
    pub start: Option<String>,
    /// Last evaluation (default: the last sample; `now` with `--prometheus`).
    #[arg(long, value_name = "T")]
    pub end: Option<String>,
    /// Resolution of the history read from `--prometheus`.
    #[arg(long, default_value = "15s")]
    pub step: crate::duration::Duration,
    /// Evaluate every group at this interval (default: each group's own).
    #[arg(long)]
    pub interval: Option<crate::duration::Duration>,
    /// Only this runbook: its runs and the alerts that trigger it.
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit 1 when a runbook would have run more than N times on one UTC day.
    #[arg(long, value_name = "N")]
    pub max_runs_per_day: Option<u32>,
    /// How long each run is taken to last (matters for `concurrency`); runs end at once by default.
    #[arg(long, default_value = "0s")]
    pub run_duration: crate::duration::Duration,
    /// Timeout of every request to `--prometheus`.
    #[arg(long, default_value = "30s")]
    pub timeout: crate::duration::Duration,
    /// Bearer token for `--prometheus` (default: $PROMETHEUS_TOKEN).
    #[arg(long, env = "PROMETHEUS_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,
}

/// Parses a time: RFC 3339, Unix seconds, `now`, `now-<duration>`.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now.timestamp_millis());
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let d: crate::duration::Duration = ago.parse().map_err(|e| format!("{e}"))?;
        return Ok(now.timestamp_millis() - d.std().as_millis() as i64);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("invalid time `{s}` (RFC 3339, Unix seconds, `now` or `now-7d`)"))
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    let now = Utc::now();
    let time = |s: &Option<String>, what: &str| -> Result<Option<i64>, String> {
        s.as_deref()
            .map(|s| parse_time(s, now).map_err(|e| format!("--{what}: {e}")))
            .transpose()
    };
    let (start, end) = match (time(&args.start, "start"), time(&args.end, "end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sluice: {e}");
            return Ok(ExitCode::Invalid);
        }
    };
    // Paths: as given, else those of the config (relative to it), else ./runbooks and ./alerts.
    let base = args
        .config
        .as_deref()
        .and_then(Path::parent)
        .map_or_else(PathBuf::new, Path::to_path_buf);
    let (default_runbooks, default_rules) = crate::service::library::default_paths(&config, &base);
    let runbook_paths = if args.runbooks.is_empty() {
        default_runbooks
    } else {
        args.runbooks.clone()
    };
    let rule_paths = if args.rules.is_empty() {
        default_rules
    } else {
        args.rules.clone()
    };
    let loaded = match replay::load(config, &runbook_paths, &rule_paths) {
        Ok(l) => l,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return Ok(ExitCode::Invalid);
        }
    };
    if let Some(rb) = &args.runbook
        && loaded.library.runbook(rb).is_none()
    {
        eprintln!("sluice: --runbook: no runbook `{rb}` under the runbook paths");
        return Ok(ExitCode::Invalid);
    }
    let keep = loaded.keep();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let history = if let Some(path) = &args.series {
        history::series_file(path, start.unwrap_or(0), &keep)
    } else if let Some(path) = &args.openmetrics {
        history::openmetrics_file(path, &keep)
    } else if let Some(url) = &args.prometheus {
        let Some(start) = start else {
            eprintln!("sluice: --prometheus needs --start");
            return Ok(ExitCode::Invalid);
        };
        let end = end.unwrap_or(now.timestamp_millis());
        let (selectors, lookback) = loaded.selectors();
        let src = history::PrometheusSource {
            url: url.clone(),
            start_ms: start - lookback.as_millis() as i64,
            end_ms: end,
            step: args.step.std().max(Duration::from_millis(1)),
            timeout: args.timeout.std(),
            bearer_token: args.bearer_token.clone(),
        };
        match rt.block_on(history::prometheus(&src, &selectors, &keep)) {
            Ok(h) => Ok(h),
            Err(e) => {
                eprintln!("sluice: reading {url}: {e:#}");
                return Ok(ExitCode::Invalid);
            }
        }
    } else {
        unreachable!("clap requires one source")
    };
    let history = match history {
        Ok(h) => h,
        Err(d) => {
            print_diagnostics(&[d]);
            return Ok(ExitCode::Invalid);
        }
    };
    let (Some(start_ms), Some(end_ms)) = (start.or(history.first_ms), end.or(history.last_ms))
    else {
        eprintln!(
            "sluice: the history holds no samples of the series the rules use; give --start and --end"
        );
        return Ok(ExitCode::Invalid);
    };
    if end_ms < start_ms {
        eprintln!("sluice: --end is before --start");
        return Ok(ExitCode::Invalid);
    }
    let opts = replay::Options {
        start_ms,
        end_ms,
        interval: args.interval.map(|d| d.std()),
        runbook: args.runbook.clone(),
        run_duration: args.run_duration.std(),
    };
    let report = rt.block_on(replay::replay(&loaded, &history, &opts))?;
    match args.format {
        Format::Text => print!("{}", timeline::render_text(&report)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&timeline::render_json(&report))?
        ),
    }
    if let Some(n) = args.max_runs_per_day {
        let over = report.over_daily_limit(n);
        for (rb, day, runs) in &over {
            eprintln!("sluice: {rb} would have run {runs} times on {day} (limit {n} a day)");
        }
        if !over.is_empty() {
            return Ok(ExitCode::Failed);
        }
    }
    Ok(ExitCode::Success)
}
