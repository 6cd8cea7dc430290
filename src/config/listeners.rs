//! `[[listener]]` and `[admin]`: the sockets the daemon binds, validated.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{RawAdmin, RawListener, RawServerTls};
use super::{Problems, resolve_dialect};
use crate::admin::AdminConfig;
use crate::iso8583::framing::FrameCodec;
use crate::iso8583::spec::IsoVersion;
use crate::security::tls::{ServerTlsFiles, TlsAcceptor, TlsError};
use crate::terminal::ListenerConfig;

/// Largest `max_connections` of a listener.
const MAX_CONNECTIONS: usize = 1_000_000;
/// Smallest `max_frame`: room for an MTI, a bitmap and a few fields.
pub(super) const MIN_FRAME: usize = 64;

/// Addresses with a fixed port, and who listens there (`listener[0].address`).
pub(super) type Bound = BTreeMap<SocketAddr, String>;

/// Every listener that validates; each one's fixed address goes to `bound`.
pub(super) fn listeners(
    raw: &[RawListener],
    base: &Path,
    bound: &mut Bound,
    problems: &mut Problems,
) -> Vec<ListenerConfig> {
    let mut names = BTreeSet::new();
    let mut listeners = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");
        if !names.insert(l.name.clone()) {
            problems.add(key("name"), format!("`{}` is used twice", l.name));
        }
        if let Some(listener) = listener(l, base, bound, &key, problems) {
            listeners.push(listener);
        }
    }
    if raw.is_empty() {
        problems.add("listener", "at least one [[listener]] is needed");
    }
    listeners
}

fn listener(
    l: &RawListener,
    base: &Path,
    bound: &mut Bound,
    key: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<ListenerConfig> {
    let address = l
        .address
        .parse::<SocketAddr>()
        .map_err(|e| problems.add(key("address"), format!("`{}`: {e}", l.address)))
        .ok();
    if let Some(address) = address.filter(|a| a.port() != 0) {
        if let Some(other) = clash(bound, address) {
            problems.add(
                key("address"),
                format!("`{address}` is also {other}: one socket per address"),
            );
        }
        bound.insert(address, key("address"));
    }
    let dialect = resolve_dialect(&l.dialect, base)
        .map_err(|e| problems.add(key("dialect"), e))
        .ok();
    if dialect
        .as_ref()
        .is_some_and(|d| d.version() != IsoVersion::Iso1987)
    {
        problems.add(key("dialect"), "terminals must speak a 1987 dialect");
    }
    if !(1..=MAX_CONNECTIONS).contains(&l.max_connections) {
        problems.add(
            key("max_connections"),
            format!("must be between 1 and {MAX_CONNECTIONS}"),
        );
    }
    if l.max_frame < MIN_FRAME || l.header >= l.max_frame {
        problems.add(
            key("max_frame"),
            format!("must be at least {MIN_FRAME} and more than `header`"),
        );
    }
    if l.idle_timeout_s == 0 {
        problems.add(key("idle_timeout_s"), "must be more than 0");
    }
    let tls = server_tls(l.tls.as_ref(), base)
        .map_err(|e| problems.add(key("tls"), e))
        .ok();
    Some(ListenerConfig {
        name: l.name.clone(),
        address: address?,
        dialect: dialect?,
        codec: FrameCodec::new(l.framing)
            .with_header(l.header)
            .with_max_frame(l.max_frame),
        max_connections: l.max_connections,
        idle_timeout: Duration::from_secs(l.idle_timeout_s),
        tls: tls?,
    })
}

/// The admin API's settings, when `[admin]` is there and validates.
pub(super) fn admin(
    a: &RawAdmin,
    base: &Path,
    bound: &Bound,
    problems: &mut Problems,
) -> Option<AdminConfig> {
    let address = a
        .address
        .parse::<SocketAddr>()
        .map_err(|e| problems.add("admin.address", format!("`{}`: {e}", a.address)))
        .ok();
    if let Some(other) = address.and_then(|a| clash(bound, a)) {
        problems.add(
            "admin.address",
            format!("`{}` is also {other}: one socket per address", a.address),
        );
    }
    let tokens_file = base.join(&a.tokens_file);
    if let Err(e) = crate::admin::auth::Tokens::load(&tokens_file) {
        problems.add("admin.tokens_file", e);
    }
    let tls = server_tls(a.tls.as_ref(), base)
        .map_err(|e| problems.add("admin.tls", e))
        .ok();
    Some(AdminConfig {
        address: address?,
        tokens_file,
        audit_log: base.join(&a.audit_log),
        tls: tls?,
    })
}

/// Loads the TLS files of a listener or of the admin API, if it has any.
fn server_tls(
    tls: Option<&RawServerTls>,
    base: &Path,
) -> Result<Option<Arc<TlsAcceptor>>, TlsError> {
    tls.map(|t| {
        TlsAcceptor::load(ServerTlsFiles {
            cert: base.join(&t.cert),
            key: base.join(&t.key),
            client_ca: t.client_ca.as_ref().map(|c| base.join(c)),
        })
        .map(Arc::new)
    })
    .transpose()
}

/// Who already listens where `address` would: the same port on the same
/// address, or on any address when either is unspecified (`0.0.0.0`, `[::]`
/// take every address of the port, IPv4 and IPv6 alike on Linux). A port of
/// 0 (any free port) never clashes.
fn clash(bound: &Bound, address: SocketAddr) -> Option<&String> {
    if address.port() == 0 {
        return None;
    }
    bound
        .iter()
        .find(|(other, _)| {
            other.port() == address.port()
                && (other.ip() == address.ip()
                    || other.ip().is_unspecified()
                    || address.ip().is_unspecified())
        })
        .map(|(_, who)| who)
}
