//! Built-in demo data: orders or trades as JSON at a fixed rate.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use crate::config::{DemoConfig, DemoKind};
use crate::query::now_ms;

/// A small xorshift generator: demo data needs variety, not security.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One demo record and its key.
pub fn record(kind: DemoKind, seq: u64, keys: u32, rng: &mut Rng) -> (String, String) {
    let ts = now_ms();
    match kind {
        DemoKind::Orders => {
            const STATUS: [&str; 5] = ["new", "paid", "shipped", "delivered", "cancelled"];
            const REGION: [&str; 3] = ["eu-west", "us-east", "ap-south"];
            let customer = format!("cust-{:04}", rng.below(keys as u64));
            let rec = format!(
                r#"{{"order_id":{seq},"customer_id":"{customer}","product":"sku-{:03}","quantity":{},"price":{}.{:02},"status":"{}","region":"{}","ts":{ts}}}"#,
                rng.below(200),
                1 + rng.below(9),
                1 + rng.below(250),
                rng.below(100),
                STATUS[rng.below(5) as usize],
                REGION[rng.below(3) as usize],
            );
            (customer, rec)
        }
        DemoKind::Trades => {
            const SYMBOLS: [&str; 8] = [
                "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "ORCL",
            ];
            const VENUE: [&str; 3] = ["XNAS", "XNYS", "BATS"];
            let symbol = if keys as usize <= SYMBOLS.len() {
                SYMBOLS[rng.below(keys as u64) as usize].to_owned()
            } else {
                format!("SYM{:04}", rng.below(keys as u64))
            };
            let rec = format!(
                r#"{{"trade_id":{seq},"symbol":"{symbol}","side":"{}","qty":{},"price":{}.{:02},"venue":"{}","ts":{ts}}}"#,
                if rng.below(2) == 0 { "B" } else { "S" },
                1 + rng.below(1000),
                10 + rng.below(500),
                rng.below(100),
                VENUE[rng.below(3) as usize],
            );
            (symbol, rec)
        }
    }
}

/// Produces demo records until `stop` turns true.
pub async fn run(
    cfg: DemoConfig,
    brokers: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?;
    let rate = cfg.rate_per_second.value.max(1) as u64;
    // Send in small bursts every 20 ms to reach the rate without a timer per record.
    let tick = Duration::from_millis(20);
    let per_tick = (rate as f64 * tick.as_secs_f64()).max(0.0);
    let mut carry = 0.0;
    let mut seq = 0u64;
    let mut rng = Rng::new(0x5eed ^ now_ms() as u64);
    let mut interval = tokio::time::interval(tick);
    tracing::info!(topic = %cfg.topic, rate, "Demo generator started.");
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
        carry += per_tick;
        while carry >= 1.0 {
            carry -= 1.0;
            seq += 1;
            let (key, payload) = record(cfg.kind, seq, cfg.keys, &mut rng);
            let rec = FutureRecord::to(&cfg.topic).key(&key).payload(&payload);
            if let Err((error, _)) = producer.send_result(rec) {
                tracing::debug!(%error, "Demo generator queue full; skipping a record.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_records_are_json_with_event_time() {
        let mut rng = Rng::new(7);
        for kind in [DemoKind::Orders, DemoKind::Trades] {
            let (key, rec) = record(kind, 1, 10, &mut rng);
            let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
            assert!(v["ts"].as_i64().unwrap() > 1_600_000_000_000);
            assert!(!key.is_empty());
            assert!(rec.len() > 80, "{rec}");
        }
    }
}
