//! Email over SMTP (lettre): STARTTLS, implicit TLS, or plain on loopback;
//! a text part and an HTML part (default: the text, escaped). A 5xx reply
//! (a refused login, an unknown recipient) is permanent.

use std::time::Duration as StdDuration;

use futures::future::BoxFuture;

use super::{Message, Notifier, NotifyError};
use crate::config::{EmailChannel, SmtpTls};

pub struct Email<'c>(pub &'c EmailChannel);

impl Notifier for Email<'_> {
    fn send<'a>(
        &'a self,
        _: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(email(self.0, msg))
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn email(ch: &EmailChannel, msg: &Message) -> Result<(), NotifyError> {
    use lettre::message::{Mailbox, MultiPart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let bad = |what: &str, e: &dyn std::fmt::Display| {
        NotifyError::permanent(format!("email: {what}: {e}"))
    };
    let from: Mailbox = ch.from.parse().map_err(|e| bad("invalid `from`", &e))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(msg.title.clone());
    for to in &ch.to {
        builder = builder.to(to
            .parse::<Mailbox>()
            .map_err(|e| bad("invalid recipient", &e))?);
    }
    let html = msg
        .html
        .clone()
        .unwrap_or_else(|| format!("<pre>{}</pre>", escape_html(&msg.text)));
    let message = builder
        .multipart(MultiPart::alternative_plain_html(msg.text.clone(), html))
        .map_err(|e| bad("building message", &e))?;

    let smtp = &ch.smtp;
    let mut transport = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| bad("smtp", &e))?,
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| bad("smtp", &e))?
        }
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    if let Some(port) = smtp.port {
        transport = transport.port(port);
    }
    if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
        transport =
            transport.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    let transport = transport.timeout(Some(StdDuration::from_secs(30))).build();
    transport.send(message).await.map(|_| ()).map_err(|e| {
        // A 5xx reply (refused login, unknown recipient) will not pass by itself.
        let message = format!("email: {}", crate::exec::steps::http::error_chain(&e));
        if e.is_permanent() {
            NotifyError::permanent(message)
        } else {
            NotifyError::recoverable(message)
        }
    })
}
