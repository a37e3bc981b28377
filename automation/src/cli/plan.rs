//! `sluice plan RUNBOOK [--param k=v]`: the resolved steps — kind, what each
//! does with templates rendered where their values are known, conditions,
//! timeouts and retries. Nothing runs.
//!
//! Templates are rendered with the parameters (given ones and defaults) by a
//! dry run of the executor, so `plan` shows what `run --dry-run` would do.
//! Given parameters must be valid (exit 2 otherwise); without any, a runbook
//! whose parameters cannot all be resolved (required ones, defaults from an
//! alert) is shown with its templates as written.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use super::ExitCode;
use super::run::{CommonArgs, load_config, load_runbooks, parse_params, print_diagnostics};
use crate::exec::context::Services;
use crate::exec::executor::{RunError, RunRequest, execute};
use crate::runbook::model::Step;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Runbook file or name.
    pub runbook: String,
    /// Parameter value (repeatable).
    #[arg(short, long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// What each step does, by path, as a dry run rendered it.
type Rendered = BTreeMap<String, String>;

fn print_steps(steps: &[Step], indent: usize, prefix: &str, rendered: &Rendered) {
    for s in steps {
        let pad = " ".repeat(indent);
        let path = format!("{prefix}{}", s.id.value);
        let what = match (&s.fixed, rendered.get(&path)) {
            (Some(a), _) => a.describe(),
            (None, Some(r)) => r.clone(),
            (None, None) => format!(
                "(templated) {}",
                serde_json::to_string(&s.config.to_json()).unwrap_or_default()
            ),
        };
        println!("{pad}- {} [{}]: {what}", s.id.value, s.kind.name);
        if let Some(w) = &s.when {
            println!("{pad}    if: {}", w.value);
        }
        if let Some(t) = s.timeout {
            println!("{pad}    timeout: {t}");
        }
        if let Some(r) = &s.retry {
            println!(
                "{pad}    retry: {} attempts, backoff {} (max {})",
                r.attempts, r.backoff, r.max_backoff
            );
        }
        if s.continue_on_error {
            println!("{pad}    continue_on_error: true");
        }
        print_steps(&s.children, indent + 4, &format!("{path}."), rendered);
    }
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice: {e}");
            return Ok(ExitCode::Invalid);
        }
    };
    let (rb, library) = match load_runbooks(&args.runbook, &config) {
        Ok(x) => x,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    // A dry run renders every step; it touches nothing and records nothing.
    let given = !params.is_empty();
    let services = Arc::new(Services::new(config, None).context("building the HTTP client")?);
    for r in library {
        services.add_runbook(r);
    }
    let req = RunRequest {
        params,
        trigger: "manual".into(),
        who: "plan".into(),
        dry_run: true,
        ..RunRequest::default()
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let rendered: Rendered = match rt.block_on(execute(&services, rb.clone(), req)) {
        Ok(out) => out.plan.into_iter().map(|p| (p.path, p.what)).collect(),
        Err(RunError::InvalidParams(errors)) if given => {
            for e in errors {
                eprintln!("sluice: {e}");
            }
            return Ok(ExitCode::Invalid);
        }
        Err(_) => Rendered::new(),
    };
    println!("{}: {}", rb.name.value, rb.description.trim());
    if let Some(t) = rb.timeout {
        println!("timeout: {t}");
    }
    for p in &rb.params {
        let default = p
            .spec
            .default
            .as_ref()
            .map(|d| format!(" = {}", d.value))
            .unwrap_or_default();
        println!(
            "param {}: {:?}{default}{}",
            p.name.value,
            p.spec.ty,
            if p.spec.required { " (required)" } else { "" }
        );
    }
    println!("steps:");
    print_steps(&rb.steps, 2, "", &rendered);
    if !rb.on_failure.is_empty() {
        println!("on_failure:");
        print_steps(&rb.on_failure, 2, "on_failure.", &rendered);
    }
    Ok(ExitCode::Success)
}
