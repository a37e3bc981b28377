//! In-process pipeline throughput: ~200-byte JSON records through
//! parse → query → serialize, one thread (so the figure is per core).
//!
//! `cargo bench -p sluice-engine --bench pipeline`

use std::hint::black_box;
use std::time::Instant;

use sluice_engine::query::{OutputBatch, Query, QueryOptions};

const RECORDS: usize = 2_000_000;
const KEYS: usize = 10_000;

/// Orders spread over ~20 minutes of event time, 10k customers.
fn records() -> Vec<Vec<u8>> {
    let statuses = ["shipped", "pending", "delivered", "cancelled", "returned"];
    let regions = ["eu-west-1", "us-east-1", "ap-south-1"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base_ts: u64 = 1_700_000_000_000;
    (0..RECORDS)
        .map(|i| {
            let r = next();
            let rec = format!(
                r#"{{"order_id":{},"customer_id":"cust-{:05}","product":"widget-{:03}","quantity":{},"price":{}.{:02},"status":"{}","region":"{}","channel":"web","ts":{}}}"#,
                1_000_000 + i,
                r % KEYS as u64,
                (r >> 20) % 500,
                1 + (r >> 30) % 9,
                1 + (r >> 34) % 200,
                (r >> 42) % 100,
                statuses[((r >> 50) % 5) as usize],
                regions[((r >> 54) % 3) as usize],
                base_ts + (i as u64 * 600) + (r >> 58) % 500,
            );
            rec.into_bytes()
        })
        .collect()
}

fn bench(name: &str, sql: &str, input: &[Vec<u8>]) -> f64 {
    let plan = sluice_engine::sql::plan(sql).expect("bench SQL plans");
    let mut query = Query::new(
        name,
        plan,
        QueryOptions {
            out_of_orderness_ms: 1_000,
            ..QueryOptions::default()
        },
    );
    let mut out = OutputBatch::default();
    let mut produced = 0usize;
    let mut bytes = 0usize;
    // Warm-up pass over the first 10%.
    for r in &input[..input.len() / 10] {
        let _ = query.process(r, None, None, &mut out);
        out.clear();
    }
    let start = Instant::now();
    for (i, r) in input.iter().enumerate() {
        let _ = black_box(query.process(r, Some(b"k"), Some((0, i as i64)), &mut out));
        if out.records.len() >= 1024 {
            produced += out.records.len();
            bytes += out.buf.len();
            out.clear();
        }
    }
    query.flush(&mut out);
    produced += out.records.len();
    bytes += out.buf.len();
    let secs = start.elapsed().as_secs_f64();
    let rate = input.len() as f64 / secs;
    println!(
        "{name:<34} {:>12.0} rec/s/core  ({} records in {:.3}s, {} results, {:.1} MB out, failed {})",
        rate,
        input.len(),
        secs,
        produced,
        bytes as f64 / 1e6,
        query.stats.records_failed
    );
    rate
}

fn main() {
    let input = records();
    let avg = input.iter().map(Vec::len).sum::<usize>() as f64 / input.len() as f64;
    println!(
        "pipeline bench: {} records, {avg:.0} bytes average, 1 thread",
        input.len()
    );
    let a = bench(
        "(a) filter + projection",
        "SELECT order_id, customer_id, price * quantity AS total, status FROM orders \
         WHERE price > 10 AND status <> 'cancelled'",
        &input,
    );
    bench(
        "(a') filter + projection + UPPER",
        "SELECT order_id, customer_id, price * quantity AS total, UPPER(status) AS status FROM orders \
         WHERE price > 10 AND status <> 'cancelled'",
        &input,
    );
    let b = bench(
        "(b) TUMBLE 1 min GROUP BY 10k keys",
        "SELECT customer_id, window_start, COUNT(*) AS orders, SUM(price * quantity) AS revenue, \
         AVG(price) AS avg_price, MAX(quantity) AS max_qty FROM orders \
         GROUP BY customer_id, TUMBLE(ts, INTERVAL '1' MINUTE)",
        &input,
    );
    bench(
        "(c) HOP 30s/1min GROUP BY 10k keys",
        "SELECT customer_id, COUNT(*) AS orders, SUM(price) AS total FROM orders \
         GROUP BY customer_id, HOP(ts, INTERVAL '30' SECOND, INTERVAL '1' MINUTE)",
        &input,
    );
    println!(
        "bar: (a) >= 1000000 rec/s/core: {}",
        if a >= 1_000_000.0 { "met" } else { "NOT met" }
    );
    println!(
        "bar: (b) >= 700000 rec/s/core: {}",
        if b >= 700_000.0 { "met" } else { "NOT met" }
    );
}
