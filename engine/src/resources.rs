//! Process figures from the OS (/proc): resident memory and CPU time, and the
//! machine's memory, for utilization, `/admin/resources` and metrics.

use std::time::Instant;

/// Resident set size of this process in bytes.
pub fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as f64 } else { 100.0 }
}

/// User + system CPU seconds used by this process.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Threads of this process: (tid, name, state).
pub fn threads() -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let state = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.split_whitespace().next().unwrap_or("?").to_owned())
            })
            .unwrap_or_default();
        out.push((tid, name, state));
    }
    out.sort();
    out
}

/// (total, available) bytes of the machine.
pub fn system_memory() -> Option<(u64, u64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// CPU percent of one core between successive samples.
#[derive(Debug)]
pub struct CpuSampler {
    last: Option<(Instant, f64)>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    pub fn new() -> Self {
        Self {
            last: process_cpu_seconds().map(|c| (Instant::now(), c)),
        }
    }

    /// Percent of one core used since the previous call.
    pub fn sample(&mut self) -> f64 {
        let now = Instant::now();
        let Some(cpu) = process_cpu_seconds() else {
            return 0.0;
        };
        let pct = match self.last {
            Some((t, c)) if now > t => {
                ((cpu - c) / now.duration_since(t).as_secs_f64() * 100.0).max(0.0)
            }
            _ => 0.0,
        };
        self.last = Some((now, cpu));
        pct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_process_figures() {
        let rss = process_rss_bytes().unwrap();
        assert!(rss > 1 << 20, "rss {rss}");
        let cpu = process_cpu_seconds().unwrap();
        assert!(cpu >= 0.0);
        let (total, avail) = system_memory().unwrap();
        assert!(total >= avail && avail > 0);
        assert!(threads().iter().any(|(_, name, _)| !name.is_empty()));
    }
}
