//! Alert-rule evaluation benchmark: 100,000 active series scraped every
//! second for 10 minutes, 1,000 alerting-rule-like expressions.
//!
//! `cargo bench -p sluice-promql --bench eval` (set `SERIES`, `MINUTES`,
//! `ROUNDS` to change the size). Prints append throughput, bytes per stored
//! sample and the time of a full evaluation round.

use std::time::{Duration, Instant};

use sluice_promql::{Evaluator, Labels, MemStorage, Value, parse};

/// Deterministic xorshift, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// CPU time of the calling thread: the machine is shared, so wall time
/// alone would measure other people's work too.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SERIES_PER_METRIC: usize = 100;

fn main() {
    if std::env::var("DECODE_ONLY").is_ok() {
        let mut c = sluice_promql::tsdb::ChunkWriter::default();
        let mut v = 1000.0;
        let mut rng = Rng(7);
        for i in 0..240 {
            v += (rng.next() % 20) as f64;
            c.append(1_700_000_000_000 + i * 1000, v);
        }
        let cpu0 = thread_cpu();
        let mut acc = 0.0;
        for _ in 0..20_000 {
            for (t, v) in std::hint::black_box(&c).iter() {
                acc += v + t as f64;
            }
        }
        let cpu = thread_cpu() - cpu0;
        println!(
            "decode: {:.2} ns/sample ({acc})",
            cpu.as_secs_f64() * 1e9 / (20_000.0 * 240.0)
        );
        let cpu0 = thread_cpu();
        let mut x = 0u64;
        for i in 0..100_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let cpu = thread_cpu() - cpu0;
        println!(
            "baseline loop: {:.2} ns/iter ({x})",
            cpu.as_secs_f64() * 1e9 / 1e8
        );
        return;
    }
    let series = env("SERIES", 100_000);
    let minutes = env("MINUTES", 10);
    let rounds = env("ROUNDS", 10);
    let metrics = series / SERIES_PER_METRIC;
    let seconds = minutes * 60;
    println!(
        "# {series} series ({metrics} metrics x {SERIES_PER_METRIC}), 1 s samples for {minutes} min"
    );

    // Half counters (`m<i>_total`, small integer increments), half gauges
    // (integer random walk).
    let labels: Vec<Labels> = (0..series)
        .map(|k| {
            let m = k / SERIES_PER_METRIC;
            let inst = k % SERIES_PER_METRIC;
            let name = if m.is_multiple_of(2) {
                format!("m{m}_total")
            } else {
                format!("m{m}")
            };
            Labels::new([
                ("__name__".to_string(), name),
                ("instance".to_string(), format!("host-{inst}:9100")),
                ("job".to_string(), format!("job-{}", inst % 10)),
            ])
        })
        .collect();
    let db = MemStorage::new(Duration::from_secs(15 * 60));
    let mut values: Vec<f64> = (0..series).map(|k| (k % 100) as f64).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t0: i64 = 1_700_000_000_000;
    let start = Instant::now();
    let cpu0 = thread_cpu();
    for s in 0..seconds {
        let t = t0 + s as i64 * 1000;
        for (k, l) in labels.iter().enumerate() {
            let r = rng.next();
            if (k / SERIES_PER_METRIC).is_multiple_of(2) {
                values[k] += (r % 20) as f64;
            } else {
                values[k] += (r % 3) as f64 - 1.0;
            }
            db.append(l, t, values[k]).expect("append");
        }
    }
    let took = start.elapsed();
    let cpu = thread_cpu() - cpu0;
    let appended = series * seconds;
    println!(
        "append: {appended} samples, wall {:.2} s, cpu {:.2} s = {:.2} M samples/s per core",
        took.as_secs_f64(),
        cpu.as_secs_f64(),
        appended as f64 / cpu.as_secs_f64() / 1e6
    );
    let st = db.stats();
    println!(
        "storage: {} series, {} samples, {} bytes = {:.3} bytes/sample (chunk data incl. headers)",
        st.series,
        st.samples,
        st.bytes,
        st.bytes as f64 / st.samples as f64
    );

    // 1,000 rules: 40% threshold on a gauge, 40% rate threshold, 20% sum by rate.
    let rules: Vec<String> = (0..1000)
        .map(|i| {
            let m = (i * 7) % metrics;
            let counter = if m.is_multiple_of(2) {
                m
            } else {
                (m + 1) % metrics
            };
            let gauge = if m % 2 == 1 { m } else { (m + 1) % metrics };
            match i % 5 {
                0 | 1 => format!("m{gauge} > {}", 90 + i % 20),
                2 | 3 => format!("rate(m{counter}_total[5m]) > {}", 9 + i % 3),
                _ => format!("sum by (job) (rate(m{counter}_total[1m]))"),
            }
        })
        .collect();
    let exprs: Vec<_> = rules
        .iter()
        .map(|r| {
            let e = parse(r).expect("rule parses");
            sluice_promql::check_supported(&e).expect("supported");
            e
        })
        .collect();
    let ev = Evaluator::default();
    let now = t0 + (seconds as i64 - 1) * 1000;
    let mut times = Vec::new();
    let mut walls = Vec::new();
    let mut out_samples = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let cpu0 = thread_cpu();
        out_samples = 0;
        for e in &exprs {
            match ev.instant(&db, e, now).expect("evaluates") {
                Value::Vector(v) => out_samples += v.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        times.push(thread_cpu() - cpu0);
        walls.push(start.elapsed());
    }
    times.sort();
    walls.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "eval round: 1000 rules, {out_samples} result samples: cpu min {:.1} ms, median {:.1} ms, max {:.1} ms; wall median {:.1} ms ({rounds} rounds, one thread)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(walls[walls.len() / 2])
    );
    // The same round on two threads (rules split in halves), wall time.
    let mut par = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        std::thread::scope(|sc| {
            for half in exprs.chunks(exprs.len().div_ceil(2)) {
                let (ev, db) = (&ev, &db);
                sc.spawn(move || {
                    for e in half {
                        let _ = ev.instant(db, e, now).expect("evaluates");
                    }
                });
            }
        });
        par.push(start.elapsed());
    }
    par.sort();
    println!(
        "eval round on 2 threads: wall min {:.1} ms, median {:.1} ms",
        ms(par[0]),
        ms(par[par.len() / 2])
    );
    // Storage alone: the 5m windows of one counter metric.
    let m = promql_parser::label::Matcher::new(
        promql_parser::label::MatchOp::Equal,
        "__name__",
        "m0_total",
    );
    let cpu0 = thread_cpu();
    let mut pts = 0;
    for _ in 0..100 {
        for s in sluice_promql::Queryable::select(&db, std::slice::from_ref(&m), now - 299_999, now)
        {
            pts += s.points.len();
        }
    }
    let cpu = thread_cpu() - cpu0;
    println!(
        "  select 5m window: {:.1} µs cpu per 100 series, {:.1} ns per returned sample",
        cpu.as_secs_f64() * 1e6 / 100.0,
        cpu.as_secs_f64() * 1e9 / pts as f64
    );
    for (kind, pick) in [
        ("gauge > x", 0usize),
        ("rate[5m] > x", 2),
        ("sum by (rate[1m])", 4),
    ] {
        let sel: Vec<_> = exprs.iter().skip(pick).step_by(5).collect();
        let cpu0 = thread_cpu();
        for e in &sel {
            let _ = ev.instant(&db, e, now).expect("evaluates");
        }
        println!(
            "  {kind}: {:.1} µs cpu per rule",
            (thread_cpu() - cpu0).as_secs_f64() * 1e6 / sel.len() as f64
        );
    }
}
