//! `sluice-engine --config-check` as a user runs it: exit codes and messages.

use std::process::Command;

fn check(path: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-engine"))
        .arg("--config-check")
        .arg(path)
        .output()
        .expect("run sluice-engine");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_example_config_exits_zero() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine.example.yaml");
    let (code, stdout, stderr) = check(path);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("ok (2 queries)"), "{stdout}");
}

#[test]
fn invalid_config_exits_one_with_file_line_column_and_field() {
    let dir = std::env::temp_dir().join(format!("sluice-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        "queries:\n  - name: q\n    sql: SELECT a FROM s ORDER BY a\n    source_topic: in\n    sink_topic: out\nadmin:\n  listn: x\n",
    )
    .unwrap();
    let (code, _, stderr) = check(path.to_str().unwrap());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.yaml:7:3: admin.listn: unknown field `listn`"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sql_errors_point_into_the_query() {
    let dir = std::env::temp_dir().join(format!("sluice-check-sql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sql.yaml");
    std::fs::write(&path, "queries:\n  - name: q\n    sql: SELECT a FROM s ORDER BY a\n    source_topic: in\n    sink_topic: out\n").unwrap();
    let (code, _, stderr) = check(path.to_str().unwrap());
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "sql.yaml:3:35: queries[0].sql: ORDER BY is not supported on an unbounded stream"
        ),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_file_exits_one() {
    let (code, _, stderr) = check("/nonexistent/sluice.yaml");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/sluice.yaml: cannot read"),
        "{stderr}"
    );
}
