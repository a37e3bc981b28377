//! `sluice schedule`: the schedules of the runbooks under the configured
//! paths with their next fire times (in UTC and in their own zone).

use chrono::Utc;

use super::ExitCode;
use super::run::{CommonArgs, load_config, print_diagnostics};
use crate::service::library::{Library, default_paths};

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// How many upcoming fires to show per schedule.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub count: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::Invalid);
        }
    };
    let base = args
        .common
        .config
        .as_deref()
        .and_then(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), |p| p.to_path_buf());
    let (runbooks, rules) = default_paths(&config, &base);
    let mut lib = Library::default();
    let report = lib.reload(&config, &runbooks, &rules);
    for f in &report.invalid {
        for p in &f.problems {
            eprintln!("{p}");
        }
    }
    let now = Utc::now();
    if lib.schedules().is_empty() {
        println!("No runbook has a schedule trigger.");
    }
    for t in lib.schedules() {
        let e = &t.entry;
        println!(
            "{}  `{}` in {} (catch_up: {:?})",
            t.runbook.name(),
            e.schedule.expr(),
            e.schedule.tz().name(),
            e.catch_up
        );
        for next in e.schedule.upcoming(now, args.count) {
            let local = next.with_timezone(&e.schedule.tz());
            println!(
                "    {}   ({} local)",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                local.format("%a %Y-%m-%d %H:%M:%S %Z")
            );
        }
    }
    Ok(if report.ok {
        ExitCode::Success
    } else {
        ExitCode::Invalid
    })
}
