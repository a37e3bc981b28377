//! Rule-file fixtures: every `*.good.yaml` is clean; every `*.bad.yaml` lists its
//! expected problems as `# expect: LINE:COL: message` and must produce exactly those.

use std::path::Path;

use sluice_automation::rules::check_rule_file;

fn fixtures(suffix: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no {suffix} fixtures in {}",
        dir.display()
    );
    files
}

#[test]
fn good_rule_files_have_no_problems() {
    for f in fixtures(".good.yaml") {
        let diags = check_rule_file(&f);
        assert!(diags.is_empty(), "{}: {diags:#?}", f.display());
    }
}

#[test]
fn bad_rule_files_report_each_problem_at_its_position() {
    for f in fixtures(".bad.yaml") {
        let text = std::fs::read_to_string(&f).unwrap();
        let expected: Vec<(usize, usize, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let mut parts = e.splitn(3, ':');
                let line = parts.next().unwrap().parse().unwrap();
                let col = parts.next().unwrap().parse().unwrap();
                (line, col, parts.next().unwrap().trim().to_string())
            })
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no # expect lines",
            f.display()
        );
        let diags = check_rule_file(&f);
        let got: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(diags.len(), expected.len(), "{}: got {got:#?}", f.display());
        for (line, col, msg) in &expected {
            assert!(
                diags.iter().any(|d| d.line == *line
                    && d.column == *col
                    && d.message.contains(msg.as_str())),
                "{}: expected {line}:{col}: {msg}\ngot {got:#?}",
                f.display()
            );
        }
    }
}

fn sluice(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn cli_exit_codes_follow_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let good = dir.join("testdata/rules/basic.good.yaml");
    let bad = dir.join("testdata/rules/parse_error.bad.yaml");
    let (code, out) = sluice(&["rules", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: 2 rules found"), "{out}");
    let (code, out) = sluice(&[
        "rules",
        "check",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED:") && out.contains("parse_error.bad.yaml:7:15:"),
        "{out}"
    );

    let shipped = dir.join("../alerts/tests/sluice_test.yaml");
    let (code, out) = sluice(&["rules", "test", shipped.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  SUCCESS"), "{out}");

    let tmp = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let invalid = tmp.join("invalid_test.yaml");
    std::fs::write(&invalid, "rule_files: [missing.yaml]\ntests: []\n").unwrap();
    let (code, out) = sluice(&["rules", "test", invalid.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    let failing = tmp.join("failing_test.yaml");
    std::fs::write(
        &failing,
        format!(
            "rule_files: [{}]\ntests:\n  - input_series: [{{series: 'up{{job=\"sluice-engine\"}}', values: '0x5'}}]\n    alert_rule_test: [{{eval_time: 3m, alertname: EngineDown, exp_alerts: []}}]\n",
            dir.join("../alerts/sluice.yaml").display()
        ),
    )
    .unwrap();
    let (code, out) = sluice(&["rules", "test", failing.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("alertname: EngineDown, time: 3m"), "{out}");
    std::fs::remove_dir_all(&tmp).ok();
}
