//! Instance leases: every instance renews a heartbeat in the store; one whose
//! heartbeat is older than `service.lease` is dead, and a survivor adopts its
//! unfinished runs (resuming or reporting them). An instance that finds it
//! was declared dead stops at once, so a run is never executed by two
//! instances (fencing).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Utc;
use tracing::{error, info, warn};

use super::Service;

/// Adopts the runs of every dead instance.
pub async fn take_over(svc: &Arc<Service>) {
    let lease = chrono::Duration::from_std(svc.config.service.lease.std())
        .unwrap_or(chrono::Duration::seconds(10));
    let dead = match svc
        .store
        .dead_instances(Utc::now() - lease, &svc.instance.id)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "Could not look for dead instances.");
            return;
        }
    };
    for id in dead {
        if let Err(e) = svc.store.stop_instance(&id).await {
            warn!(instance = %id, error = %e, "Could not mark an instance dead.");
            continue;
        }
        match svc.runner.adopt(&id).await {
            Ok(0) => {}
            Ok(n) => info!(dead = %id, runs = n, "Took over the runs of a dead instance."),
            Err(e) => warn!(dead = %id, error = %e, "Taking over runs failed; retrying."),
        }
    }
}

/// Heartbeats, takes over dead instances and applies remote cancel requests.
pub async fn run(svc: Arc<Service>) {
    let lease = svc.config.service.lease.std();
    let beat = (lease / 3).max(StdDuration::from_millis(200));
    let mut stop = svc.shutdown_signal();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match svc.store.heartbeat(&svc.instance.id).await {
            Ok(true) => failures = 0,
            Ok(false) => {
                error!(instance = %svc.instance.id, "This instance was declared dead by another one; stopping so no run executes twice.");
                fence(&svc);
                return;
            }
            Err(e) => {
                failures += 1;
                warn!(error = %e, failures, "Heartbeat failed.");
                // Without the store for a whole lease another instance may take over: stop acting.
                if beat * failures >= lease {
                    error!(
                        "The store was unreachable for a whole lease; stopping so no run executes twice."
                    );
                    fence(&svc);
                    return;
                }
                continue;
            }
        }
        take_over(&svc).await;
        if let Err(e) = svc.runner.poll_cancel_requests().await {
            warn!(error = %e, "Could not read cancel requests.");
        }
        // The kill switch may have been flipped through another instance.
        if let Ok(Some(v)) = svc.store.get_state(super::KILL_SWITCH).await {
            let on = v == "on";
            if on != svc.runner.guards.kill_switch() {
                info!(on, "Kill switch changed elsewhere.");
                svc.set_kill_switch_local(on);
            }
        }
    }
}

/// Stops every run here at once and shuts the service down: its runs may
/// already belong to another instance.
fn fence(svc: &Service) {
    svc.runner.abort_all();
    svc.fenced.store(true, std::sync::atomic::Ordering::SeqCst);
    svc.request_shutdown();
}

/// Starts queued runs as their keys free up.
pub async fn pump(svc: Arc<Service>) {
    let mut stop = svc.shutdown_signal();
    loop {
        if let Err(e) = svc.runner.pump_queue().await {
            warn!(error = %e, "Could not start queued runs.");
        }
        tokio::select! {
            _ = svc.runner.pump_wait(StdDuration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
