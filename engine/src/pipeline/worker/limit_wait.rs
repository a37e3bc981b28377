//! Records that hit a resource limit under `on_limit: pause`. They are kept,
//! in order per query, and retried once the query has room again; until
//! then intake is paused and no offset at or above the oldest of them is
//! committed, so pausing loses nothing (even if the engine dies meanwhile).

use std::collections::VecDeque;

#[derive(Debug)]
struct Waiting {
    slot: usize,
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
}

/// The waiting records of one worker.
#[derive(Debug, Default)]
pub(super) struct LimitWait {
    records: VecDeque<Waiting>,
}

impl LimitWait {
    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether query `slot` has a record waiting (later input must queue behind it).
    pub(super) fn holds_slot(&self, slot: usize) -> bool {
        self.records.iter().any(|w| w.slot == slot)
    }

    pub(super) fn push(
        &mut self,
        slot: usize,
        tp: &(String, i32),
        offset: i64,
        payload: &[u8],
        key: Option<&[u8]>,
    ) {
        self.records.push_back(Waiting {
            slot,
            topic: tp.0.clone(),
            partition: tp.1,
            offset,
            payload: payload.to_vec(),
            key: key.map(<[u8]>::to_vec),
        });
    }

    /// Lowest waiting offset of a partition.
    pub(super) fn oldest(&self, topic: &str, partition: i32) -> Option<i64> {
        self.records
            .iter()
            .filter(|w| w.partition == partition && w.topic == topic)
            .map(|w| w.offset)
            .min()
    }

    /// Offers the waiting records, oldest first, to `process(slot, payload,
    /// key, (partition, offset))`, which answers whether the record went in.
    /// A query's first refusal stops its later records from being offered.
    pub(super) fn retry(
        &mut self,
        mut process: impl FnMut(usize, &[u8], Option<&[u8]>, (i32, i64)) -> bool,
    ) {
        let mut blocked: Vec<usize> = Vec::new();
        self.records.retain(|w| {
            if blocked.contains(&w.slot) {
                return true;
            }
            if process(
                w.slot,
                &w.payload,
                w.key.as_deref(),
                (w.partition, w.offset),
            ) {
                false
            } else {
                blocked.push(w.slot);
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_in_order_per_query_and_holds_the_oldest_offset() {
        let mut w = LimitWait::default();
        let tp = ("in".to_owned(), 0);
        w.push(0, &tp, 5, b"a", None);
        w.push(1, &tp, 6, b"b", None);
        w.push(0, &tp, 7, b"c", Some(b"k"));
        assert!(w.holds_slot(0) && w.holds_slot(1) && !w.holds_slot(2));
        assert_eq!(w.oldest("in", 0), Some(5));
        assert_eq!(w.oldest("in", 1), None);
        // Query 0 still has no room; query 1 has.
        let mut offered = Vec::new();
        w.retry(|slot, payload, _, (_, off)| {
            offered.push((slot, payload.to_vec(), off));
            slot == 1
        });
        assert_eq!(offered, vec![(0, b"a".to_vec(), 5), (1, b"b".to_vec(), 6)]);
        assert_eq!(w.len(), 2);
        let mut keys = Vec::new();
        w.retry(|_, _, key, _| {
            keys.push(key.map(<[u8]>::to_vec));
            true
        });
        assert_eq!(keys, vec![None, Some(b"k".to_vec())]);
        assert!(w.is_empty());
    }
}
