//! Conformance: every promtool-format rule test here must pass with the real
//! `promtool test rules` (so expected values come from Prometheus itself) and
//! with `sluice rules test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_automation::rules::unittest::{FileOutcome, run_file};

fn promtool() -> PathBuf {
    let bin = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match Command::new(&bin).arg("--version").output() {
        Ok(o) if o.status.success() => bin,
        _ => panic!(
            "promtool not found ({}): install the Debian package `prometheus` (see .ci/install) or set PROMTOOL",
            bin.display()
        ),
    }
}

fn test_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("testdata/rules/conformance"),
        root.join("../alerts/tests"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with("_test.yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 3,
        "expected conformance files, found {files:?}"
    );
    files
}

#[test]
fn promtool_and_sluice_agree_on_every_rule_test() {
    let promtool = promtool();
    for f in test_files() {
        let out = Command::new(&promtool)
            .args(["test", "rules"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool rejects {}:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            run_file(&f),
            FileOutcome::Passed,
            "sluice rules test {}",
            f.display()
        );
    }
}

#[test]
fn a_wrong_expectation_fails_in_both() {
    // Same test as the shipped one with one expected annotation changed.
    let dir = std::env::temp_dir().join(format!("sluice-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rules/conformance");
    std::fs::copy(
        root.join("lifecycle.rules.yaml"),
        dir.join("lifecycle.rules.yaml"),
    )
    .unwrap();
    let test = std::fs::read_to_string(root.join("lifecycle_test.yaml")).unwrap();
    let broken = test.replacen(
        "summary: \"value 35 on h1:9090\"",
        "summary: \"value 36 on h1:9090\"",
        1,
    );
    assert_ne!(test, broken);
    let f = dir.join("broken_test.yaml");
    std::fs::write(&f, broken).unwrap();
    let out = Command::new(promtool())
        .args(["test", "rules"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success(), "promtool should fail");
    match run_file(&f) {
        FileOutcome::Failed(errs) => {
            assert_eq!(errs.len(), 1, "{errs:#?}");
            assert!(
                errs[0].contains("alertname: Pending2m, time: 3m"),
                "{}",
                errs[0]
            );
            assert!(
                errs[0].contains("value 36 on h1:9090") && errs[0].contains("value 35 on h1:9090")
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}
