//! One terminal's connection: requests built and pipelined, answers
//! checked against what was sent, timeouts, and its tallies.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::setup::{Plan, Setup, StampCache};
use super::{PosConfig, terminal_id};
use crate::encode::{EncodeError, encode};
use crate::report::MAX_MISMATCHES;
use iso8583::Message;
use iso8583::card::mask_pan;
use iso8583::framing::{Frame, FrameCodec, FramingError};
use security::mac;
use security::pin;

/// One terminal's identity and counters.
pub(super) struct Terminal {
    /// Field 41, padded to 8.
    pub(super) id: String,
    /// The same, ready to set.
    pub(super) id_bytes: Bytes,
    /// Field 42, 15 characters.
    pub(super) merchant: Bytes,
    pub(super) next_stan: u32,
    pub(super) rng: fastrand::Rng,
}

impl Terminal {
    pub(super) fn new(cfg: &PosConfig, index: usize) -> Terminal {
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

    pub(super) fn stan(&mut self) -> u32 {
        let stan = self.next_stan;
        self.next_stan = if stan >= 999_999 { 1 } else { stan + 1 };
        stan
    }
}

/// A request in flight.
pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) template: usize,
    pub(super) rrn: Bytes,
    pub(super) pan: Bytes,
    pub(super) sent_at: Instant,
}

/// What one connection counted.
pub(super) struct Tallies {
    pub(super) sent: u64,
    pub(super) received: u64,
    pub(super) ok: u64,
    pub(super) mismatched: u64,
    pub(super) mismatches: Vec<String>,
    pub(super) timeouts: u64,
    pub(super) unmatched: u64,
    pub(super) lost: u64,
    pub(super) error: Option<String>,
    pub(super) by_code: BTreeMap<String, u64>,
    /// Per template index: code → count.
    pub(super) by_template: Vec<BTreeMap<String, u64>>,
    pub(super) latency: Histogram<u64>,
}

impl Tallies {
    pub(super) fn new(templates: usize, latency: Histogram<u64>) -> Tallies {
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

    pub(super) fn mismatch(&mut self, description: String) {
        self.mismatched += 1;
        if self.mismatches.len() < MAX_MISMATCHES {
            self.mismatches.push(description);
        }
    }
}

pub(super) fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

/// Why a connection's loop ended early.
pub(super) enum Stop {
    Closed,
    Failed(Failure),
}

/// A connection's socket or framing failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// A request could not be written.
    #[error("write: {0}")]
    Write(#[source] FramingError),
    /// The socket could not be read.
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    /// What arrived is not a frame.
    #[error("framing: {0}")]
    Framing(#[source] FramingError),
}

/// One terminal connection: sends, matches, verifies.
pub(super) struct Connection {
    pub(super) setup: Arc<Setup>,
    pub(super) plan: Arc<Plan>,
    pub(super) terminal: Terminal,
    pub(super) pending: HashMap<u32, Pending>,
    pub(super) deadlines: VecDeque<(Instant, u32, u64)>,
    pub(super) tallies: Tallies,
    pub(super) stamp: StampCache,
}

impl Connection {
    pub(super) fn new(setup: Arc<Setup>, plan: Arc<Plan>, terminal: Terminal) -> Connection {
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

    pub(super) async fn run(mut self, stream: TcpStream) -> Tallies {
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

    pub(super) async fn drive(
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
                        .map_err(|e| Stop::Failed(Failure::Write(e)))?;
                    fed = true;
                }
            }
            if fed {
                writer
                    .flush()
                    .await
                    .map_err(|e| Stop::Failed(Failure::Write(e)))?;
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
    pub(super) fn on_read(
        &mut self,
        next: Option<Result<Frame, FramingError>>,
    ) -> Result<(), Stop> {
        match next {
            Some(Ok(frame)) => {
                self.on_response(frame);
                Ok(())
            }
            Some(Err(FramingError::Io(e))) => Err(Stop::Failed(Failure::Read(e))),
            Some(Err(e)) => Err(Stop::Failed(Failure::Framing(e))),
            None => Err(Stop::Closed),
        }
    }

    /// Builds and registers request `seq`; `None` (counted as a mismatch) if
    /// it cannot be encoded.
    pub(super) fn request(&mut self, seq: u64) -> Option<Frame> {
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
        if let Err(error) = set_pin_block(&setup, &mut m, &pan) {
            self.tallies
                .mismatch(format!("cannot build a PIN block: {error}"));
            return None;
        }
        let encoded = encode(&setup.dialect, &mut m, setup.security.mac.as_ref());
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
    pub(super) fn forget_answered(&mut self) {
        while let Some(&(_, stan, seq)) = self.deadlines.front() {
            if self.pending.get(&stan).is_some_and(|p| p.seq == seq) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Counts every request whose deadline has passed as a timeout.
    pub(super) fn expire(&mut self, now: Instant) {
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

    pub(super) fn on_response(&mut self, frame: Frame) {
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

/// Field 52 of `m`, the scenario's PIN enciphered for `pan`, when the
/// terminals send PINs.
pub(super) fn set_pin_block(setup: &Setup, m: &mut Message, pan: &[u8]) -> Result<(), EncodeError> {
    if let (Some(pin), Some(profile)) = (&setup.pin, &setup.security.pin) {
        let pan = std::str::from_utf8(pan).unwrap_or_default();
        let key = profile.key_for(m)?;
        m.set(52, pin::encipher(profile.format, &key, pin, pan)?);
    }
    Ok(())
}
