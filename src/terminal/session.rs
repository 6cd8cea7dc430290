//! One terminal connection: a reader and a writer task.
//!
//! Requests are pipelined: each is handled in its own task and answered as
//! soon as its response is ready, in whatever order that is — terminals match
//! answers by STAN. A frame that cannot be decoded gets the format-error
//! answer if its MTI can be read; otherwise the connection is closed. Either
//! way only this connection is affected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ListenerConfig;
use crate::iso8583::framing::Frame;
use crate::iso8583::{Dialect, Message};
use crate::metrics::{RequestLabels, Tag};
use crate::security::profile::Protection;
use crate::switch::{self, Handled, Switch};

/// Requests one connection may have in flight before the session stops
/// reading from it.
pub const MAX_IN_FLIGHT: usize = 256;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The terminal closed the connection.
    Closed,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The byte stream could not be framed or a frame had no readable MTI.
    Garbage,
    /// The switch is shutting down.
    Shutdown,
}

/// The response header for a request header: a 5-byte NAC TPDU
/// (`60 DDDD SSSS`) has its destination and source swapped; anything else is
/// echoed unchanged.
pub fn response_header(header: &Bytes) -> Bytes {
    match header.as_ref() {
        [0x60, d1, d2, s1, s2] => Bytes::from(vec![0x60, *s1, *s2, *d1, *d2]),
        _ => header.clone(),
    }
}

/// Serves one terminal connection (the read and write halves of a TCP or
/// TLS stream) until it ends.
pub async fn serve<R, W>(
    read_half: R,
    write_half: W,
    switch: Arc<Switch>,
    listener: Arc<ListenerConfig>,
    shutdown: CancellationToken,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = FramedRead::new(read_half, listener.codec);
    let writer = FramedWrite::new(write_half, listener.codec);
    let (tx, rx) = mpsc::channel::<Frame>(1024);
    let write_task = tokio::spawn(crate::wire::write_frames(writer, rx));
    let mut in_flight = JoinSet::new();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let dialect = Arc::clone(&listener.dialect);
    let label: Arc<str> = Arc::from(listener.name.as_str());
    let ended = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(listener.idle_timeout, reader.next()) => next,
            _ = shutdown.cancelled() => break Ended::Shutdown,
        };
        // Reap finished request tasks so the set stays small.
        while in_flight.try_join_next().is_some() {}
        let frame = match next {
            Err(_) => break Ended::Idle,
            Ok(None) => break Ended::Closed,
            Ok(Some(Err(e))) => {
                warn!(listener = %listener.name, error = %e, "framing error, closing connection");
                break Ended::Garbage;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let header = response_header(&frame.header);
        match Message::decode(&dialect, frame.message.clone()) {
            Ok(request) => {
                // At most MAX_IN_FLIGHT requests per connection: beyond that
                // the session stops reading, and TCP pushes back on the
                // terminal, instead of tasks piling up without bound.
                let permit = tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => permit,
                    _ = shutdown.cancelled() => break Ended::Shutdown,
                };
                let Ok(permit) = permit else {
                    break Ended::Shutdown;
                };
                let switch = Arc::clone(&switch);
                let tx = tx.clone();
                let dialect = Arc::clone(&dialect);
                let raw = frame.message;
                let label = Arc::clone(&label);
                in_flight.spawn(async move {
                    let request = Request {
                        message: request,
                        raw,
                        header,
                    };
                    answer(&switch, request, &dialect, &label, &tx).await;
                    drop(permit);
                });
            }
            Err(error) => {
                match Message::salvage(&dialect, frame.message.clone())
                    .as_ref()
                    .and_then(switch::format_error)
                {
                    Some(response) => {
                        debug!(listener = %listener.name, %error, "format error");
                        switch.metrics().responded(
                            &label,
                            response.mti().as_str(),
                            response.text(39).unwrap_or_default(),
                        );
                        // Unsigned, like every answer to an unverified message.
                        send(&tx, &dialect, header, response, &Protection::default()).await;
                    }
                    None => {
                        warn!(listener = %listener.name, %error, "unreadable message, closing connection");
                        break Ended::Garbage;
                    }
                }
            }
        }
    };
    // Requests already read are finished (the switch bounds each by the
    // destination timeout) before the writer is let go.
    while in_flight.join_next().await.is_some() {}
    drop(tx);
    let written = write_task.await.ok().flatten();
    if let (Ended::Shutdown, Some(write_half)) = (ended, written) {
        linger(reader.into_inner(), write_half).await;
    }
    ended
}

/// A decoded request with what it came in.
struct Request {
    /// The request.
    message: Message,
    /// Its frame as it arrived (for the MAC check).
    raw: Bytes,
    /// The response header.
    header: Bytes,
}

/// Checks a request's MAC, has the switch handle it, and queues the answer
/// for the writer; counted and timed in the switch's metrics.
async fn answer(
    switch: &Switch,
    request: Request,
    dialect: &Dialect,
    label: &Arc<str>,
    tx: &mpsc::Sender<Frame>,
) {
    let Request {
        message: request,
        raw,
        header,
    } = request;
    let started = Instant::now();
    let metrics = switch.metrics();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            listener: Arc::clone(label),
            mti: Tag::mti(request.mti().as_str()),
        })
        .inc();
    metrics.in_flight.inc();
    // Counted down however the task ends (also if aborted).
    let _in_flight = InFlight(metrics.in_flight.clone());
    let (handled, protection) = match switch.check_mac(&request, &raw, dialect) {
        Ok(protection) => (switch.handle(request).await, protection),
        // Unsigned: a MAC under the terminal's key on an
        // answer to fields anyone chose would make the
        // switch a signing oracle.
        Err(refusal) => (
            Handled {
                response: switch::respond(&request, refusal.response_code(), None),
                waited: Duration::ZERO,
            },
            Arc::new(Protection::default()),
        ),
    };
    let response = handled.response;
    metrics.responded(
        label,
        response.mti().as_str(),
        response.text(39).unwrap_or_default(),
    );
    send(tx, dialect, header, response, &protection).await;
    let took = started.elapsed();
    metrics.latency.record(took);
    metrics
        .switch_added
        .record(took.saturating_sub(handled.waited));
}

/// How long a closing connection waits for more bytes from the terminal
/// before it closes: a close with nothing unread is a clean one.
pub const LINGER_QUIET: Duration = Duration::from_millis(250);

/// Ends a connection the switch closes while the terminal may still be
/// sending: shuts the write side down (the terminal reads every answer,
/// then the end of the stream), then reads and discards until the terminal
/// closes or sends nothing for [`LINGER_QUIET`]. Closing with unread data
/// would send a TCP reset instead, and a reset makes the terminal's system
/// discard answers it has received but not yet read. The daemon's shutdown
/// grace bounds the whole wait.
async fn linger<R, W>(mut read_half: R, mut write_half: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if write_half.shutdown().await.is_err() {
        return;
    }
    let mut discard = [0u8; 4096];
    while matches!(
        tokio::time::timeout(LINGER_QUIET, read_half.read(&mut discard)).await,
        Ok(Ok(n)) if n > 0
    ) {}
}

/// A request being handled: counted down when its task ends.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Encodes (and MACs, per the terminal's profile) a response and queues
/// it for the writer.
async fn send(
    tx: &mpsc::Sender<Frame>,
    dialect: &crate::iso8583::Dialect,
    header: Bytes,
    response: Message,
    protection: &Protection,
) {
    match switch::encode_for_terminal(response, dialect, protection) {
        Ok(message) => {
            let _ = tx.send(Frame { header, message }).await;
        }
        Err(e) => warn!(error = %e, "cannot encode response for terminal"),
    }
}
