//! The hostile-input suite: malformed YAML, unknown fields, bad parameters,
//! injection attempts into `shell` and `exec`, hostile backup archives,
//! dangerous cleanup roots and oversized outputs. Each gets a clear error
//! and changes nothing — proved by marker files that must never appear and
//! by snapshots of the file system taken before and after.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value as J, json};
use sha2::Digest;
use sluice_automation::exec::context::Scope;
use sluice_automation::exec::executor::{RunError, RunRequest, RunStatus, execute};
use sluice_automation::exec::steps::restore::{self, Limits};
use sluice_automation::runbook::load_str;
use sluice_automation::runbook::template::Escape;

use crate::harness::{config, no_runs, run, runbook, serve, services, snapshot, tempdir};

/// Payloads that would run `touch MARKER` if they ever reached a shell unquoted.
fn payloads(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("; touch {m}"),
        format!("x; touch {m}; rm -rf {m}.none"),
        format!("| touch {m}"),
        format!("&& touch {m}"),
        format!("\ntouch {m}\n"),
        format!("'; touch {m}; '"),
        format!("\"; touch {m}; \""),
        format!("'$(touch {m})'"),
        format!("\\'; touch {m} #"),
        format!("$'\\x3b' touch {m}"),
        format!("a\r\ntouch {m}"),
        "*".to_string(),
        "~".to_string(),
        "${HOME}".to_string(),
        "-n".to_string(),
        "two  spaces\tand a tab".to_string(),
        "{{secrets.api_key}}".to_string(),
    ]
}

fn sluice() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
}

// ---------------------------------------------------------------- YAML

#[test]
fn malformed_yaml_is_refused_with_its_position() {
    let bomb = {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = if i == 1 {
                "a".to_string()
            } else {
                format!("a{}", i - 1)
            };
            s.push_str(&format!(
                "a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        s.push_str("name: bomb\nsteps: []\n");
        s
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unclosed bracket",
            "name: x\nsteps:\n  - id: a\n    sleep: [1s\n".into(),
            "4:12: unclosed bracket",
        ),
        (
            "tab indentation",
            "name: x\nsteps:\n\t- id: a\n".into(),
            "3:2: tabs disallowed",
        ),
        (
            "duplicate key",
            "name: x\nname: y\nsteps: []\n".into(),
            "2:1: duplicate key `name`",
        ),
        (
            "not a mapping",
            "- a\n- b\n".into(),
            "1:1: a runbook must be a mapping",
        ),
        (
            "two documents",
            "name: x\nsteps: []\n---\nname: y\n".into(),
            "4:1: a file holds one YAML document; a second one starts here",
        ),
        (
            "alias bomb",
            bomb,
            "6:15: the document is too large (too many nodes, e.g. from alias expansion)",
        ),
        (
            "deep nesting",
            format!("name: x\nsteps: {}", "[".repeat(100_000)),
            "the document is nested too deeply",
        ),
        (
            "control bytes",
            "name: x\u{0}\u{7}\nsteps: []\n".into(),
            "1:8: unexpected character",
        ),
        (
            "empty file",
            String::new(),
            "1:1: a runbook must be a mapping",
        ),
    ];
    for (what, text, want) in cases {
        let errs =
            load_str(Path::new("hostile.yaml"), &text).expect_err(&format!("{what}: accepted"));
        let first = format!("{}:{}: {}", errs[0].line, errs[0].column, errs[0].message);
        assert!(first.contains(want), "{what}: {first}");
        assert!(!errs[0].message.trim().is_empty(), "{what}: empty message");
        assert!(errs[0].line >= 1, "{what}: no line: {first}");
    }
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let cases = [
        (
            "name: x\nstpes: []\n",
            "2:1: unknown field `stpes`, did you mean `steps`?",
        ),
        (
            "name: x\nsteps:\n  - id: a\n    sleep: 1s\n    retyr: {attempts: 2}\n",
            "5:5: unknown step kind or field `retyr`, did you mean `retry`?",
        ),
        (
            "name: x\nsteps:\n  - id: a\n    exec: {argv: [true], cmd: x}\n",
            "unknown field `cmd`",
        ),
        (
            "name: x\nsteps:\n  - id: a\n    sleep: 1s\n    retry: {attempts: 2, backof: 1s}\n",
            "unknown field `backof`",
        ),
        (
            "name: x\nparams:\n  p: {typ: int}\nsteps: []\n",
            "unknown field `typ`",
        ),
        (
            "name: x\nguards: {cooldwn: 1m}\nsteps: []\n",
            "unknown field `cooldwn`",
        ),
        (
            "name: x\ntriggers:\n  - alert: A\n    lables: {a: b}\nsteps: []\n",
            "unknown field `lables`",
        ),
        (
            "name: x\nsteps:\n  - id: p\n    parallel:\n      max_concurency: 2\n      steps: [{id: a, sleep: 1s}]\n",
            "unknown field `max_concurency`",
        ),
    ];
    for (text, want) in cases {
        let errs = load_str(Path::new("hostile.yaml"), text).expect_err(text);
        let all: Vec<String> = errs
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect();
        assert!(all.iter().any(|m| m.contains(want)), "{text}\n{all:#?}");
    }
}

/// Runs `sluice run` in `dir` with its own store; returns the exit code and stderr.
fn cli_run(dir: &Path, file: &Path, params: &[&str]) -> (Option<i32>, String) {
    let mut cmd = sluice();
    cmd.current_dir(dir)
        .env(
            "SLUICE_STORE",
            format!("sqlite://{}", dir.join("runs.db").display()),
        )
        .arg("run")
        .arg(file);
    for p in params {
        cmd.arg("--param").arg(p);
    }
    let out = cmd.output().expect("run sluice");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_runbooks_and_parameters_never_start_a_run() {
    let dir = tempdir();
    let marker = dir.path().join("MARKER");
    let m = marker.display();
    let touch = format!("  - id: act\n    exec: {{argv: [touch, {m}]}}\n");
    let cases: Vec<(&str, String, Vec<String>, &str)> = vec![
        (
            "malformed",
            format!("name: x\nsteps:\n{touch}  - [\n"),
            vec![],
            "unclosed",
        ),
        (
            "unknown field",
            format!("name: x\nsteps:\n{touch}    idempotant: true\n"),
            vec![],
            "did you mean `idempotent`?",
        ),
        (
            "shell hazard",
            format!(
                "name: x\nparams:\n  v: {{}}\nsteps:\n{touch}  - id: s\n    shell: {{script: 'echo \"{{{{params.v}}}}\"'}}\n"
            ),
            vec![],
            "not protected by quoting",
        ),
        (
            "missing param",
            format!("name: x\nparams:\n  v: {{required: true}}\nsteps:\n{touch}"),
            vec![],
            "missing required parameter `v`",
        ),
        (
            "unknown param",
            format!("name: x\nparams:\n  v: {{default: a}}\nsteps:\n{touch}"),
            vec!["vv=1".into()],
            "unknown parameter `vv`, did you mean `v`?",
        ),
        (
            "wrong type",
            format!("name: x\nparams:\n  n: {{type: int}}\nsteps:\n{touch}"),
            vec!["n=$(touch x)".into()],
            "parameter `n`: expected an integer",
        ),
        (
            "pattern",
            format!("name: x\nparams:\n  host: {{pattern: '[a-z0-9.-]+'}}\nsteps:\n{touch}"),
            vec![format!("host=db; touch {m}")],
            "does not match",
        ),
        (
            "enum",
            format!("name: x\nparams:\n  a: {{type: enum, values: [up, down]}}\nsteps:\n{touch}"),
            vec!["a=sideways".into()],
            "`sideways` is not one of up, down",
        ),
        (
            "above max",
            format!("name: x\nparams:\n  n: {{type: int, max: 10}}\nsteps:\n{touch}"),
            vec!["n=11".into()],
            "above the maximum 10",
        ),
        (
            "bad --param",
            format!("name: x\nsteps:\n{touch}"),
            vec!["novalue".into()],
            "expected K=V",
        ),
    ];
    for (what, text, params, want) in cases {
        let file = dir.path().join(format!("{}.yaml", what.replace(' ', "_")));
        std::fs::write(&file, &text).unwrap();
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        let (code, stderr) = cli_run(dir.path(), &file, &params);
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(stderr.contains(want), "{what}: {stderr}");
        assert!(!marker.exists(), "{what}: a step ran");
    }
    // No run was recorded by any of them.
    let out = sluice()
        .current_dir(dir.path())
        .env(
            "SLUICE_STORE",
            format!("sqlite://{}", dir.path().join("runs.db").display()),
        )
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let runs: J = serde_json::from_slice(&out.stdout).unwrap_or(J::Null);
    assert_eq!(runs, json!([]), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn invalid_parameters_are_refused_before_anything_is_recorded() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let marker = dir.path().join("MARKER");
    let rb = runbook(&format!(
        "name: p\nparams:\n  n: {{type: int, required: true}}\n  host: {{pattern: '[a-z]+'}}\nsteps:\n  - id: act\n    exec: {{argv: [touch, {}]}}\n",
        marker.display()
    ));
    let req = RunRequest {
        params: [
            ("host".to_string(), json!("a;b")),
            ("extra".to_string(), json!(1)),
        ]
        .into(),
        trigger: "manual".into(),
        who: "test".into(),
        ..RunRequest::default()
    };
    match execute(&sv, rb, req).await {
        Err(RunError::InvalidParams(errors)) => {
            let all = errors.join("\n");
            // Every problem, not just the first.
            assert!(all.contains("unknown parameter `extra`"), "{all}");
            assert!(all.contains("missing required parameter `n`"), "{all}");
            assert!(all.contains("`a;b` does not match `[a-z]+`"), "{all}");
        }
        other => panic!("expected invalid parameters, got {other:?}"),
    }
    assert!(!marker.exists());
    assert!(no_runs(&sv).await);
}

// ---------------------------------------------------------------- shell and exec

#[tokio::test]
async fn injected_values_stay_one_literal_word_in_shell_exec_and_env() {
    let dir = tempdir();
    let marker = dir.path().join("MARKER");
    let out_file = dir.path().join("out");
    let sv = services(config("secrets:\n  api_key: sk-live-123456\n"), dir.path()).await;
    let rb = runbook(&format!(
        r#"
name: inject
params:
  v: {{required: true}}
steps:
  - id: sh
    shell:
      script: |
        printf '%s' {{{{params.v}}}} > {out}
        printf '%s' {{{{params.v}}}}
  - id: argv
    exec: {{argv: [printf, '%s', '{{{{params.v}}}}']}}
  - id: env
    shell: {{script: 'printf %s "$V"', env: {{V: '{{{{params.v}}}}'}}}}
  - id: stdin
    exec: {{argv: [cat], stdin: '{{{{params.v}}}}'}}
"#,
        out = out_file.display()
    ));
    for payload in payloads(&marker) {
        let out = run(&sv, &rb, &[("v", &payload)]).await;
        assert_eq!(
            out.status,
            RunStatus::Succeeded,
            "{payload:?}: {:?}",
            out.error
        );
        assert_eq!(
            std::fs::read_to_string(&out_file).unwrap(),
            payload,
            "shell file"
        );
        for step in ["sh", "argv", "env", "stdin"] {
            assert_eq!(
                out.steps[step]["output"]["stdout"], payload,
                "{step} with {payload:?}"
            );
        }
        assert!(!marker.exists(), "{payload:?} ran a command");
    }
}

#[tokio::test]
async fn a_value_with_a_nul_byte_fails_the_step_cleanly() {
    let dir = tempdir();
    let marker = dir.path().join("MARKER");
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: nul\nparams:\n  v: {{}}\nsteps:\n  - id: a\n    exec: {{argv: [touch, '{}', '{{{{params.v}}}}']}}\n",
        marker.display()
    ));
    let out = run(&sv, &rb, &[("v", "a\0b")]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("cannot start program"),
        "{:?}",
        out.error
    );
    assert!(!marker.exists());
}

/// Scripts where added quotes cannot protect a value are refused at load —
/// and each really is dangerous: rendered and run by `sh`/`bash`, the payload
/// creates the marker.
#[test]
fn scripts_where_quoting_cannot_protect_are_refused() {
    let dir = tempdir();
    let marker = dir.path().join("MARKER");
    let m = marker.display().to_string();
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "sh",
            "echo \"{{params.v}}\"",
            format!("$(touch {m})"),
            "inside quotes",
        ),
        (
            "sh",
            "echo x # {{params.v}}",
            format!("\ntouch {m}\n"),
            "shell comment",
        ),
        (
            "sh",
            "cat <<EOF\n{{params.v}}\nEOF",
            format!("$(touch {m})"),
            "here-document",
        ),
        (
            "sh",
            "cat <<-END\n\t{{params.v}}\n\tEND",
            format!("$(touch {m})"),
            "here-document",
        ),
        (
            "sh",
            "echo $(( {{params.v}} ))",
            format!("$(touch {m})"),
            "arithmetic",
        ),
        (
            "bash",
            "[[ {{params.v}} -eq 0 ]]",
            format!("a[$(touch {m})]"),
            "arithmetic",
        ),
        (
            "sh",
            "echo \\\\{{params.v}}",
            format!(";touch {m};#"),
            "after a backslash",
        ),
    ];
    for (shell, script, payload, want) in &cases {
        let yaml = format!(
            "name: x\nparams:\n  v: {{}}\nsteps:\n  - id: s\n    shell:\n      shell: /bin/{shell}\n      script: |\n{}\n",
            script
                .lines()
                .map(|l| format!("        {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let errs = load_str(Path::new("x.yaml"), &yaml).expect_err(script);
        assert!(
            errs[0].message.contains(want),
            "{script}: {}",
            errs[0].message
        );
        assert_eq!((errs[0].line, errs[0].column), (9, 9), "{script}");

        // The danger is real: what Sluice would have run creates the marker.
        let scope = Scope::new(json!({"params": {"v": payload}}));
        let rendered = scope.render(script, Escape::Shell).unwrap();
        let _ = std::process::Command::new(format!("/bin/{shell}"))
            .arg("-c")
            .arg(&rendered)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            marker.exists(),
            "{script} was not dangerous after all: {rendered:?}"
        );
        std::fs::remove_file(&marker).unwrap();
    }
    for raw in [
        "echo {{{params.v}}}",
        "echo {{&params.v}}",
        "echo {{~{params.v}~}}",
    ] {
        let yaml = format!(
            "name: x\nparams:\n  v: {{}}\nsteps:\n  - id: s\n    shell: {{script: '{raw}'}}\n"
        );
        let errs = load_str(Path::new("x.yaml"), &yaml).expect_err(raw);
        assert!(
            errs[0].message.contains("unquoted output"),
            "{raw}: {}",
            errs[0].message
        );
    }
}

// ---------------------------------------------------------------- restore

/// One entry of a hand-made archive; paths are written raw, so hostile ones survive.
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Dir(&'a str),
}

fn manifest_for(files: &[(&str, &[u8])], version: u32) -> Vec<u8> {
    let entries: Vec<J> = files
        .iter()
        .map(|(p, d)| {
            json!({"path": p, "size": d.len(), "sha256": hex::encode(sha2::Sha256::digest(d)), "source": "test"})
        })
        .collect();
    serde_json::to_vec(&json!({
        "format": "sluice-backup", "version": version, "created_at": "2026-01-01T00:00:00Z",
        "name": "t", "entries": entries
    }))
    .unwrap()
}

fn write_archive(path: &Path, entries: &[Entry<'_>]) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data, kind, link): (&str, &[u8], tar::EntryType, Option<&str>) = match e {
            Entry::File(p, d) => (p, d, tar::EntryType::Regular, None),
            Entry::Symlink(p, t) => (p, b"", tar::EntryType::Symlink, Some(t)),
            Entry::Hardlink(p, t) => (p, b"", tar::EntryType::Link, Some(t)),
            Entry::Dir(p) => (p, b"", tar::EntryType::Directory, None),
        };
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = link {
            let l = &mut h.as_old_mut().linkname;
            l.fill(0);
            l[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// A hostile archive: its manifest (written first), the other entries, the expected refusal.
type ArchiveCase<'a> = (Option<&'a [u8]>, Vec<Entry<'a>>, &'a str);

/// A restore of `entries` into `dir/dest` via a runbook; must fail with `want` and change nothing.
async fn refused_restore(entries: &[Entry<'_>], want: &str) {
    let dir = tempdir();
    let archive = dir.path().join("a.tar.gz");
    write_archive(&archive, entries);
    let dest = dir.path().join("work/dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dir.path().join("work/outside.txt"), "outside").unwrap();
    let sv = services(config(""), &dir.path().join("work")).await;
    let before = snapshot(&dir.path().join("work"));
    let rb = runbook(&format!(
        "name: r\nsteps:\n  - id: r\n    restore: {{archive: '{}', dest: '{}', overwrite: true}}\n",
        archive.display(),
        dest.display()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap_or_default();
    assert!(err.contains(want), "want {want:?}, got {err:?}");
    let after = snapshot(&dir.path().join("work"));
    assert_eq!(before, after, "restore changed the file system ({want})");
    assert!(!dir.path().join("evil").exists() && !Path::new("/evil-sluice-test").exists());
}

#[tokio::test]
async fn hostile_archives_are_refused_and_write_nothing() {
    let ok: &[u8] = b"engine: {}\n";
    let man = |files: &[(&str, &[u8])]| manifest_for(files, 1);
    let m_dotdot = man(&[("../../evil", ok)]);
    let m_ok = man(&[("files/engine.yaml", ok)]);
    let m_two = man(&[("files/engine.yaml", ok), ("files/b.yaml", ok)]);
    let m_v2 = manifest_for(&[("files/engine.yaml", ok)], 2);
    let m_link = man(&[("files/link", b"")]);
    let m_abs = man(&[("/evil-sluice-test", ok)]);
    let m_dup = man(&[("files/engine.yaml", ok), ("files/./engine.yaml", ok)]);
    // (manifest written first, other entries, the refusal)
    let cases: Vec<ArchiveCase<'_>> = vec![
        (
            Some(&m_dotdot),
            vec![Entry::File("../../evil", ok)],
            "contains `..`",
        ),
        (
            Some(&m_ok),
            vec![Entry::File("files/../../evil", ok)],
            "contains `..`",
        ),
        (
            Some(&m_abs),
            vec![Entry::File("/evil-sluice-test", ok)],
            "absolute path",
        ),
        (
            Some(&m_ok),
            vec![Entry::Dir("/etc/"), Entry::File("files/engine.yaml", ok)],
            "absolute path",
        ),
        (
            Some(&m_link),
            vec![Entry::Symlink("files/link", "/etc/passwd")],
            "Symlink, not a regular file",
        ),
        (
            Some(&m_link),
            vec![Entry::Hardlink("files/link", "../outside.txt")],
            "Link, not a regular file",
        ),
        (
            Some(&m_ok),
            vec![
                Entry::Symlink("files", "/tmp"),
                Entry::File("files/engine.yaml", ok),
            ],
            "links are refused",
        ),
        (
            Some(&m_v2),
            vec![Entry::File("files/engine.yaml", ok)],
            "unknown manifest `sluice-backup` version 2",
        ),
        (
            None,
            vec![Entry::File("files/engine.yaml", ok)],
            "does not start with manifest.json",
        ),
        (None, vec![], "has no manifest.json"),
        (
            Some(&m_ok),
            vec![Entry::File("files/engine.yaml", b"engine: {evil: 1}\n")],
            "differs from the manifest",
        ),
        (
            Some(&m_ok),
            vec![Entry::File("files/engine.yaml", b"tampered!!\n")],
            "sha256",
        ),
        (
            Some(&m_ok),
            vec![
                Entry::File("files/engine.yaml", ok),
                Entry::File("files/extra", ok),
            ],
            "`files/extra` is not in the manifest",
        ),
        (
            Some(&m_two),
            vec![Entry::File("files/engine.yaml", ok)],
            "`files/b.yaml` is in the manifest but not in the archive",
        ),
        (
            Some(&m_ok),
            vec![
                Entry::File("files/engine.yaml", ok),
                Entry::File("files/engine.yaml", ok),
            ],
            "appears twice",
        ),
        (
            Some(&m_dup),
            vec![Entry::File("files/engine.yaml", ok)],
            "appears twice in the manifest",
        ),
        (Some(b"{not json"), vec![], "invalid manifest"),
    ];
    for (manifest, rest, want) in cases {
        let mut entries: Vec<Entry<'_>> = manifest
            .map(|m| Entry::File("manifest.json", m))
            .into_iter()
            .collect();
        entries.extend(rest);
        refused_restore(&entries, want).await;
    }
    // Not even a tar.gz.
    let dir = tempdir();
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"this is not gzip").unwrap();
    let err = restore::restore(&junk, &dir.path().join("d"), false, Limits::default()).unwrap_err();
    assert!(
        err.contains("corrupt archive") || err.contains("not a tar.gz"),
        "{err}"
    );
    assert!(!dir.path().join("d").exists());
}

#[test]
fn oversized_archives_are_refused_before_writing() {
    let dir = tempdir();
    let big = vec![b'x'; 4000];
    let m = manifest_for(&[("files/a", &big), ("files/b", &big)], 1);
    let archive = dir.path().join("big.tar.gz");
    write_archive(
        &archive,
        &[
            Entry::File("manifest.json", &m),
            Entry::File("files/a", &big),
            Entry::File("files/b", &big),
        ],
    );
    let dest = dir.path().join("dest");
    let small = |entry: u64, total: u64, entries: usize| Limits {
        max_entry_bytes: entry,
        max_total_bytes: total,
        max_entries: entries,
    };
    for (limits, want) in [
        (small(1000, 1 << 20, 10), "larger than 1000 bytes"),
        (small(1 << 20, 6000, 10), "more than 6000 bytes"),
        (small(1 << 20, 1 << 20, 1), "lists 2 entries (at most 1"),
    ] {
        let err = restore::restore(&archive, &dest, false, limits).unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
        assert!(!dest.exists(), "{want}: dest created");
    }
    // An entry whose header claims 2 GiB is refused from the manifest, without reading it.
    let huge = manifest_for(&[], 1);
    let mut manifest: J = serde_json::from_slice(&huge).unwrap();
    manifest["entries"] =
        json!([{"path": "files/a", "size": 2u64 << 30, "sha256": "00", "source": "x"}]);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    write_archive(
        &archive,
        &[
            Entry::File("manifest.json", &bytes),
            Entry::File("files/a", b"x"),
        ],
    );
    let err = restore::restore(&archive, &dest, false, Limits::default()).unwrap_err();
    assert!(err.contains("larger than 1073741824 bytes"), "{err}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn restore_never_writes_through_links_in_the_destination() {
    let dir = tempdir();
    let ok: &[u8] = b"restored\n";
    let m = manifest_for(
        &[
            ("files/etc/engine.yaml", ok),
            ("downloads/state.json", b"{}"),
        ],
        1,
    );
    let archive = dir.path().join("a.tar.gz");
    write_archive(
        &archive,
        &[
            Entry::File("manifest.json", &m),
            Entry::File("files/etc/engine.yaml", ok),
            Entry::File("downloads/state.json", b"{}"),
        ],
    );
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("engine.yaml"), "precious\n").unwrap();
    let sv = services(config(""), dir.path()).await;
    let restore_into = |dest: PathBuf, overwrite: bool| {
        runbook(&format!(
            "name: r\nsteps:\n  - id: r\n    restore: {{archive: '{}', dest: '{}', overwrite: {overwrite}}}\n",
            archive.display(),
            dest.display()
        ))
    };

    // A symlinked directory anywhere on the way: refused before any file is written.
    let dest = dir.path().join("d1");
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("downloads")).unwrap();
    let before = snapshot(dir.path());
    let out = run(&sv, &restore_into(dest.clone(), true), &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().contains("not a plain directory"));
    assert_eq!(
        before,
        snapshot(dir.path()),
        "files/ was written before the refusal"
    );

    // A hardlink to a file elsewhere is replaced, never written through.
    let dest = dir.path().join("d2");
    std::fs::create_dir_all(dest.join("files/etc")).unwrap();
    std::fs::hard_link(
        outside.join("engine.yaml"),
        dest.join("files/etc/engine.yaml"),
    )
    .unwrap();
    let out = run(&sv, &restore_into(dest.clone(), true), &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(
        std::fs::read_to_string(outside.join("engine.yaml")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        std::fs::read(dest.join("files/etc/engine.yaml")).unwrap(),
        ok
    );
    // No staging leftovers.
    let names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".sluice-restore")),
        "{names:?}"
    );

    // Without `overwrite`, an existing file stops the restore and nothing changes.
    let before = snapshot(dir.path());
    let out = run(&sv, &restore_into(dest.clone(), false), &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().contains("exists (set `overwrite: true`"));
    assert_eq!(before, snapshot(dir.path()));

    // A symlink as the file itself.
    let dest = dir.path().join("d3");
    std::fs::create_dir_all(dest.join("downloads")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("engine.yaml"),
        dest.join("downloads/state.json"),
    )
    .unwrap();
    let out = run(&sv, &restore_into(dest.clone(), true), &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().contains("is a symlink; refusing"));
    assert!(!dest.join("files").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("engine.yaml")).unwrap(),
        "precious\n"
    );
}

// ---------------------------------------------------------------- cleanup

#[tokio::test]
async fn cleanup_refuses_dangerous_roots() {
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let link_root = dir.path().join("to-root");
    std::os::unix::fs::symlink("/", &link_root).unwrap();
    let link_etc = dir.path().join("to-etc");
    std::os::unix::fs::symlink("/etc", &link_etc).unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    // The pattern matches nothing real, so even a wrong acceptance deletes nothing.
    let rb = runbook(
        "name: c\nparams:\n  root: {}\nsteps:\n  - id: c\n    cleanup: {root: '{{params.root}}', pattern: 'sluice-hostile-test-*', older_than: 0s}\n",
    );
    let link_root = link_root.display().to_string();
    let link_etc = link_etc.display().to_string();
    for (root, want) in [
        ("/", "the file system root"),
        ("//", "the file system root"),
        ("/./", "the file system root"),
        ("/tmp/..", "contains `..`"),
        ("/etc", "top-level directory"),
        ("/usr/lib", "inside the system tree `/usr`"),
        ("/proc/self", "inside the system tree `/proc`"),
        ("/home", "top-level directory"),
        ("/tmp", "top-level directory"),
        (home.as_str(), "resolves to"),
        (link_root.as_str(), "it resolves to `/`"),
        (link_etc.as_str(), "top-level directory `/etc`"),
        ("", "`root` is empty"),
        ("/nonexistent-sluice-dir/x", "No such file"),
    ] {
        let out = run(&sv, &rb, &[("root", root)]).await;
        assert_eq!(out.status, RunStatus::Failed, "{root} accepted");
        let err = out.error.unwrap_or_default();
        assert!(err.contains(want), "{root}: {err}");
    }
    // A literal `/` is refused before the runbook can run at all.
    let errs = load_str(
        Path::new("c.yaml"),
        "name: c\nsteps:\n  - id: c\n    cleanup: {root: /, keep: 1}\n",
    )
    .unwrap_err();
    assert!(errs[0].message.contains("file system root"));
}

#[tokio::test]
async fn cleanup_never_reaches_outside_its_root() {
    let dir = tempdir();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400);
    let aged = |p: &Path| {
        std::fs::write(p, "data").unwrap();
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    aged(&outside.join("a.log"));
    aged(&outside.join("linked.log"));
    aged(&root.join("sub/own.log"));
    std::os::unix::fs::symlink(&outside, root.join("sub/escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("a.log"), root.join("a.log")).unwrap();
    std::fs::hard_link(outside.join("linked.log"), root.join("hard.log")).unwrap();
    let before_outside = snapshot(&outside);
    let sv = services(config(""), dir.path()).await;
    let rb = runbook(&format!(
        "name: c\nparams:\n  pattern: {{default: '*.log'}}\nsteps:\n  - id: c\n    cleanup: {{root: '{}', pattern: '{{{{params.pattern}}}}', older_than: 1d, recursive: true}}\n",
        root.display()
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let mut deleted: Vec<String> = out.steps["c"]["output"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    let canon = std::fs::canonicalize(&root).unwrap();
    assert_eq!(
        deleted,
        [
            canon.join("hard.log").display().to_string(),
            canon.join("sub/own.log").display().to_string()
        ]
    );
    // Outside: every file still there with its content (the hardlinked one included).
    assert_eq!(before_outside, snapshot(&outside));
    assert!(
        root.join("a.log").symlink_metadata().is_ok(),
        "symlink deleted"
    );

    // A templated pattern cannot climb out either.
    let out = run(&sv, &rb, &[("pattern", "../outside/*")]).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().contains("cannot contain `/`"));
    assert_eq!(before_outside, snapshot(&outside));
}

// ---------------------------------------------------------------- oversized outputs

#[tokio::test]
async fn oversized_outputs_fail_the_step_and_are_not_recorded() {
    let addr = serve(
        axum::Router::new().route("/big", axum::routing::get(|| async { "x".repeat(3 << 20) })),
    )
    .await;
    let dir = tempdir();
    let sv = services(config(""), dir.path()).await;
    let marker = dir.path().join("after");
    let cases = [
        (
            "name: o\nsteps:\n  - id: big\n    exec: {argv: [head, -c, '3000000', /dev/zero]}\n".to_string(),
            "program output exceeds the output limit of 1048576 bytes",
        ),
        (
            "name: o\nsteps:\n  - id: big\n    shell: {script: 'yes sluice >&2'}\n    timeout: 30s\n".to_string(),
            "program output exceeds the output limit",
        ),
        (
            format!("name: o\nsteps:\n  - id: big\n    http: {{url: 'http://{addr}/big'}}\n"),
            "response body exceeds the output limit of 1048576 bytes",
        ),
        (
            "name: o\nsteps:\n  - id: big\n    for_each:\n      items: [1, 2, 3, 4, 5, 6]\n      steps:\n        - id: chunk\n          exec: {argv: [sh, -c, 'head -c 300000 /dev/zero | tr \"\\0\" x']}\n".to_string(),
            "exceeds the limit of 1048576 bytes",
        ),
    ];
    for (yaml, want) in cases {
        let yaml = format!(
            "{yaml}  - id: after\n    exec: {{argv: [touch, {}]}}\n",
            marker.display()
        );
        let rb = runbook(&yaml);
        let out = run(&sv, &rb, &[]).await;
        assert_eq!(out.status, RunStatus::Failed, "{yaml}");
        let err = out.error.clone().unwrap_or_default();
        assert!(err.contains(want), "{want}: {err}");
        assert!(
            !marker.exists(),
            "the run went on after an oversized output"
        );
        let (_, steps) = sv.store.as_ref().unwrap().get_run(&out.id).await.unwrap();
        let big = steps.iter().find(|s| s.path == "big").expect("record");
        assert_eq!(big.status, "failed");
        assert!(big.outputs.is_null(), "oversized output recorded");
        let recorded = serde_json::to_string(big).unwrap().len();
        assert!(recorded < 64 << 10, "{recorded} bytes recorded for {want}");
    }
}
