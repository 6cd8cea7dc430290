//! Which (terminal, STAN, field 7) keys the journal holds for the last
//! business dates, as 64-bit hashes in memory: a request whose key is not
//! among them is certainly not a retransmission, and its duplicate check
//! needs no trip to the journal index.
//!
//! Every request the switch journals is added when it is admitted; the
//! keys journaled before the start are read from the log's segments of
//! the last [`DATES`] business dates by a background thread. Until that
//! read is done, and whenever a key is found (a retransmission, or another
//! key with the same hash), the index decides as before: it stays the
//! authority, this only proves absence. Checking the index for every new
//! request cost about 3 µs of the request path per transaction and, worse,
//! made the request wait for the indexer's sled batch in progress (sled
//! holds a tree lock over a batch): the p99 of a 5,000/s open loop was
//! 4 ms.
//!
//! Memory: a hash set entry (about 16 bytes) per transaction of the
//! business dates kept.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::journal::index::request_key;
use crate::journal::wal;
use crate::journal::{Record, WalError};

/// Business dates whose keys are kept: the current and the previous one
/// are retransmittable ([`super::recent::retransmittable`]); one more
/// covers an early cutover.
const DATES: usize = 3;

/// A request's (terminal, STAN, field 7), hashed once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SeenKey(u64);

/// The keys of the last business dates.
#[derive(Debug)]
pub(super) struct Seen {
    hasher: RandomState,
    dates: Mutex<BTreeMap<String, HashSet<u64>>>,
    /// Whether the keys journaled before the start have all been read.
    complete: AtomicBool,
}

impl Seen {
    /// Empty, and not complete until [`Seen::load`] has read the log.
    pub(super) fn new() -> Seen {
        Seen {
            hasher: RandomState::new(),
            dates: Mutex::new(BTreeMap::new()),
            complete: AtomicBool::new(false),
        }
    }

    /// The key of a request with these fields (padded as the index pads
    /// them).
    pub(super) fn key(&self, terminal: &str, stan: &str, transmission: &str) -> SeenKey {
        SeenKey(
            self.hasher
                .hash_one(request_key(terminal, stan, transmission)),
        )
    }

    fn with_dates<T>(&self, f: impl FnOnce(&mut BTreeMap<String, HashSet<u64>>) -> T) -> T {
        match self.dates.lock() {
            Ok(mut d) => f(&mut d),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Adds a key of business date `date`; only the last [`DATES`] dates
    /// are kept.
    pub(super) fn insert(&self, date: &str, SeenKey(hash): SeenKey) {
        self.with_dates(|dates| {
            if !dates.contains_key(date) {
                dates.insert(date.to_string(), HashSet::new());
                while dates.len() > DATES {
                    dates.pop_first();
                }
            }
            if let Some(set) = dates.get_mut(date) {
                set.insert(hash);
            }
        });
    }

    /// Whether the journal may hold a transaction with this key: `false`
    /// only when every key of the kept dates is known and this is not one.
    pub(super) fn may_hold(&self, SeenKey(hash): SeenKey) -> bool {
        if !self.complete.load(Ordering::Acquire) {
            return true;
        }
        self.with_dates(|dates| dates.values().any(|set| set.contains(&hash)))
    }

    /// Reads the keys of the `Received` records of the log's segments of
    /// the last [`DATES`] business dates, then counts the set complete.
    pub(super) fn load(&self, log: &Path) -> Result<u64, WalError> {
        let segments = wal::segments(log)?;
        let mut dates: Vec<&str> = segments.iter().map(|s| s.date.as_str()).collect();
        dates.dedup();
        let first_date = dates.iter().rev().nth(DATES - 1).or(dates.first()).copied();
        let from = segments
            .iter()
            .find(|s| Some(s.date.as_str()) == first_date)
            .map_or(u64::MAX, |s| s.first_seq);
        let mut read = 0;
        if from != u64::MAX {
            wal::scan(log, from, |segment, entry| {
                if let Some(Record::Received(r)) = entry.record() {
                    let key = self.key(&r.terminal, &r.stan, &r.transmission);
                    self.insert(&segment.date, key);
                    read += 1;
                }
                Ok(())
            })?;
        }
        self.complete.store(true, Ordering::Release);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_is_proven_only_once_complete_and_only_the_last_dates_are_kept() {
        let seen = Seen::new();
        seen.insert("20261201", seen.key("T1", "1", "1201120000"));
        assert!(
            seen.may_hold(seen.key("T1", "999", "1201120000")),
            "not complete yet"
        );
        seen.complete.store(true, Ordering::Release);
        assert!(seen.may_hold(seen.key("T1", "1", "1201120000")));
        assert!(
            seen.may_hold(seen.key("T1      ", "000001", "1201120000")),
            "padded alike"
        );
        assert!(!seen.may_hold(seen.key("T1", "2", "1201120000")));
        assert!(!seen.may_hold(seen.key("T2", "1", "1201120000")));
        for date in ["20261202", "20261203", "20261204"] {
            seen.insert(date, seen.key("T9", "9", "1201120000"));
        }
        assert!(
            !seen.may_hold(seen.key("T1", "1", "1201120000")),
            "its date was dropped"
        );
        assert!(seen.may_hold(seen.key("T9", "9", "1201120000")));
    }
}
