//! The terminal load generator: many POS terminals sending pipelined
//! authorisations and purchases, verifying every answer.
//!
//! Each connection is one terminal (`TERM0001`, `TERM0002` … unless
//! [`PosConfig::terminals`] names them) with its own STAN sequence
//! (1..=999999, wrapping). Transactions are numbered across the run and
//! claimed by whichever connection has room in its pipeline, so a slow
//! connection does not hold the others back; number `n` uses template
//! [`Scenario::pick`]`(n)` and, when a rate is set, is sent no earlier than
//! `n / rate` seconds after the start. Responses are matched by field 11 and
//! may come in any order.
//!
//! A response checks out when its MTI is the request's plus 10, fields 11,
//! 37 and 41 are echoed, and field 39 is present and, if the template
//! expects a code, equal to it. Latency is recorded per connection in an
//! hdrhistogram (µs) and merged at the end.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::report::{Latency, MAX_ERRORS, MAX_MISMATCHES, PosReport};
use crate::scenario::Scenario;
use iso8583::Dialect;
use iso8583::framing::FrameCodec;
use security::profile::Protection;

mod connection;
mod setup;

use connection::{Connection, Tallies, Terminal};
use setup::{Layout, Plan, Setup};

/// Default wait for each response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest pipeline per connection.
pub const MAX_PIPELINE: usize = 10_000;
/// Largest number of connections.
pub const MAX_CONNECTIONS: usize = 100_000;
/// Highest latency the histograms record (1 hour, in µs); slower answers
/// are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Field 22 in 1993 dialects (point of service data code, 12 characters).
/// The simulators do not interpret it.
const POS_DATA_CODE_93: &str = "A00101A00000";

/// How to run the load generator. [`PosConfig::new`] fills in the defaults;
/// change the public fields as needed.
#[derive(Debug, Clone)]
pub struct PosConfig {
    /// Where to connect (the switch, or a bank simulator directly).
    pub addr: SocketAddr,
    /// Dialect of the requests.
    pub dialect: Arc<Dialect>,
    /// Framing of the link.
    pub codec: FrameCodec,
    /// Header sent after each length prefix; must have the codec's header
    /// length (default: a TPDU `60 00 01 00 00` for 5 bytes, else zeros).
    pub header: Bytes,
    /// Transactions to send in all (default 1000). With a
    /// [`duration`](Self::duration), whichever limit comes first stops the run.
    pub count: u64,
    /// Connections, one terminal each (default 1).
    pub connections: usize,
    /// Requests in flight per connection (default 1).
    pub pipeline: usize,
    /// Total transactions per second, paced over all connections; `None`
    /// sends as fast as answers allow.
    pub rate: Option<u64>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// What to send.
    pub scenario: Scenario,
    /// Show a progress bar when stderr is a terminal (plain lines once a
    /// second otherwise).
    pub progress: bool,
    /// Wait for each response at most this long (default 10 s).
    pub timeout: Duration,
    /// Terminal ids (field 41, at most 8 characters) of the connections in
    /// order; connections beyond the list are `TERM0001`-style by position.
    pub terminals: Vec<String>,
    /// Seed of the random PAN digits (connection `i` uses `seed + i`).
    pub seed: u64,
    /// MAC (TAK) and PIN (TPK) keys of the simulated terminals: requests
    /// are MAC'd and responses must carry a valid MAC when a MAC key is
    /// given; [`pin`](Self::pin) is enciphered under the PIN key.
    pub security: Protection,
    /// PIN to send in field 52 (needs a static PIN key in `security`).
    pub pin: Option<String>,
}

impl PosConfig {
    /// A configuration with the defaults: 1000 transactions over one
    /// connection, no pipelining, no rate limit, 10 s timeout, no progress.
    pub fn new(
        addr: SocketAddr,
        dialect: Arc<Dialect>,
        codec: FrameCodec,
        scenario: Scenario,
    ) -> PosConfig {
        PosConfig {
            addr,
            dialect,
            header: default_header(codec.header_len()),
            codec,
            count: 1000,
            connections: 1,
            pipeline: 1,
            rate: None,
            duration: None,
            scenario,
            progress: false,
            timeout: DEFAULT_TIMEOUT,
            terminals: Vec::new(),
            seed: 0x5EED,
            security: Protection::default(),
            pin: None,
        }
    }
}

/// The header sent by default: a TPDU for 5 bytes, else zeros.
pub fn default_header(len: usize) -> Bytes {
    let mut header = vec![0u8; len];
    if len == 5 {
        header.copy_from_slice(&[0x60, 0x00, 0x01, 0x00, 0x00]);
    }
    Bytes::from(header)
}

/// The terminal id of connection `index` (from 0) when none is given:
/// `TERM0001` … `TERM9999`, then `T0010000` ….
pub fn default_terminal(index: usize) -> String {
    match index + 1 {
        n @ ..=9999 => format!("TERM{n:04}"),
        n => format!("T{:07}", n % 10_000_000),
    }
}

/// The load generator could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PosError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[source] ConfigProblem),
    /// The dialect lacks a field the generator needs.
    #[error("dialect {dialect} cannot carry the generated requests: {reason}")]
    Dialect {
        /// The dialect's name.
        dialect: String,
        /// What is missing.
        reason: String,
    },
    /// Not a single connection could be established.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why (the first connection's error).
        source: std::io::Error,
    },
}

/// Which configuration value of the load generator is out of range.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// No transactions to send.
    #[error("count must be at least 1")]
    Count,
    /// Too few or too many connections.
    #[error("connections must be 1 to {MAX_CONNECTIONS}")]
    Connections,
    /// Too few or too many requests in flight per connection.
    #[error("pipeline must be 1 to {MAX_PIPELINE}")]
    Pipeline,
    /// A rate of zero.
    #[error("rate must be at least 1 transaction per second")]
    Rate,
    /// A zero timeout.
    #[error("timeout must be positive")]
    Timeout,
    /// A header of another length than the framing's.
    #[error("header of {given} bytes, the framing expects {expected}")]
    Header {
        /// Bytes given.
        given: usize,
        /// Bytes the framing expects.
        expected: usize,
    },
    /// A terminal id that field 41 cannot carry.
    #[error("terminal id {0:?} must be 1 to 8 printable characters")]
    Terminal(String),
    /// A template's MTI, in the dialect's edition, is not four digits.
    #[error("template `{name}`: bad mti {mti:?}")]
    TemplateMti {
        /// The template.
        name: String,
        /// Its MTI as given.
        mti: String,
    },
    /// The latency histogram could not be made.
    #[error("latency histogram: {0}")]
    Histogram(#[source] hdrhistogram::CreationError),
}

/// Runs the load described by `cfg` and reports what came back.
///
/// Connections are established first; the clock starts when they all are
/// (or have failed: failures are listed in [`PosReport::errors`], and only
/// if none succeeds is it an error).
pub async fn run(cfg: PosConfig) -> Result<PosReport, PosError> {
    validate(&cfg)?;
    let layout = Layout::of(&cfg.dialect)?;
    let setup = Arc::new(Setup::new(&cfg, layout)?);
    let streams = connect_all(&cfg).await?;
    let plan = Arc::new(Plan::new(&cfg));
    let done = CancellationToken::new();
    let progress = cfg
        .progress
        .then(|| tokio::spawn(show_progress(Arc::clone(&plan), cfg.clone(), done.clone())));

    let mut tasks = JoinSet::new();
    let connected = streams.iter().filter(|(_, s)| s.is_ok()).count();
    let mut connect_errors = Vec::new();
    for (index, stream) in streams {
        match stream {
            Ok(stream) => {
                let terminal = Terminal::new(&cfg, index);
                let conn = Connection::new(Arc::clone(&setup), Arc::clone(&plan), terminal);
                tasks.spawn(conn.run(stream));
            }
            Err(error) => {
                connect_errors.push(format!("{}: connect: {error}", terminal_id(&cfg, index)));
            }
        }
    }
    let mut tallies = Vec::with_capacity(connected);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(t) => tallies.push(t),
            Err(error) => connect_errors.push(format!("connection task failed: {error}")),
        }
    }
    let elapsed = plan.start.elapsed();
    done.cancel();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    Ok(merge(&setup, connected, tallies, connect_errors, elapsed))
}

fn validate(cfg: &PosConfig) -> Result<(), PosError> {
    let fail = |problem: ConfigProblem| Err(PosError::Config(problem));
    if cfg.count == 0 {
        return fail(ConfigProblem::Count);
    }
    if !(1..=MAX_CONNECTIONS).contains(&cfg.connections) {
        return fail(ConfigProblem::Connections);
    }
    if !(1..=MAX_PIPELINE).contains(&cfg.pipeline) {
        return fail(ConfigProblem::Pipeline);
    }
    if cfg.rate == Some(0) {
        return fail(ConfigProblem::Rate);
    }
    if cfg.timeout.is_zero() {
        return fail(ConfigProblem::Timeout);
    }
    if cfg.header.len() != cfg.codec.header_len() {
        return fail(ConfigProblem::Header {
            given: cfg.header.len(),
            expected: cfg.codec.header_len(),
        });
    }
    for id in &cfg.terminals {
        if id.trim_end().is_empty()
            || id.len() > 8
            || !id.bytes().all(|b| (0x20..=0x7E).contains(&b))
        {
            return fail(ConfigProblem::Terminal(id.clone()));
        }
    }
    Ok(())
}

fn terminal_id(cfg: &PosConfig, index: usize) -> String {
    cfg.terminals
        .get(index)
        .cloned()
        .unwrap_or_else(|| default_terminal(index))
}

async fn connect_all(
    cfg: &PosConfig,
) -> Result<Vec<(usize, std::io::Result<TcpStream>)>, PosError> {
    let mut attempts = JoinSet::new();
    for index in 0..cfg.connections {
        let (addr, timeout) = (cfg.addr, cfg.timeout);
        attempts.spawn(async move {
            let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            };
            if let Ok(s) = &stream {
                let _ = s.set_nodelay(true);
            }
            (index, stream)
        });
    }
    let mut streams = Vec::with_capacity(cfg.connections);
    while let Some(joined) = attempts.join_next().await {
        if let Ok(result) = joined {
            streams.push(result);
        }
    }
    streams.sort_by_key(|(i, _)| *i);
    if streams.iter().all(|(_, s)| s.is_err()) {
        let source = streams
            .into_iter()
            .find_map(|(_, s)| s.err())
            .unwrap_or_else(|| std::io::Error::other("no connection attempted"));
        return Err(PosError::Connect {
            addr: cfg.addr,
            source,
        });
    }
    Ok(streams)
}

/// Adds up the connections' tallies.
fn merge(
    setup: &Setup,
    connections: usize,
    tallies: Vec<Tallies>,
    mut errors: Vec<String>,
    elapsed: Duration,
) -> PosReport {
    let mut report = PosReport {
        connections,
        elapsed,
        ..PosReport::default()
    };
    let mut latency = setup.histogram.clone();
    for t in tallies {
        report.sent += t.sent;
        report.received += t.received;
        report.ok += t.ok;
        report.mismatched += t.mismatched;
        for m in t.mismatches {
            if report.mismatches.len() < MAX_MISMATCHES {
                report.mismatches.push(m);
            }
        }
        report.timeouts += t.timeouts;
        report.unmatched += t.unmatched;
        report.lost += t.lost;
        errors.extend(t.error);
        for (code, n) in t.by_code {
            *report.by_code.entry(code).or_default() += n;
        }
        for (index, codes) in t.by_template.into_iter().enumerate() {
            let name = setup
                .scenario
                .templates()
                .get(index)
                .map_or_else(|| format!("#{index}"), |t| t.name.clone());
            let merged = report.by_template.entry(name).or_default();
            for (code, n) in codes {
                *merged.entry(code).or_default() += n;
            }
        }
        if let Err(error) = latency.add(&t.latency) {
            warn!(%error, "cannot merge a latency histogram");
        }
    }
    errors.truncate(MAX_ERRORS);
    report.errors = errors;
    report.latency = Latency::from_histogram(&latency);
    let secs = elapsed.as_secs_f64();
    report.throughput = if secs > 0.0 {
        (report.received as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    };
    report
}

/// Shows progress until `done`: an indicatif bar when stderr is a
/// terminal, else a plain line on stderr once a second.
async fn show_progress(plan: Arc<Plan>, cfg: PosConfig, done: CancellationToken) {
    let tty = std::io::stderr().is_terminal();
    let bounded = cfg.duration.is_none();
    let bar = tty.then(|| {
        let bar = if bounded {
            indicatif::ProgressBar::new(cfg.count)
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        let template = if bounded {
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} answered {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {pos} answered {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar
    });
    let period = if tty {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = 0u64;
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let answered = plan.answered.load(Ordering::Relaxed);
        let sent = plan.sent.load(Ordering::Relaxed);
        match &bar {
            Some(bar) => {
                bar.set_position(answered);
                bar.set_message(format!("({} in flight)", sent.saturating_sub(answered)));
            }
            None => {
                if answered != last {
                    eprintln!(
                        "pos: {answered} answered, {} in flight, {:.1} s",
                        sent.saturating_sub(answered),
                        plan.start.elapsed().as_secs_f64()
                    );
                }
            }
        }
        last = answered;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
