//! CPU time spent by processes, from `/proc` (Linux), to say where the
//! time of a run goes.

use std::collections::HashMap;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on
/// Linux everywhere in practice).
const TICKS_PER_SECOND: f64 = 100.0;

/// User+system seconds of one process so far.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces; fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// User+system seconds of every process whose command name starts with
/// `prefix`, by pid (PostgreSQL runs one process per connection).
pub fn seconds_by_prefix(prefix: &str) -> HashMap<u32, f64> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix)
            && let Some(seconds) = process_seconds(pid)
        {
            out.insert(pid, seconds);
        }
    }
    out
}

/// Seconds spent between two snapshots (processes that started in between
/// count from zero).
pub fn delta(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after.iter().map(|(pid, s)| s - before.get(pid).copied().unwrap_or(0.0)).sum()
}
