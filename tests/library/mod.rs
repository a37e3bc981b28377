//! The shipped runbook library on real engines. Each test builds its own
//! [`World`](sluice_tests::world::World) (engines on free loopback ports, a
//! fresh store), injects the fault where there is one, runs the runbook, and
//! checks the engine afterwards.

mod alert_driven;
mod consistency;
mod lifecycle;
mod maintenance;
mod process_steps;
mod remediation;
mod scaling;
mod scheduled;

use serde_json::Value as J;

/// Window size of the test engines' `revenue_per_minute` and their allowed lateness.
const WINDOW_MS: i64 = 60_000;
const OUT_OF_ORDER_MS: i64 = 2_000;

fn query<'a>(state: &'a J, name: &str) -> Option<&'a J> {
    state["queries"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == name)
}

/// Windows in a state document, all queries.
pub(crate) fn window_count(state: &J) -> usize {
    state["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| q["windows"].as_array().map_or(0, Vec::len))
        .sum()
}

/// Asserts that `now` (an engine's state export after an import) holds every
/// `revenue_per_minute` window of `backup` with at least as many groups —
/// except a window the engine's watermark has passed since, which it closed
/// and emitted, as it should.
pub(crate) fn assert_windows_restored(backup: &J, now: &J) {
    let name = "revenue_per_minute";
    let old = query(backup, name).expect("query in the backup");
    let new = query(now, name).expect("query on the engine");
    let watermark = new["max_event_ms"].as_i64().unwrap_or(i64::MIN) - OUT_OF_ORDER_MS;
    for win in old["windows"].as_array().into_iter().flatten() {
        let start = win["start"].as_i64().expect("window start");
        let groups = win["groups"].as_array().map_or(0, Vec::len);
        let have = new["windows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["start"] == start);
        match have {
            Some(w) => {
                let n = w["groups"].as_array().map_or(0, Vec::len);
                assert!(
                    n >= groups,
                    "window {start}: {n} groups < {groups} backed up"
                );
            }
            None => assert!(
                watermark >= start + WINDOW_MS,
                "window {start} is neither on the engine nor closed by its watermark ({watermark})"
            ),
        }
    }
}
