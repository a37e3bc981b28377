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
