//! The bank host simulator: answers what a switch sends to an issuer.
//!
//! Every connection gets a reader task and a writer task joined by a bounded
//! channel. The reader decodes each request and either answers at once,
//! hands the answer to a timer task (a `delay_ms` rule: the link keeps
//! serving other requests meanwhile, so answers may come out of order), says
//! nothing (`no_answer`) or closes the link (`close`). The writer batches
//! whatever answers are ready into one flush.
//!
//! Answers: a request MTI gets the response MTI (`0200` → `0210`,
//! `1804` → `1814`) with the request's fields echoed — except the card
//! secrets in [`DROPPED_FIELDS`] — field 39 set and, on an approved
//! authorisation or financial request, field 38. Field 39 follows the
//! dialect: 1993 action codes when its field 39 is three characters long
//! ([`codes::uses_action_codes`]), else 1987 codes. A frame that does not
//! decode is answered with a bare format error (`30`, or `904`) when its MTI
//! can be read; otherwise the connection is closed. A response that cannot be
//! encoded is logged and skipped, never a panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::encode::{EncodeError, encode};
use super::ledger::Ledger;
use super::rules::{Action, Rules};
use iso8583::codes;
use iso8583::framing::{Frame, FrameCodec};
use iso8583::{Dialect, Message, Mti};
use security::mac;
use security::pin::{self, ClearPin};
use security::profile::Protection;
use security::tls::TlsAcceptor;

/// Fields never echoed in a response: track data, PIN block, ICC data, MACs.
pub const DROPPED_FIELDS: [u8; 6] = [35, 45, 52, 55, 64, 128];

/// Answers waiting for the writer, per connection.
const OUTBOX: usize = 1024;
/// Most answers written per flush.
const BATCH: usize = 256;

/// Counters of a [`BankSim`], shared with whoever holds
/// [`BankSim::stats`]. Read them with [`BankStats::snapshot`].
#[derive(Debug, Default)]
pub struct BankStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Frames received.
    pub requests: AtomicU64,
    /// Answers handed to a socket.
    pub responses: AtomicU64,
    /// Requests answered with an approval (network management included).
    pub approved: AtomicU64,
    /// Requests answered with a decline from a rule.
    pub declined: AtomicU64,
    /// Answers held back by a `delay_ms` rule.
    pub delayed: AtomicU64,
    /// Requests left unanswered by a `no_answer` rule.
    pub unanswered: AtomicU64,
    /// Connections closed by the simulator (a `close` rule, an unreadable
    /// MTI or a framing error).
    pub closed: AtomicU64,
    /// Network management requests (`0800`, `1804`) answered.
    pub network: AtomicU64,
    /// Frames that did not decode.
    pub format_errors: AtomicU64,
    /// Messages that are not requests (responses sent to the bank); ignored.
    pub unexpected: AtomicU64,
    /// Answers that could not be encoded; logged and skipped.
    pub encode_errors: AtomicU64,
    /// Requests whose MAC was missing or wrong (declined `63`).
    pub mac_failures: AtomicU64,
    /// PIN blocks that did not decipher under the ZPK, or held another PIN
    /// than expected (declined `55`).
    pub pin_failures: AtomicU64,
    /// PIN blocks that deciphered to the expected PIN.
    pub pins_verified: AtomicU64,
}

/// A plain copy of [`BankStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BankStatsSnapshot {
    /// See [`BankStats::connections`].
    pub connections: u64,
    /// See [`BankStats::requests`].
    pub requests: u64,
    /// See [`BankStats::responses`].
    pub responses: u64,
    /// See [`BankStats::approved`].
    pub approved: u64,
    /// See [`BankStats::declined`].
    pub declined: u64,
    /// See [`BankStats::delayed`].
    pub delayed: u64,
    /// See [`BankStats::unanswered`].
    pub unanswered: u64,
    /// See [`BankStats::closed`].
    pub closed: u64,
    /// See [`BankStats::network`].
    pub network: u64,
    /// See [`BankStats::format_errors`].
    pub format_errors: u64,
    /// See [`BankStats::unexpected`].
    pub unexpected: u64,
    /// See [`BankStats::encode_errors`].
    pub encode_errors: u64,
    /// See [`BankStats::mac_failures`].
    pub mac_failures: u64,
    /// See [`BankStats::pin_failures`].
    pub pin_failures: u64,
    /// See [`BankStats::pins_verified`].
    pub pins_verified: u64,
}

impl BankStats {
    /// The counters now.
    pub fn snapshot(&self) -> BankStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BankStatsSnapshot {
            connections: get(&self.connections),
            requests: get(&self.requests),
            responses: get(&self.responses),
            approved: get(&self.approved),
            declined: get(&self.declined),
            delayed: get(&self.delayed),
            unanswered: get(&self.unanswered),
            closed: get(&self.closed),
            network: get(&self.network),
            format_errors: get(&self.format_errors),
            unexpected: get(&self.unexpected),
            encode_errors: get(&self.encode_errors),
            mac_failures: get(&self.mac_failures),
            pin_failures: get(&self.pin_failures),
            pins_verified: get(&self.pins_verified),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the reader does with one frame.
enum Reply {
    /// Write this answer now.
    Now(Frame),
    /// Write this answer after the delay.
    Later(Duration, Frame),
    /// Say nothing.
    Nothing,
    /// Close the connection.
    Close,
}

/// A simulated bank host. Build it with [`BankSim::new`], share it as
/// `Arc<BankSim>` and run [`BankSim::serve`] (or [`BankSim::start`]).
#[derive(Debug)]
pub struct BankSim {
    dialect: Arc<Dialect>,
    codec: FrameCodec,
    rules: Rules,
    stats: Arc<BankStats>,
    ledger: Arc<Ledger>,
    action_codes: bool,
    security: Protection,
    expected_pin: Option<ClearPin>,
    tls: Option<Arc<TlsAcceptor>>,
}

impl BankSim {
    /// A simulator speaking `dialect` framed by `codec`, following `rules`
    /// (empty rules approve everything).
    pub fn new(dialect: Arc<Dialect>, codec: FrameCodec, rules: Rules) -> BankSim {
        BankSim {
            action_codes: codes::uses_action_codes(&dialect),
            dialect,
            codec,
            rules,
            stats: Arc::default(),
            ledger: Arc::default(),
            security: Protection::default(),
            expected_pin: None,
            tls: None,
        }
    }

    /// Checks and produces MACs with the ZAK of `security`, and deciphers
    /// PIN blocks under its ZPK: a request with a missing or wrong MAC is
    /// declined `63`, a PIN block that does not decipher (or holds another
    /// PIN than `expected_pin`) `55`.
    pub fn with_security(mut self, security: Protection, expected_pin: Option<&str>) -> BankSim {
        self.security = security;
        self.expected_pin = expected_pin.map(|p| zeroize::Zeroizing::new(p.as_bytes().to_vec()));
        self
    }

    /// Serves TLS (mutual TLS when the acceptor names a client CA).
    pub fn with_tls(mut self, tls: Arc<TlsAcceptor>) -> BankSim {
        self.tls = Some(tls);
        self
    }

    /// One line for the start-up message: dialect, framing, rules, and
    /// whether MACs, PINs and TLS are on.
    pub fn describe(&self) -> String {
        format!(
            "{}, {}, {} rules{}{}{}",
            self.dialect.name(),
            self.codec.prefix(),
            self.rules.len(),
            if self.security.mac.is_some() {
                ", MAC"
            } else {
                ""
            },
            if self.security.pin.is_some() {
                ", PIN"
            } else {
                ""
            },
            if self.tls.is_some() { ", TLS" } else { "" },
        )
    }

    /// What the simulator approved and what was reversed.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The simulator's counters.
    pub fn stats(&self) -> &Arc<BankStats> {
        &self.stats
    }

    /// The dialect the simulator speaks.
    pub fn dialect(&self) -> &Arc<Dialect> {
        &self.dialect
    }

    /// Accepts connections on `listener` and serves each on its own tasks
    /// until `shutdown` is cancelled; then stops accepting, closes every
    /// connection and returns once their tasks have ended.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        bump(&self.stats.connections);
                        let sim = Arc::clone(&self);
                        connections.spawn(sim.accepted(stream, peer, shutdown.child_token()));
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning; established links carry on.
                        warn!(%error, "bank simulator: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }

    /// Spawns [`serve`](Self::serve) on `listener` and returns a handle that
    /// knows the address and stops the simulator.
    pub fn start(self: Arc<Self>, listener: TcpListener) -> std::io::Result<BankHandle> {
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let stats = Arc::clone(&self.stats);
        let ledger = Arc::clone(&self.ledger);
        let task = tokio::spawn(self.serve(listener, shutdown.clone()));
        Ok(BankHandle {
            addr,
            stats,
            ledger,
            shutdown,
            task,
        })
    }

    /// Serves one accepted connection, after a TLS handshake if the
    /// simulator serves TLS.
    async fn accepted(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        cancel: CancellationToken,
    ) {
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "bank simulator: cannot set TCP_NODELAY");
        }
        match &self.tls {
            None => {
                let (read, write) = stream.into_split();
                self.connection(read, write, peer, cancel).await;
            }
            Some(tls) => {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), tls.acceptor().accept(stream));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        let (read, write) = tokio::io::split(stream);
                        self.connection(read, write, peer, cancel).await;
                    }
                    Ok(Err(error)) => {
                        warn!(%peer, %error, "bank simulator: TLS handshake failed");
                        bump(&self.stats.closed);
                    }
                    Err(_) => {
                        warn!(%peer, "bank simulator: TLS handshake timed out");
                        bump(&self.stats.closed);
                    }
                }
            }
        }
    }

    /// Serves one connection: this task reads, a spawned task writes.
    async fn connection<R, W>(
        self: Arc<Self>,
        read: R,
        write: W,
        peer: SocketAddr,
        cancel: CancellationToken,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FramedRead::new(read, self.codec);
        let (outbox, answers) = mpsc::channel(OUTBOX);
        let writer = tokio::spawn(write_answers(
            FramedWrite::new(write, self.codec),
            answers,
            cancel.clone(),
            Arc::clone(&self.stats),
        ));
        loop {
            let frame = tokio::select! {
                _ = cancel.cancelled() => break,
                next = reader.next() => match next {
                    Some(Ok(frame)) => frame,
                    Some(Err(error)) => {
                        debug!(%peer, %error, "bank simulator: framing error, closing");
                        bump(&self.stats.closed);
                        cancel.cancel();
                        break;
                    }
                    None => break,
                },
            };
            match self.answer(frame) {
                Reply::Now(answer) => {
                    if outbox.send(answer).await.is_err() {
                        break;
                    }
                }
                Reply::Later(delay, answer) => {
                    let outbox = outbox.clone();
                    let cancel = cancel.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::sleep(delay) => {
                                let _ = outbox.send(answer).await;
                            }
                        }
                    });
                }
                Reply::Nothing => {}
                Reply::Close => {
                    debug!(%peer, "bank simulator: closing the connection");
                    bump(&self.stats.closed);
                    cancel.cancel();
                    break;
                }
            }
        }
        // At end of input, answers still held by timers are written before
        // the writer ends (it stops when the last sender is gone); after a
        // close or a shutdown the writer has already stopped.
        drop(outbox);
        if let Err(error) = writer.await {
            warn!(%peer, %error, "bank simulator: writer task failed");
        }
    }

    /// Decides the answer to one frame.
    fn answer(&self, frame: Frame) -> Reply {
        bump(&self.stats.requests);
        let request = match Message::decode(&self.dialect, frame.message.clone()) {
            Ok(request) => request,
            Err(error) => return self.format_error(frame, &error),
        };
        let Some(response_mti) = request.mti().response() else {
            debug!(mti = %request.mti(), "bank simulator: not a request, ignored");
            bump(&self.stats.unexpected);
            return Reply::Nothing;
        };
        let refused = self.security_check(&request, &frame.message);
        let (delay, decline) = match self.rules.decide(&request) {
            _ if refused.is_some() => (Duration::ZERO, refused),
            None => (Duration::ZERO, None),
            Some(Action::Respond { delay, decline }) => (*delay, decline.as_deref()),
            Some(Action::NoAnswer) => {
                bump(&self.stats.unanswered);
                return Reply::Nothing;
            }
            Some(Action::Close) => return Reply::Close,
        };
        let class = mti_class(request.mti());
        let code = match decline {
            Some(code) => {
                bump(&self.stats.declined);
                codes::in_style(code, self.action_codes)
            }
            None => {
                bump(&self.stats.approved);
                self.ledger.record(&request, &approval_id(&request));
                self.approval_code(class)
            }
        };
        if class == b'8' {
            bump(&self.stats.network);
        }
        let Some(message) = self.response(request, response_mti, code, decline.is_none()) else {
            return Reply::Nothing;
        };
        let answer = Frame {
            header: frame.header,
            message,
        };
        if delay.is_zero() {
            Reply::Now(answer)
        } else {
            bump(&self.stats.delayed);
            Reply::Later(delay, answer)
        }
    }

    /// The approval code for a message class in the dialect's style.
    fn approval_code(&self, class: u8) -> &'static str {
        match (self.action_codes, class) {
            (false, _) => "00",
            (true, b'8') => codes::NETWORK_ACCEPTED,
            (true, b'4') => codes::REVERSAL_ACCEPTED,
            (true, _) => "000",
        }
    }

    /// The response to a decoded request, encoded; `None` (logged) if it
    /// cannot be encoded.
    fn response(
        &self,
        mut message: Message,
        mti: Mti,
        code: &str,
        approved: bool,
    ) -> Option<Bytes> {
        message.set_mti(mti);
        for field in DROPPED_FIELDS {
            message.remove(field);
        }
        message.set(39, Bytes::copy_from_slice(code.as_bytes()));
        if approved && matches!(mti_class(mti), b'1' | b'2') {
            let code = approval_id(&message);
            message.set(38, code);
        }
        self.encode(&message)
    }

    /// The `63` (MAC) or `55` (PIN) a request is declined with, if any.
    fn security_check(&self, request: &Message, frame: &[u8]) -> Option<&'static str> {
        if request.mti().is_network_management() {
            return None;
        }
        if let Some(m) = &self.security.mac
            && let Err(error) =
                mac::verify_message(&self.dialect, frame, request, m.algorithm, &m.key)
        {
            debug!(%error, "bank simulator: MAC check failed");
            bump(&self.stats.mac_failures);
            return Some("63");
        }
        let (Some(profile), Some(block)) = (&self.security.pin, request.pin_block()) else {
            return None;
        };
        let pan = request
            .pan()
            .or_else(|| request.track2().map(|t| t.pan()))
            .map(|p| p.expose())
            .unwrap_or_default();
        let clear = profile
            .key_for(request)
            .ok()
            .and_then(|key| pin::decipher(profile.format, &key, block.expose(), pan).ok());
        match (clear, &self.expected_pin) {
            (Some(pin), Some(expected)) if pin == *expected => {
                bump(&self.stats.pins_verified);
                None
            }
            (Some(_), None) => {
                bump(&self.stats.pins_verified);
                None
            }
            _ => {
                bump(&self.stats.pin_failures);
                Some("55")
            }
        }
    }

    fn encode(&self, message: &Message) -> Option<Bytes> {
        let encoded = match &self.security.mac {
            Some(m) if !message.mti().is_network_management() => {
                encode(&self.dialect, &mut message.clone(), Some(m))
            }
            _ => message.to_bytes(&self.dialect).map_err(EncodeError::from),
        };
        match encoded {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                warn!(mti = %message.mti(), %error, "bank simulator: cannot encode the answer, skipped");
                bump(&self.stats.encode_errors);
                None
            }
        }
    }

    /// A frame that did not decode: a bare format error if its MTI can be
    /// read and is a request, else close the connection.
    fn format_error(&self, frame: Frame, error: &iso8583::CodecError) -> Reply {
        bump(&self.stats.format_errors);
        let response_mti = Message::peek_mti(&self.dialect, &frame.message)
            .as_ref()
            .and_then(Mti::response);
        debug!(%error, answered = response_mti.is_some(), "bank simulator: undecodable request");
        let Some(mti) = response_mti else {
            return Reply::Close;
        };
        let mut message = Message::new(mti);
        message.set(39, codes::in_style("30", self.action_codes).to_string());
        match self.encode(&message) {
            Some(bytes) => Reply::Now(Frame {
                header: frame.header,
                message: bytes,
            }),
            None => Reply::Close,
        }
    }
}

/// The approval code (field 38) the simulator answers an approved request
/// with: `A` and the last five digits of its STAN.
fn approval_id(request: &Message) -> String {
    format!("A{:05}", request.stan().unwrap_or(0) % 100_000)
}

/// The class digit of an MTI (`2` in `0200`).
fn mti_class(mti: Mti) -> u8 {
    mti.as_str().as_bytes().get(1).copied().unwrap_or(b'0')
}

/// The writer task: takes answers from the channel and writes every answer
/// ready at that moment before one flush.
async fn write_answers<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, FrameCodec>,
    mut answers: mpsc::Receiver<Frame>,
    cancel: CancellationToken,
    stats: Arc<BankStats>,
) {
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            next = answers.recv() => match next {
                Some(frame) => frame,
                None => break,
            },
        };
        // Counted as handed to the socket, before the flush: a peer that
        // has read an answer always finds it counted.
        let written = async {
            sink.feed(first).await?;
            stats.responses.fetch_add(1, Ordering::Relaxed);
            for _ in 1..BATCH {
                let Ok(frame) = answers.try_recv() else { break };
                sink.feed(frame).await?;
                stats.responses.fetch_add(1, Ordering::Relaxed);
            }
            sink.flush().await
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = written => outcome,
        };
        if let Err(error) = outcome {
            debug!(%error, "bank simulator: write failed, closing");
            cancel.cancel();
            return;
        }
    }
    // Every sender is gone (end of input): close our side cleanly.
    let _ = sink.close().await;
}

/// A running simulator started by [`BankSim::start`].
#[derive(Debug)]
pub struct BankHandle {
    addr: SocketAddr,
    stats: Arc<BankStats>,
    ledger: Arc<Ledger>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl BankHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The simulator's counters.
    pub fn stats(&self) -> &Arc<BankStats> {
        &self.stats
    }

    /// What the simulator approved and what was reversed.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// A token that stops the simulator when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes every connection and waits for the tasks.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            warn!(%error, "bank simulator task failed");
        }
    }
}
