//! Accepting terminal connections, at most `max_connections` at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ListenerConfig;
use crate::metrics::ListenerLabels;
use crate::switch::Switch;
use crate::terminal::session;

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused because the listener was full.
    pub refused: AtomicU64,
    /// TLS handshakes that failed (untrusted certificate, plaintext on a
    /// TLS port, timeout).
    pub tls_failures: AtomicU64,
}

/// Counts a connection down when its session ends.
struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Time a terminal has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The accept queue of a listener: room for every connection it may hold,
/// at least [`MIN_BACKLOG`], at most [`MAX_BACKLOG`] (the kernel caps it
/// further at `net.core.somaxconn`).
pub fn backlog(max_connections: usize) -> u32 {
    u32::try_from(max_connections)
        .unwrap_or(MAX_BACKLOG)
        .clamp(MIN_BACKLOG, MAX_BACKLOG)
}

/// The smallest accept queue a listener gets.
pub const MIN_BACKLOG: u32 = 1_024;

/// The largest accept queue a listener asks for.
pub const MAX_BACKLOG: u32 = 65_535;

/// Binds a terminal listener (with `SO_REUSEADDR`, as `TcpListener::bind`)
/// and listens with an accept queue sized by [`backlog`]: after a restart
/// every terminal reconnects at once, and a queue of the default 128 made
/// the kernel drop their handshakes, each retried only a second later.
pub fn bind(address: SocketAddr, max_connections: usize) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog(max_connections))
}

/// Accepts connections until `shutdown`, then waits for every session to
/// finish its requests in flight.
pub async fn run(
    socket: TcpListener,
    config: Arc<ListenerConfig>,
    switch: Arc<Switch>,
    stats: Arc<ListenerStats>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                warn!(listener = %config.name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: close at once rather than queue; the terminal retries.
            stats.refused.fetch_add(1, Ordering::Relaxed);
            warn!(listener = %config.name, %peer, "connection refused: listener full");
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (switch, config, shutdown) =
            (Arc::clone(&switch), Arc::clone(&config), shutdown.clone());
        let stats = Arc::clone(&stats);
        let open = switch
            .metrics()
            .connections
            .get_or_create_owned(&ListenerLabels {
                listener: Arc::from(config.name.as_str()),
            });
        sessions.spawn(async move {
            open.inc();
            // Counted down however the session ends.
            let _open = OpenConnection(open);
            let _ = stream.set_nodelay(true);
            let ended = match &config.tls {
                None => {
                    let (read, write) = stream.into_split();
                    session::serve(read, write, switch, config, shutdown).await
                }
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let (read, write) = tokio::io::split(stream);
                            session::serve(read, write, switch, config, shutdown).await
                        }
                        Ok(Err(error)) => {
                            stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                            warn!(listener = %config.name, %peer, %error, "TLS handshake failed, connection closed");
                            return;
                        }
                        Err(_) => {
                            stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                            warn!(listener = %config.name, %peer, "TLS handshake timed out, connection closed");
                            return;
                        }
                    }
                }
            };
            tracing::debug!(%peer, ?ended, "session ended");
            drop(permit);
        });
    }
    info!(listener = %config.name, "stopped accepting");
    while sessions.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_queue_holds_every_connection_within_bounds() {
        assert_eq!(backlog(1), MIN_BACKLOG);
        assert_eq!(backlog(20_000), 20_000);
        assert_eq!(backlog(1_000_000), MAX_BACKLOG);
    }

    #[tokio::test]
    async fn a_bound_listener_takes_connections_on_its_address() {
        let socket = bind("127.0.0.1:0".parse().unwrap(), 10).unwrap();
        let address = socket.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (_, peer) = socket.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }
}
