//! Accepting terminal connections, at most `max_connections` at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
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
