//! Alert identity: the label-set fingerprint Alertmanager computes (FNV-1a 64
//! over sorted names and values with 0xff separators), printed as 16 hex
//! digits. Internal alerts and alerts from the Alertmanager webhook therefore
//! share one fingerprint for the same labels.

use super::LabelSet;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;
const SEPARATOR: u8 = 0xff;

fn add(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The label set's fingerprint as a number.
pub fn fingerprint_u64(labels: &LabelSet) -> u64 {
    if labels.is_empty() {
        return OFFSET;
    }
    let mut h = OFFSET;
    for (k, v) in labels {
        h = add(h, k.as_bytes());
        h = add(h, &[SEPARATOR]);
        h = add(h, v.as_bytes());
        h = add(h, &[SEPARATOR]);
    }
    h
}

/// The label set's fingerprint as Alertmanager prints it.
pub fn fingerprint(labels: &LabelSet) -> String {
    format!("{:016x}", fingerprint_u64(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_every_label_and_not_on_order() {
        let a: LabelSet = [("alertname", "X"), ("job", "e")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let b: LabelSet = [("job", "e"), ("alertname", "X")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let c: LabelSet = [("alertname", "X"), ("job", "f")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a).len(), 16);
        // Separators matter: {a="bc"} differs from {ab="c"}.
        let d: LabelSet = [("a".to_string(), "bc".to_string())].into();
        let e: LabelSet = [("ab".to_string(), "c".to_string())].into();
        assert_ne!(fingerprint(&d), fingerprint(&e));
    }
}
