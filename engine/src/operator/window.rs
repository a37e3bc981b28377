//! Event-time window assignment for TUMBLE and HOP.

use crate::sql::WindowKind;

/// The starts of every window containing event time `ts` (ms), oldest first.
pub fn window_starts(kind: WindowKind, ts: i64) -> impl Iterator<Item = i64> {
    let (slide, size) = match kind {
        WindowKind::Tumble { size_ms } => (size_ms, size_ms),
        WindowKind::Hop { slide_ms, size_ms } => (slide_ms, size_ms),
    };
    let last = ts - ts.rem_euclid(slide);
    let count = size / slide;
    (0..count).rev().map(move |i| last - i * slide)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_assigns_one_aligned_window() {
        let k = WindowKind::Tumble { size_ms: 60_000 };
        assert_eq!(window_starts(k, 125_000).collect::<Vec<_>>(), vec![120_000]);
        assert_eq!(window_starts(k, 120_000).collect::<Vec<_>>(), vec![120_000]);
        assert_eq!(window_starts(k, -1).collect::<Vec<_>>(), vec![-60_000]);
    }

    #[test]
    fn hop_assigns_every_overlapping_window() {
        let k = WindowKind::Hop {
            slide_ms: 10_000,
            size_ms: 30_000,
        };
        assert_eq!(
            window_starts(k, 25_000).collect::<Vec<_>>(),
            vec![0, 10_000, 20_000]
        );
        for s in window_starts(k, 25_000) {
            assert!(s <= 25_000 && 25_000 < s + 30_000);
        }
    }
}
