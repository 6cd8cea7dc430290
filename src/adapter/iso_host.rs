//! An ISO 8583 host destination: N persistent links the switch connects out
//! to, a MUX that matches responses to requests, sign-on and echo tests,
//! reconnection with capped exponential backoff and jitter.
//!
//! # Matching
//!
//! The switch gives every request its own STAN (field 11) on the destination,
//! unique among the requests in flight, and keys the pending table like jPOS:
//! message class and function with the response bit cleared, field 41, and
//! field 11. A response that matches nothing is counted and logged.
//!
//! # Availability
//!
//! A request goes to the next link that is up (round robin). When no link is
//! up the request fails at once with [`LinkError::Unavailable`] — a circuit
//! breaker that spares terminals the full timeout during an outage; the switch
//! then answers "issuer unavailable" or tries the fallback destination.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::DestinationConfig;
use crate::clock::DateTime;
use crate::iso8583::framing::{Frame, FrameCodec};
use crate::iso8583::{Message, Mti};
use crate::metrics::Latency;
use crate::security::mac;
use crate::translate::{self, Network};

/// A request to a destination failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// No link is up, or the link went down before the answer came.
    #[error("destination unavailable")]
    Unavailable,
    /// The request was sent and no answer came within the destination's
    /// timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request was sent and its link went down before the answer.
    #[error("link lost after the request was sent")]
    Lost,
    /// The caller could not record the request (the journal failed), so it
    /// was not sent.
    #[error("request not journaled; not sent")]
    NotJournaled,
    /// The request could not be encoded in the destination's dialect.
    #[error("cannot encode for the destination: {0}")]
    Encode(#[source] EncodeError),
}

/// Why a request could not be put on a destination's wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message could not be MACed.
    #[error(transparent)]
    Mac(#[from] mac::MacError),
    /// The message could not be encoded in the dialect.
    #[error(transparent)]
    Codec(#[from] crate::iso8583::CodecError),
}

/// A response and the STAN the switch used for the request.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The destination's response.
    pub response: Message,
    /// The switch's STAN on this destination.
    pub stan: u32,
    /// From the request being handed to its link to the response's frame
    /// being read from the link.
    pub waited: Duration,
}

/// A response and when its frame was read from the link.
type Answered = (Message, Instant);

/// (class+function without the response bit, field 41, field 11).
type Key = ([u8; 2], [u8; 8], u32);

/// STANs run from 1 to this.
const MAX_STAN: u32 = 999_999;

/// A link must stay up this long for its reconnect backoff to start over.
const STABLE_LINK: Duration = Duration::from_secs(5);

/// Counters of one destination.
#[derive(Debug, Default)]
pub struct DestinationStats {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Responses matched to a request.
    pub matched: AtomicU64,
    /// Responses that matched no pending request.
    pub unmatched: AtomicU64,
    /// Requests that timed out.
    pub timeouts: AtomicU64,
    /// Connections established (including reconnections).
    pub connects: AtomicU64,
    /// Responses refused for a wrong or missing MAC.
    pub mac_failures: AtomicU64,
    /// From a financial request leaving to its answer arriving.
    pub latency: Latency,
}

/// One link as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Its index within the destination.
    pub index: usize,
    /// Connected and signed on.
    pub up: bool,
    /// In rotation (an operator may take it out).
    pub enabled: bool,
}

/// A destination and its links.
#[derive(Debug)]
pub struct Destination {
    config: DestinationConfig,
    /// The writer queue of each link while it is up.
    links: Vec<Mutex<Option<mpsc::Sender<Frame>>>>,
    /// Links an operator took out of rotation: they stay connected (echoes
    /// go on, answers to requests already sent arrive) but get no new
    /// requests.
    disabled: Vec<AtomicBool>,
    /// Links up (connected and signed on), in rotation or not.
    up: AtomicUsize,
    /// Links taken out of rotation.
    out: AtomicUsize,
    /// The name, shared with metric labels.
    label: Arc<str>,
    /// Waiting requests: the link each went out on, and where to deliver.
    pending: Mutex<HashMap<Key, (usize, oneshot::Sender<Answered>)>>,
    next_stan: AtomicU32,
    next_link: AtomicUsize,
    stats: DestinationStats,
}

fn key_of(message: &Message, stan: u32) -> Key {
    let mut terminal = [b' '; 8];
    if let Some(id) = message.get(41) {
        for (slot, byte) in terminal.iter_mut().zip(id) {
            *slot = *byte;
        }
    }
    (message.mti().class_key(), terminal, stan)
}

/// Removes a pending entry when the waiting request goes away, whether it
/// got its answer, timed out or was cancelled.
struct PendingGuard<'a> {
    destination: &'a Destination,
    key: Key,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.destination.pending.lock() {
            pending.remove(&self.key);
        }
    }
}

impl Destination {
    /// A destination with all links down; [`Destination::start`] opens them.
    pub fn new(config: DestinationConfig) -> Arc<Destination> {
        let links = (0..config.links).map(|_| Mutex::new(None)).collect();
        let disabled = (0..config.links).map(|_| AtomicBool::new(false)).collect();
        Arc::new(Destination {
            label: Arc::from(config.name.as_str()),
            config,
            links,
            disabled,
            up: AtomicUsize::new(0),
            out: AtomicUsize::new(0),
            pending: Mutex::new(HashMap::new()),
            next_stan: AtomicU32::new(fastrand::u32(0..999_999)),
            next_link: AtomicUsize::new(0),
            stats: DestinationStats::default(),
        })
    }

    /// Starts one task per link in `tasks`; they run until `shutdown` is
    /// cancelled.
    pub fn start(self: &Arc<Self>, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        for index in 0..self.links.len() {
            tasks.spawn(Arc::clone(self).run_link(index, shutdown.clone()));
        }
    }

    /// The destination's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its configuration.
    pub fn config(&self) -> &DestinationConfig {
        &self.config
    }

    /// The name as a shared string (for metric labels).
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// Number of links up and in rotation.
    pub fn links_up(&self) -> usize {
        // The common case, on every request: no link taken out.
        if self.out.load(Ordering::Relaxed) == 0 {
            return self.up.load(Ordering::Relaxed);
        }
        self.link_states()
            .iter()
            .filter(|l| l.up && l.enabled)
            .count()
    }

    /// Every link: up or down, in rotation or taken out.
    pub fn link_states(&self) -> Vec<LinkState> {
        self.links
            .iter()
            .zip(&self.disabled)
            .enumerate()
            .map(|(index, (slot, disabled))| LinkState {
                index,
                up: slot.lock().is_ok_and(|s| s.is_some()),
                enabled: !disabled.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Takes link `index` out of rotation (`false`) or puts it back
    /// (`true`); `None` if there is no such link. Requests already sent on
    /// it still get their answers.
    pub fn set_enabled(&self, index: usize, enabled: bool) -> Option<()> {
        let flag = self.disabled.get(index)?;
        let was = !flag.swap(!enabled, Ordering::Relaxed);
        if was != enabled {
            if enabled {
                self.out.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.out.fetch_add(1, Ordering::Relaxed);
            }
            info!(destination = %self.config.name, link = index, enabled, "link rotation changed by an operator");
        }
        Some(())
    }

    /// Counters.
    pub fn stats(&self) -> &DestinationStats {
        &self.stats
    }

    /// Sends a request on the next link that is up and waits for its answer.
    /// Field 11 is replaced by the switch's own STAN; `on_send` learns that
    /// STAN before the request leaves and must return `true` once the caller
    /// has recorded it (the journal: a later reversal must name it even if no
    /// answer ever comes); `false` cancels the request.
    pub async fn request<F: Future<Output = bool>>(
        &self,
        message: Message,
        on_send: impl FnOnce(u32) -> F,
    ) -> Result<Exchange, LinkError> {
        let (index, link) = self.pick_link().ok_or(LinkError::Unavailable)?;
        self.request_on(index, &link, message, on_send).await
    }

    fn pick_link(&self) -> Option<(usize, mpsc::Sender<Frame>)> {
        let count = self.links.len();
        let start = self.next_link.fetch_add(1, Ordering::Relaxed);
        (0..count).find_map(|offset| {
            let index = (start + offset) % count;
            if self.disabled.get(index)?.load(Ordering::Relaxed) {
                return None;
            }
            let slot = self.links.get(index)?;
            slot.lock().ok()?.clone().map(|tx| (index, tx))
        })
    }

    /// Reserves a STAN unique among the requests in flight and registers the
    /// waiter; `None` if every STAN is taken.
    fn register(
        &self,
        link: usize,
        message: &Message,
    ) -> Option<(Key, u32, oneshot::Receiver<Answered>)> {
        let (tx, rx) = oneshot::channel();
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        for _ in 0..MAX_STAN {
            let stan = self.next_stan.fetch_add(1, Ordering::Relaxed) % MAX_STAN + 1;
            let key = key_of(message, stan);
            if let std::collections::hash_map::Entry::Vacant(slot) = pending.entry(key) {
                slot.insert((link, tx));
                return Some((key, stan, rx));
            }
        }
        None
    }

    async fn request_on<F: Future<Output = bool>>(
        &self,
        index: usize,
        link: &mpsc::Sender<Frame>,
        mut message: Message,
        on_send: impl FnOnce(u32) -> F,
    ) -> Result<Exchange, LinkError> {
        let (key, stan, rx) = self
            .register(index, &message)
            .ok_or(LinkError::Unavailable)?;
        let _guard = PendingGuard {
            destination: self,
            key,
        };
        message.set(11, format!("{stan:06}"));
        let financial = !message.mti().is_network_management();
        let bytes = match &self.config.protection.mac {
            Some(m) if !message.mti().is_network_management() => {
                mac::sign(&self.config.dialect, &mut message, m.algorithm, &m.key)
                    .map_err(|e| LinkError::Encode(e.into()))?
            }
            _ => message
                .to_bytes(&self.config.dialect)
                .map_err(|e| LinkError::Encode(e.into()))?,
        };
        let frame = Frame {
            header: self.config.header.clone(),
            message: bytes,
        };
        if !on_send(stan).await {
            return Err(LinkError::NotJournaled);
        }
        // One deadline for queueing and answer: a host that stops reading
        // (a full queue) times out like one that stops answering. Whether the
        // request got into the link's queue decides between "never sent"
        // and "sent, fate unknown" (which needs a reversal).
        let sent = AtomicBool::new(false);
        let started = Instant::now();
        let exchange = async {
            link.send(frame).await.map_err(|_| LinkError::Unavailable)?;
            sent.store(true, Ordering::Relaxed);
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            rx.await.map_err(|_| LinkError::Lost)
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(Ok((response, read_at))) => {
                let waited = read_at.saturating_duration_since(started);
                if financial {
                    self.stats.latency.record(waited);
                }
                Ok(Exchange {
                    response,
                    stan,
                    waited,
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) if !sent.load(Ordering::Relaxed) => Err(LinkError::Unavailable),
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(LinkError::Timeout(self.config.timeout))
            }
        }
    }

    /// Fails every request waiting on link `index` (it went down): their
    /// senders are dropped, so they see [`LinkError::Unavailable`] at once.
    fn fail_pending(&self, index: usize) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|_, (link, _)| *link != index);
        }
    }

    /// Hands a response, read from the link at `read_at`, to the request
    /// waiting for it.
    fn deliver(&self, response: Message, read_at: Instant) {
        let stan = response.stan().unwrap_or_default();
        let key = key_of(&response, stan);
        let waiter = self.pending.lock().ok().and_then(|mut p| p.remove(&key));
        match waiter {
            Some((_, tx)) => {
                self.stats.matched.fetch_add(1, Ordering::Relaxed);
                // The requester may have timed out meanwhile: nothing to do.
                let _ = tx.send((response, read_at));
            }
            None => {
                self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                warn!(destination = %self.config.name, mti = %response.mti(), stan, "late or unmatched response: no request waits for it (a timed-out request has its reversal queued)");
            }
        }
    }

    /// Verifies a response's MAC under the destination's ZAK, when the
    /// destination MACs its messages (network management excepted).
    fn check_response_mac(&self, response: &Message, frame: &[u8]) -> Result<(), mac::MacError> {
        match &self.config.protection.mac {
            Some(m) if !response.mti().is_network_management() => {
                mac::verify_message(&self.config.dialect, frame, response, m.algorithm, &m.key)
            }
            _ => Ok(()),
        }
    }

    /// A response whose MAC fails counts as no response: its request is
    /// failed at once as lost, so the switch answers the terminal 91 and
    /// queues a reversal, exactly as for a timeout.
    fn reject(&self, response: Message, link: usize, reason: &mac::MacError) {
        self.stats.mac_failures.fetch_add(1, Ordering::Relaxed);
        let stan = response.stan().unwrap_or_default();
        warn!(destination = %self.config.name, link, mti = %response.mti(), stan, %reason, "response MAC verification failed: treated as no response");
        let key = key_of(&response, stan);
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&key);
        }
    }

    async fn run_link(self: Arc<Self>, index: usize, shutdown: CancellationToken) {
        let mut backoff = self.config.reconnect_min;
        while !shutdown.is_cancelled() {
            let connect = tokio::time::timeout(
                self.config.timeout.max(Duration::from_secs(1)),
                TcpStream::connect(self.config.address),
            );
            let connected = tokio::select! {
                result = connect => result,
                _ = shutdown.cancelled() => break,
            };
            match connected {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let since = tokio::time::Instant::now();
                    let was_up = match &self.config.tls {
                        None => {
                            self.stats.connects.fetch_add(1, Ordering::Relaxed);
                            let (read, write) = stream.into_split();
                            self.serve_link(index, read, write, &shutdown).await
                        }
                        Some(tls) => {
                            let handshake = tokio::time::timeout(
                                self.config.timeout.max(Duration::from_secs(1)),
                                tls.connector().connect(tls.server_name(), stream),
                            );
                            match handshake.await {
                                Ok(Ok(stream)) => {
                                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                                    let (read, write) = tokio::io::split(stream);
                                    self.serve_link(index, read, write, &shutdown).await
                                }
                                Ok(Err(error)) => {
                                    warn!(destination = %self.config.name, link = index, %error, "TLS handshake failed");
                                    false
                                }
                                Err(_) => {
                                    warn!(destination = %self.config.name, link = index, "TLS handshake timed out");
                                    false
                                }
                            }
                        }
                    };
                    // Start over only after a link that held: a host that
                    // accepts and drops at once keeps backing off.
                    if was_up && since.elapsed() >= STABLE_LINK {
                        backoff = self.config.reconnect_min;
                    }
                }
                Ok(Err(e)) => {
                    debug!(destination = %self.config.name, link = index, error = %e, "connect failed")
                }
                Err(_) => {
                    debug!(destination = %self.config.name, link = index, "connect timed out")
                }
            }
            // Capped exponential backoff with jitter (a random 50-100% of the
            // delay): a bank outage must not turn into a synchronised
            // reconnection storm.
            let wait = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            backoff = (backoff * 2).min(self.config.reconnect_max);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Runs one connected link until it fails, misses its echoes, or the
    /// switch shuts down. Returns whether the link got up (signed on).
    async fn serve_link<R, W>(
        &self,
        index: usize,
        read_half: R,
        write_half: W,
        shutdown: &CancellationToken,
    ) -> bool
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let codec = self.config.codec;
        let reader = FramedRead::new(read_half, codec);
        let writer = FramedWrite::new(write_half, codec);
        let (tx, rx) = mpsc::channel::<Frame>(4096);
        let mut write_task = tokio::spawn(crate::wire::write_frames(writer, rx));
        let was_up = tokio::select! {
            up = self.manage_link(index, &tx) => up,
            _ = self.read_from_host(index, reader, tx.clone()) => true,
            _ = &mut write_task => true,
            _ = shutdown.cancelled() => true,
        };
        let was_up = was_up && self.mark_down(index);
        write_task.abort();
        self.fail_pending(index);
        if was_up {
            info!(destination = %self.config.name, link = index, "link down");
        }
        was_up
    }

    /// Reads a link until the host closes it or sends a frame that cannot
    /// be framed: answers the host's own network management requests on
    /// `tx`, hands responses whose MAC holds to the requests waiting for
    /// them, and logs what cannot be decoded.
    async fn read_from_host<R: AsyncRead + Unpin>(
        &self,
        index: usize,
        mut reader: FramedRead<R, FrameCodec>,
        tx: mpsc::Sender<Frame>,
    ) {
        let name = &self.config.name;
        let header = &self.config.header;
        let dialect = &self.config.dialect;
        while let Some(item) = reader.next().await {
            let read_at = Instant::now();
            let frame = match item {
                Ok(frame) => frame,
                Err(e) => {
                    warn!(destination = %name, link = index, error = %e, "framing error from host, closing link");
                    break;
                }
            };
            match Message::decode(dialect, frame.message.clone()) {
                Ok(m) if m.mti().is_request() => {
                    // The host's own network management: answer it.
                    if let Some(answer) = answer_host_request(&m)
                        && let Ok(bytes) = answer.to_bytes(dialect)
                    {
                        let _ = tx
                            .send(Frame {
                                header: header.clone(),
                                message: bytes,
                            })
                            .await;
                    }
                }
                Ok(m) => match self.check_response_mac(&m, &frame.message) {
                    Ok(()) => self.deliver(m, read_at),
                    Err(reason) => self.reject(m, index, &reason),
                },
                Err(e) => {
                    warn!(destination = %name, link = index, error = %e, "undecodable frame from host")
                }
            }
        }
    }

    /// Signs the link on (when the destination wants it), puts it in
    /// rotation, then sends echo tests until too many in a row are missed.
    /// Returns whether the link got up; it returns only when sign-on fails
    /// or the echoes are missed.
    async fn manage_link(&self, index: usize, tx: &mpsc::Sender<Frame>) -> bool {
        let version = self.config.dialect.version();
        if self.config.sign_on {
            let sign_on = translate::network_request(version, Network::SignOn, DateTime::now());
            match self
                .request_on(index, tx, sign_on, |_| std::future::ready(true))
                .await
            {
                Ok(ex) if translate::network_accepted(version, &ex.response) => {}
                Ok(_) => {
                    warn!(destination = %self.config.name, link = index, "sign-on refused");
                    return false;
                }
                Err(e) => {
                    warn!(destination = %self.config.name, link = index, error = %e, "sign-on failed");
                    return false;
                }
            }
        }
        if let Some(slot) = self.links.get(index)
            && let Ok(mut slot) = slot.lock()
        {
            *slot = Some(tx.clone());
        }
        self.up.fetch_add(1, Ordering::Relaxed);
        info!(destination = %self.config.name, link = index, "link up");
        let mut misses = 0;
        let mut ticker = tokio::time::interval(self.config.echo_interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let echo = translate::network_request(version, Network::Echo, DateTime::now());
            match self
                .request_on(index, tx, echo, |_| std::future::ready(true))
                .await
            {
                Ok(ex) if translate::network_accepted(version, &ex.response) => misses = 0,
                _ => {
                    misses += 1;
                    if misses >= self.config.echo_misses {
                        warn!(destination = %self.config.name, link = index, misses, "echo tests missed, closing link");
                        return true;
                    }
                }
            }
        }
    }

    /// Takes a link out of rotation; returns whether it was in it.
    fn mark_down(&self, index: usize) -> bool {
        let was = self
            .links
            .get(index)
            .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()))
            .is_some();
        if was {
            self.up.fetch_sub(1, Ordering::Relaxed);
        }
        was
    }
}

/// Answer to a host's own 0800/1804 on our link: accepted.
fn answer_host_request(request: &Message) -> Option<Message> {
    let mti: Mti = request.mti().response()?;
    let mut answer = Message::new(mti);
    for field in [7, 11, 24, 70] {
        if let Some(v) = request.get_bytes(field) {
            answer.set(field, v);
        }
    }
    let is_network = matches!(mti.class_key(), [b'8', _]);
    let code: &'static [u8] = match (mti.version(), is_network) {
        (1, true) => b"800",
        (1, false) => b"902",
        (_, true) => b"00",
        (_, false) => b"12",
    };
    answer.set(39, Bytes::from_static(code));
    Some(answer)
}
