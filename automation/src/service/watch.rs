//! Hot reload: the runbook and rule paths are watched (inotify through
//! `notify`); changes are debounced and then reloaded the way `POST
//! /api/v1/reload` does — validated first, swapped in only when valid. A
//! 30-second re-check covers filesystems where events do not arrive.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use notify::{RecursiveMode, Watcher};
use tracing::{info, warn};

use super::Service;

const DEBOUNCE: StdDuration = StdDuration::from_millis(300);
const RECHECK: StdDuration = StdDuration::from_secs(30);

pub fn spawn(svc: Arc<Service>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "Cannot watch files; reloading every 30s instead.");
            None
        }
    };
    if let Some(w) = watcher.as_mut() {
        for p in svc.runbook_paths.iter().chain(&svc.rule_paths) {
            if let Err(e) = w.watch(p, RecursiveMode::Recursive) {
                warn!(path = %p.display(), error = %e, "Cannot watch path.");
            } else {
                info!(path = %p.display(), "Watching for changes.");
            }
        }
    }
    tokio::spawn(async move {
        // Keep the watcher alive as long as the loop runs.
        let _watcher = watcher;
        let mut stop = svc.shutdown_signal();
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    if ev.is_none() { return; }
                    // Editors write in several steps: wait for quiet.
                    loop {
                        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                            Ok(Some(())) => continue,
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep(RECHECK) => {}
                _ = super::until_stopped(&mut stop) => return,
            }
            let svc2 = svc.clone();
            let _ = tokio::task::spawn_blocking(move || svc2.reload()).await;
        }
    });
}
