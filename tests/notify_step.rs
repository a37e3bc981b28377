//! `notify` against Slack's webhook format (a recording stand-in that checks
//! Block Kit and answers like Slack) and a real SMTP server (aiosmtpd).

use std::time::Duration;

use sluice_automation::exec::executor::RunStatus;
use sluice_tests::slack::{Reply, Slack, check_payload, control_sequences};
use sluice_tests::smtp::Smtp;

use crate::support::{assert_succeeded, config, run, runbook, services, sqlite_store};

fn slack_config(slack: &Slack) -> String {
    format!(
        "channels:\n  oncall:\n    slack:\n      webhook_url: {}\n",
        slack.webhook_url()
    )
}

#[tokio::test]
async fn slack_gets_blocks_with_a_text_fallback_and_values_cannot_mention_anyone() {
    let slack = Slack::start().await.unwrap();
    let sv = services(config(&slack_config(&slack)), None);
    let rb = runbook(
        r#"
name: tell
params:
  error: {default: "sink <!channel> failed & <https://evil.example|click me>"}
steps:
  - id: n
    notify:
      channels: [oncall]
      title: "Breaker open on {{params.error}}"
      text: "*Reset failed*: {{params.error}}"
"#,
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let posts = slack.posts();
    assert_eq!(posts.len(), 1);
    let p = &posts[0];
    assert_eq!(p.status, 200, "{:?}", p.rejected);
    assert_eq!(p.path, "/services/T0SLUICE/B0TEST/s3cretW3bhookToken");
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    check_payload(&p.body).unwrap();
    let header = &p.body["blocks"][0];
    assert_eq!(header["type"], "header");
    assert_eq!(header["text"]["type"], "plain_text");
    // plain_text shows characters as they are; Slack does not parse it.
    assert_eq!(
        header["text"]["text"],
        "Breaker open on sink <!channel> failed & <https://evil.example|click me>"
    );
    let section = &p.body["blocks"][1];
    assert_eq!(section["type"], "section");
    assert_eq!(section["text"]["type"], "mrkdwn");
    let body = section["text"]["text"].as_str().unwrap();
    assert_eq!(
        body,
        "*Reset failed*: sink &lt;!channel&gt; failed &amp; &lt;https://evil.example|click me&gt;"
    );
    let fallback = p.body["text"].as_str().unwrap();
    assert!(
        fallback.starts_with("Breaker open on sink &lt;!channel&gt;"),
        "{fallback}"
    );
    assert!(fallback.contains("*Reset failed*"), "{fallback}");
    // Neither mrkdwn field carries a control sequence (mention, link) from the value.
    assert_eq!(control_sequences(body), Vec::<String>::new());
    assert_eq!(control_sequences(fallback), Vec::<String>::new());
}

#[tokio::test]
async fn slack_payload_stays_within_block_kit_limits() {
    let slack = Slack::start().await.unwrap();
    let sv = services(config(&slack_config(&slack)), None);
    let long_title = "t".repeat(400);
    let long_text = "é".repeat(5000);
    let rb = runbook(&format!(
        "name: long\nsteps:\n  - id: n\n    notify: {{channels: [oncall], title: '{long_title}', text: '{long_text}'}}\n  - id: empty\n    notify: {{channels: [oncall], title: '', text: ''}}\n"
    ));
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let posts = slack.posts();
    assert_eq!(posts.len(), 2);
    for p in &posts {
        assert_eq!(p.status, 200, "rejected: {:?}\n{}", p.rejected, p.raw);
    }
    let header = posts[0].body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
    let section = posts[0].body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(section.chars().count(), 3000);
    // With nothing to say in blocks, the payload still has a text Slack accepts.
    assert!(!posts[1].body["text"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn slack_rate_limits_are_waited_out_as_retry_after_says() {
    let slack = Slack::start().await.unwrap();
    slack.script([
        Reply::RateLimited {
            retry_after_secs: 1,
        },
        Reply::RateLimited {
            retry_after_secs: 2,
        },
    ]);
    let sv = services(config(&slack_config(&slack)), None);
    let rb =
        runbook("name: rl\nsteps:\n  - id: n\n    notify: {channels: [oncall], text: hello}\n");
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let posts = slack.posts();
    let statuses: Vec<u16> = posts.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
    // Each retry came no earlier than Retry-After asked (the payload unchanged).
    assert!(posts[1].at - posts[0].at >= Duration::from_secs(1));
    assert!(posts[2].at - posts[1].at >= Duration::from_secs(2));
    assert_eq!(posts[0].body, posts[2].body);
}

#[tokio::test]
async fn slack_errors_fail_the_step_without_leaking_the_webhook_url() {
    let slack = Slack::start().await.unwrap();
    slack.script([Reply::Error(404, "no_service")]);
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let sv = services(config(&slack_config(&slack)), Some(store));
    let rb = runbook(
        "name: gone\nsteps:\n  - id: n\n    notify: {channels: [oncall], text: hello}\n    retry: {attempts: 3, backoff: 10ms, on: [transient]}\n",
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.clone().unwrap();
    assert!(err.contains("slack: HTTP 404: no_service"), "{err}");
    // 404 is Slack saying the webhook is gone: the step's own retries do not apply.
    assert_eq!(slack.posts().len(), 1);

    // Unreachable: the error (recorded) names no part of the secret URL.
    let port = sluice_tests::net::free_port();
    let url = format!("http://127.0.0.1:{port}/services/T0/B0/SeCrEtToKeN123");
    let dir2 = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir2.path()).await;
    let sv = services(
        config(&format!(
            "channels:\n  oncall:\n    slack:\n      webhook_url: {url}\n"
        )),
        Some(store.clone()),
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let (rec, steps) = store.get_run(&out.id).await.unwrap();
    let dump = format!(
        "{}{}",
        serde_json::to_string(&rec).unwrap(),
        serde_json::to_string(&steps).unwrap()
    );
    assert!(dump.contains("request failed"), "{dump}");
    assert!(
        !dump.contains("SeCrEtToKeN123"),
        "webhook URL recorded: {dump}"
    );
    assert_eq!(steps[0].attempts, 3, "connection errors are transient");
}

fn email_config(smtp: &Smtp, auth: Option<(&str, &str)>) -> String {
    let mut s = format!(
        "channels:\n  ops-email:\n    email:\n      smtp: {{host: {}, port: {}, tls: none",
        smtp.host(),
        smtp.port()
    );
    if let Some((u, p)) = auth {
        s.push_str(&format!(", username: {u}, password: {p}"));
    }
    s.push_str("}\n      from: Sluice <sluice@example.com>\n      to: [ops@example.com, \"On Call <oncall@example.org>\"]\n");
    s
}

#[tokio::test]
async fn email_arrives_with_subject_recipients_and_text_and_html_parts() {
    let smtp = Smtp::start().unwrap();
    let sv = services(config(&email_config(&smtp, None)), None);
    let rb = runbook(
        r#"
name: mail
steps:
  - id: html
    notify:
      channels: [ops-email]
      title: "Breaker sink reset ✓"
      text: "The breaker was reset.\nRun: {{run.id}}"
      html: "<p>The breaker was <b>reset</b>.</p>"
  - id: plain
    notify:
      channels: [ops-email]
      text: "value <script>alert(1)</script> & more"
"#,
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let got = smtp.wait_for(2, Duration::from_secs(10)).unwrap();
    assert_eq!(got.len(), 2);
    let m = &got[0];
    assert_eq!(m.mail_from, "sluice@example.com");
    assert_eq!(m.rcpt_tos, ["ops@example.com", "oncall@example.org"]);
    assert_eq!(m.subject, "Breaker sink reset ✓");
    assert_eq!(m.from, "Sluice <sluice@example.com>");
    assert_eq!(m.to, "ops@example.com, On Call <oncall@example.org>");
    assert_eq!(m.content_type, "multipart/alternative");
    assert_eq!(m.parts.len(), 2, "{:#?}", m.parts);
    let text = m.part("text/plain").expect("text part");
    // MIME text travels with CRLF line ends.
    assert_eq!(
        text.text.trim_end(),
        format!("The breaker was reset.\r\nRun: {}", out.id)
    );
    assert_eq!(text.charset.as_deref(), Some("utf-8"));
    let html = m.part("text/html").expect("html part");
    assert_eq!(html.text.trim_end(), "<p>The breaker was <b>reset</b>.</p>");
    // Plain text becomes the HTML part escaped; the default subject names the runbook.
    let m = &got[1];
    assert_eq!(m.subject, "Sluice: mail");
    assert_eq!(
        m.part("text/html").unwrap().text.trim_end(),
        "<pre>value &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</pre>"
    );
    assert_eq!(
        m.part("text/plain").unwrap().text.trim_end(),
        "value <script>alert(1)</script> & more"
    );
}

#[tokio::test]
async fn email_authenticates_and_a_wrong_password_fails_without_leaking_it() {
    let smtp = Smtp::start_with_auth("sluice", "c0rrect-h0rse").unwrap();
    let sv = services(
        config(&email_config(&smtp, Some(("sluice", "c0rrect-h0rse")))),
        None,
    );
    let rb =
        runbook("name: mail\nsteps:\n  - id: n\n    notify: {channels: [ops-email], text: hi}\n");
    let out = run(&sv, &rb, &[]).await;
    assert_succeeded(&out, &smtp.log_text());
    let got = smtp.wait_for(1, Duration::from_secs(10)).unwrap();
    assert_eq!(got[0].auth_login.as_deref(), Some("sluice"));

    let sv = services(
        config(&email_config(&smtp, Some(("sluice", "wr0ng-pa55word")))),
        None,
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert!(err.contains("email:"), "{err}");
    assert!(!err.contains("wr0ng-pa55word"), "{err}");
    assert_eq!(
        smtp.messages().unwrap().len(),
        1,
        "a message got through with a wrong password"
    );
}

#[tokio::test]
async fn run_notifications_reach_slack_and_email_on_failure() {
    let slack = Slack::start().await.unwrap();
    let smtp = Smtp::start().unwrap();
    let cfg = format!(
        "{}{}",
        slack_config(&slack),
        &email_config(&smtp, None)["channels:\n".len()..]
    );
    let sv = services(config(&cfg), None);
    let rb = runbook(
        "name: failing\nnotify: {on_start: [oncall], on_failure: [oncall, ops-email]}\nsteps:\n  - id: boom\n    exec: {argv: [sh, -c, 'echo \"<!here> disk full\" >&2; exit 4']}\n",
    );
    let out = run(&sv, &rb, &[]).await;
    assert_eq!(out.status, RunStatus::Failed);
    let posts = slack.wait_for(2, Duration::from_secs(10)).await.unwrap();
    assert!(
        posts.iter().all(|p| p.status == 200),
        "{:?}",
        posts.iter().map(|p| &p.rejected).collect::<Vec<_>>()
    );
    let failed = posts[1].body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(failed.contains("failed"), "{failed}");
    assert!(failed.contains("&lt;!here&gt; disk full"), "{failed}");
    assert!(control_sequences(failed).is_empty(), "{failed}");
    let mail = smtp.wait_for(1, Duration::from_secs(10)).unwrap();
    assert_eq!(mail[0].subject, "Sluice: failing failed");
    assert!(
        mail[0]
            .part("text/plain")
            .unwrap()
            .text
            .contains("<!here> disk full")
    );
}
