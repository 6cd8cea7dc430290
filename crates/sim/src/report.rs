//! What a load-generator run found: counts, response codes, latency.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Mismatch descriptions kept in a report; the count goes on.
pub const MAX_MISMATCHES: usize = 20;
/// Connection errors kept in a report.
pub const MAX_ERRORS: usize = 20;

/// Latency percentiles of verified and unverified answers alike, in
/// microseconds from the request's write to its response's arrival.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Responses measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of a histogram recorded in microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// The outcome of a [`run`](super::pos::run).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PosReport {
    /// Connections that were established.
    pub connections: usize,
    /// Requests written.
    pub sent: u64,
    /// Responses read (matched or not).
    pub received: u64,
    /// Responses that checked out: MTI + 10, fields 11, 37, 41 echoed,
    /// field 39 present and as the template expects.
    pub ok: u64,
    /// Responses that did not check out.
    pub mismatched: u64,
    /// The first [`MAX_MISMATCHES`] mismatches, described with masked PANs.
    pub mismatches: Vec<String>,
    /// Requests not answered within the timeout.
    pub timeouts: u64,
    /// Responses matching no request in flight (late, or unknown STAN).
    pub unmatched: u64,
    /// Requests in flight on a connection that closed or failed.
    pub lost: u64,
    /// Connection failures (the first [`MAX_ERRORS`]).
    pub errors: Vec<String>,
    /// Responses by field 39 (`none` when absent).
    pub by_code: BTreeMap<String, u64>,
    /// Per template: responses by field 39, plus `timeout`.
    pub by_template: BTreeMap<String, BTreeMap<String, u64>>,
    /// From the first request to the last response or timeout.
    #[serde(rename = "elapsed_s", serialize_with = "seconds")]
    pub elapsed: Duration,
    /// Responses per second over `elapsed`.
    pub throughput: f64,
    /// Latency percentiles.
    pub latency: Latency,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Microsecond precision, without binary-fraction noise.
    s.serialize_f64(d.as_micros() as f64 / 1e6)
}

impl PosReport {
    /// Whether every request sent was answered and every answer checked
    /// out, with no connection failing.
    pub fn all_checked_out(&self) -> bool {
        self.sent > 0
            && self.ok == self.sent
            && self.received == self.sent
            && self.mismatched == 0
            && self.timeouts == 0
            && self.unmatched == 0
            && self.lost == 0
            && self.errors.is_empty()
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for PosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} requests over {} connections in {:.3} s: {:.0} responses/s",
            self.sent,
            self.connections,
            self.elapsed.as_secs_f64(),
            self.throughput
        )?;
        writeln!(
            f,
            "  {:<10} {:>10}\n  {:<10} {:>10}\n  {:<10} {:>10}\n  {:<10} {:>10}\n  {:<10} {:>10}\n  {:<10} {:>10}\n  {:<10} {:>10}",
            "sent",
            self.sent,
            "received",
            self.received,
            "verified",
            self.ok,
            "mismatched",
            self.mismatched,
            "timeouts",
            self.timeouts,
            "unmatched",
            self.unmatched,
            "lost",
            self.lost
        )?;
        let l = &self.latency;
        writeln!(f, "latency (µs, {} responses)", l.count)?;
        writeln!(
            f,
            "  {:>8} {:>8} {:>8} {:>8} {:>8}",
            "p50", "p90", "p99", "p99.9", "max"
        )?;
        writeln!(
            f,
            "  {:>8} {:>8} {:>8} {:>8} {:>8}",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        )?;
        writeln!(f, "responses by code")?;
        for (code, count) in &self.by_code {
            let rc87 = if code.len() == 3 {
                iso8583::codes::from_action_code(code)
            } else {
                code
            };
            let meaning = iso8583::codes::meaning(rc87).unwrap_or("");
            writeln!(f, "  {code:<5} {count:>10}  {meaning}")?;
        }
        writeln!(f, "by template")?;
        for (name, codes) in &self.by_template {
            let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            writeln!(f, "  {name:<24} {}", list.join(", "))?;
        }
        for m in &self.mismatches {
            writeln!(f, "mismatch: {m}")?;
        }
        if self.mismatched > self.mismatches.len() as u64 {
            writeln!(
                f,
                "… and {} more mismatches",
                self.mismatched - self.mismatches.len() as u64
            )?;
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        if self.all_checked_out() {
            write!(f, "result: every response checked out")
        } else {
            write!(f, "result: NOT every response checked out")
        }
    }
}
