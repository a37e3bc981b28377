//! Runs every promqltest script under `testdata/`.

use std::path::Path;

#[test]
fn promqltest_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut failures = Vec::new();
    let mut evals = 0;
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let text = std::fs::read_to_string(f).expect("read script");
        match sluice_promql::promqltest::run(name, &text) {
            Ok(n) => evals += n,
            Err(errs) => failures.extend(errs),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(evals > 0);
    eprintln!("{} scripts, {evals} evals passed", files.len());
}

/// Runs scripts from another directory, e.g. Prometheus' own
/// `promql/promqltest/testdata`, to see where semantics still differ:
/// `PROMQLTEST_DIR=/path cargo test -p sluice-promql --test promqltest -- --ignored --nocapture`.
/// Not part of CI: those scripts also cover native histograms and
/// experimental functions this evaluator does not implement.
#[test]
#[ignore = "needs PROMQLTEST_DIR"]
fn external_promqltest_scripts() {
    let Ok(dir) = std::env::var("PROMQLTEST_DIR") else {
        panic!("set PROMQLTEST_DIR to a directory of .test files");
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("PROMQLTEST_DIR")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let text = std::fs::read_to_string(f).expect("read script");
        let opts = sluice_promql::promqltest::Options { lenient: true };
        match sluice_promql::promqltest::run_with(name, &text, opts) {
            Ok(n) => eprintln!("{name}: {n} evals passed"),
            Err(errs) => {
                eprintln!("{name}: {} failures", errs.len());
                for e in errs {
                    eprintln!("  {e}");
                }
            }
        }
    }
}
