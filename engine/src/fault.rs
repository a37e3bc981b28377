//! Fault injection, present only with `--enable-fault-injection`: make the
//! sink fail, slow processing down, hold memory, so remediation runbooks can
//! be tested end to end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Active faults.
#[derive(Debug, Default)]
pub struct FaultInjector {
    /// Remaining sink deliveries that fail.
    sink_fail_count: AtomicU64,
    /// Fraction (0..=1) of sink deliveries that fail, in millionths.
    sink_fail_rate_ppm: AtomicU64,
    /// Delay per processed record, microseconds.
    delay_us: AtomicU64,
    ballast: Mutex<Vec<Vec<u8>>>,
    counter: AtomicU64,
}

/// Body of `POST /admin/fault-injection` (every field optional).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Fail the next N sink deliveries.
    pub sink_failures: Option<u64>,
    /// Fail this fraction (0..=1) of sink deliveries until changed.
    pub sink_failure_rate: Option<f64>,
    /// Add this many milliseconds of delay per processed record.
    pub processing_delay_ms: Option<f64>,
    /// Hold this many MiB of memory (0 releases it).
    pub memory_ballast_mb: Option<u64>,
}

/// Current fault settings.
#[derive(Debug, Serialize)]
pub struct FaultStatus {
    pub sink_failures_remaining: u64,
    pub sink_failure_rate: f64,
    pub processing_delay_ms: f64,
    pub memory_ballast_bytes: u64,
}

impl FaultInjector {
    pub fn apply(&self, r: &FaultRequest) -> Result<(), String> {
        if let Some(rate) = r.sink_failure_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err("sink_failure_rate must be within 0..=1".into());
        }
        if r.memory_ballast_mb.is_some_and(|mb| mb > 16 * 1024) {
            return Err("memory_ballast_mb is limited to 16384".into());
        }
        if let Some(n) = r.sink_failures {
            self.sink_fail_count.store(n, Relaxed);
        }
        if let Some(rate) = r.sink_failure_rate {
            self.sink_fail_rate_ppm.store((rate * 1e6) as u64, Relaxed);
        }
        if let Some(ms) = r.processing_delay_ms {
            self.delay_us.store((ms.max(0.0) * 1000.0) as u64, Relaxed);
        }
        if let Some(mb) = r.memory_ballast_mb {
            let mut b = self.ballast.lock().unwrap_or_else(|p| p.into_inner());
            b.clear();
            for _ in 0..mb {
                // Touch every page so the memory is resident, not just reserved.
                b.push(vec![0xA5; 1 << 20]);
            }
        }
        Ok(())
    }

    pub fn clear(&self) {
        let _ = self.apply(&FaultRequest {
            sink_failures: Some(0),
            sink_failure_rate: Some(0.0),
            processing_delay_ms: Some(0.0),
            memory_ballast_mb: Some(0),
        });
    }

    /// Whether this sink delivery should fail.
    pub fn sink_should_fail(&self) -> bool {
        if self
            .sink_fail_count
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return true;
        }
        let ppm = self.sink_fail_rate_ppm.load(Relaxed);
        if ppm == 0 {
            return false;
        }
        // Deterministic spread: every k-th call fails for rate 1/k.
        let n = self.counter.fetch_add(1, Relaxed);
        (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) % 1_000_000 < ppm
    }

    pub fn delay(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.delay_us.load(Relaxed))
    }

    pub fn ballast_bytes(&self) -> u64 {
        self.ballast
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|v| v.len() as u64)
            .sum()
    }

    pub fn status(&self) -> FaultStatus {
        FaultStatus {
            sink_failures_remaining: self.sink_fail_count.load(Relaxed),
            sink_failure_rate: self.sink_fail_rate_ppm.load(Relaxed) as f64 / 1e6,
            processing_delay_ms: self.delay_us.load(Relaxed) as f64 / 1000.0,
            memory_ballast_bytes: self.ballast_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_count_then_rate() {
        let f = FaultInjector::default();
        f.apply(&FaultRequest {
            sink_failures: Some(2),
            ..Default::default()
        })
        .unwrap();
        assert!(f.sink_should_fail());
        assert!(f.sink_should_fail());
        assert!(!f.sink_should_fail());
        f.apply(&FaultRequest {
            sink_failure_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
        assert!((0..100).all(|_| f.sink_should_fail()));
        f.apply(&FaultRequest {
            sink_failure_rate: Some(0.5),
            ..Default::default()
        })
        .unwrap();
        let fails = (0..10_000).filter(|_| f.sink_should_fail()).count();
        assert!((4000..6000).contains(&fails), "{fails}");
        assert!(
            f.apply(&FaultRequest {
                sink_failure_rate: Some(2.0),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn ballast_holds_and_releases_memory() {
        let f = FaultInjector::default();
        f.apply(&FaultRequest {
            memory_ballast_mb: Some(3),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(f.ballast_bytes(), 3 << 20);
        f.clear();
        assert_eq!(f.ballast_bytes(), 0);
    }
}
