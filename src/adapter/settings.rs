//! A destination's settings, as the config file gives them (validated by
//! [`crate::config`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::iso8583::Dialect;
use crate::iso8583::framing::FrameCodec;
use crate::security::profile::Protection;
use crate::security::tls::TlsConnector;

/// A bank host or channel the switch connects out to.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// Name used by routes and logs.
    pub name: String,
    /// Host address.
    pub address: SocketAddr,
    /// The host's dialect.
    pub dialect: Arc<Dialect>,
    /// Framing on its links.
    pub codec: FrameCodec,
    /// Header bytes sent with every frame (e.g. a TPDU).
    pub header: bytes::Bytes,
    /// Persistent links to keep open.
    pub links: usize,
    /// Time the host has to answer.
    pub timeout: Duration,
    /// Echo test interval.
    pub echo_interval: Duration,
    /// Consecutive missed echoes after which a link is closed.
    pub echo_misses: u32,
    /// Send a sign-on (0800, 70=001) when a link connects.
    pub sign_on: bool,
    /// Destination to use while this one has no link up.
    pub fallback: Option<String>,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// MAC and PIN keys of this destination.
    pub protection: Arc<Protection>,
    /// TLS on its links (with a client certificate for mutual TLS); plain
    /// TCP when `None`.
    pub tls: Option<Arc<TlsConnector>>,
}
