//! Golden-file tests: one SQL case per file in `testdata/sql/`.
//!
//! `<case>.sql` is planned; the expected `<case>.out` holds the plan (or the
//! error), then — when `<case>.input.jsonl` exists — what each input line
//! produced and what a final flush produced. Results of one step are sorted
//! (groups leave a window in hash order). `-- option: k=v` lines in the SQL
//! set `out_of_orderness_ms` and `late_data`.
//! Regenerate with `SLUICE_BLESS=1 cargo test -p sluice-engine --test sql_golden`.

use std::fmt::Write as _;
use std::path::Path;

use sluice_engine::config::LateData;
use sluice_engine::query::{OutputBatch, Query, QueryOptions};

fn run_case(sql_path: &Path) -> String {
    let sql = std::fs::read_to_string(sql_path).unwrap();
    let mut opts = QueryOptions::default();
    for line in sql.lines() {
        if let Some(kv) = line.trim().strip_prefix("-- option: ") {
            let (k, v) = kv.split_once('=').expect("option k=v");
            match k {
                "out_of_orderness_ms" => opts.out_of_orderness_ms = v.parse().unwrap(),
                "late_data" => {
                    opts.late_data = if v == "process" {
                        LateData::Process
                    } else {
                        LateData::Drop
                    }
                }
                other => panic!("unknown option {other}"),
            }
        }
    }
    let plan = match sluice_engine::sql::plan(&sql) {
        Ok(p) => p,
        Err(e) => return format!("error: {e}\n"),
    };
    let mut out = plan.to_string();
    let input = sql_path.with_extension("input.jsonl");
    let Ok(input) = std::fs::read_to_string(&input) else {
        return out;
    };
    let mut q = Query::new("golden", plan, opts);
    let mut batch = OutputBatch::default();
    for (i, line) in input.lines().enumerate() {
        batch.clear();
        let res = q.process(line.as_bytes(), None, Some((0, i as i64)), &mut batch);
        let _ = writeln!(
            out,
            "--- input {}{}",
            i + 1,
            match res {
                Ok(_) => String::new(),
                Err(e) => format!(" (error: {e})"),
            }
        );
        let mut texts = batch.texts();
        texts.sort();
        for t in texts {
            let _ = writeln!(out, "{t}");
        }
    }
    batch.clear();
    q.flush(&mut batch);
    let _ = writeln!(out, "--- flush");
    let mut texts = batch.texts();
    texts.sort();
    for t in texts {
        let _ = writeln!(out, "{t}");
    }
    let s = &q.stats;
    let _ = writeln!(
        out,
        "--- stats: in={} filtered_out={} failed={} late_dropped={} late_processed={} results={}",
        s.records_in,
        s.records_filtered_out,
        s.records_failed,
        s.late_dropped,
        s.late_processed,
        s.results_produced
    );
    out
}

#[test]
fn sql_cases_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sql");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 20,
        "expected the SQL cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let got = run_case(path);
        let golden = path.with_extension("out");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("bad_") != got.starts_with("error: ") {
            failures.push(format!(
                "{name}: bad_* cases must fail and others must plan; got:\n{got}"
            ));
        }
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}:\n--- want\n{want}--- got\n{got}")),
            Err(_) => failures.push(format!(
                "{name}: missing {} (run with SLUICE_BLESS=1)",
                golden.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
