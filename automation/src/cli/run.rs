//! `sluice run RUNBOOK [--param k=v] [--target NAME=URL] [--dry-run]`: runs a
//! runbook here and now, printing a line per step (status, duration; a spinner
//! while a step runs). Exit 0 when it succeeded, 1 when it failed, 2 when the
//! runbook or a parameter is invalid.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use anyhow::Context as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value as J;

use super::ExitCode;
use crate::config::{Config, HttpUrl, Target};
use crate::diagnostic::Diagnostic;
use crate::exec::context::{Progress, Services, StepEvent};
use crate::exec::executor::{RunError, RunRequest, RunStatus, execute};
use crate::runbook::validate::{Known, validate};
use crate::runbook::{self, Runbook};
use crate::store::Store;

/// Options shared by the commands that load runbooks and the store.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Service configuration (targets, channels, store). Default: ./sluice.yaml when present.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Runbook file, or the name of a runbook under the configured runbook paths (default ./runbooks).
    pub runbook: String,
    /// Parameter value (repeatable).
    #[arg(short, long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// Add or override an engine target for this run.
    #[arg(short, long = "target", value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// Render every step and show what it would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who is running it (recorded; default $USER).
    #[arg(long)]
    pub who: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Loads sluice.yaml (explicit path, or ./sluice.yaml when present, or defaults).
pub fn load_config(path: Option<&Path>) -> Result<Config, Vec<Diagnostic>> {
    match path {
        Some(p) => Config::load(p),
        None if Path::new("sluice.yaml").is_file() => Config::load(Path::new("sluice.yaml")),
        None => Ok(Config::default()),
    }
}

/// The store URL: sluice.yaml `store`, else `$SLUICE_STORE`, else `sqlite://.sluice/runs.db`.
pub fn store_url(config: &Config) -> String {
    config
        .store
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| std::env::var("SLUICE_STORE").ok())
        .unwrap_or_else(|| "sqlite://.sluice/runs.db".to_string())
}

pub fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        let source = std::fs::read_to_string(&d.file).ok();
        eprintln!("{}", d.render(source.as_deref()));
    }
}

/// Runbook files in the configured runbook paths (or ./runbooks).
fn library_paths(config: &Config) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = if config.runbooks.is_empty() {
        vec![PathBuf::from("runbooks")]
    } else {
        config.runbooks.clone()
    };
    let existing: Vec<PathBuf> = dirs.into_iter().filter(|d| d.exists()).collect();
    super::validate::expand(&existing).unwrap_or_default()
}

/// The runbook to run and the library of runbooks it may call.
pub type Loaded = (Arc<Runbook>, Vec<Arc<Runbook>>);

/// Loads the runbook to run plus every runbook it may call; validates them against the config.
pub fn load_runbooks(spec: &str, config: &Config) -> Result<Loaded, Vec<Diagnostic>> {
    let mut library: BTreeMap<String, Arc<Runbook>> = BTreeMap::new();
    for path in library_paths(config) {
        if let Ok(text) = std::fs::read_to_string(&path)
            && super::validate::classify(&path, &text) == super::validate::FileKind::Runbook
            && let Ok(rb) = runbook::load_str(&path, &text)
        {
            library
                .entry(rb.name.value.clone())
                .or_insert_with(|| Arc::new(rb));
        }
    }
    let path = Path::new(spec);
    let main = if path.is_file() {
        Arc::new(runbook::load_file(path)?)
    } else {
        library.get(spec).cloned().ok_or_else(|| {
            vec![Diagnostic::whole_file(
                spec,
                "no such runbook file, and no runbook with this name under the runbook paths",
            )]
        })?
    };
    library.insert(main.name.value.clone(), main.clone());
    let names: BTreeSet<String> = library.keys().cloned().collect();
    let source = if path.is_file() {
        path.to_path_buf()
    } else {
        PathBuf::from(format!("{spec}.yaml"))
    };
    let problems = validate(
        &main,
        Known {
            config: Some(config),
            runbooks: Some(&names),
            alerts: None,
        },
    );
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| {
                Diagnostic::new(
                    &source,
                    p.pos.line as usize,
                    p.pos.column as usize,
                    p.message,
                )
            })
            .collect());
    }
    Ok((main, library.into_values().collect()))
}

/// `k=v` pairs into parameter values (strings; typed by the runbook's declarations).
pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, J>, String> {
    let mut out = BTreeMap::new();
    for p in raw {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--param `{p}`: expected K=V"))?;
        if k.is_empty() {
            return Err(format!("--param `{p}`: empty name"));
        }
        out.insert(k.to_string(), J::String(v.to_string()));
    }
    Ok(out)
}

fn apply_targets(config: &mut Config, raw: &[String]) -> Result<(), String> {
    for t in raw {
        let (name, url) = t
            .split_once('=')
            .ok_or_else(|| format!("--target `{t}`: expected NAME=URL"))?;
        let parsed = url::Url::parse(url).map_err(|e| format!("--target `{t}`: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("--target `{t}`: URL must be http:// or https://"));
        }
        let token = config.targets.get(name).and_then(|old| old.token.clone());
        config
            .targets
            .insert(name.to_string(), Target::at(HttpUrl(parsed), token));
    }
    Ok(())
}

/// Prints a line per finished step; a spinner per running step on a terminal.
struct Printer {
    bars: MultiProgress,
    running: Mutex<BTreeMap<String, ProgressBar>>,
    tty: bool,
}

impl Printer {
    fn new() -> Printer {
        Printer {
            bars: MultiProgress::new(),
            running: Mutex::new(BTreeMap::new()),
            tty: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for Printer {
    fn step_started(&self, _run: &str, path: &str, kind: &str) {
        if !self.tty {
            return;
        }
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{path} ({kind})"));
        bar.enable_steady_tick(StdDuration::from_millis(120));
        if let Ok(mut r) = self.running.lock() {
            r.insert(path.to_string(), bar);
        }
    }

    fn step_finished(&self, ev: &StepEvent<'_>) {
        let (path, status, elapsed, error) = (ev.path, ev.status, ev.elapsed, ev.error);
        if let Some(bar) = self.running.lock().ok().and_then(|mut r| r.remove(path)) {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
        let mark = match status {
            "succeeded" => "ok  ",
            "failed" => "FAIL",
            "skipped" => "skip",
            "planned" => "plan",
            _ => "    ",
        };
        let line = match error {
            Some(e) => format!("{mark} {path} ({:.1?}): {e}", elapsed),
            None => format!("{mark} {path} ({:.1?})", elapsed),
        };
        self.bars.suspend(|| eprintln!("{line}"));
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    if let Err(e) = apply_targets(&mut config, &args.targets) {
        eprintln!("sluice: {e}");
        return Ok(ExitCode::Invalid);
    }
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice: {e}");
            return Ok(ExitCode::Invalid);
        }
    };
    let (main, library) = match load_runbooks(&args.runbook, &config) {
        Ok(x) => x,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let store = if args.dry_run {
            None
        } else {
            let url = store_url(&config);
            Some(Store::connect(&url).await.with_context(|| {
                format!("opening the run store {}", config.redactor().text(&url))
            })?)
        };
        let mut services = Services::new(config, store).context("building the HTTP client")?;
        let printer = Arc::new(Printer::new());
        services.progress = Some(printer.clone());
        let services = Arc::new(services);
        for rb in library {
            services.add_runbook(rb);
        }
        let who = args
            .who
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".into());
        let req = RunRequest {
            params,
            trigger: "manual".into(),
            who,
            dry_run: args.dry_run,
            ..RunRequest::default()
        };
        let outcome = match execute(&services, main.clone(), req).await {
            Ok(o) => o,
            Err(RunError::InvalidParams(errors)) => {
                for e in errors {
                    eprintln!("sluice: {e}");
                }
                return Ok(ExitCode::Invalid);
            }
            Err(e) => return Err(e.into()),
        };
        if args.dry_run {
            println!("Dry run of `{}`: nothing was changed.", main.name.value);
            for p in &outcome.plan {
                println!("  {} [{}]: {}", p.path, p.kind, p.what);
            }
            return Ok(ExitCode::Success);
        }
        match outcome.status {
            RunStatus::Succeeded => {
                eprintln!("run {} succeeded", outcome.id);
                Ok(ExitCode::Success)
            }
            status => {
                eprintln!(
                    "run {} {status}: {}",
                    outcome.id,
                    outcome.error.unwrap_or_default()
                );
                Ok(ExitCode::Failed)
            }
        }
    })
}
