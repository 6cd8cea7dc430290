//! What the admin API reads from the running daemon: the scrape-time
//! metrics and the destination and link listings.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::Operations;
use crate::metrics::{self, Gathered, HistogramSample, Labels, Sample};
use crate::switch::Switch;

/// Reads the daemon's parts at scrape time.
#[derive(Debug)]
struct Scrape(Arc<dyn Operations>);

fn family(name: &'static str, help: &'static str, samples: Vec<(Labels, Sample)>) -> Gathered {
    Gathered {
        name,
        help,
        samples,
    }
}

fn counter(v: &std::sync::atomic::AtomicU64) -> Sample {
    Sample::Counter(v.load(Ordering::Relaxed))
}

/// Per destination: its links' state, its request counters and what
/// store-and-forward still owes it.
fn destination_families(switch: &Switch) -> Vec<Gathered> {
    let mut link_up = Vec::new();
    let mut link_enabled = Vec::new();
    let mut sent = Vec::new();
    let mut timeouts = Vec::new();
    let mut unmatched = Vec::new();
    let mut mac = Vec::new();
    let mut saf_depth = Vec::new();
    let mut saf_age = Vec::new();
    let now = crate::journal::wal::now_micros();
    for destination in switch.destinations() {
        let name = destination.name().to_string();
        for link in destination.link_states() {
            let labels = vec![
                ("destination", name.clone()),
                ("link", link.index.to_string()),
            ];
            link_up.push((labels.clone(), Sample::Gauge(i64::from(link.up))));
            link_enabled.push((labels, Sample::Gauge(i64::from(link.enabled))));
        }
        let stats = destination.stats();
        let labels = vec![("destination", name.clone())];
        sent.push((labels.clone(), counter(&stats.sent)));
        timeouts.push((labels.clone(), counter(&stats.timeouts)));
        unmatched.push((labels.clone(), counter(&stats.unmatched)));
        mac.push((labels.clone(), counter(&stats.mac_failures)));
        let queued = switch.journal().index().saf(&name).unwrap_or_default();
        let oldest = queued.iter().map(|s| s.received_at).min();
        saf_depth.push((labels.clone(), Sample::Gauge(queued.len() as i64)));
        saf_age.push((
            labels,
            Sample::Gauge(oldest.map_or(0, |t| (now.saturating_sub(t) / 1_000_000) as i64)),
        ));
    }
    vec![
        family(
            "link_up",
            "Link connected and signed on (1) or not (0)",
            link_up,
        ),
        family(
            "link_enabled",
            "Link in rotation (1) or taken out by an operator (0)",
            link_enabled,
        ),
        family(
            "destination_requests",
            "Requests sent to a destination",
            sent,
        ),
        family(
            "destination_timeouts",
            "Requests a destination did not answer in time",
            timeouts,
        ),
        family(
            "destination_unmatched_responses",
            "Late or unmatched responses from a destination",
            unmatched,
        ),
        family(
            "destination_mac_failures",
            "Destination responses refused for a bad MAC",
            mac,
        ),
        family("saf_depth", "Reversals owed to a destination", saf_depth),
        family(
            "saf_oldest_age_seconds",
            "Age of the oldest transaction with a reversal owed",
            saf_age,
        ),
    ]
}

/// The switch-wide counters and gauges: refusals, duplicates, reversals,
/// MAC and PIN failures, the journal's group commits and the risk tables.
fn switch_families(switch: &Switch) -> Vec<Gathered> {
    let s = switch.stats();
    let wal = switch.journal().stats();
    let lag = switch.journal().index_lag();
    let none = Vec::new;
    vec![
        family(
            "refused",
            "Requests refused by the switch itself",
            vec![(none(), counter(&s.refused))],
        ),
        family(
            "duplicates",
            "Retransmissions answered with the original's answer",
            vec![(none(), counter(&s.duplicates))],
        ),
        family(
            "reversals_queued",
            "Reversals queued for store-and-forward",
            vec![(none(), counter(&s.reversals_queued))],
        ),
        family(
            "mac_failures",
            "Terminal requests refused for a missing or wrong MAC",
            vec![(none(), counter(&s.mac_failures))],
        ),
        family(
            "pin_failures",
            "PIN blocks that could not be translated",
            vec![(none(), counter(&s.pin_failures))],
        ),
        family(
            "journal_groups",
            "Journal group commits",
            vec![(none(), Sample::Counter(wal.groups))],
        ),
        family(
            "journal_records",
            "Journal records committed (records / groups = group size)",
            vec![(none(), Sample::Counter(wal.records))],
        ),
        family(
            "journal_index_lag_records",
            "Durable journal records the index has not applied yet",
            vec![(none(), Sample::Gauge(gauge(lag.records)))],
        ),
        family(
            "journal_index_lag_milliseconds",
            "How long the journal index has not held everything durable (0 when it does)",
            vec![(
                none(),
                Sample::Gauge(gauge(
                    u64::try_from(lag.behind.as_millis()).unwrap_or(u64::MAX),
                )),
            )],
        ),
        family(
            "risk_tracked_cards",
            "Cards held in the velocity tables",
            vec![(none(), Sample::Gauge(switch.risk().tracked_cards() as i64))],
        ),
        family(
            "risk_untracked_cards",
            "New cards checked without history because a velocity table was full",
            vec![(none(), Sample::Counter(switch.risk().untracked()))],
        ),
    ]
}

/// Per terminal listener: connections accepted, refused and failed TLS
/// handshakes.
fn listener_families(control: &dyn Operations) -> Vec<Gathered> {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut tls = Vec::new();
    for (name, stats) in control.listener_stats() {
        let labels = vec![("listener", name.to_string())];
        accepted.push((labels.clone(), counter(&stats.accepted)));
        refused.push((labels.clone(), counter(&stats.refused)));
        tls.push((labels, counter(&stats.tls_failures)));
    }
    vec![
        family(
            "listener_accepted",
            "Terminal connections accepted",
            accepted,
        ),
        family(
            "listener_refused",
            "Terminal connections refused (listener full)",
            refused,
        ),
        family(
            "listener_tls_failures",
            "Failed TLS handshakes on a listener",
            tls,
        ),
    ]
}

impl metrics::Source for Scrape {
    fn gather(&self) -> Vec<Gathered> {
        let control = self.0.as_ref();
        let switch = control.switch();
        let mut families = destination_families(switch);
        families.extend(switch_families(switch));
        families.extend(listener_families(control));
        families
    }

    fn histograms(&self) -> Vec<HistogramSample<'_>> {
        let switch = self.0.switch();
        let mut out: Vec<HistogramSample<'_>> = switch
            .destinations()
            .map(|d| HistogramSample {
                name: "destination_duration_seconds",
                help: "From a request handed to a destination link to its answer being read from the link",
                labels: vec![("destination", d.name().to_string())],
                latency: &d.stats().latency,
            })
            .collect();
        out.push(HistogramSample {
            name: "journal_fsync_duration_seconds",
            help: "Journal group commit: write and fdatasync",
            labels: Vec::new(),
            latency: switch.journal().sync_latency(),
        });
        out
    }
}

/// The Prometheus exposition of the running daemon.
pub fn render(control: &Arc<dyn Operations>) -> Result<String, std::fmt::Error> {
    metrics::render(
        control.switch().metrics(),
        &Arc::new(Scrape(Arc::clone(control))),
    )
}

/// `GET /v1/destinations`.
pub fn destinations(control: &dyn Operations) -> Value {
    let list: Vec<Value> = control
        .switch()
        .destinations()
        .map(|d| {
            let stats = d.stats();
            json!({
                "name": d.name(),
                "address": d.config().address.to_string(),
                "dialect": d.config().dialect.name(),
                "fallback": d.config().fallback,
                "links": d.config().links,
                "links_up": d.links_up(),
                "sent": stats.sent.load(Ordering::Relaxed),
                "timeouts": stats.timeouts.load(Ordering::Relaxed),
                "latency_p99_us": stats.latency.quantile_micros(0.99),
            })
        })
        .collect();
    json!({ "destinations": list })
}

/// `GET /v1/links`.
pub fn links(control: &dyn Operations) -> Value {
    let list: Vec<Value> = control
        .switch()
        .destinations()
        .flat_map(|d| {
            d.link_states().into_iter().map(move |l| {
                json!({
                    "id": format!("{}/{}", d.name(), l.index),
                    "destination": d.name(),
                    "index": l.index,
                    "up": l.up,
                    "enabled": l.enabled,
                })
            })
        })
        .collect();
    json!({ "links": list })
}

/// A gauge's value from a count (saturating).
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
