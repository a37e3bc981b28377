//! `sluice plan RUNBOOK [--param k=v]`: the resolved steps — kind, what each
//! does with templates rendered where their values are known, conditions,
//! timeouts and retries. Nothing runs.

use super::ExitCode;
use super::run::{CommonArgs, load_config, load_runbooks, parse_params, print_diagnostics};
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

fn print_steps(steps: &[Step], indent: usize) {
    for s in steps {
        let pad = " ".repeat(indent);
        let what = match &s.fixed {
            Some(a) => a.describe(),
            None => format!(
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
        print_steps(&s.children, indent + 4);
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
    if let Err(e) = parse_params(&args.params) {
        eprintln!("sluice: {e}");
        return Ok(ExitCode::Invalid);
    }
    let (rb, _) = match load_runbooks(&args.runbook, &config) {
        Ok(x) => x,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
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
    print_steps(&rb.steps, 2);
    if !rb.on_failure.is_empty() {
        println!("on_failure:");
        print_steps(&rb.on_failure, 2);
    }
    Ok(ExitCode::Success)
}
