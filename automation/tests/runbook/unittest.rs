//! `sluice test`: runbook tests pass on a runbook and fail, with the place
//! and a diff, on a mutant of it; nothing a mocked step would do happens.

use std::path::Path;

use sluice_automation::cli::ExitCode;
use sluice_automation::runbook::unittest::run_paths;

use super::harness::tempdir;

const RUNBOOK: &str = r#"
name: mutant-check
params:
  dir: {default: /tmp/never-touched}
steps:
  - id: probe
    http: {url: "http://127.0.0.1:1/health"}
    retry: {attempts: 3, backoff: 1s}
  - id: wipe
    if: '{{eq steps.probe.output.status 503}}'
    exec: {argv: [rm, -rf, "{{params.dir}}"]}
  - id: tell
    notify: {channels: [ops], text: "probe said {{steps.probe.output.status}}"}
"#;

const TESTS: &str = r#"
runbook: runbook.yaml
cases:
  - name: a healthy probe wipes nothing
    mocks:
      - step: probe
        results:
          - {fail: "connection refused"}
          - {output: {status: 200}}
    expect:
      status: succeeded
      steps: [probe, tell]
      skipped: [wipe]
      attempts: {probe: 2}
      notifications:
        - {channel: ops, contains: "probe said 200"}
  - name: a failing probe wipes the directory
    params: {dir: /srv/cache}
    mocks:
      - {step: probe, output: {status: 503}}
      - {step: wipe, output: {exit_code: 0}}
    expect:
      steps: [probe, wipe, tell]
      inputs:
        wipe: {argv: [rm, -rf, /srv/cache]}
  - name: an unmocked step fails the case, never runs
    mocks:
      - {step: probe, output: {status: 503}}
    expect:
      status: failed
      failed_step: wipe
      error_contains: "no mock for step `wipe`"
"#;

async fn run(dir: &Path) -> (ExitCode, String) {
    let mut out = Vec::new();
    let code = run_paths(&[dir.join("tests.yaml")], &mut out)
        .await
        .unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn runbook_tests_pass_and_a_mutant_fails_with_the_place_and_a_diff() {
    let dir = tempdir();
    std::fs::write(dir.path().join("runbook.yaml"), RUNBOOK).unwrap();
    std::fs::write(dir.path().join("tests.yaml"), TESTS).unwrap();
    let (code, text) = run(dir.path()).await;
    assert_eq!(code, ExitCode::Success, "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");

    // The condition flipped: the healthy probe now wipes.
    std::fs::write(
        dir.path().join("runbook.yaml"),
        RUNBOOK.replace("status 503", "status 200"),
    )
    .unwrap();
    let (code, text) = run(dir.path()).await;
    assert_eq!(code, ExitCode::Failed, "{text}");
    assert!(text.contains("FAIL"), "{text}");
    // The failed expectation is named with its line and column.
    assert!(text.contains("tests.yaml:12:14: steps"), "{text}");
    assert!(
        text.contains("expected:") && text.contains("actual:"),
        "{text}"
    );

    // A step removed.
    std::fs::write(
        dir.path().join("runbook.yaml"),
        RUNBOOK.replace("  - id: tell\n    notify: {channels: [ops], text: \"probe said {{steps.probe.output.status}}\"}\n", ""),
    )
    .unwrap();
    let (code, text) = run(dir.path()).await;
    assert_eq!(code, ExitCode::Failed, "{text}");
    assert!(text.contains("notifications"), "{text}");
}
