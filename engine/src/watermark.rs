//! Event-time watermarks with bounded out-of-orderness: the watermark is the
//! largest event time seen minus the allowed lateness, and never goes back.

/// Watermark of one source.
#[derive(Debug, Clone)]
pub struct Watermark {
    out_of_orderness_ms: i64,
    max_event_ms: Option<i64>,
    /// Extra advance from idleness or drain (wall-clock driven).
    forced_ms: Option<i64>,
}

impl Watermark {
    pub fn new(out_of_orderness_ms: u64) -> Self {
        Self {
            out_of_orderness_ms: out_of_orderness_ms.min(i64::MAX as u64) as i64,
            max_event_ms: None,
            forced_ms: None,
        }
    }

    /// Records an event time.
    #[inline]
    pub fn observe(&mut self, event_ms: i64) {
        if self.max_event_ms.is_none_or(|m| event_ms > m) {
            self.max_event_ms = Some(event_ms);
        }
    }

    /// The current watermark, `None` before the first record.
    #[inline]
    pub fn current(&self) -> Option<i64> {
        let from_events = self
            .max_event_ms
            .map(|m| m.saturating_sub(self.out_of_orderness_ms));
        match (from_events, self.forced_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the watermark to at least `to_ms` (idle sources, drain).
    pub fn advance_to(&mut self, to_ms: i64) {
        if self.forced_ms.is_none_or(|f| to_ms > f) {
            self.forced_ms = Some(to_ms);
        }
    }

    /// Largest event time seen.
    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// Seconds between the newest event and the watermark (lag of event time).
    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        match self.current() {
            Some(w) => (now_ms.saturating_sub(w)).max(0) as f64 / 1000.0,
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_max_event_time_and_never_regresses() {
        let mut w = Watermark::new(5_000);
        assert_eq!(w.current(), None);
        w.observe(10_000);
        assert_eq!(w.current(), Some(5_000));
        w.observe(8_000);
        assert_eq!(w.current(), Some(5_000));
        w.observe(20_000);
        assert_eq!(w.current(), Some(15_000));
        w.advance_to(12_000);
        assert_eq!(w.current(), Some(15_000));
        w.advance_to(30_000);
        assert_eq!(w.current(), Some(30_000));
    }
}
