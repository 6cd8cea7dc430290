//! `[[destination]]`: the bank hosts the switch connects out to, validated.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::listeners::MIN_FRAME;
use super::raw::RawDestination;
use super::{Problems, resolve_dialect};
use crate::adapter::DestinationConfig;
use crate::iso8583::framing::FrameCodec;
use crate::security::keys::KeyStore;
use crate::security::profile::Side;
use crate::security::tls::{ClientTlsFiles, TlsConnector};

/// Largest `links` of a destination.
const MAX_LINKS: usize = 64;

/// Every destination that validates. `default_timeout_ms` is the switch's.
pub(super) fn destinations(
    raw: &[RawDestination],
    base: &Path,
    store: Option<&KeyStore>,
    default_timeout_ms: u64,
    problems: &mut Problems,
) -> Vec<DestinationConfig> {
    let names: BTreeSet<&str> = raw.iter().map(|d| d.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut destinations = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let key = |k: &str| format!("destination[{i}].{k}");
        if !seen.insert(d.name.as_str()) {
            problems.add(key("name"), format!("`{}` is used twice", d.name));
        }
        let place = Place {
            base,
            store,
            names: &names,
            default_timeout_ms,
        };
        destinations.extend(destination(d, &place, &key, problems));
    }
    destinations
}

/// The numeric limits and the fallback of one destination.
fn check_limits(
    d: &RawDestination,
    names: &BTreeSet<&str>,
    key: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) {
    if !(1..=MAX_LINKS).contains(&d.links) {
        problems.add(key("links"), format!("must be between 1 and {MAX_LINKS}"));
    }
    if !(1..=86_400).contains(&d.echo_interval_s) {
        problems.add(key("echo_interval_s"), "must be between 1 and 86400");
    }
    if d.echo_misses == 0 {
        problems.add(key("echo_misses"), "must be at least 1");
    }
    if d.timeout_ms == Some(0) {
        problems.add(key("timeout_ms"), "must be more than 0");
    }
    if d.max_frame < MIN_FRAME {
        problems.add(key("max_frame"), format!("must be at least {MIN_FRAME}"));
    }
    if d.reconnect_min_ms == 0 || d.reconnect_min_ms > d.reconnect_max_ms {
        problems.add(
            key("reconnect_min_ms"),
            "must be more than 0 and at most reconnect_max_ms",
        );
    }
    if let Some(fallback) = &d.fallback {
        if !names.contains(fallback.as_str()) {
            problems.add(
                key("fallback"),
                format!("no destination named `{fallback}`"),
            );
        } else if *fallback == d.name {
            problems.add(key("fallback"), "a destination cannot fall back to itself");
        }
    }
}

/// What every destination is validated against.
struct Place<'a> {
    /// The config file's directory.
    base: &'a Path,
    /// The key store, when one opened.
    store: Option<&'a KeyStore>,
    /// Every destination's name (for fallbacks).
    names: &'a BTreeSet<&'a str>,
    /// The switch's `timeout_ms`.
    default_timeout_ms: u64,
}

/// One destination: its address, dialect, header, limits, keys and TLS.
fn destination(
    d: &RawDestination,
    place: &Place<'_>,
    key: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<DestinationConfig> {
    let Place {
        base,
        store,
        names,
        default_timeout_ms,
    } = *place;
    let address = d
        .address
        .parse::<SocketAddr>()
        .map_err(|e| problems.add(key("address"), format!("`{}`: {e}", d.address)))
        .ok();
    let dialect = resolve_dialect(&d.dialect, base)
        .map_err(|e| problems.add(key("dialect"), e))
        .ok();
    let header = match d.header.as_deref().map(hex::decode) {
        None => Some(Vec::new()),
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => {
            problems.add(key("header"), format!("not hex: {e}"));
            None
        }
    };
    check_limits(d, names, key, problems);
    let protection = d
        .security
        .resolve(Side::Destination, dialect.as_deref(), store)
        .map_err(|errors| {
            for (k, reason) in errors {
                problems.add(key(&format!("security.{k}")), reason);
            }
        })
        .ok();
    let tls = match &d.tls {
        None => Some(None),
        Some(t) => TlsConnector::load(ClientTlsFiles {
            ca: base.join(&t.ca),
            server_name: t.server_name.clone(),
            cert: t.cert.as_ref().map(|c| base.join(c)),
            key: t.key.as_ref().map(|k| base.join(k)),
        })
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| problems.add(key("tls"), e))
        .ok(),
    };
    let header = header?;
    Some(DestinationConfig {
        name: d.name.clone(),
        address: address?,
        dialect: dialect?,
        codec: FrameCodec::new(d.framing)
            .with_header(header.len())
            .with_max_frame(d.max_frame),
        header: header.into(),
        links: d.links,
        timeout: Duration::from_millis(d.timeout_ms.unwrap_or(default_timeout_ms)),
        echo_interval: Duration::from_secs(d.echo_interval_s),
        echo_misses: d.echo_misses,
        sign_on: d.sign_on,
        fallback: d.fallback.clone(),
        reconnect_min: Duration::from_millis(d.reconnect_min_ms),
        reconnect_max: Duration::from_millis(d.reconnect_max_ms),
        protection: Arc::new(protection?),
        tls: tls?,
    })
}
