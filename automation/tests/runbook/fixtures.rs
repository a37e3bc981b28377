//! `testdata/runbooks/<case>.good.yaml` must validate cleanly (together, so
//! `runbook` steps find each other); every `<case>.bad.yaml` must produce
//! exactly the diagnostics listed at its end as `# expect: LINE:COL: message`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sluice_automation::config::Config;
use sluice_automation::runbook::check_str;
use sluice_automation::runbook::validate::Known;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/runbooks")
}

fn files(suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("testdata/runbooks")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn config() -> Config {
    Config::load(&dir().join("sluice.yaml")).expect("fixture config is valid")
}

fn good_names() -> BTreeSet<String> {
    files(".good.yaml")
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            let node = sluice_automation::yaml::parse(&text).ok()?;
            Some(node.get("name")?.as_str()?.to_string())
        })
        .collect()
}

#[test]
fn good_runbooks_are_valid() {
    let config = config();
    let names = good_names();
    let good = files(".good.yaml");
    assert!(good.len() >= 3, "expected good fixtures");
    for path in good {
        let text = std::fs::read_to_string(&path).expect("read");
        let known = Known {
            config: Some(&config),
            runbooks: Some(&names),
            alerts: None,
        };
        let (rb, diags) = check_str(&path, &text, known);
        let rendered: Vec<String> = diags.iter().map(|d| d.render(Some(&text))).collect();
        assert!(
            diags.is_empty(),
            "{}:\n{}",
            path.display(),
            rendered.join("\n")
        );
        assert!(rb.is_some());
    }
}

#[test]
fn bad_runbooks_report_exactly_the_expected_problems() {
    let config = config();
    let names = good_names();
    let bad = files(".bad.yaml");
    assert!(bad.len() >= 15, "expected bad fixtures");
    for path in bad {
        let text = std::fs::read_to_string(&path).expect("read");
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` lines",
            path.display()
        );
        let known = Known {
            config: Some(&config),
            runbooks: Some(&names),
            alerts: None,
        };
        let (rb, diags) = check_str(&path, &text, known);
        assert!(rb.is_none(), "{} decoded as valid", path.display());
        let got: Vec<String> = diags
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(got, expected, "{}", path.display());
        for d in &diags {
            // Every diagnostic names its file and renders the offending line.
            assert_eq!(d.file, path);
            let rendered = d.render(Some(&text));
            assert!(rendered.contains(&format!("{} | ", d.line)), "{rendered}");
        }
    }
}

#[test]
fn validate_command_exits_2_on_bad_and_0_on_good() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let d = dir();
    let good: Vec<PathBuf> = files(".good.yaml");
    let ok = std::process::Command::new(bin)
        .arg("validate")
        .arg(d.join("sluice.yaml"))
        .args(&good)
        .output()
        .expect("run sluice");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = std::process::Command::new(bin)
        .arg("validate")
        .arg(d.join("sluice.yaml"))
        .arg(d.join("unknown_field.bad.yaml"))
        .output()
        .expect("run sluice");
    assert_eq!(bad.status.code(), Some(2));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains("unknown_field.bad.yaml:2:1: unknown field `stpes`, did you mean `steps`?"),
        "{out}"
    );
    assert!(out.contains("2 | stpes: []"), "{out}");
}

/// The `yaml` blocks of docs/runbooks.md's `## Examples` section.
fn doc_examples() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks.md"))
            .expect("docs/runbooks.md");
    let section = doc
        .split("\n## Examples\n")
        .nth(1)
        .expect("an Examples section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn docs_examples_are_valid_and_cover_every_step_kind() {
    let config = config();
    let examples = doc_examples();
    let names: BTreeSet<String> = examples
        .iter()
        .filter_map(|t| {
            let node = sluice_automation::yaml::parse(t).ok()?;
            Some(node.get("name")?.as_str()?.to_string())
        })
        .collect();
    let mut kinds = BTreeSet::new();
    for text in &examples {
        let known = Known {
            config: Some(&config),
            runbooks: Some(&names),
            alerts: None,
        };
        let path = Path::new("docs/runbooks.md");
        let (rb, diags) = check_str(path, text, known);
        let rendered: Vec<String> = diags.iter().map(|d| d.render(Some(text))).collect();
        assert!(
            diags.is_empty(),
            "example:\n{text}\n{}",
            rendered.join("\n")
        );
        for s in rb.expect("valid").all_steps() {
            kinds.insert(s.kind.name.to_string());
        }
    }
    // The typed families (`engine.*`, `process.*`) need one example each.
    let family = |k: &str| {
        ["engine.", "process."]
            .into_iter()
            .find(|f| k.starts_with(f))
    };
    for k in sluice_automation::exec::steps::names() {
        let covered = match family(&k) {
            Some(f) => kinds.iter().any(|x| x.starts_with(f)),
            None => kinds.contains(&k),
        };
        assert!(covered, "docs/runbooks.md has no example of `{k}`");
    }
}
