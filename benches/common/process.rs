//! The switch process as the end-to-end bench measures it: CPU time per
//! thread and in all, when it is quiet again after a run, and one metric
//! of its `/metrics`.

use std::time::Duration;

/// utime + stime of every thread of process `pid`, in seconds, summed by
/// thread name (`comm`), largest first.
pub fn threads_cpu(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: std::collections::BTreeMap<String, f64> = Default::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some((head, rest)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else {
            continue;
        };
        let name = head.get(open + 1..).unwrap_or_default();
        // Worker threads are numbered by some runtimes: one row for all.
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        *by_name.entry(name.to_string()).or_default() += ticks(rest);
    }
    let mut rows: Vec<(String, f64)> = by_name.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows
}

/// utime + stime of process `pid` (all threads), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    ticks(stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default())
}

/// utime + stime from the part of a `stat` line after the command name.
fn ticks(after_comm: &str) -> f64 {
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Waits until process `pid` is quiet again (under 10 ms of CPU in a
/// 500 ms window, at most 60 s) and returns how long that took.
pub fn until_quiet(pid: u32) -> Duration {
    let since = std::time::Instant::now();
    let mut last = cpu_seconds(pid);
    while since.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        let now = cpu_seconds(pid);
        if now - last < 0.010 {
            return since.elapsed().saturating_sub(Duration::from_millis(500));
        }
        last = now;
    }
    since.elapsed()
}

/// The value of an unlabelled metric in a `/metrics` body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
