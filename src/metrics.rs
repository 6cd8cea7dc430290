//! What the switch counts while it runs, and its Prometheus exposition.
//!
//! The request path only bumps atomics: labelled counters from
//! `prometheus-client` and [`Latency`] histograms (hdrhistogram behind a
//! mutex, one short lock per record). Everything that is state rather than
//! an event (links, store-and-forward, the journal writer) is read when
//! `/metrics` is scraped, by [`render`], so the hot path pays nothing for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the exported latency buckets.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Largest latency recorded exactly (longer ones are clamped to it): 1 hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency distribution: recorded in µs with hdrhistogram (2 significant
/// digits), exported as a Prometheus histogram in seconds.
#[derive(Debug)]
pub struct Latency {
    histogram: Mutex<Histogram<u64>>,
    sum_micros: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        // Bounds 1 µs ..= 1 h with 2 significant digits are valid by construction.
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 2)
            .unwrap_or_else(|_| unreachable!("valid histogram bounds"));
        Latency {
            histogram: Mutex::new(histogram),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Latency {
    /// Records one duration.
    pub fn record(&self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, MAX_MICROS);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let mut h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(micros);
    }

    /// Recorded values so far.
    pub fn count(&self) -> u64 {
        self.histogram
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The value at a quantile (0..=1), µs.
    pub fn quantile_micros(&self, q: f64) -> u64 {
        self.histogram
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .value_at_quantile(q)
    }

    /// Sum (s), count and buckets (upper bound in s, values in the bucket).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        // The encoder accumulates: each bucket gets the values above the
        // previous bound and up to its own.
        let mut low = 0;
        let buckets = BUCKETS
            .iter()
            .map(|bound| {
                let high = (bound * 1e6) as u64;
                let count = h.count_between(low, high);
                low = h.next_non_equivalent(high);
                (*bound, count)
            })
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, h.len(), buckets)
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The label of a value that arrives on the wire (an MTI, a response
/// code): the value itself when it belongs to a closed set the switch
/// knows, else `other`. A client choosing what it sends cannot create a
/// series per value: the number of series is bounded by these sets, not by
/// the traffic.
///
/// - MTIs: versions `0` (1987) and `1` (1993), classes authorisation
///   (`x1xx`), financial (`x2xx`), reversal (`x4xx`) and network management
///   (`x8xx`), each as request, repeat, response, advice, advice repeat and
///   advice response (`xx00 xx01 xx10 xx20 xx21 xx30`), and `1804`/`1814`.
/// - Response codes: any two digits (the ISO 8583:1987 code space, 100
///   values) and the three-digit ISO 8583:1993 action codes of
///   [`crate::codes::TABLE`] and [`crate::codes::EXTRA_ACTION_CODES`].
///
/// A tag is a `&'static str`, so counting a request allocates nothing.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct Tag(&'static str);

/// The label of every value outside its closed set.
pub const OTHER: &str = "other";

/// The MTIs that are their own label (see [`Tag`]).
pub const KNOWN_MTIS: &[&str] = &[
    "0100", "0101", "0110", "0120", "0121", "0130", "0200", "0201", "0210", "0220", "0221", "0230",
    "0400", "0401", "0410", "0420", "0421", "0430", "0800", "0801", "0810", "0820", "0821", "0830",
    "1100", "1101", "1110", "1120", "1121", "1130", "1200", "1201", "1210", "1220", "1221", "1230",
    "1400", "1401", "1410", "1420", "1421", "1430", "1800", "1801", "1810", "1820", "1821", "1830",
    "1804", "1814",
];

/// `00` to `99` back to back: the two-digit codes as `'static` slices.
const TWO_DIGITS: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

impl Tag {
    /// The label of an MTI: itself if known, else `other`.
    pub fn mti(text: &str) -> Tag {
        Tag(KNOWN_MTIS
            .iter()
            .copied()
            .find(|known| *known == text)
            .unwrap_or(OTHER))
    }

    /// The label of a response or action code (field 39): itself if it is
    /// two digits or a known three-digit action code, else `other`.
    pub fn code(text: &str) -> Tag {
        let known = match text.as_bytes() {
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
                let at = usize::from(a - b'0') * 20 + usize::from(b - b'0') * 2;
                TWO_DIGITS.get(at..at + 2)
            }
            [_, _, _] => crate::codes::TABLE
                .iter()
                .map(|(_, action, _)| *action)
                .chain(
                    crate::codes::EXTRA_ACTION_CODES
                        .iter()
                        .map(|(action, _, _)| *action),
                )
                .find(|action| *action == text),
            _ => None,
        };
        Tag(known.unwrap_or(OTHER))
    }

    /// A label the code itself names (a `'static` string is part of the
    /// program, so the set stays closed).
    pub fn fixed(text: &'static str) -> Tag {
        Tag(text)
    }

    /// The label text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl EncodeLabelValue for Tag {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of a terminal request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Terminal listener.
    pub listener: Arc<str>,
    /// Request MTI.
    pub mti: Tag,
}

/// Labels of an answer to a terminal.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    /// Terminal listener.
    pub listener: Arc<str>,
    /// Response MTI.
    pub mti: Tag,
    /// Field 39.
    pub code: Tag,
}

/// Labels of a destination's answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// Destination.
    pub destination: Arc<str>,
    /// Response code, in 1987 terms.
    pub code: Tag,
}

/// Labels of a risk decline.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The rule's id.
    pub rule: String,
    /// The response code it gave.
    pub code: String,
}

/// Labels naming a listener.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// Terminal listener.
    pub listener: Arc<str>,
}

/// Labels of a refused admin API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why, from a closed set (`missing`, `scheme`, `unknown_token`).
    pub reason: Tag,
}

/// The event counters of the request path (shared by every session).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Terminal requests by listener and MTI.
    pub requests: Family<RequestLabels, Counter>,
    /// Answers to terminals by listener, MTI and response code.
    pub responses: Family<ResponseLabels, Counter>,
    /// Answers of destinations by destination and code.
    pub destination_responses: Family<DestinationLabels, Counter>,
    /// Requests being handled now.
    pub in_flight: Gauge,
    /// Open terminal connections by listener.
    pub connections: Family<ListenerLabels, Gauge>,
    /// Requests declined by a risk rule.
    pub risk_declines: Family<RuleLabels, Counter>,
    /// Admin API requests refused for a missing or invalid bearer token, by
    /// reason.
    pub admin_auth_failures: Family<ReasonLabels, Counter>,
    /// From a request's arrival to its answer being queued for the terminal.
    pub latency: Arc<Latency>,
    /// The same less the time from handing the request to a destination
    /// link to its answer's frame being read from it: the switch's own
    /// stages and journal syncs.
    pub switch_added: Arc<Latency>,
}

impl Metrics {
    /// Counts an answer to a terminal.
    pub fn responded(&self, listener: &Arc<str>, mti: &str, code: &str) {
        self.responses
            .get_or_create(&ResponseLabels {
                listener: Arc::clone(listener),
                mti: Tag::mti(mti),
                code: Tag::code(code),
            })
            .inc();
    }
}

impl Metrics {
    /// Counts an admin API request refused for want of a valid token.
    pub fn auth_failed(&self, reason: &'static str) {
        self.admin_auth_failures
            .get_or_create(&ReasonLabels {
                reason: Tag::fixed(reason),
            })
            .inc();
    }
}

/// Label pairs of one sample.
pub type Labels = Vec<(&'static str, String)>;

/// A metric read at scrape time.
#[derive(Debug)]
pub enum Sample {
    /// A counter's value.
    Counter(u64),
    /// A gauge's value.
    Gauge(i64),
}

/// One family of scrape-time values: name, help and labelled samples.
#[derive(Debug)]
pub struct Gathered {
    /// Metric name (without `_total`).
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Label pairs and value of each sample.
    pub samples: Vec<(Labels, Sample)>,
}

/// One labelled histogram read at scrape time.
#[derive(Debug)]
pub struct HistogramSample<'a> {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Its labels.
    pub labels: Labels,
    /// The distribution.
    pub latency: &'a Latency,
}

/// Values the daemon reads from its parts at each scrape.
pub trait Source: std::fmt::Debug + Send + Sync + 'static {
    /// Scalar families (counters and gauges).
    fn gather(&self) -> Vec<Gathered>;
    /// Histograms; samples of one name are one family.
    fn histograms(&self) -> Vec<HistogramSample<'_>>;
}

/// Adapts a [`Source`] to prometheus-client's collector interface.
#[derive(Debug)]
struct SourceCollector<S: Source>(Arc<S>);

impl<S: Source> Collector for SourceCollector<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in self.0.gather() {
            let kind = match family.samples.first() {
                Some((_, Sample::Gauge(_))) => MetricType::Gauge,
                _ => MetricType::Counter,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for (labels, sample) in &family.samples {
                let labelled = metric.encode_family(labels)?;
                match sample {
                    Sample::Counter(v) => ConstCounter::new(*v).encode(labelled)?,
                    Sample::Gauge(v) => ConstGauge::new(*v).encode(labelled)?,
                }
            }
        }
        let histograms = self.0.histograms();
        let mut names: Vec<(&str, &str)> = Vec::new();
        for h in &histograms {
            if !names.iter().any(|(n, _)| *n == h.name) {
                names.push((h.name, h.help));
            }
        }
        for (name, help) in names {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for h in histograms.iter().filter(|h| h.name == name) {
                h.latency.encode(metric.encode_family(&h.labels)?)?;
            }
        }
        Ok(())
    }
}

/// The Prometheus text exposition (format 0.0.4) of the event counters and
/// of what `source` reads now.
pub fn render<S: Source>(metrics: &Metrics, source: &Arc<S>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("cardswitch");
    registry.register(
        "requests",
        "Terminal requests by listener and MTI",
        metrics.requests.clone(),
    );
    registry.register(
        "responses",
        "Answers to terminals by listener, MTI and response code",
        metrics.responses.clone(),
    );
    registry.register(
        "destination_responses",
        "Answers of destinations by destination and response code",
        metrics.destination_responses.clone(),
    );
    registry.register(
        "in_flight",
        "Terminal requests being handled",
        metrics.in_flight.clone(),
    );
    registry.register(
        "terminal_connections",
        "Open terminal connections by listener",
        metrics.connections.clone(),
    );
    registry.register(
        "risk_declines",
        "Requests declined by a risk rule, by rule and response code",
        metrics.risk_declines.clone(),
    );
    registry.register(
        "admin_auth_failures",
        "Admin API requests refused for a missing or invalid bearer token, by reason",
        metrics.admin_auth_failures.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "From a terminal request's arrival to its answer being queued",
        SharedLatency(Arc::clone(&metrics.latency)),
    );
    registry.register(
        "switch_added_duration_seconds",
        "Request duration less the time from handing the request to a destination link to its answer's frame being read (the switch's stages and journal syncs)",
        SharedLatency(Arc::clone(&metrics.switch_added)),
    );
    registry.register_collector(Box::new(SourceCollector(Arc::clone(source))));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A histogram registered while the request path keeps recording into it.
#[derive(Debug)]
struct SharedLatency(Arc<Latency>);

impl EncodeMetric for SharedLatency {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Fixed(Latency);

    impl Source for Fixed {
        fn gather(&self) -> Vec<Gathered> {
            vec![Gathered {
                name: "link_up",
                help: "Links up",
                samples: vec![(vec![("destination", "bank".into())], Sample::Gauge(2))],
            }]
        }
        fn histograms(&self) -> Vec<HistogramSample<'_>> {
            vec![HistogramSample {
                name: "destination_duration_seconds",
                help: "Destination latency",
                labels: vec![("destination", "bank".into())],
                latency: &self.0,
            }]
        }
    }

    #[test]
    fn tags_come_from_closed_sets() {
        assert_eq!(Tag::mti("0210").as_str(), "0210");
        assert_eq!(Tag::mti("1814").as_str(), "1814");
        for junk in ["6666", "0299", "9200", "02", "", "0200x", "ab€"] {
            assert_eq!(Tag::mti(junk).as_str(), "other", "{junk}");
        }
        assert_eq!(Tag::code("00").as_str(), "00");
        assert_eq!(Tag::code("07").as_str(), "07");
        assert_eq!(Tag::code("99").as_str(), "99");
        assert_eq!(Tag::code("000").as_str(), "000");
        assert_eq!(Tag::code("916").as_str(), "916");
        for junk in ["0", "A1", "999", "123456", "", "€", "0\u{0}"] {
            assert_eq!(Tag::code(junk).as_str(), "other", "{junk:?}");
        }
        let mut seen = std::collections::HashSet::new();
        for n in 0..100_000u32 {
            let text = format!("{n:04}");
            seen.insert(Tag::mti(&text));
            seen.insert(Tag::code(&text[..2]));
            seen.insert(Tag::code(&text[..3]));
        }
        assert!(
            seen.len() <= KNOWN_MTIS.len() + 100 + 30 + 1,
            "{}",
            seen.len()
        );
    }

    #[test]
    fn the_two_digit_table_is_in_order() {
        for n in 0..100 {
            let text = format!("{n:02}");
            assert_eq!(Tag::code(&text).as_str(), text);
        }
    }

    #[test]
    fn exposition_has_counters_gauges_and_cumulative_buckets() {
        let metrics = Metrics::default();
        let listener: Arc<str> = Arc::from("pos");
        metrics
            .requests
            .get_or_create(&RequestLabels {
                listener: Arc::clone(&listener),
                mti: Tag::mti("0200"),
            })
            .inc();
        metrics.responded(&listener, "0210", "00");
        metrics.latency.record(Duration::from_micros(300));
        metrics.latency.record(Duration::from_millis(20));
        let source = Arc::new(Fixed::default());
        source.0.record(Duration::from_millis(3));
        let text = render(&metrics, &source).unwrap();
        assert!(text.contains("cardswitch_requests_total{listener=\"pos\",mti=\"0200\"} 1"));
        assert!(
            text.contains(
                "cardswitch_responses_total{listener=\"pos\",mti=\"0210\",code=\"00\"} 1"
            )
        );
        assert!(text.contains("cardswitch_link_up{destination=\"bank\"} 2"));
        assert!(text.contains("cardswitch_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("cardswitch_request_duration_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("cardswitch_request_duration_seconds_count 2"));
        assert!(text.contains(
            "cardswitch_destination_duration_seconds_bucket{destination=\"bank\",le=\"0.005\"} 1"
        ));
    }
}
