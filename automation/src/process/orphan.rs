//! Stopping what a dead service instance left running: the process group a
//! cut-off step's program led. Safe against PID reuse: Linux never hands out
//! a PID still used as a process-group id, and a live group leader must have
//! started when the step did.

use chrono::{DateTime, Utc};

/// Start time of process `pid` (wall clock), from /proc.
fn started(pid: i32) -> Option<DateTime<Utc>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ms = btime * 1000 + (ticks * 1000 / hz) as i64;
    DateTime::<Utc>::from_timestamp_millis(ms)
}

/// Kills process group `pgid` if it is still the one the step started at
/// `step_started`; returns whether a signal was sent.
pub fn kill_left_over_group(pgid: i64, step_started: DateTime<Utc>) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the group exists.
    if unsafe { libc::kill(-pgid, 0) } != 0 {
        return false; // nothing left
    }
    if let Some(leader) = started(pgid) {
        let skew = chrono::Duration::seconds(5);
        if leader < step_started - skew || leader > step_started + chrono::Duration::seconds(60) {
            return false; // the PID is someone else's now
        }
    }
    // SAFETY: sends SIGKILL to the step's own process group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    #[test]
    fn kills_the_group_it_started_and_nothing_else() {
        let started_at = Utc::now();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i64::from(child.id());
        std::thread::sleep(std::time::Duration::from_millis(100));
        // A group that "started" long before is not touched.
        assert!(!kill_left_over_group(
            pgid,
            started_at - chrono::Duration::hours(1)
        ));
        assert!(kill_left_over_group(pgid, started_at));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
