//! `GET /api/v1/runs/{id}/events`: a run as Server-Sent Events. Each event
//! (`run`) carries the whole run document of `GET /api/v1/runs/{id}` — run,
//! steps, approvals — sent when it changed; the stream ends after the run
//! reaches a final status (the console closes its `EventSource` then, so it
//! does not reconnect). The store is polled twice a second per open stream,
//! so every instance sharing the store shows the same live run, and a
//! stream lasts at most [`MAX_STREAM`] (a client reconnects) and ends when
//! the service stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value as J, json};

use super::error::ApiError;
use super::service::store_err;
use crate::exec::executor::RunStatus;
use crate::service::Service;

const POLL: Duration = Duration::from_millis(500);
/// Longest life of one stream.
pub const MAX_STREAM: Duration = Duration::from_secs(3600);

/// The run document: the run, its steps, its approvals, the notifications
/// sent about it, and whether it executes on this instance.
pub async fn document(svc: &Service, id: &str) -> Result<J, ApiError> {
    let (run, steps) = svc.store.get_run(id).await.map_err(store_err)?;
    let approvals = svc.store.approvals_of(id).await.map_err(store_err)?;
    let deliveries = svc.store.deliveries_of(id).await.map_err(store_err)?;
    let active_here = svc.runner.active_runs().iter().any(|r| r == id);
    Ok(json!({
        "run": run, "steps": steps, "approvals": approvals,
        "deliveries": deliveries, "executing_here": active_here,
    }))
}

fn is_final(doc: &J) -> bool {
    doc["run"]["status"]
        .as_str()
        .and_then(RunStatus::parse)
        .is_some_and(RunStatus::is_final)
}

pub async fn events(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let first = document(&svc, &id).await?;
    let until = tokio::time::Instant::now() + MAX_STREAM;
    // State: the last document sent (None before the first), whether to stop.
    let stream = futures::stream::unfold(
        (svc, id, Some(first), None::<String>, false),
        move |(svc, id, mut next, mut last, done)| async move {
            if done {
                return None;
            }
            loop {
                let doc = match next.take() {
                    Some(d) => d,
                    None => {
                        if tokio::time::Instant::now() >= until || svc.is_stopping() {
                            return None;
                        }
                        // A stopping service ends its streams (graceful
                        // shutdown waits for open connections).
                        let mut stop = svc.shutdown_signal();
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => {}
                            _ = stop.wait_for(|s| *s) => return None,
                        }
                        match document(&svc, &id).await {
                            Ok(d) => d,
                            Err(e) => {
                                let ev = Event::default().event("error").data(e.to_string());
                                return Some((Ok(ev), (svc, id, None, last, true)));
                            }
                        }
                    }
                };
                let text = doc.to_string();
                let end = is_final(&doc);
                if last.as_deref() != Some(text.as_str()) {
                    let ev = Event::default().event("run").data(text.clone());
                    last = Some(text);
                    return Some((Ok(ev), (svc, id, None, last, end)));
                }
                if end {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
