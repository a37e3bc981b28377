use std::path::Path;

use super::timeline::{Outcome, What, render_json, render_text};
use super::*;

const RULES: &str = r#"groups:
  - name: engine
    interval: 1m
    rules:
      - alert: EngineDown
        expr: engine_up == 0
        for: 2m
        labels: {severity: critical}
      - alert: QueueStuck
        expr: queue_stuck > 0
        for: 2m
        keep_firing_for: 2m
"#;

const RUNBOOK: &str = r#"name: failover
triggers:
  - alert: EngineDown
    labels: {target: primary}
guards:
  cooldown: 10m
  max_runs: {count: 3, window: 1h}
steps:
  - id: fence
    sleep: 1ms
  - id: promote
    sleep: 2ms
"#;

/// Minute by minute: down 2–6 (fires at 4, resolves at 7), down 8–11 (fires
/// at 10, inside the cooldown), down 13–15 (fires at 15: second run), down
/// 25–27 (fires at 27: third run), down 38–40 (fires at 40: the fourth
/// within the hour escalates). The standby is down 30–33 (fires at 32, no
/// trigger matches). `queue_stuck` is true for minutes 0–2 only.
const SERIES: &str = "load 1m
    engine_up{target=\"primary\"} 1 1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 1x8 0 0 0 1x9 0 0 0 1x4
    engine_up{target=\"standby\"} 1x29 0 0 0 0 1x11
    queue_stuck{q=\"a\"} 1 1 1 0x42
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn setup(dir: &Path) -> Loaded {
    write(dir, "alerts/rules.yaml", RULES);
    write(dir, "runbooks/failover.yaml", RUNBOOK);
    load(
        Config::default(),
        &[dir.join("runbooks")],
        &[dir.join("alerts")],
    )
    .unwrap_or_else(|p| panic!("{p:#?}"))
}

const MIN: i64 = 60_000;
/// The service evaluates 300 ms after each interval boundary.
const OFF: i64 = 300;

async fn replay_series(dir: &Path, loaded: &Loaded, opts: Options) -> Report {
    let path = write(dir, "history.series", SERIES);
    let h = history::series_file(&path, 0, &loaded.keep()).unwrap();
    assert_eq!(h.first_ms, Some(0));
    assert_eq!(h.last_ms, Some(45 * MIN));
    replay(loaded, &h, &opts).await.unwrap()
}

/// Transitions of alert `name` (of `target`, when given): (time, firing).
fn alerts_of(r: &Report, name: &str, target: Option<&str>) -> Vec<(i64, bool)> {
    r.events
        .iter()
        .filter_map(|e| match &e.what {
            What::Alert {
                name: n,
                firing,
                labels,
                ..
            } if n == name
                && target.is_none_or(|t| labels.get("target").map(String::as_str) == Some(t)) =>
            {
                Some((e.t_ms, *firing))
            }
            _ => None,
        })
        .collect()
}

fn alerts(r: &Report, name: &str) -> Vec<(i64, bool)> {
    alerts_of(r, name, None)
}

/// Run decisions that a firing (not a re-send) asked for: (time, decision).
fn decisions(r: &Report) -> Vec<(i64, &'static str)> {
    r.events
        .iter()
        .filter_map(|e| match &e.what {
            What::Run(run) if !run.resent => Some((e.t_ms, run.outcome.decision().as_str())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_timeline_follows_the_rule_lifecycle_and_the_guards() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = setup(dir.path());
    let r = replay_series(
        dir.path(),
        &loaded,
        Options {
            start_ms: 0,
            end_ms: 44 * MIN,
            ..Options::default()
        },
    )
    .await;
    // `for: 2m`: active at 2m, firing at 4m, resolved when the value comes back.
    assert_eq!(
        alerts_of(&r, "EngineDown", Some("primary")),
        vec![
            (4 * MIN + OFF, true),
            (7 * MIN + OFF, false),
            (10 * MIN + OFF, true),
            (12 * MIN + OFF, false),
            (15 * MIN + OFF, true),
            (16 * MIN + OFF, false),
            (27 * MIN + OFF, true),
            (28 * MIN + OFF, false),
            (40 * MIN + OFF, true),
            (41 * MIN + OFF, false),
        ]
    );
    // The standby's alert fires too, but no trigger of the runbook matches it.
    assert_eq!(
        alerts_of(&r, "EngineDown", Some("standby")),
        vec![(32 * MIN + OFF, true), (34 * MIN + OFF, false)]
    );
    // keep_firing_for: 2m keeps it firing two evaluations past the last true one.
    assert_eq!(
        alerts(&r, "QueueStuck"),
        vec![(2 * MIN + OFF, true), (5 * MIN + OFF, false)]
    );
    assert_eq!(
        decisions(&r),
        vec![
            (4 * MIN + OFF, "started"),
            (10 * MIN + OFF, "cooldown"),
            (15 * MIN + OFF, "started"),
            (27 * MIN + OFF, "started"),
            (40 * MIN + OFF, "escalated"),
        ]
    );
    let cooldown = r
        .events
        .iter()
        .find_map(|e| match &e.what {
            What::Run(run) if !run.resent => match &run.outcome {
                Outcome::Cooldown {
                    cooldown,
                    last_run_ms,
                    remaining,
                } => Some((*cooldown, *last_run_ms, *remaining)),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(
        cooldown,
        (
            Duration::from_secs(600),
            4 * MIN + OFF,
            Duration::from_secs(240)
        )
    );
    // Each start is planned by a dry run: both steps, rendered.
    let plan = r
        .events
        .iter()
        .find_map(|e| match &e.what {
            What::Run(run) => match &run.outcome {
                Outcome::Started { plan, .. } => Some(plan.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(
        plan.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        ["fence", "promote"]
    );

    // Re-sends of the still-firing alert (every minute, as the service does) are
    // suppressed by the cooldown, or escalate once max_runs is reached.
    let resent: Vec<(i64, &str)> = r
        .events
        .iter()
        .filter_map(|e| match &e.what {
            What::Run(run) if run.resent => Some((e.t_ms, run.outcome.decision().as_str())),
            _ => None,
        })
        .collect();
    assert!(resent.contains(&(5 * MIN, "cooldown")), "{resent:?}");
    assert!(resent.iter().all(|(_, d)| *d != "started"), "{resent:?}");

    let s = &r.summary[0];
    assert_eq!(s.runbook, "failover");
    assert_eq!(s.runs, 3);
    assert_eq!(
        s.escalations,
        1 + resent.iter().filter(|(_, d)| *d == "escalated").count() as u32
    );
    assert_eq!(
        s.suppressed["cooldown"],
        1 + resent.iter().filter(|(_, d)| *d == "cooldown").count() as u32
    );
    assert_eq!(s.firings["EngineDown"], 5);
    assert_eq!(s.runs_per_day["1970-01-01"], 3);
    assert!(r.over_daily_limit(3).is_empty());
    assert_eq!(
        r.over_daily_limit(2),
        vec![("failover".to_string(), "1970-01-01".to_string(), 3)]
    );

    let text = render_text(&r);
    for want in [
        "1970-01-01T00:04:00Z  alert EngineDown{severity=\"critical\", target=\"primary\"} firing",
        "1970-01-01T00:04:00Z  run failover (alert EngineDown{severity=\"critical\", target=\"primary\"}) — would start: 2 steps",
        "1. fence [sleep]",
        "1970-01-01T00:10:00Z  run failover suppressed: cooldown (10m, last run 00:04:00)",
        "1970-01-01T00:40:00Z  run failover escalated: max_runs 3 per 1h",
        "1970-01-01T00:07:00Z  alert EngineDown{severity=\"critical\", target=\"primary\"} resolved",
        "  runs: 3",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Re-send suppressions are counted, not listed.
    assert!(
        !text.contains("00:05:00Z  run failover suppressed"),
        "{text}"
    );

    let json = render_json(&r);
    let events = json["events"].as_array().unwrap();
    let started = events
        .iter()
        .find(|e| e["kind"] == "run" && e["decision"] == "started")
        .unwrap();
    assert_eq!(started["at"], "1970-01-01T00:04:00.300Z");
    assert_eq!(started["steps"], 2);
    assert_eq!(started["runbook"], "failover");
    assert_eq!(json["summary"][0]["runs"], 3);
}

#[tokio::test]
async fn one_runbook_and_a_run_that_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = setup(dir.path());
    // `--runbook failover`: alerts that trigger nothing of it (QueueStuck, the
    // standby's EngineDown) are not shown.
    let r = replay_series(
        dir.path(),
        &loaded,
        Options {
            start_ms: 0,
            end_ms: 44 * MIN,
            runbook: Some("failover".into()),
            ..Options::default()
        },
    )
    .await;
    assert!(alerts(&r, "QueueStuck").is_empty());
    assert_eq!(alerts(&r, "EngineDown").len(), 10);
    let r = replay_series(
        dir.path(),
        &loaded,
        Options {
            start_ms: 0,
            end_ms: 44 * MIN,
            runbook: Some("nothing-else".into()),
            ..Options::default()
        },
    )
    .await;
    assert!(r.events.is_empty() && r.summary.is_empty());

    // A run taken to last 10 minutes, `concurrency: skip`, no cooldown: the
    // firing at 10m finds it active; the one at 15m starts.
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "alerts/rules.yaml", RULES);
    write(
        other.path(),
        "runbooks/failover.yaml",
        "name: failover\ntriggers:\n  - alert: EngineDown\n    labels: {target: primary}\nguards:\n  concurrency: skip\nsteps:\n  - id: fence\n    sleep: 1ms\n",
    );
    let loaded = load(
        Config::default(),
        &[other.path().join("runbooks")],
        &[other.path().join("alerts")],
    )
    .unwrap();
    let r = replay_series(
        other.path(),
        &loaded,
        Options {
            start_ms: 0,
            end_ms: 44 * MIN,
            run_duration: Duration::from_secs(600),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(
        decisions(&r),
        vec![
            (4 * MIN + OFF, "started"),
            (10 * MIN + OFF, "active"),
            (15 * MIN + OFF, "started"),
            (27 * MIN + OFF, "started"),
            (40 * MIN + OFF, "started"),
        ]
    );
}

#[test]
fn an_openmetrics_dump_of_scrapes_ends_series_that_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let keep = history::Keep::new(["job:up:sum".to_string()]);
    let dump = write(
        dir.path(),
        "dump.om",
        "# TYPE engine_up gauge\nengine_up{target=\"a\"} 1 10.000\nengine_up{target=\"b\"} 1 10.000\nALERTS{alertname=\"X\"} 1 10.000\n# EOF\n\
         # TYPE engine_up gauge\nengine_up{target=\"a\"} 0 11.000\n# EOF\n",
    );
    let h = history::openmetrics_file(&dump, &keep).unwrap();
    assert_eq!((h.first_ms, h.last_ms), (Some(10_000), Some(11_000)));
    // ALERTS is recomputed by the replay, never loaded; b got a staleness marker.
    assert_eq!(h.series, 2);
    assert_eq!(h.samples, 3);
    let ev = sluice_promql::Evaluator::default();
    let expr = sluice_promql::parse("engine_up").unwrap();
    let v = ev.instant(h.storage.as_ref(), &expr, 12_000).unwrap();
    let sluice_promql::Value::Vector(v) = v else {
        panic!()
    };
    assert_eq!(v.len(), 1, "{v:?}");

    // A sample without a timestamp is an input error at its line.
    let bad = write(
        dir.path(),
        "bad.om",
        "# TYPE m gauge\nm 1 10\n# EOF\n# TYPE m gauge\nm 2\n# EOF\n",
    );
    let d = history::openmetrics_file(&bad, &keep).err().unwrap();
    assert_eq!((d.line, d.column), (5, 1), "{d}");
    // A text-format dump: timestamps in milliseconds.
    let text = write(
        dir.path(),
        "dump.prom",
        "m{a=\"1\"} 1 1000\nm{a=\"1\"} 2 2000\n",
    );
    let h = history::openmetrics_file(&text, &keep).unwrap();
    assert_eq!(
        (h.first_ms, h.last_ms, h.samples),
        (Some(1000), Some(2000), 2)
    );
    // A broken series file line is reported with its line and column.
    let series = write(dir.path(), "bad.series", "load 1m\n    m{a=\"1\"} 1 2 x\n");
    let d = history::series_file(&series, 0, &keep).err().unwrap();
    assert_eq!((d.line, d.column), (2, 5), "{d}");
}

#[test]
fn selectors_are_the_raw_series_the_rules_read() {
    let mut out = BTreeMap::new();
    let mut longest = Duration::ZERO;
    let e = sluice_promql::parse(
        "rate(a_total{job=\"x\"}[5m] offset 1m) > 0 and on() max_over_time(b[10m:1m]) and c",
    )
    .unwrap();
    history::selectors(&e, &mut out, &mut longest);
    assert_eq!(
        out.into_keys().collect::<Vec<_>>(),
        ["a_total{job=\"x\"}", "b", "c"]
    );
    assert_eq!(longest, Duration::from_secs(600));
}
