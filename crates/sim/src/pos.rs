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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::report::{Latency, MAX_ERRORS, MAX_MISMATCHES, PosReport};
use super::scenario::Scenario;
use base::clock::DateTime;
use iso8583::card::mask_pan;
use iso8583::codes;
use iso8583::framing::{Frame, FrameCodec, FramingError};
use iso8583::spec::Length;
use iso8583::{Dialect, Message, Mti};
use security::mac;
use security::pin;
use security::profile::Protection;
use zeroize::Zeroizing;

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
    Config(String),
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
    let fail = |m: String| Err(PosError::Config(m));
    if cfg.count == 0 {
        return fail("count must be at least 1".into());
    }
    if !(1..=MAX_CONNECTIONS).contains(&cfg.connections) {
        return fail(format!("connections must be 1 to {MAX_CONNECTIONS}"));
    }
    if !(1..=MAX_PIPELINE).contains(&cfg.pipeline) {
        return fail(format!("pipeline must be 1 to {MAX_PIPELINE}"));
    }
    if cfg.rate == Some(0) {
        return fail("rate must be at least 1 transaction per second".into());
    }
    if cfg.timeout.is_zero() {
        return fail("timeout must be positive".into());
    }
    if cfg.header.len() != cfg.codec.header_len() {
        return fail(format!(
            "header of {} bytes, the framing expects {}",
            cfg.header.len(),
            cfg.codec.header_len()
        ));
    }
    for id in &cfg.terminals {
        if id.trim_end().is_empty()
            || id.len() > 8
            || !id.bytes().all(|b| (0x20..=0x7E).contains(&b))
        {
            return fail(format!(
                "terminal id {id:?} must be 1 to 8 printable characters"
            ));
        }
    }
    Ok(())
}

/// Which optional fields the dialect takes, and in which form.
#[derive(Debug, Clone)]
struct Layout {
    /// MTI version digit: `0` (1987) or `1` (1993).
    version: u8,
    /// Field 39 carries 1993 action codes.
    action_codes: bool,
    /// Field 12 as `YYMMDDhhmmss` (1993) rather than `hhmmss`; `None` to omit.
    long_time: Option<bool>,
    /// Field 22 value; `None` to omit.
    entry_mode: Option<&'static str>,
    /// Field 24 function code (1993).
    function_code: bool,
    /// Field 13, local date (1987).
    local_date: bool,
    /// Field 14, expiry.
    expiry: bool,
    /// Field 25, POS condition code (1987).
    condition: bool,
    /// Field 42, merchant id.
    merchant: bool,
    /// Field 49, currency.
    currency: bool,
}

/// Whether `dialect` defines field `n` and a value of `len` characters fits it.
fn fits(dialect: &Dialect, n: u8, len: usize) -> bool {
    match dialect.field(n).map(|f| f.length) {
        Some(Length::Fixed(l)) => l == len,
        Some(Length::Variable { max, .. }) => len <= max,
        None => false,
    }
}

impl Layout {
    fn of(dialect: &Dialect) -> Result<Layout, PosError> {
        for (n, len) in [(2, 16), (3, 6), (4, 12), (11, 6), (37, 12), (41, 8)] {
            if !fits(dialect, n, len) {
                return Err(PosError::Dialect {
                    dialect: dialect.name().to_string(),
                    reason: format!("field {n} must take {len} characters"),
                });
            }
        }
        if dialect.field(39).is_none() {
            return Err(PosError::Dialect {
                dialect: dialect.name().to_string(),
                reason: "no field 39".into(),
            });
        }
        let v93 = codes::uses_action_codes(dialect);
        let long_time = if fits(dialect, 12, 12) {
            Some(true)
        } else if fits(dialect, 12, 6) {
            Some(false)
        } else {
            None
        };
        let entry_mode = [POS_DATA_CODE_93, "012"]
            .into_iter()
            .find(|v| fits(dialect, 22, v.len()));
        Ok(Layout {
            version: if v93 { b'1' } else { b'0' },
            action_codes: v93,
            long_time,
            entry_mode,
            function_code: v93 && fits(dialect, 24, 3),
            local_date: !v93 && fits(dialect, 13, 4),
            expiry: fits(dialect, 14, 4),
            condition: !v93 && fits(dialect, 25, 2),
            merchant: fits(dialect, 42, 15),
            currency: fits(dialect, 49, 3),
        })
    }
}

/// What every connection shares read-only.
struct Setup {
    dialect: Arc<Dialect>,
    codec: FrameCodec,
    header: Bytes,
    pipeline: usize,
    timeout: Duration,
    layout: Layout,
    scenario: Scenario,
    /// Per template, the field values that never change.
    fixed: Vec<Fixed>,
    /// Expected field 39 of each template, in the dialect's style.
    expected: Vec<Option<String>>,
    /// An empty latency histogram to clone.
    histogram: Histogram<u64>,
    security: Protection,
    pin: Option<Zeroizing<Vec<u8>>>,
}

impl Setup {
    fn new(cfg: &PosConfig, layout: Layout) -> Result<Setup, PosError> {
        let templates = cfg.scenario.templates();
        let mtis: Vec<Mti> = templates
            .iter()
            .map(|t| {
                let version = if layout.version == b'1' { "1" } else { "0" };
                let digits = format!("{version}{}", t.mti.get(1..).unwrap_or_default());
                Mti::parse(&digits).map_err(|_| {
                    PosError::Config(format!("template `{}`: bad mti {:?}", t.name, t.mti))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected = templates
            .iter()
            .map(|t| {
                t.expected
                    .as_deref()
                    .map(|c| codes::in_style(c, layout.action_codes).to_string())
            })
            .collect();
        let fixed = templates
            .iter()
            .zip(&mtis)
            .map(|(t, &mti)| Fixed {
                mti,
                processing_code: Bytes::from(t.processing_code.clone()),
                amount: Bytes::from(format!("{:012}", t.amount)),
                function_code: layout.function_code.then_some(
                    if t.mti.as_bytes().get(1) == Some(&b'1') {
                        "100"
                    } else {
                        "200"
                    },
                ),
            })
            .collect();
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .map_err(|e| PosError::Config(format!("latency histogram: {e}")))?;
        Ok(Setup {
            dialect: Arc::clone(&cfg.dialect),
            codec: cfg.codec,
            header: cfg.header.clone(),
            pipeline: cfg.pipeline,
            timeout: cfg.timeout,
            layout,
            scenario: cfg.scenario.clone(),
            fixed,
            expected,
            histogram,
            security: cfg.security.clone(),
            pin: cfg
                .pin
                .as_ref()
                .map(|p| Zeroizing::new(p.as_bytes().to_vec())),
        })
    }
}

/// The field values of a template that are the same in every request.
struct Fixed {
    mti: Mti,
    processing_code: Bytes,
    amount: Bytes,
    /// Field 24 (1993): `100` for authorisations, `200` for financial requests.
    function_code: Option<&'static str>,
}

/// Date fields, computed once a second.
#[derive(Default)]
struct StampCache {
    secs: u64,
    stamp: Option<Stamp>,
}

/// The date fields of one second.
struct Stamp {
    /// Field 7.
    transmission: Bytes,
    /// Field 12, in the dialect's form.
    local_time: Option<Bytes>,
    /// Field 13 (1987).
    local_date: Option<Bytes>,
    /// Field 14.
    expiry: Option<Bytes>,
}

impl StampCache {
    fn current(&mut self, layout: &Layout) -> &Stamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.secs != secs {
            self.secs = secs;
            self.stamp = None;
        }
        self.stamp.get_or_insert_with(|| Stamp::new(secs, layout))
    }
}

impl Stamp {
    fn new(secs: u64, layout: &Layout) -> Stamp {
        let now = DateTime::from_unix(secs);
        Stamp {
            transmission: Bytes::from(now.mmddhhmmss()),
            local_time: layout.long_time.map(|long| {
                Bytes::from(if long {
                    now.yymmddhhmmss()
                } else {
                    now.hhmmss()
                })
            }),
            local_date: layout.local_date.then(|| Bytes::from(now.mmdd())),
            expiry: layout.expiry.then(|| Bytes::from(now.expiry(3))),
        }
    }
}

/// The run's schedule, shared by the connections.
struct Plan {
    count: u64,
    next: AtomicU64,
    start: Instant,
    stop_at: Option<Instant>,
    rate: Option<u64>,
    /// RRN prefix unique to this run (4 base-36 characters of the clock).
    rrn_prefix: String,
    sent: AtomicU64,
    answered: AtomicU64,
}

impl Plan {
    fn new(cfg: &PosConfig) -> Plan {
        let start = Instant::now();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Plan {
            count: cfg.count,
            next: AtomicU64::new(0),
            start,
            stop_at: cfg.duration.map(|d| start + d),
            rate: cfg.rate,
            rrn_prefix: base36(secs % 36u64.pow(4), 4),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// The next transaction number and when it is due, or `None` when the
    /// run has sent all it should.
    fn claim(&self) -> Option<(u64, Instant)> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        if seq >= self.count {
            return None;
        }
        let due = match self.rate {
            Some(rate) if rate > 0 => {
                let nanos = u128::from(seq) * 1_000_000_000 / u128::from(rate);
                self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            _ => self.start,
        };
        match self.stop_at {
            Some(stop) if due.max(Instant::now()) >= stop => None,
            _ => Some((seq, due)),
        }
    }
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS.get((n % 36) as usize).copied().unwrap_or(b'0');
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
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

/// One terminal's identity and counters.
struct Terminal {
    /// Field 41, padded to 8.
    id: String,
    /// The same, ready to set.
    id_bytes: Bytes,
    /// Field 42, 15 characters.
    merchant: Bytes,
    next_stan: u32,
    rng: fastrand::Rng,
}

impl Terminal {
    fn new(cfg: &PosConfig, index: usize) -> Terminal {
        let id = format!("{:<8}", terminal_id(cfg, index));
        Terminal {
            id_bytes: Bytes::from(id.clone()),
            id,
            merchant: Bytes::from(format!("MERCH{:010}", index + 1)),
            // A fresh starting point each run, like a terminal that keeps
            // its STAN counter: two runs in the same second must not look
            // like retransmissions to the switch.
            next_stan: fastrand::u32(1..=999_999),
            rng: fastrand::Rng::with_seed(cfg.seed.wrapping_add(index as u64)),
        }
    }

    fn stan(&mut self) -> u32 {
        let stan = self.next_stan;
        self.next_stan = if stan >= 999_999 { 1 } else { stan + 1 };
        stan
    }
}

/// A request in flight.
struct Pending {
    seq: u64,
    template: usize,
    rrn: Bytes,
    pan: Bytes,
    sent_at: Instant,
}

/// What one connection counted.
struct Tallies {
    sent: u64,
    received: u64,
    ok: u64,
    mismatched: u64,
    mismatches: Vec<String>,
    timeouts: u64,
    unmatched: u64,
    lost: u64,
    error: Option<String>,
    by_code: BTreeMap<String, u64>,
    /// Per template index: code → count.
    by_template: Vec<BTreeMap<String, u64>>,
    latency: Histogram<u64>,
}

impl Tallies {
    fn new(templates: usize, latency: Histogram<u64>) -> Tallies {
        Tallies {
            sent: 0,
            received: 0,
            ok: 0,
            mismatched: 0,
            mismatches: Vec::new(),
            timeouts: 0,
            unmatched: 0,
            lost: 0,
            error: None,
            by_code: BTreeMap::new(),
            by_template: vec![BTreeMap::new(); templates],
            latency,
        }
    }

    fn mismatch(&mut self, description: String) {
        self.mismatched += 1;
        if self.mismatches.len() < MAX_MISMATCHES {
            self.mismatches.push(description);
        }
    }
}

fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

/// Why a connection's loop ended early.
enum Stop {
    Closed,
    Failed(String),
}

/// One terminal connection: sends, matches, verifies.
struct Connection {
    setup: Arc<Setup>,
    plan: Arc<Plan>,
    terminal: Terminal,
    pending: HashMap<u32, Pending>,
    deadlines: VecDeque<(Instant, u32, u64)>,
    tallies: Tallies,
    stamp: StampCache,
}

impl Connection {
    fn new(setup: Arc<Setup>, plan: Arc<Plan>, terminal: Terminal) -> Connection {
        let templates = setup.scenario.templates().len();
        let pipeline = setup.pipeline;
        let setup_histogram = setup.histogram.clone();
        Connection {
            setup,
            plan,
            terminal,
            pending: HashMap::with_capacity(pipeline),
            deadlines: VecDeque::with_capacity(pipeline),
            tallies: Tallies::new(templates, setup_histogram),
            stamp: StampCache::default(),
        }
    }

    async fn run(mut self, stream: TcpStream) -> Tallies {
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, self.setup.codec);
        let mut writer = FramedWrite::new(write, self.setup.codec);
        let outcome = self.drive(&mut reader, &mut writer).await;
        let id = self.terminal.id.trim_end().to_string();
        match outcome {
            Ok(()) => {
                let _ = writer.close().await;
            }
            Err(stop) => {
                let in_flight = self.pending.len() as u64;
                self.tallies.lost += in_flight;
                self.tallies.error = Some(match stop {
                    Stop::Closed => {
                        format!(
                            "{id}: connection closed by peer with {in_flight} requests in flight"
                        )
                    }
                    Stop::Failed(why) => format!("{id}: {why} ({in_flight} requests in flight)"),
                });
            }
        }
        self.tallies
    }

    async fn drive(
        &mut self,
        reader: &mut FramedRead<OwnedReadHalf, FrameCodec>,
        writer: &mut FramedWrite<OwnedWriteHalf, FrameCodec>,
    ) -> Result<(), Stop> {
        let mut claimed: Option<(u64, Instant)> = None;
        let mut exhausted = false;
        loop {
            // Reads take priority below, so timeouts are also checked here.
            self.expire(Instant::now());
            // Send whatever is due while the pipeline has room.
            let mut fed = false;
            let now = Instant::now();
            while !exhausted && self.pending.len() < self.setup.pipeline {
                let (seq, due) = match claimed.take() {
                    Some(c) => c,
                    None => match self.plan.claim() {
                        Some(c) => c,
                        None => {
                            exhausted = true;
                            break;
                        }
                    },
                };
                if due > now {
                    claimed = Some((seq, due));
                    break;
                }
                if let Some(frame) = self.request(seq) {
                    writer
                        .feed(frame)
                        .await
                        .map_err(|e| Stop::Failed(format!("write: {e}")))?;
                    fed = true;
                }
            }
            if fed {
                writer
                    .flush()
                    .await
                    .map_err(|e| Stop::Failed(format!("write: {e}")))?;
            }
            self.forget_answered();
            if exhausted && self.pending.is_empty() {
                return Ok(());
            }
            let next_timeout = self.deadlines.front().map(|d| d.0);
            let next_send = claimed
                .filter(|_| self.pending.len() < self.setup.pipeline)
                .map(|c| c.1);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                next = reader.next() => {
                    self.on_read(next)?;
                    // Take every response already here before sending more,
                    // so that the next requests go out in one write.
                    while let Some(next) = reader.next().now_or_never() {
                        self.on_read(next)?;
                    }
                }
                _ = tokio::time::sleep_until(next_timeout.unwrap_or(far)), if next_timeout.is_some() => {
                    self.expire(Instant::now());
                }
                _ = tokio::time::sleep_until(next_send.unwrap_or(far)), if next_send.is_some() => {}
            }
        }
    }

    /// Handles what the reader yielded: a response, an error or the end.
    fn on_read(&mut self, next: Option<Result<Frame, FramingError>>) -> Result<(), Stop> {
        match next {
            Some(Ok(frame)) => {
                self.on_response(frame);
                Ok(())
            }
            Some(Err(FramingError::Io(e))) => Err(Stop::Failed(format!("read: {e}"))),
            Some(Err(e)) => Err(Stop::Failed(format!("framing: {e}"))),
            None => Err(Stop::Closed),
        }
    }

    /// Builds and registers request `seq`; `None` (counted as a mismatch) if
    /// it cannot be encoded.
    fn request(&mut self, seq: u64) -> Option<Frame> {
        let setup = Arc::clone(&self.setup);
        let index = setup.scenario.pick(seq);
        let template = setup.scenario.templates().get(index)?;
        let fixed = setup.fixed.get(index)?;
        let mut stan = self.terminal.stan();
        if self.pending.contains_key(&stan) {
            // Only possible with ~a million requests in flight; skip ahead.
            stan = self.terminal.stan();
        }
        let pan = Bytes::from(template.make_pan(&mut self.terminal.rng));
        let rrn = Bytes::from(format!("{}{:08}", self.plan.rrn_prefix, seq % 100_000_000));
        let stamp = self.stamp.current(&setup.layout);

        let mut m = Message::new(fixed.mti);
        m.set(2, pan.clone());
        m.set(3, fixed.processing_code.clone());
        m.set(4, fixed.amount.clone());
        m.set(7, stamp.transmission.clone());
        m.set(11, format!("{stan:06}"));
        if let Some(time) = &stamp.local_time {
            m.set(12, time.clone());
        }
        if let Some(date) = &stamp.local_date {
            m.set(13, date.clone());
        }
        if let Some(expiry) = &stamp.expiry {
            m.set(14, expiry.clone());
        }
        if let Some(mode) = setup.layout.entry_mode {
            m.set(22, mode);
        }
        if let Some(code) = fixed.function_code {
            m.set(24, code);
        }
        if setup.layout.condition {
            m.set(25, "00");
        }
        m.set(37, rrn.clone());
        m.set(41, self.terminal.id_bytes.clone());
        if setup.layout.merchant {
            m.set(42, self.terminal.merchant.clone());
        }
        if setup.layout.currency {
            m.set(49, "978");
        }
        if let (Some(pin), Some(profile)) = (&setup.pin, &setup.security.pin) {
            let pan = std::str::from_utf8(&pan).unwrap_or_default();
            match profile
                .key_for(&m)
                .map_err(|e| e.to_string())
                .and_then(|key| {
                    pin::encipher(profile.format, &key, pin, pan).map_err(|e| e.to_string())
                }) {
                Ok(block) => {
                    m.set(52, block);
                }
                Err(error) => {
                    self.tallies
                        .mismatch(format!("cannot build a PIN block: {error}"));
                    return None;
                }
            }
        }
        let encoded = match &setup.security.mac {
            Some(k) => {
                mac::sign(&setup.dialect, &mut m, k.algorithm, &k.key).map_err(|e| e.to_string())
            }
            None => m.to_bytes(&setup.dialect).map_err(|e| e.to_string()),
        };
        let message = match encoded {
            Ok(bytes) => bytes,
            Err(error) => {
                self.tallies.mismatch(format!(
                    "{}: cannot encode a `{}` request: {error}",
                    self.terminal.id.trim_end(),
                    template.name
                ));
                return None;
            }
        };
        let sent_at = Instant::now();
        self.pending.insert(
            stan,
            Pending {
                seq,
                template: index,
                rrn,
                pan,
                sent_at,
            },
        );
        self.deadlines
            .push_back((sent_at + setup.timeout, stan, seq));
        self.tallies.sent += 1;
        self.plan.sent.fetch_add(1, Ordering::Relaxed);
        Some(Frame {
            header: setup.header.clone(),
            message,
        })
    }

    /// Drops deadlines at the front whose request has been answered.
    fn forget_answered(&mut self) {
        while let Some(&(_, stan, seq)) = self.deadlines.front() {
            if self.pending.get(&stan).is_some_and(|p| p.seq == seq) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Counts every request whose deadline has passed as a timeout.
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, stan, seq)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if self.pending.get(&stan).is_some_and(|p| p.seq == seq)
                && let Some(p) = self.pending.remove(&stan)
            {
                self.tallies.timeouts += 1;
                self.plan.answered.fetch_add(1, Ordering::Relaxed);
                if let Some(codes) = self.tallies.by_template.get_mut(p.template) {
                    count(codes, "timeout");
                }
            }
        }
    }

    fn on_response(&mut self, frame: Frame) {
        self.tallies.received += 1;
        let id = self.terminal.id.trim_end().to_string();
        let response = match Message::decode(&self.setup.dialect, frame.message.clone()) {
            Ok(m) => m,
            Err(error) => {
                self.tallies
                    .mismatch(format!("{id}: undecodable response: {error}"));
                return;
            }
        };
        let Some(pending) = response.stan().and_then(|s| self.pending.remove(&s)) else {
            self.tallies.unmatched += 1;
            return;
        };
        self.plan.answered.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(pending.sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.tallies.latency.saturating_record(micros.max(1));

        let code = response.response_code().unwrap_or("none");
        count(&mut self.tallies.by_code, code);
        if let Some(codes) = self.tallies.by_template.get_mut(pending.template) {
            count(codes, code);
        }

        let mut problems = Vec::new();
        let request_mti = self.setup.fixed.get(pending.template).map(|f| f.mti);
        let expected_mti = request_mti.and_then(|m| m.response());
        if expected_mti != Some(response.mti()) {
            problems.push(format!(
                "MTI {}, expected {}",
                response.mti(),
                expected_mti.map_or("?".into(), |m| m.to_string())
            ));
        }
        if response.get(37) != Some(&pending.rrn[..]) {
            problems.push(format!(
                "field 37 {:?}, expected {:?}",
                response.rrn().unwrap_or(""),
                String::from_utf8_lossy(&pending.rrn)
            ));
        }
        if response.terminal_id() != Some(self.terminal.id.as_str()) {
            problems.push(format!(
                "field 41 {:?}, expected {:?}",
                response.terminal_id().unwrap_or(""),
                self.terminal.id
            ));
        }
        match (
            response.response_code(),
            self.setup.expected.get(pending.template),
        ) {
            (None, _) => problems.push("no field 39".into()),
            (Some(got), Some(Some(want))) if got != want => {
                problems.push(format!("field 39 {got}, expected {want}"));
            }
            _ => {}
        }
        if let Some(k) = &self.setup.security.mac
            && let Err(error) = mac::verify_message(
                &self.setup.dialect,
                &frame.message,
                &response,
                k.algorithm,
                &k.key,
            )
        {
            problems.push(format!("response MAC: {error}"));
        }
        if problems.is_empty() {
            self.tallies.ok += 1;
        } else {
            let name = self
                .setup
                .scenario
                .templates()
                .get(pending.template)
                .map_or("?", |t| t.name.as_str());
            let stan = response.stan().unwrap_or(0);
            self.tallies.mismatch(format!(
                "{id} stan {stan:06} `{name}` card {}: {}",
                mask_pan(&String::from_utf8_lossy(&pending.pan)),
                problems.join("; ")
            ));
        }
    }
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
