//! Microsoft Teams through a Workflows webhook ("Post to a channel when a
//! webhook request is received"; the Office 365 connector cards are
//! retired): a message with one Adaptive Card attachment (schema 1.4): the
//! title as a bold, wrapping heading, the text as a wrapping block, and an
//! "Open run" action when there is a link.

use futures::future::BoxFuture;
use serde_json::{Value as J, json};

use super::{Message, Notifier, NotifyError};
use crate::config::TeamsChannel;

pub struct Teams<'c>(pub &'c TeamsChannel);

/// The Workflows webhook body for `msg`.
pub fn card(msg: &Message) -> J {
    let mut body = Vec::new();
    if !msg.title.trim().is_empty() {
        body.push(json!({"type": "TextBlock", "text": msg.title, "weight": "Bolder", "size": "Medium", "wrap": true}));
    }
    body.push(json!({"type": "TextBlock", "text": if msg.text.is_empty() { " " } else { msg.text.as_str() }, "wrap": true}));
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(link) = &msg.event.link {
        content["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open run", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }]
    })
}

impl Notifier for Teams<'_> {
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        msg: &'a Message,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let req = http.post(self.0.webhook_url.expose());
            super::post_json("teams", req, &card(msg)).await.map(|_| ())
        })
    }
}
