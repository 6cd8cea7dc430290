//! Gathering the snapshot the decisions need: a request's original (for a
//! reversal or completion) and a retransmission's original, found in the
//! cache of recent transactions or else in the journal index.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::journal::{TxnState, wal};
use crate::txn::{Refusal, Txn, TxnKind};

use super::Switch;
use super::decide;
use super::recent::{self, Live};
use super::seen::SeenKey;

/// At start, the newest transactions of the journal index (at most this
/// many, and no more than the cache keeps) are loaded into memory, so that
/// reversals and retransmissions of requests from just before a restart
/// are matched without a trip to the index.
const PRELOADED: usize = 20_000;

/// Stripes of the duplicate check's lock: requests with different keys
/// rarely wait for each other.
pub(super) const CHECK_STRIPES: usize = 64;

/// The stripe of a (terminal, STAN) key.
pub(super) fn key_stripe(key: &recent::Key) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % CHECK_STRIPES as u64) as usize
}

impl Switch {
    /// Remembers a transaction in the cache in front of the index.
    pub(super) fn remember(&self, key: recent::Key, live: Arc<Live>) {
        self.recent
            .insert(key, live, self.journal.indexed_through());
    }

    /// A request identical to one already handled (terminal, STAN, field 7,
    /// amount and message class) on the current or the previous business
    /// date: found in memory, or else in the journal index, so that a
    /// retransmission is recognised after a restart and at any volume.
    pub(super) async fn retransmitted(
        &self,
        txn: &Txn,
        key: recent::Key,
        seen: SeenKey,
    ) -> Result<Option<Arc<Live>>, Refusal> {
        if let Some(live) = self.recent.get(&key)
            && decide::same_request(txn, live.class, &live.request)
        {
            return Ok(Some(live));
        }
        // Not in memory, and no key like it journaled lately: new.
        if !self.seen.may_hold(seen) {
            return Ok(None);
        }
        // Else anything older than the cache is in the index (the cache
        // keeps what the index does not hold yet). A check that cannot be
        // made refuses the request: it may be a retransmission.
        let lookup = || {
            self.journal
                .index()
                .by_request(txn.terminal_id(), txn.stan_text(), Some(txn.transmission()))
                .map_err(|e| {
                    error!(error = %e, "journal index: retransmission check failed");
                    Refusal::System
                })
        };
        // Counted back from the scheduled date, which an operator's early
        // cutover never moves: the window keeps the date that early one cut
        // short.
        let today = self.journal.config().cutover.scheduled(wal::now_micros());
        let pick = |found: Vec<TxnState>| {
            found.into_iter().rev().find(|state| {
                decide::same_request(txn, Live::class_of(&state.request), &state.request)
                    && recent::retransmittable(&state.date, &today)
            })
        };
        let Some(mut state) = pick(lookup()?) else {
            return Ok(None);
        };
        if !state.phase.ended() {
            // Its answer may be in the log and not yet in the index.
            self.journal.index_current().await;
            let Some(again) = pick(lookup()?) else {
                return Ok(None);
            };
            state = again;
        }
        let live = Arc::new(Live::from_state(&state));
        self.remember(key, Arc::clone(&live));
        Ok(Some(live))
    }

    /// Reads the keys journaled before the start into the switch's `seen`, on a
    /// thread of its own (until it is done, every duplicate check asks the
    /// index).
    pub(super) fn load_seen(&self) {
        let seen = Arc::clone(&self.seen);
        let log = self.journal.config().dir.clone();
        let started = std::thread::Builder::new()
            .name("journal-seen".into())
            .spawn(move || match seen.load(&log) {
                Ok(read) => info!(read, "recent request keys read from the journal"),
                Err(e) => warn!(error = %e, "recent request keys not read: every duplicate check asks the journal index"),
            });
        if let Err(e) = started {
            warn!(error = %e, "recent request keys not read: every duplicate check asks the journal index");
        }
    }

    /// Loads the newest transactions of the journal into memory (after a
    /// restart: retransmissions and reversals of them are matched at once).
    pub(super) fn preload(&self) {
        let count = PRELOADED.min(self.settings.recent_cache);
        match self.journal.index().newest(count) {
            Ok(states) => {
                for state in states.iter().rev() {
                    if let Some(key) = recent::key(&state.request.terminal, &state.request.stan) {
                        self.remember(key, Arc::new(Live::from_state(state)));
                    }
                }
            }
            Err(e) => warn!(error = %e, "journal index: recent transactions not loaded"),
        }
    }

    /// The original of a terminal reversal or completion: by field 90 (its
    /// STAN and transmission time) or, without 90, by the request's own
    /// STAN.
    pub(super) async fn original_of(&self, txn: &Txn) -> Option<Arc<Live>> {
        let named = txn.original();
        let key = recent::key(txn.terminal_id(), named.stan)?;
        if let Some(live) = self.recent.get(&key)
            && decide::names_original(txn, live.class, &live.request)
        {
            return Some(live);
        }
        // The index lags the log a little: let it hold everything durable
        // before saying the original is unknown.
        self.journal.index_current().await;
        let found = self
            .journal
            .index()
            .by_request(txn.terminal_id(), named.stan, named.transmission)
            .ok()?;
        let state: &TxnState = found
            .iter()
            .rev()
            .find(|s| s.request.kind != TxnKind::Reversal)?;
        let live = Arc::new(Live::from_state(state));
        self.remember(key, Arc::clone(&live));
        Some(live)
    }
}
