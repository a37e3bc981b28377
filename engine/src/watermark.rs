//! Event-time watermarks with bounded out-of-orderness, tracked per input
//! partition.
//!
//! A partition's event time is the largest event time it has delivered. The
//! watermark is the lowest event time over the *active* partitions (assigned
//! and not idle) minus the allowed out-of-orderness, and never goes back. A
//! partition that is assigned but has not delivered anything yet holds the
//! watermark back until it goes idle: after a restart the consumer re-reads
//! every partition from its committed offset, and one partition's fetch
//! running ahead must not turn the other partitions' re-read records into
//! late data (that would lose their effect). A partition with no record for
//! `partition_idle_ms` stops holding the watermark back.
//!
//! Two values are kept: the *event-time* watermark, derived from records
//! only, decides whether a record is late; the watermark that closes windows
//! may also be advanced by the wall clock (idle sources, cleanup). A record
//! whose window was closed early that way is not late by event time: it
//! yields an update of that window instead of being dropped.

/// Event time of one input partition.
#[derive(Debug, Clone)]
struct PartitionTime {
    partition: i32,
    max_event_ms: Option<i64>,
    last_wall_ms: i64,
    idle: bool,
}

/// Watermark of one query's source.
#[derive(Debug, Clone)]
pub struct Watermark {
    out_of_orderness_ms: i64,
    /// Wall-clock milliseconds without a record after which a partition is idle; 0 = never.
    partition_idle_ms: i64,
    parts: Vec<PartitionTime>,
    max_event_ms: Option<i64>,
    /// Extra advance from idleness or drain (wall-clock driven).
    forced_ms: Option<i64>,
    /// From events only; never goes back.
    events: Option<i64>,
    /// max(events, forced); never goes back.
    current: Option<i64>,
}

/// Partition used for records without one (tests, benchmarks).
const NO_PARTITION: i32 = -1;

impl Watermark {
    pub fn new(out_of_orderness_ms: u64) -> Self {
        Self {
            out_of_orderness_ms: out_of_orderness_ms.min(i64::MAX as u64) as i64,
            partition_idle_ms: 0,
            parts: Vec::new(),
            max_event_ms: None,
            forced_ms: None,
            events: None,
            current: None,
        }
    }

    /// Sets after how long without a record a partition stops holding the watermark back.
    pub fn with_partition_idle_ms(mut self, ms: u64) -> Self {
        self.partition_idle_ms = ms.min(i64::MAX as u64) as i64;
        self
    }

    /// Records an event time delivered by `partition` at wall-clock `wall_ms`.
    #[inline]
    pub fn observe(&mut self, partition: Option<i32>, event_ms: i64, wall_ms: i64) {
        if self.max_event_ms.is_none_or(|m| event_ms > m) {
            self.max_event_ms = Some(event_ms);
        }
        let partition = partition.unwrap_or(NO_PARTITION);
        let i = match self.parts.iter().position(|p| p.partition == partition) {
            Some(i) => i,
            None => {
                self.parts.push(PartitionTime {
                    partition,
                    max_event_ms: None,
                    last_wall_ms: wall_ms,
                    idle: false,
                });
                self.parts.len() - 1
            }
        };
        let p = &mut self.parts[i];
        p.last_wall_ms = wall_ms;
        let was_idle = std::mem::replace(&mut p.idle, false);
        if p.max_event_ms.is_none_or(|m| event_ms > m) || was_idle {
            p.max_event_ms = Some(p.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
            self.recompute();
        }
    }

    /// The partitions assigned now: new ones hold the watermark back until
    /// they deliver or go idle; ones no longer assigned stop counting.
    pub fn set_partitions(&mut self, partitions: &[i32], wall_ms: i64) {
        self.parts
            .retain(|p| partitions.contains(&p.partition) || p.partition == NO_PARTITION);
        for &partition in partitions {
            if !self.parts.iter().any(|p| p.partition == partition) {
                self.parts.push(PartitionTime {
                    partition,
                    max_event_ms: None,
                    last_wall_ms: wall_ms,
                    idle: false,
                });
            }
        }
        self.recompute();
    }

    /// Marks partitions idle that delivered nothing for `partition_idle_ms`.
    pub fn tick(&mut self, wall_ms: i64) {
        if self.partition_idle_ms == 0 {
            return;
        }
        let mut changed = false;
        for p in &mut self.parts {
            if !p.idle && wall_ms.saturating_sub(p.last_wall_ms) >= self.partition_idle_ms {
                p.idle = true;
                changed = true;
            }
        }
        if changed {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        let mut active = self.parts.iter().filter(|p| !p.idle).peekable();
        let event_time = if active.peek().is_none() {
            // No partitions known, or all idle: follow the newest event.
            self.max_event_ms
        } else {
            active
                .map(|p| p.max_event_ms)
                .try_fold(i64::MAX, |lo, m| m.map(|m| lo.min(m)))
        };
        let from_events = event_time.map(|t| t.saturating_sub(self.out_of_orderness_ms));
        if let Some(e) = from_events
            && self.events.is_none_or(|cur| e > cur)
        {
            self.events = Some(e);
        }
        let candidate = match (self.events, self.forced_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(c) = candidate
            && self.current.is_none_or(|cur| c > cur)
        {
            self.current = Some(c);
        }
    }

    /// The watermark that closes windows, `None` before the first record.
    #[inline]
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// The watermark from event times alone: records behind it are late.
    #[inline]
    pub fn event_time(&self) -> Option<i64> {
        self.events
    }

    /// Moves the watermark to at least `to_ms` (idle sources, drain).
    pub fn advance_to(&mut self, to_ms: i64) {
        if self.forced_ms.is_none_or(|f| to_ms > f) {
            self.forced_ms = Some(to_ms);
            self.recompute();
        }
    }

    /// Largest event time seen.
    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// Largest event time per partition (state export).
    pub fn partition_event_ms(&self) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self
            .parts
            .iter()
            .filter_map(|p| p.max_event_ms.map(|m| (p.partition, m)))
            .collect();
        v.sort();
        v
    }

    /// Forgets every event time (before a state import).
    pub fn reset(&mut self) {
        self.parts.clear();
        self.max_event_ms = None;
        self.forced_ms = None;
        self.events = None;
        self.current = None;
    }

    /// Restores exported event times (state import) at wall-clock `wall_ms`.
    pub fn restore(&mut self, max_event_ms: Option<i64>, partitions: &[(i32, i64)], wall_ms: i64) {
        for &(partition, event_ms) in partitions {
            match self.parts.iter_mut().find(|p| p.partition == partition) {
                Some(p) => {
                    p.max_event_ms = Some(p.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
                    p.last_wall_ms = wall_ms;
                    p.idle = false;
                }
                None => self.parts.push(PartitionTime {
                    partition,
                    max_event_ms: Some(event_ms),
                    last_wall_ms: wall_ms,
                    idle: false,
                }),
            }
        }
        if let Some(m) = max_event_ms
            && self.max_event_ms.is_none_or(|cur| m > cur)
        {
            self.max_event_ms = Some(m);
        }
        self.recompute();
    }

    /// Seconds between the wall clock and the watermark.
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
        w.observe(None, 10_000, 0);
        assert_eq!(w.current(), Some(5_000));
        w.observe(None, 8_000, 0);
        assert_eq!(w.current(), Some(5_000));
        w.observe(None, 20_000, 0);
        assert_eq!(w.current(), Some(15_000));
        w.advance_to(12_000);
        assert_eq!(w.current(), Some(15_000));
        w.advance_to(30_000);
        assert_eq!(w.current(), Some(30_000));
        assert_eq!(
            w.event_time(),
            Some(15_000),
            "a forced advance is not event time"
        );
    }

    #[test]
    fn the_slowest_active_partition_sets_the_watermark() {
        let mut w = Watermark::new(1_000).with_partition_idle_ms(10_000);
        w.set_partitions(&[0, 1], 0);
        // Partition 0 runs far ahead (a re-read after restart): partition 1 has
        // not delivered yet, so nothing may close.
        w.observe(Some(0), 60_000, 0);
        assert_eq!(w.current(), None);
        w.observe(Some(1), 5_000, 1);
        assert_eq!(w.current(), Some(4_000));
        w.observe(Some(1), 30_000, 2);
        assert_eq!(w.current(), Some(29_000));
        // Partition 1 falls silent: after the idle time only partition 0 counts.
        w.observe(Some(0), 61_000, 9_000);
        w.tick(10_001);
        assert_eq!(w.current(), Some(29_000), "partition 1 still counts");
        w.tick(12_002);
        assert_eq!(w.current(), Some(60_000));
        // A record on the idle partition makes it active again; the watermark never regresses.
        w.observe(Some(1), 31_000, 12_003);
        assert_eq!(w.current(), Some(60_000));
    }

    #[test]
    fn unassigned_partitions_stop_counting_and_all_idle_follows_the_newest() {
        let mut w = Watermark::new(0).with_partition_idle_ms(100);
        w.set_partitions(&[0, 1, 2], 0);
        w.observe(Some(0), 1_000, 0);
        w.observe(Some(1), 2_000, 0);
        assert_eq!(w.current(), None, "partition 2 has not delivered");
        w.set_partitions(&[0, 1], 10);
        assert_eq!(w.current(), Some(1_000));
        w.tick(200);
        assert_eq!(w.current(), Some(2_000), "all idle: the newest event");
        assert_eq!(w.partition_event_ms(), vec![(0, 1_000), (1, 2_000)]);
    }

    #[test]
    fn restore_brings_back_event_times() {
        let mut w = Watermark::new(500);
        w.restore(Some(9_000), &[(0, 9_000), (1, 7_000)], 0);
        assert_eq!(w.current(), Some(6_500));
        assert_eq!(w.max_event_ms(), Some(9_000));
    }
}
