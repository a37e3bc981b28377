//! Loopback receivers `sluice up` points its notification channels at, so a
//! first run on a fresh machine delivers its notifications somewhere:
//!
//! - Slack: an HTTP endpoint answering like Slack's incoming webhook
//!   (`POST /slack/<channel>` with a JSON body that has `text`: `200 ok`).
//! - Email: a minimal SMTP server (greeting, EHLO/HELO, MAIL FROM, RCPT TO,
//!   DATA with dot-stuffing, RSET, NOOP, QUIT; no TLS, no AUTH) for the
//!   channel's `tls: none`.
//!
//! Both bind 127.0.0.1 on a free port. Every message is kept in an [`Inbox`]:
//! the last [`KEEP`] in memory, each appended to a log file as one JSON line,
//! and told on the terminal as one line (`slack  #oncall  <first line>`,
//! `email  ops@localhost  <subject>`).

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value as J, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::story::Teller;

/// Messages kept in memory.
pub const KEEP: usize = 200;
/// Longest SMTP command or message line.
const MAX_LINE: u64 = 4096;
/// Largest message accepted (and the SIZE announced).
const MAX_MESSAGE: usize = 1 << 20;
/// Idle time after which an SMTP session is dropped.
const IDLE: Duration = Duration::from_secs(60);
/// Concurrent SMTP sessions.
const MAX_SESSIONS: usize = 32;

/// Every notification the receivers got.
pub struct Inbox {
    kept: Mutex<VecDeque<J>>,
    log: Option<Mutex<std::fs::File>>,
    teller: Arc<Teller>,
}

impl Inbox {
    /// An inbox appending to `log` (when given) and telling `teller`.
    pub fn new(log: Option<&Path>, teller: Arc<Teller>) -> anyhow::Result<Arc<Inbox>> {
        let log = match log {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Arc::new(Inbox {
            kept: Mutex::new(VecDeque::with_capacity(KEEP)),
            log,
            teller,
        }))
    }

    fn record(&self, mut entry: J, kind: &str, line: &str) {
        entry["at"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        entry["kind"] = json!(kind);
        if let Some(log) = &self.log {
            let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{entry}");
        }
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEEP {
                kept.pop_front();
            }
            kept.push_back(entry);
        }
        self.teller.say(kind, line);
    }

    /// The messages kept, oldest first.
    #[cfg(test)]
    pub fn messages(&self) -> Vec<J> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Slack stand-in: `POST /slack/<channel>`; its webhook URL for channel
/// `c` is `http://<addr>/slack/c`.
pub async fn slack(inbox: Arc<Inbox>) -> anyhow::Result<Receiver> {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    async fn post(
        State(inbox): State<Arc<Inbox>>,
        UrlPath(channel): UrlPath<String>,
        body: axum::body::Bytes,
    ) -> (StatusCode, &'static str) {
        let Ok(payload) = serde_json::from_slice::<J>(&body) else {
            return (StatusCode::BAD_REQUEST, "invalid_payload");
        };
        let Some(text) = payload.get("text").and_then(J::as_str).map(str::to_string) else {
            return (StatusCode::BAD_REQUEST, "no_text");
        };
        let first = text.lines().next().unwrap_or("").to_string();
        inbox.record(
            json!({"channel": format!("#{channel}"), "text": text, "payload": payload}),
            "slack",
            &format!("#{channel}  {first}"),
        );
        (StatusCode::OK, "ok")
    }
    let app = axum::Router::new()
        .route("/slack/{channel}", axum::routing::post(post))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE))
        .with_state(inbox);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the Slack receiver")?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Receiver { addr, task })
}

/// The SMTP stand-in on 127.0.0.1.
pub async fn smtp(inbox: Arc<Inbox>) -> anyhow::Result<Receiver> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the SMTP receiver")?;
    let addr = listener.local_addr()?;
    let sessions = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = sessions.clone().try_acquire_owned() else {
                let mut s = stream;
                let _ = s.write_all(b"421 too many connections\r\n").await;
                continue;
            };
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let _ = session(stream, &inbox).await;
                drop(permit);
            });
        }
    });
    Ok(Receiver { addr, task })
}

/// Reads one line (without CR LF); `None` at end of input.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = tokio::time::timeout(IDLE, (&mut *r).take(MAX_LINE).read_until(b'\n', &mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The address inside `<…>` of a MAIL FROM / RCPT TO argument.
fn path_of(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg.split_whitespace().next().unwrap_or("").to_string(),
    }
}

async fn session(stream: TcpStream, inbox: &Inbox) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 127.0.0.1 sluice up ESMTP\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut r).await? {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => b"250-127.0.0.1 hello\r\n250-8BITMIME\r\n250-SIZE 1048576\r\n250 HELP\r\n",
            "HELO" => b"250 127.0.0.1 hello\r\n",
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                from = Some(path_of(&line["MAIL FROM:".len()..]));
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from.is_none() {
                    b"503 need MAIL first\r\n"
                } else {
                    to.push(path_of(&line["RCPT TO:".len()..]));
                    b"250 OK\r\n"
                }
            }
            "MAIL" | "RCPT" => b"501 syntax error\r\n",
            "DATA" if from.is_none() || to.is_empty() => b"503 need MAIL and RCPT first\r\n",
            "DATA" => {
                w.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                let mut too_big = false;
                loop {
                    let Some(l) = read_line(&mut r).await? else {
                        return Ok(());
                    };
                    if l == "." {
                        break;
                    }
                    // Dot-stuffing: a leading dot was doubled by the sender.
                    let l = l.strip_prefix('.').unwrap_or(&l);
                    if data.len() + l.len() + 2 > MAX_MESSAGE {
                        too_big = true;
                    } else {
                        data.push_str(l);
                        data.push_str("\r\n");
                    }
                }
                let envelope_from = from.take().unwrap_or_default();
                let rcpts = std::mem::take(&mut to);
                if too_big {
                    b"552 message too large\r\n"
                } else {
                    let mail = parse_message(&data);
                    let line = format!("{}  {}", rcpts.join(", "), mail.subject);
                    inbox.record(
                        json!({
                            "from": envelope_from,
                            "to": rcpts,
                            "subject": mail.subject,
                            "text": mail.text,
                            "message": data,
                        }),
                        "email",
                        &line,
                    );
                    b"250 OK queued\r\n"
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        w.write_all(reply).await?;
    }
    Ok(())
}

/// What the terminal and the log show of a message.
#[derive(Debug, Default, PartialEq)]
pub struct Mail {
    pub subject: String,
    /// The text/plain part (or the whole body), decoded.
    pub text: String,
}

/// Headers (unfolded, names lowercased) and the body of a MIME entity.
fn split_entity(s: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match s.find("\r\n\r\n") {
        Some(i) => (&s[..i], &s[i + 4..]),
        None => (s, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The subject and plain text of a message as lettre writes them (a
/// multipart/alternative with a text/plain part, 7bit, quoted-printable or
/// base64); best effort.
pub fn parse_message(data: &str) -> Mail {
    let (headers, body) = split_entity(data);
    let subject = decode_words(header(&headers, "subject").unwrap_or(""));
    Mail {
        subject,
        text: plain_text(&headers, body, 0).unwrap_or_else(|| body.to_string()),
    }
}

fn plain_text(headers: &[(String, String)], body: &str, depth: usize) -> Option<String> {
    let ctype = header(headers, "content-type").unwrap_or("text/plain");
    let lower = ctype.to_ascii_lowercase();
    if lower.starts_with("multipart/") && depth < 4 {
        let boundary = ctype.split(';').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case("boundary")
                .then(|| v.trim_matches('"').to_string())
        })?;
        let delim = format!("--{boundary}");
        for part in body.split(&delim).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = part.strip_prefix("\r\n").unwrap_or(part);
            let (h, b) = split_entity(part);
            if let Some(t) = plain_text(&h, b, depth + 1) {
                return Some(t);
            }
        }
        return None;
    }
    if !lower.starts_with("text/plain") {
        return None;
    }
    let enc = header(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let bytes = match enc.as_str() {
        "base64" => base64_decode(body)?,
        "quoted-printable" => quoted_printable(body, false),
        _ => body.as_bytes().to_vec(),
    };
    let text = String::from_utf8_lossy(&bytes);
    Some(text.trim_end_matches("\r\n").replace("\r\n", "\n"))
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`);
/// whitespace between two encoded words is dropped.
pub fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, from) = rest.split_at(start);
        let decoded = (|| {
            let inner = &from[2..];
            let (_charset, inner) = inner.split_once('?')?;
            let (enc, inner) = inner.split_once('?')?;
            let end = inner.find("?=")?;
            let text = &inner[..end];
            let bytes = match enc {
                "b" | "B" => base64_decode(text)?,
                "q" | "Q" => quoted_printable(text, true),
                _ => return None,
            };
            let used = from.len() - inner.len() + end + 2;
            Some((String::from_utf8_lossy(&bytes).into_owned(), used))
        })();
        match decoded {
            Some((text, used)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &from[used..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &from[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

fn quoted_printable(s: &str, underscore_is_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'=' if b.get(i + 1..i + 3) == Some(b"\r\n") => i += 3,
            b'=' if b.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b'_' if underscore_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet_inbox(dir: &Path) -> Arc<Inbox> {
        Inbox::new(Some(&dir.join("n.log")), Arc::new(Teller::quiet())).unwrap()
    }

    #[tokio::test]
    async fn an_email_sent_with_lettre_as_the_email_notifier_does_is_received_and_logged() {
        use lettre::message::{Mailbox, MultiPart};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let dir = tempfile::tempdir().unwrap();
        let inbox = quiet_inbox(dir.path());
        let rx = smtp(inbox.clone()).await.unwrap();
        // As automation/src/exec/steps/notify.rs builds and sends it for `tls: none`.
        let text = "Runbook `x` failed (run r1).\n.a line starting with a dot\n..and two";
        let message = lettre::Message::builder()
            .from("sluice@localhost".parse::<Mailbox>().unwrap())
            .to("ops@localhost".parse::<Mailbox>().unwrap())
            .subject("memory-exhausted failed — über")
            .multipart(MultiPart::alternative_plain_html(
                text.to_string(),
                "<pre>x</pre>".to_string(),
            ))
            .unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(rx.addr.port())
            .timeout(Some(Duration::from_secs(10)))
            .build();
        transport.send(message.clone()).await.unwrap();
        // The pooled connection is reused (RSET / NOOP) for a second one.
        transport.send(message).await.unwrap();
        let got = inbox.messages();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0]["kind"], "email");
        assert_eq!(got[0]["from"], "sluice@localhost");
        assert_eq!(got[0]["to"], json!(["ops@localhost"]));
        assert_eq!(got[0]["subject"], "memory-exhausted failed — über");
        assert_eq!(got[0]["text"], text, "{got:#?}");
        let log = std::fs::read_to_string(dir.path().join("n.log")).unwrap();
        assert_eq!(log.lines().count(), 2);
        let first: J = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        assert_eq!(first["subject"], got[0]["subject"]);
    }

    async fn say(
        w: &mut tokio::net::tcp::OwnedWriteHalf,
        r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        line: &str,
    ) -> String {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        let mut reply = String::new();
        loop {
            let l = read_line(r).await.unwrap().unwrap();
            reply.push_str(&l);
            reply.push('\n');
            if l.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    #[tokio::test]
    async fn the_smtp_dialogue_orders_commands_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = quiet_inbox(dir.path());
        let rx = smtp(inbox.clone()).await.unwrap();
        let (r, mut w) = TcpStream::connect(rx.addr).await.unwrap().into_split();
        let mut r = BufReader::new(r);
        assert!(read_line(&mut r).await.unwrap().unwrap().starts_with("220"));
        assert!(say(&mut w, &mut r, "HELO me").await.starts_with("250"));
        assert!(
            say(&mut w, &mut r, "RCPT TO:<a@b>")
                .await
                .starts_with("503")
        );
        assert!(say(&mut w, &mut r, "DATA").await.starts_with("503"));
        assert!(
            say(&mut w, &mut r, "MAIL FROM:<s@x> BODY=8BITMIME")
                .await
                .starts_with("250")
        );
        assert!(
            say(&mut w, &mut r, "RCPT TO:<a@b>")
                .await
                .starts_with("250")
        );
        assert!(say(&mut w, &mut r, "RSET").await.starts_with("250"));
        assert!(say(&mut w, &mut r, "DATA").await.starts_with("503"));
        assert!(say(&mut w, &mut r, "NOOP").await.starts_with("250"));
        assert!(say(&mut w, &mut r, "VRFY x").await.starts_with("502"));
        assert!(
            say(&mut w, &mut r, "MAIL FROM:<s@x>")
                .await
                .starts_with("250")
        );
        assert!(
            say(&mut w, &mut r, "RCPT TO:<a@b>")
                .await
                .starts_with("250")
        );
        assert!(say(&mut w, &mut r, "DATA").await.starts_with("354"));
        let reply = say(&mut w, &mut r, "Subject: hi\r\n\r\n..dot\r\nplain\r\n.").await;
        assert!(reply.starts_with("250"), "{reply}");
        assert!(say(&mut w, &mut r, "QUIT").await.starts_with("221"));
        let got = inbox.messages();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["subject"], "hi");
        assert_eq!(got[0]["text"], ".dot\nplain");
        assert_eq!(got[0]["to"], json!(["a@b"]));
    }

    #[tokio::test]
    async fn the_slack_endpoint_answers_ok_and_keeps_a_bounded_list() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = quiet_inbox(dir.path());
        let rx = slack(inbox.clone()).await.unwrap();
        let client = crate::http_client::builder().build().unwrap();
        let url = format!("http://{}/slack/oncall", rx.addr);
        for i in 0..KEEP + 5 {
            let resp = client
                .post(&url)
                .json(&json!({"text": format!("message {i}\nsecond line")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.text().await.unwrap(), "ok");
        }
        let bad = client.post(&url).body("not json").send().await.unwrap();
        assert_eq!(bad.status(), 400);
        let got = inbox.messages();
        assert_eq!(got.len(), KEEP);
        assert_eq!(got[0]["text"], "message 5\nsecond line");
        assert_eq!(got[0]["channel"], "#oncall");
        let log = std::fs::read_to_string(dir.path().join("n.log")).unwrap();
        assert_eq!(log.lines().count(), KEEP + 5);
    }

    #[test]
    fn encoded_words_and_transfer_encodings_decode() {
        assert_eq!(decode_words("=?utf-8?b?w7xiZXI=?= x"), "über x");
        assert_eq!(
            decode_words("a =?utf-8?q?=C3=BCber_x?= =?utf-8?b?w7w=?="),
            "a über xü"
        );
        assert_eq!(decode_words("plain =? text"), "plain =? text");
        assert_eq!(quoted_printable("a=3Db=\r\nc", false), b"a=bc");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    }
}
