//! What every connection of a run shares: the fields the dialect takes
//! and their form, the templates' fixed fields, and the plan of who sends
//! which request when.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::{ConfigProblem, MAX_LATENCY_US, POS_DATA_CODE_93, PosConfig, PosError};
use crate::scenario::Scenario;
use base::clock::DateTime;
use iso8583::codes;
use iso8583::framing::FrameCodec;
use iso8583::spec::Length;
use iso8583::{Dialect, Mti};
use security::profile::Protection;
use zeroize::Zeroizing;

/// Which optional fields the dialect takes, and in which form.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// MTI version digit: `0` (1987) or `1` (1993).
    pub(super) version: u8,
    /// Field 39 carries 1993 action codes.
    pub(super) action_codes: bool,
    /// Field 12 as `YYMMDDhhmmss` (1993) rather than `hhmmss`; `None` to omit.
    pub(super) long_time: Option<bool>,
    /// Field 22 value; `None` to omit.
    pub(super) entry_mode: Option<&'static str>,
    /// Field 24 function code (1993).
    pub(super) function_code: bool,
    /// Field 13, local date (1987).
    pub(super) local_date: bool,
    /// Field 14, expiry.
    pub(super) expiry: bool,
    /// Field 25, POS condition code (1987).
    pub(super) condition: bool,
    /// Field 42, merchant id.
    pub(super) merchant: bool,
    /// Field 49, currency.
    pub(super) currency: bool,
}

/// Whether `dialect` defines field `n` and a value of `len` characters fits it.
pub(super) fn fits(dialect: &Dialect, n: u8, len: usize) -> bool {
    match dialect.field(n).map(|f| f.length) {
        Some(Length::Fixed(l)) => l == len,
        Some(Length::Variable { max, .. }) => len <= max,
        None => false,
    }
}

impl Layout {
    pub(super) fn of(dialect: &Dialect) -> Result<Layout, PosError> {
        for (n, len) in [(2, 16), (3, 6), (4, 12), (11, 6), (37, 12), (41, 8)] {
            if !fits(dialect, n, len) {
                return Err(PosError::Dialect {
                    dialect: dialect.name().to_string(),
                    reason: format!("field {n} must take {len} characters"),
                });
            }
        }
        if dialect.field(39).is_none() {
            return Err(PosError::Dialect {
                dialect: dialect.name().to_string(),
                reason: "no field 39".into(),
            });
        }
        let v93 = codes::uses_action_codes(dialect);
        let long_time = if fits(dialect, 12, 12) {
            Some(true)
        } else if fits(dialect, 12, 6) {
            Some(false)
        } else {
            None
        };
        let entry_mode = [POS_DATA_CODE_93, "012"]
            .into_iter()
            .find(|v| fits(dialect, 22, v.len()));
        Ok(Layout {
            version: if v93 { b'1' } else { b'0' },
            action_codes: v93,
            long_time,
            entry_mode,
            function_code: v93 && fits(dialect, 24, 3),
            local_date: !v93 && fits(dialect, 13, 4),
            expiry: fits(dialect, 14, 4),
            condition: !v93 && fits(dialect, 25, 2),
            merchant: fits(dialect, 42, 15),
            currency: fits(dialect, 49, 3),
        })
    }
}

/// What every connection shares read-only.
pub(super) struct Setup {
    pub(super) dialect: Arc<Dialect>,
    pub(super) codec: FrameCodec,
    pub(super) header: Bytes,
    pub(super) pipeline: usize,
    pub(super) timeout: Duration,
    pub(super) layout: Layout,
    pub(super) scenario: Scenario,
    /// Per template, the field values that never change.
    pub(super) fixed: Vec<Fixed>,
    /// Expected field 39 of each template, in the dialect's style.
    pub(super) expected: Vec<Option<String>>,
    /// An empty latency histogram to clone.
    pub(super) histogram: Histogram<u64>,
    pub(super) security: Protection,
    pub(super) pin: Option<Zeroizing<Vec<u8>>>,
}

impl Setup {
    pub(super) fn new(cfg: &PosConfig, layout: Layout) -> Result<Setup, PosError> {
        let templates = cfg.scenario.templates();
        let mtis: Vec<Mti> = templates
            .iter()
            .map(|t| {
                let version = if layout.version == b'1' { "1" } else { "0" };
                let digits = format!("{version}{}", t.mti.get(1..).unwrap_or_default());
                Mti::parse(&digits).map_err(|_| {
                    PosError::Config(ConfigProblem::TemplateMti {
                        name: t.name.clone(),
                        mti: t.mti.clone(),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected = templates
            .iter()
            .map(|t| {
                t.expected
                    .as_deref()
                    .map(|c| codes::in_style(c, layout.action_codes).to_string())
            })
            .collect();
        let fixed = templates
            .iter()
            .zip(&mtis)
            .map(|(t, &mti)| Fixed {
                mti,
                processing_code: Bytes::from(t.processing_code.clone()),
                amount: Bytes::from(format!("{:012}", t.amount)),
                function_code: layout.function_code.then_some(
                    if t.mti.as_bytes().get(1) == Some(&b'1') {
                        "100"
                    } else {
                        "200"
                    },
                ),
            })
            .collect();
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .map_err(|e| PosError::Config(ConfigProblem::Histogram(e)))?;
        Ok(Setup {
            dialect: Arc::clone(&cfg.dialect),
            codec: cfg.codec,
            header: cfg.header.clone(),
            pipeline: cfg.pipeline,
            timeout: cfg.timeout,
            layout,
            scenario: cfg.scenario.clone(),
            fixed,
            expected,
            histogram,
            security: cfg.security.clone(),
            pin: cfg
                .pin
                .as_ref()
                .map(|p| Zeroizing::new(p.as_bytes().to_vec())),
        })
    }
}

/// The field values of a template that are the same in every request.
pub(super) struct Fixed {
    pub(super) mti: Mti,
    pub(super) processing_code: Bytes,
    pub(super) amount: Bytes,
    /// Field 24 (1993): `100` for authorisations, `200` for financial requests.
    pub(super) function_code: Option<&'static str>,
}

/// Date fields, computed once a second.
#[derive(Default)]
pub(super) struct StampCache {
    pub(super) secs: u64,
    pub(super) stamp: Option<Stamp>,
}

/// The date fields of one second.
pub(super) struct Stamp {
    /// Field 7.
    pub(super) transmission: Bytes,
    /// Field 12, in the dialect's form.
    pub(super) local_time: Option<Bytes>,
    /// Field 13 (1987).
    pub(super) local_date: Option<Bytes>,
    /// Field 14.
    pub(super) expiry: Option<Bytes>,
}

impl StampCache {
    pub(super) fn current(&mut self, layout: &Layout) -> &Stamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.secs != secs {
            self.secs = secs;
            self.stamp = None;
        }
        self.stamp.get_or_insert_with(|| Stamp::new(secs, layout))
    }
}

impl Stamp {
    pub(super) fn new(secs: u64, layout: &Layout) -> Stamp {
        let now = DateTime::from_unix(secs);
        Stamp {
            transmission: Bytes::from(now.mmddhhmmss()),
            local_time: layout.long_time.map(|long| {
                Bytes::from(if long {
                    now.yymmddhhmmss()
                } else {
                    now.hhmmss()
                })
            }),
            local_date: layout.local_date.then(|| Bytes::from(now.mmdd())),
            expiry: layout.expiry.then(|| Bytes::from(now.expiry(3))),
        }
    }
}

/// The run's schedule, shared by the connections.
pub(super) struct Plan {
    pub(super) count: u64,
    pub(super) next: AtomicU64,
    pub(super) start: Instant,
    pub(super) stop_at: Option<Instant>,
    pub(super) rate: Option<u64>,
    /// RRN prefix unique to this run (4 base-36 characters of the clock).
    pub(super) rrn_prefix: String,
    pub(super) sent: AtomicU64,
    pub(super) answered: AtomicU64,
}

impl Plan {
    pub(super) fn new(cfg: &PosConfig) -> Plan {
        let start = Instant::now();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Plan {
            count: cfg.count,
            next: AtomicU64::new(0),
            start,
            stop_at: cfg.duration.map(|d| start + d),
            rate: cfg.rate,
            rrn_prefix: base36(secs % 36u64.pow(4), 4),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// The next transaction number and when it is due, or `None` when the
    /// run has sent all it should.
    pub(super) fn claim(&self) -> Option<(u64, Instant)> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        if seq >= self.count {
            return None;
        }
        let due = match self.rate {
            Some(rate) if rate > 0 => {
                let nanos = u128::from(seq) * 1_000_000_000 / u128::from(rate);
                self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            _ => self.start,
        };
        match self.stop_at {
            Some(stop) if due.max(Instant::now()) >= stop => None,
            _ => Some((seq, due)),
        }
    }
}

pub(super) fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS.get((n % 36) as usize).copied().unwrap_or(b'0');
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}
