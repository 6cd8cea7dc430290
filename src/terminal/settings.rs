//! A listener's settings, as the config file gives them (validated by
//! [`crate::config`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::iso8583::Dialect;
use crate::iso8583::framing::FrameCodec;
use crate::security::tls::TlsAcceptor;

/// A terminal-facing listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Terminal dialect.
    pub dialect: Arc<Dialect>,
    /// Framing.
    pub codec: FrameCodec,
    /// Connections beyond this are refused.
    pub max_connections: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// TLS (mutual TLS with a client CA); plain TCP when `None`.
    pub tls: Option<Arc<TlsAcceptor>>,
}
