//! The web console in a real browser (headless Chromium), as an on-call person
//! uses it: sign in with a token, read the runbooks and the files that do not
//! validate, start a run with a parameter, approve a waiting step, read why a
//! trigger did not run — with no script error and no CSP violation on the way.

use std::time::Duration;

use serde_json::{Value as J, json};
use sluice_tests::browser::{self, click, eval, fill, open, wait};
use sluice_tests::net::{self, eventually};
use sluice_tests::served::{OPERATOR, VIEWER};

const GREET: &str = r#"
name: greet
description: says hello
triggers: [manual]
params:
  who: {type: string, required: true, pattern: "[a-z]+"}
steps:
  - id: say
    exec: {argv: [echo, "hello {{params.who}}"]}
"#;

const GATED: &str = r#"
name: gated
description: asks before acting
triggers: [manual]
steps:
  - id: ask
    approval: {message: "Restart the <b>payments</b> engine?", timeout: 10m}
  - id: act
    exec: {argv: [echo, acted]}
"#;

const DEPLOYED: &str = r#"
name: deployed
description: checks a deploy
triggers: [{webhook: deploy}]
guards:
  cooldown: 1h
steps:
  - id: check
    exec: {argv: [echo, checked]}
"#;

const SLOW: &str = r#"
name: slow
description: takes a few seconds
triggers: [manual]
steps:
  - id: wait
    exec: {argv: [sleep, "5"]}
  - id: done
    exec: {argv: [echo, done]}
"#;

// Line 5 names a step kind that does not exist.
const BROKEN: &str =
    "name: broken\ntriggers: [manual]\nsteps:\n  - id: oops\n    exec_typo: {argv: [true]}\n";

struct Console {
    handle: sluice_automation::service::Handle,
    base: String,
    http: reqwest::Client,
}

impl Console {
    async fn start(dir: &std::path::Path) -> Console {
        let rb = dir.join("runbooks");
        std::fs::create_dir_all(&rb).unwrap();
        for (f, t) in [
            ("greet.yaml", GREET),
            ("gated.yaml", GATED),
            ("deployed.yaml", DEPLOYED),
            ("slow.yaml", SLOW),
            ("broken.yaml", BROKEN),
        ] {
            std::fs::write(rb.join(f), t).unwrap();
        }
        let config = format!(
            "runbooks: [{}]\nstore: 'sqlite://{}'\napi:\n  tokens:\n    - {{name: oncall, token: {OPERATOR}, role: operator}}\n    - {{name: dash, token: {VIEWER}, role: viewer}}\nhooks:\n  deploy: {{token: deploy-hook-token-0123456789}}\nservice:\n  lease: 2s\n  shutdown_grace: 2s\n",
            rb.display(),
            dir.join("service.db").display(),
        );
        let handle = sluice_tests::sluice::serve(dir, &config).await;
        let base = format!("http://{}", handle.addr);
        Console {
            handle,
            base,
            http: net::client(),
        }
    }

    async fn api(&self, method: &str, path: &str, body: Option<J>) -> J {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(OPERATOR);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap().json().await.unwrap_or(J::Null)
    }

    async fn finished(&self, id: &str) -> J {
        eventually("the run to finish", Duration::from_secs(30), || async {
            let r = self.api("GET", &format!("/api/v1/runs/{id}"), None).await;
            matches!(r["run"]["status"].as_str(), Some("succeeded" | "failed")).then_some(r)
        })
        .await
    }
}

/// JS: the text of the main view contains `s`.
fn shows(s: &str) -> String {
    format!(
        "document.getElementById('view').dataset.loaded && document.getElementById('view').innerText.includes({})",
        json!(s)
    )
}

/// JS: the page shown is run `id`'s, with status `status`.
fn run_status(id: &str, status: &str) -> String {
    format!(
        "document.getElementById('view').dataset.loaded === {} && document.querySelector('#view h1 .badge').innerText === {}",
        json!(format!("runs/{id}")),
        json!(status)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_starts_a_run_approves_a_step_and_reads_why_a_trigger_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::start(dir.path()).await;
    let ui = format!("{}/ui/", c.base);

    // Runbooks, after signing in; the broken file's problem with its line.
    let r = browser::run(vec![
        open(&format!("{ui}#/runbooks")),
        wait("document.getElementById('signin-needed') && document.getElementById('signin-needed').innerText"),
        fill("#token", OPERATOR),
        click("#signin-button"),
        wait(&shows("says hello")),
        eval("document.querySelector('.file-problems').innerText"),
        eval("[...document.querySelectorAll('#view table a')].map(a => a.textContent)"),
        // Start greet with a parameter from its page.
        open(&format!("{ui}#/runbooks/greet")),
        wait("document.querySelector('#trigger input[name=who]')"),
        fill("#trigger input[name=who]", "ada"),
        click("#start-run"),
        wait("location.hash.startsWith('#/runs/r') && location.hash"),
        wait(&shows("succeeded")),
        eval("document.querySelector('#view h1').innerText"),
        // The session is an HttpOnly cookie: no script on the page can read
        // it, and the token is kept nowhere.
        eval("[document.cookie, sessionStorage.length, localStorage.length, document.getElementById('who').innerText]"),
    ])
    .await;
    assert!(
        r.results[1].as_str().unwrap().contains(".sluice/api-token"),
        "{:?}",
        r.results[1]
    );
    let problems = r.results[5].as_str().unwrap();
    assert!(problems.contains("broken.yaml"), "{problems}");
    assert!(problems.contains(":5:"), "names the line: {problems}");
    assert!(problems.contains("exec_typo"), "{problems}");
    let names: Vec<&str> = r.results[6]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(J::as_str)
        .collect();
    assert!(
        names.contains(&"greet") && names.contains(&"gated"),
        "{names:?}"
    );
    assert!(!names.contains(&"broken"), "{names:?}");
    let id = r.results[11]
        .as_str()
        .unwrap()
        .trim_start_matches("#/runs/")
        .to_string();
    assert!(r.results[13].as_str().unwrap().contains("succeeded"));
    assert_eq!(r.results[14], json!(["", 0, 0, "oncall (operator)"]));
    // Signed out, the page asked for nothing it would be refused.
    assert!(r.errors.is_empty(), "page errors: {:#?}", r.errors);
    // The run is what the form asked for, started by the token's owner.
    let run = c.finished(&id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["params"]["who"], "ada");
    assert_eq!(run["run"]["who"], "oncall");
    assert_eq!(run["steps"][0]["outputs"]["stdout"], "hello ada\n");

    // A run waits for approval; the operator approves it in the console.
    let started = c
        .api("POST", "/api/v1/runbooks/gated/runs", Some(json!({})))
        .await;
    let gated = started["run_id"].as_str().unwrap().to_string();
    eventually(
        "the approval to be asked",
        Duration::from_secs(20),
        || async {
            let r = c.api("GET", &format!("/api/v1/runs/{gated}"), None).await;
            (r["run"]["status"] == "waiting_approval").then_some(())
        },
    )
    .await;
    // The hook's second delivery lands in the cooldown the first one started.
    for n in 0..2 {
        let r: J = c
            .http
            .post(format!("{}/api/v1/hooks/deploy", c.base))
            .bearer_auth("deploy-hook-token-0123456789")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if n == 0 {
            c.finished(r["runs"][0]["run_id"].as_str().unwrap()).await;
        }
    }
    let r = browser::run(vec![
        open(&format!("{ui}#/")),
        fill("#token", VIEWER),
        click("#signin-button"),
        wait(&shows("waiting for approval")),
        eval("document.querySelector('.cards').innerText"),
        // A viewer sees the approval but may not give it.
        open(&format!("{ui}#/runs/{gated}")),
        wait("document.querySelector('.approval #approve')"),
        eval("document.querySelector('.approval').innerText"),
        eval("document.querySelector('.approval').innerHTML.includes('<b>')"),
        click("#approve"),
        wait("document.getElementById('flash').innerText"),
        // Sign in as the operator and approve with a comment.
        click("#signout"),
        wait("!document.getElementById('token').hidden"),
        fill("#token", OPERATOR),
        click("#signin-button"),
        wait("document.querySelector('.approval #approve')"),
        fill(".approval-comment", "checked the dashboards"),
        click("#approve"),
        wait(&shows("succeeded")),
        // Why did the hook's second delivery not start a run?
        open(&format!("{ui}#/decisions")),
        wait(&shows("cooldown")),
        eval("[...document.querySelectorAll('#view tbody tr')].map(r => r.innerText)"),
    ])
    .await;
    let cards = r.results[4].as_str().unwrap();
    assert!(cards.contains("1\nwaiting for approval"), "{cards}");
    assert!(
        r.results[7]
            .as_str()
            .unwrap()
            .contains("Restart the <b>payments</b> engine?"),
        "the message is shown as text: {:?}",
        r.results[7]
    );
    assert_eq!(r.results[8], json!(false), "no markup from run data");
    let refused = r.results[10].as_str().unwrap();
    assert!(
        refused.contains("403"),
        "a viewer cannot approve: {refused}"
    );
    let rows: Vec<&str> = r.results[21]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(J::as_str)
        .collect();
    assert!(
        rows.iter()
            .any(|r| r.contains("deployed") && r.contains("cooldown") && r.contains("left")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("deployed") && r.contains("webhook") && r.contains("started")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("greet") && r.contains("manual") && r.contains("started")),
        "{rows:#?}"
    );
    // Only the console's own 403 shows as a failed load; nothing else went wrong.
    let unexpected: Vec<&String> = r
        .errors
        .iter()
        .filter(|e| !(e.contains("403") && e.contains("/approve")))
        .collect();
    assert!(unexpected.is_empty(), "page errors: {unexpected:#?}");
    let run = c.finished(&gated).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");

    // A running run's page follows it live (Server-Sent Events, no reload):
    // its steps turn green and the timeline draws one bar per step. Then a
    // silence is made from its form, with hostile text shown as text.
    let started = c
        .api("POST", "/api/v1/runbooks/slow/runs", Some(json!({})))
        .await;
    let slow = started["run_id"].as_str().unwrap().to_string();
    let r = browser::run(vec![
        open(&format!("{ui}#/")),
        fill("#token", OPERATOR),
        click("#signin-button"),
        wait("document.getElementById('who').innerText"),
        open(&format!("{ui}#/runs/{slow}")),
        wait(&run_status(&slow, "running")),
        eval("window.marker = 1"),
        wait(&run_status(&slow, "succeeded")),
        eval("[window.marker, document.querySelectorAll('#timeline .bar.s-succeeded').length]"),
        open(&format!("{ui}#/silences")),
        wait("document.querySelector('#new-silence')"),
        fill(
            "#new-silence input[name=matchers]",
            "alertname=\"DiskFull\", team=~\"ops|db\"",
        ),
        fill(
            "#new-silence input[name=comment]",
            "<img src=x onerror=alert(1)> disk work",
        ),
        click("#new-silence button"),
        wait(&shows("disk work")),
        eval("[...document.querySelectorAll('#view tbody tr')].map(r => r.innerText)"),
        eval("document.getElementById('view').querySelector('img') === null"),
    ])
    .await;
    assert_eq!(
        r.results[8],
        json!([1, 2]),
        "the same page (no reload) shows both steps succeeded"
    );
    let rows: Vec<&str> = r.results[15]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(J::as_str)
        .collect();
    assert!(
        rows.iter().any(|r| r.contains("alertname=\"DiskFull\"")
            && r.contains("team=~\"ops|db\"")
            && r.contains("<img src=x onerror=alert(1)> disk work")
            && r.contains("oncall")),
        "{rows:#?}"
    );
    assert_eq!(r.results[16], json!(true), "no markup from a comment");
    assert!(r.errors.is_empty(), "page errors: {:#?}", r.errors);
    let silences = c.api("GET", "/api/v1/silences", None).await;
    assert_eq!(
        silences["silences"][0]["created_by"], "oncall",
        "{silences:#}"
    );
    let a = &run["approvals"][0];
    assert_eq!(
        (&a["status"], &a["decided_by"], &a["comment"]),
        (
            &json!("approved"),
            &json!("oncall"),
            &json!("checked the dashboards")
        ),
        "{a:#}"
    );
    c.handle.shutdown().await;
}

/// A runbook whose flow has something to draw (for the screenshots).
const ROLLOUT: &str = r#"
name: rollout
description: checks both regions at once, restarts each in turn, rolls back on failure
triggers: [manual]
params:
  version: {type: string, default: "1.4.2"}
steps:
  - id: checks
    parallel:
      steps:
        - id: lag_ok
          exec: {argv: [sleep, "0.4"]}
        - id: disk_ok
          exec: {argv: [sleep, "0.7"]}
  - id: restart
    for_each:
      items: [eu, us]
      as: region
      steps:
        - id: restart_region
          exec: {argv: [sleep, "0.5"]}
          retry: {attempts: 3}
          timeout: 30s
  - id: announce
    if: "{{params.version}}"
    exec: {argv: [echo, "rolled out {{params.version}}"]}
on_failure:
  - id: rollback
    exec: {argv: [echo, rolling back]}
"#;

/// Makes the screenshots in docs/console/ from a console with a few runs
/// in it: `cargo test -p sluice-tests --test e2e console::screenshots --
/// --ignored` (needs chromium-headless-shell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "regenerates docs/console/*.png"]
async fn screenshots() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/rollout.yaml"), ROLLOUT).unwrap();
    let c = Console::start(dir.path()).await;
    let ui = format!("{}/ui/", c.base);
    let rollout = c
        .api("POST", "/api/v1/runbooks/rollout/runs", Some(json!({})))
        .await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.finished(&rollout).await;
    let greet = c
        .api(
            "POST",
            "/api/v1/runbooks/greet/runs",
            Some(json!({"params": {"who": "ada"}})),
        )
        .await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.finished(&greet).await;
    let slow = c
        .api("POST", "/api/v1/runbooks/slow/runs", Some(json!({})))
        .await["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.finished(&slow).await;
    c.api("POST", "/api/v1/runbooks/gated/runs", Some(json!({})))
        .await;
    let out = sluice_tests::sluice::repo().join("docs/console");
    std::fs::create_dir_all(&out).unwrap();
    let shot = |name: &str| browser::screenshot(&out.join(format!("{name}.png")));
    let loaded = |page: &str| {
        format!(
            "document.getElementById('view').dataset.loaded === {}",
            json!(page)
        )
    };
    browser::run(vec![
        open(&format!("{ui}#/")),
        fill("#token", OPERATOR),
        click("#signin-button"),
        wait(&shows("waiting for approval")),
        shot("overview"),
        open(&format!("{ui}#/runs")),
        wait(&loaded("runs")),
        shot("runs"),
        open(&format!("{ui}#/runs/{rollout}")),
        wait(&run_status(&rollout, "succeeded")),
        shot("run"),
        open(&format!("{ui}#/runbooks")),
        wait(&loaded("runbooks")),
        shot("runbooks"),
        open(&format!("{ui}#/runbooks/rollout")),
        wait(&loaded("runbooks/rollout")),
        shot("runbook"),
    ])
    .await;
    for name in ["overview", "runs", "run", "runbooks", "runbook"] {
        let len = std::fs::metadata(out.join(format!("{name}.png")))
            .unwrap()
            .len();
        assert!(len > 10_000, "{name}.png is {len} bytes");
    }
    c.handle.shutdown().await;
}
