//! The library hangs together: alerts name runbooks that exist, alert
//! triggers name alerts that exist, every rule has a promtool-format test,
//! every runbook says which seed procedure it implements and is in the docs.

use std::collections::BTreeSet;

use sluice_tests::sluice::repo;

fn alert_rules() -> (String, String) {
    let rules = std::fs::read_to_string(repo().join("alerts/sluice.yaml")).expect("alerts");
    let tests =
        std::fs::read_to_string(repo().join("alerts/tests/sluice_test.yaml")).expect("tests");
    (rules, tests)
}

fn alert_names(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn alerts_and_runbooks_name_each_other_correctly() {
    let (rules, tests) = alert_rules();
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 10, "{alerts:?}");
    for needed in [
        "CircuitBreakerOpen",
        "MemoryExhausted",
        "ProcessingStopped",
        "HighErrorRate",
        "HighProcessingLatency",
        "ResourceWarning",
        "ConsumerLagHigh",
        "BackupStale",
        "EngineDown",
        "DiskFilling",
    ] {
        assert!(alerts.contains(needed), "no alert {needed}");
        assert!(
            tests.contains(&format!("alertname: {needed}")),
            "alert {needed} has no rule test in alerts/tests"
        );
    }
    for line in rules.lines() {
        if let Some(path) = line.trim().strip_prefix("runbook: ") {
            let path = path.trim_matches('"');
            assert!(
                repo().join(path).is_file(),
                "alert annotation names {path}, which does not exist"
            );
        }
    }
    for rb_path in shipped_runbooks() {
        let text = std::fs::read_to_string(rb_path).expect("read");
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix("- alert: ") {
                assert!(
                    alerts.contains(name.trim()),
                    "a runbook triggers on alert {name}, which no rule defines"
                );
            }
        }
    }
}

/// The shipped runbooks: `runbooks/*.yaml` and `runbooks/multi-host/*.yaml`
/// (`runbooks/tests/` holds their tests).
fn shipped_runbooks() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in ["runbooks", "runbooks/multi-host"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("runbooks") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_runbook_names_its_seed_procedure_and_is_documented() {
    let doc = std::fs::read_to_string(repo().join("docs/runbook-library.md")).expect("doc");
    let dir = repo().join("runbooks");
    let mut count = 0;
    for path in shipped_runbooks() {
        let text = std::fs::read_to_string(&path).expect("read");
        let file = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let desc_start = text.find("description:").expect("description");
        assert!(
            text[desc_start..].contains("Seed") || text[desc_start..].contains("seed"),
            "{file}: the description does not name its seed procedure"
        );
        assert!(
            doc.contains(&format!("`{file}`")),
            "{file} is not in docs/runbook-library.md"
        );
        count += 1;
    }
    assert!(count >= 17, "only {count} runbooks");
}
