//! Building a stored series' label set from a scraped sample and its target.

use std::collections::BTreeMap;

use super::parse::ParsedSample;

/// Label pairs sorted by name, `__name__` included.
pub type SeriesLabels = Vec<(String, String)>;

/// Merges target labels (`job`, `instance`, configured extras) into a scraped
/// sample's labels. Without `honor_labels`, a scraped label that collides with
/// a target label is kept as `exported_<name>` (prefix repeated while that name
/// is taken too); with it, the scraped value wins. Empty values are dropped.
pub fn merge(
    sample: &ParsedSample,
    target: &BTreeMap<String, String>,
    honor_labels: bool,
) -> SeriesLabels {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    out.insert("__name__".to_string(), sample.name.clone());
    for (k, v) in &sample.labels {
        out.insert(k.clone(), v.clone());
    }
    for (k, v) in target {
        match out.get(k) {
            Some(existing) if honor_labels && !existing.is_empty() => {}
            Some(existing) if !honor_labels => {
                let existing = existing.clone();
                let mut name = format!("exported_{k}");
                while out.contains_key(&name) || target.contains_key(&name) {
                    name = format!("exported_{name}");
                }
                out.insert(name, existing);
                out.insert(k.clone(), v.clone());
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)]) -> ParsedSample {
        ParsedSample {
            name: "m".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: 1.0,
            timestamp_ms: None,
        }
    }

    fn target() -> BTreeMap<String, String> {
        [("job", "engine"), ("instance", "127.0.0.1:8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get<'a>(l: &'a SeriesLabels, k: &str) -> Option<&'a str> {
        l.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn conflicting_labels_are_exported_unless_honored() {
        let s = sample(&[("job", "batch"), ("exported_job", "x"), ("path", "/")]);
        let l = merge(&s, &target(), false);
        assert_eq!(get(&l, "job"), Some("engine"));
        assert_eq!(get(&l, "exported_job"), Some("x"));
        assert_eq!(get(&l, "exported_exported_job"), Some("batch"));
        assert_eq!(get(&l, "instance"), Some("127.0.0.1:8080"));
        let l = merge(&s, &target(), true);
        assert_eq!(get(&l, "job"), Some("batch"));
        assert_eq!(get(&l, "exported_exported_job"), None);
        assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "sorted: {l:?}");
    }

    #[test]
    fn empty_values_are_dropped() {
        let l = merge(&sample(&[("a", ""), ("b", "1")]), &target(), false);
        assert_eq!(get(&l, "a"), None);
        assert_eq!(get(&l, "__name__"), Some("m"));
    }
}
