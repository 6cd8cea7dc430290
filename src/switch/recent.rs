//! Transactions the switch handled lately, in memory: to match a terminal's
//! reversal to its original and to recognise a retransmitted request,
//! without a trip to the index. Older ones are found in the journal index.
//!
//! The memory is a cache in front of the index, never instead of it: a
//! transaction leaves memory only once the index holds it, so whatever is
//! not found here is found there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::journal::TxnState;
use crate::journal::index::Phase;
use crate::journal::record::{Forwarded, Received, Source, TxnId};
use crate::reversal::saf::SafItem;
use crate::txn::{TerminalId, Txn};

/// Terminal id (field 41, space-padded) and the terminal's STAN.
pub type Key = ([u8; 8], u32);

/// The key of a terminal and STAN; `None` if the STAN is not numeric.
pub fn key(terminal: &str, stan: &str) -> Option<Key> {
    Some((TerminalId::new(terminal).bytes(), stan.parse().ok()?))
}

/// The key of a transaction's terminal and STAN.
pub fn txn_key(txn: &Txn) -> Key {
    (txn.terminal().bytes(), txn.stan())
}

/// Whether a transaction of business date `date` may still be
/// retransmitted on business date `today`: it is of the current or the
/// previous business date (a terminal's retries end long before). Older
/// matches are not duplicates: a terminal's STAN and field 7 (`MMDDhhmmss`)
/// come round again a year later.
pub fn retransmittable(date: &str, today: &str) -> bool {
    use crate::journal::cutover::civil_date;
    match (
        civil_date(date),
        civil_date(today).and_then(|t| t.yesterday().ok()),
    ) {
        (Some(date), Some(previous)) => date >= previous,
        _ => false,
    }
}

/// The answer a transaction got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 1987 response code.
    pub code: String,
    /// Authorisation id.
    pub auth_id: Option<String>,
    /// Who decided.
    pub source: Source,
}

/// One transaction in flight or recently ended.
#[derive(Debug)]
pub struct Live {
    /// Journal id.
    pub id: TxnId,
    /// MTI class (`[class, function]`, repeat bit cleared).
    pub class: [u8; 2],
    /// The request as journaled.
    pub request: Arc<Received>,
    forwarded: OnceLock<Forwarded>,
    outcome: watch::Sender<Option<Outcome>>,
    reversal_claimed: AtomicBool,
    completion_claimed: AtomicBool,
}

impl Live {
    /// A transaction just received.
    pub fn new(id: TxnId, class: [u8; 2], request: Arc<Received>) -> Live {
        Live {
            id,
            class,
            request,
            forwarded: OnceLock::new(),
            outcome: watch::Sender::new(None),
            reversal_claimed: AtomicBool::new(false),
            completion_claimed: AtomicBool::new(false),
        }
    }

    /// The MTI class (`[class, function]`, repeat bit cleared) of a
    /// journaled request.
    pub fn class_of(request: &Received) -> [u8; 2] {
        let mti = request.mti.as_bytes();
        [
            mti.get(1).copied().unwrap_or(b'0'),
            mti.get(2).copied().unwrap_or(b'0') & !1,
        ]
    }

    /// A transaction known from the journal index.
    pub fn from_state(state: &TxnState) -> Live {
        let live = Live::new(
            state.id,
            Live::class_of(&state.request),
            Arc::new(state.request.clone()),
        );
        if let Some(f) = &state.forwarded {
            let _ = live.forwarded.set(f.clone());
        }
        let code = match state.phase {
            Phase::Answered => state.code.clone(),
            Phase::TimedOut | Phase::NotProcessed => Some("91".into()),
            Phase::Received | Phase::Forwarded => None,
        };
        if let Some(code) = code {
            live.finish(Outcome {
                code,
                auth_id: state.auth_id.clone(),
                source: state.source.unwrap_or(Source::Switch),
            });
        }
        if state.reversal.is_some() {
            live.reversal_claimed.store(true, Ordering::Relaxed);
        }
        if state.completed_by.is_some() {
            live.completion_claimed.store(true, Ordering::Relaxed);
        }
        live
    }

    /// Claims the completion of a pre-authorisation; `false` if another
    /// completion holds the claim or completed it (the journal index
    /// remembers approved completions across restarts).
    pub fn claim_completion(&self) -> bool {
        !self.completion_claimed.swap(true, Ordering::AcqRel)
    }

    /// Gives the claim back: the completion was not approved.
    pub fn release_completion(&self) {
        self.completion_claimed.store(false, Ordering::Release);
    }

    /// Records where the request went.
    pub fn set_forwarded(&self, to: Forwarded) {
        let _ = self.forwarded.set(to);
    }

    /// Where the request went, if it was forwarded.
    pub fn forwarded(&self) -> Option<&Forwarded> {
        self.forwarded.get()
    }

    /// Records the answer and wakes whoever waits for it.
    pub fn finish(&self, outcome: Outcome) {
        self.outcome.send_replace(Some(outcome));
    }

    /// The answer, waiting up to `limit` for it.
    pub async fn outcome(&self, limit: Duration) -> Option<Outcome> {
        let mut rx = self.outcome.subscribe();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(found)) => found.clone(),
            _ => None,
        }
    }

    /// The store-and-forward entry reversing this transaction.
    pub fn saf_item(&self, replacement: Option<u64>) -> Option<SafItem> {
        Some(SafItem {
            txn: self.id,
            request: Arc::clone(&self.request),
            forwarded: self.forwarded()?.clone(),
            replacement,
            attempts: 0,
        })
    }
}

/// The newest transaction per (terminal, STAN), bounded.
#[derive(Debug)]
pub struct Recent {
    inner: Mutex<Inner>,
    /// How many transactions are kept (more while the index lags).
    kept: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<Key, Arc<Live>>,
    order: VecDeque<(Key, TxnId)>,
    /// Transactions whose reversal was claimed in this run, whichever copy
    /// of their [`Live`] claimed it (one from memory, one reloaded from the
    /// index), oldest first.
    claimed: HashSet<TxnId>,
    claim_order: VecDeque<TxnId>,
}

/// How many times its size the cache may grow while the index lags before
/// new requests are refused.
pub const HARD_LIMIT: usize = 4;

/// However small the cache, this many transactions may wait in it for the
/// index before new requests are refused: a short lag of the index (a
/// group it applies at once) must not turn into refusals.
pub const LAG_FLOOR: usize = 1_024;

/// How many claimed reversals are remembered (older ones are in the index).
const CLAIMS_KEPT: usize = 1_000_000;

impl Inner {
    /// Forgets the oldest transactions beyond `kept` that the index holds
    /// (`indexed`: the last transaction id it has applied) — and, if one
    /// is still the newest with its key, only once it has its answer: a
    /// retransmission of a request still at its bank must find the copy
    /// that will be answered.
    fn forget(&mut self, kept: usize, indexed: TxnId) {
        while self.order.len() > kept
            && self.order.front().is_some_and(|(key, old)| {
                *old <= indexed
                    && self
                        .by_key
                        .get(key)
                        .is_none_or(|l| l.id != *old || l.outcome.borrow().is_some())
            })
        {
            if let Some((old, old_id)) = self.order.pop_front()
                && self.by_key.get(&old).is_some_and(|l| l.id == old_id)
            {
                self.by_key.remove(&old);
            }
        }
    }
}

impl Recent {
    /// An empty cache keeping about `kept` transactions.
    pub fn new(kept: usize) -> Recent {
        Recent {
            inner: Mutex::default(),
            kept,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Remembers a transaction (replacing an older one with its key), and
    /// forgets the oldest beyond the cache's size that the index holds
    /// (`indexed`: the last transaction id the index has applied).
    pub fn insert(&self, key: Key, live: Arc<Live>, indexed: TxnId) {
        let mut inner = self.lock();
        let id = live.id;
        inner.by_key.insert(key, live);
        inner.order.push_back((key, id));
        inner.forget(self.kept, indexed);
    }

    /// Whether the cache holds [`HARD_LIMIT`] times its size (and at least
    /// [`LAG_FLOOR`] transactions) once it has forgotten what the index
    /// now holds (`indexed`): the index is so far behind that nothing more
    /// may be taken on (memory would grow without bound, and nothing the
    /// index lacks may be forgotten). It stops being full as soon as the
    /// index catches up, without a new transaction to make room.
    pub fn is_full(&self, indexed: TxnId) -> bool {
        let limit = self.kept.saturating_mul(HARD_LIMIT).max(LAG_FLOOR);
        let mut inner = self.lock();
        if inner.order.len() >= limit {
            inner.forget(self.kept, indexed);
        }
        inner.order.len() >= limit
    }

    /// The newest transaction with this key.
    pub fn get(&self, key: &Key) -> Option<Arc<Live>> {
        self.lock().by_key.get(key).cloned()
    }

    /// Claims the one reversal a transaction may get; `false` if another
    /// path (timeout, recovery, an earlier terminal reversal) already did,
    /// in this run or (as the index knew when it was loaded) before it.
    pub fn claim_reversal(&self, live: &Live) -> bool {
        if live.reversal_claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut inner = self.lock();
        if !inner.claimed.insert(live.id) {
            return false;
        }
        inner.claim_order.push_back(live.id);
        while inner.claim_order.len() > CLAIMS_KEPT {
            if let Some(old) = inner.claim_order.pop_front() {
                inner.claimed.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Vault;
    use crate::txn::TxnKind;

    fn live(id: TxnId) -> Live {
        let request = Received {
            kind: TxnKind::Purchase,
            mti: "0200".into(),
            processing_code: "000000".into(),
            amount: 1000,
            currency: "978".into(),
            pan: Vault::new(&[7; 32]).seal("4761739001010010"),
            terminal: "TERM0001".into(),
            merchant: None,
            stan: "000001".into(),
            transmission: "1126010000".into(),
            local_time: None,
            local_date: None,
            entry_mode: None,
            condition: None,
            rrn: "000000000001".into(),
            original: None,
            replacement: None,
        };
        Live::new(id, *b"20", Arc::new(request))
    }

    /// Two copies of one transaction (one in memory, one reloaded from the
    /// index) claim its reversal once between them.
    #[test]
    fn a_reversal_is_claimed_once_across_copies() {
        let recent = Recent::new(10);
        let (first, second) = (live(7), live(7));
        assert!(recent.claim_reversal(&first));
        assert!(!recent.claim_reversal(&second));
        assert!(!recent.claim_reversal(&first));
        assert!(recent.claim_reversal(&live(8)));
    }

    #[test]
    fn retransmissions_are_recognised_over_two_business_dates() {
        assert!(retransmittable("20261205", "20261205"));
        assert!(retransmittable("20261204", "20261205"));
        assert!(retransmittable("20261231", "20270101"));
        assert!(retransmittable("20240228", "20240229"));
        assert!(!retransmittable("20240228", "20240301"));
        assert!(!retransmittable("20261203", "20261205"));
        assert!(!retransmittable("20251205", "20261205"));
        assert!(!retransmittable("garbage!", "20261205"));
    }

    fn key_of(n: u32) -> Key {
        key("TERM0001", &format!("{n:06}")).unwrap()
    }

    fn answered(id: TxnId) -> Live {
        let l = live(id);
        l.finish(Outcome {
            code: "00".into(),
            auth_id: None,
            source: Source::Destination,
        });
        l
    }

    /// Beyond its size the cache forgets the oldest, but only what the
    /// index already holds and what has its answer.
    #[test]
    fn only_indexed_transactions_leave_memory() {
        let recent = Recent::new(2);
        for id in 1..=5 {
            recent.insert(key_of(id as u32), Arc::new(answered(id)), 0);
        }
        // The index holds nothing yet: all five stay.
        assert!((1..=5).all(|n| recent.get(&key_of(n)).is_some()));
        // The index holds up to 2: those two go, 3 stays though over size.
        recent.insert(key_of(6), Arc::new(answered(6)), 2);
        assert!(recent.get(&key_of(1)).is_none() && recent.get(&key_of(2)).is_none());
        assert!((3..=6).all(|n| recent.get(&key_of(n)).is_some()));
        recent.insert(key_of(7), Arc::new(answered(7)), 7);
        assert_eq!(
            (1..=7)
                .filter(|n| recent.get(&key_of(*n)).is_some())
                .count(),
            2
        );
        // One still at its bank stays, however old, until it is answered.
        let waiting = Arc::new(live(8));
        recent.insert(key_of(8), Arc::clone(&waiting), 0);
        for id in 9..=12 {
            recent.insert(key_of(id as u32), Arc::new(answered(id)), 12);
        }
        assert!(recent.get(&key_of(8)).is_some(), "in flight: kept");
        waiting.finish(Outcome {
            code: "00".into(),
            auth_id: None,
            source: Source::Destination,
        });
        recent.insert(key_of(13), Arc::new(answered(13)), 13);
        assert!(recent.get(&key_of(8)).is_none(), "answered: forgotten");
    }

    /// A lagging index fills the cache up to four times its size, and never
    /// less than the floor, before new requests are refused.
    #[test]
    fn the_cache_is_full_at_four_times_its_size_or_the_floor() {
        let small = Recent::new(5);
        for id in 1..LAG_FLOOR as u64 {
            small.insert(key_of(id as u32), Arc::new(answered(id)), 0);
        }
        assert!(!small.is_full(0), "a tiny cache still waits for the index");
        small.insert(key_of(0), Arc::new(answered(LAG_FLOOR as u64)), 0);
        assert!(small.is_full(0));
        let large = Recent::new(LAG_FLOOR);
        for id in 1..=(LAG_FLOOR * HARD_LIMIT) as u64 {
            assert!(!large.is_full(0));
            large.insert(key_of(id as u32), Arc::new(answered(id)), 0);
        }
        assert!(large.is_full(0));
        // The index catches up: room again, with no insert to make it.
        assert!(!large.is_full((LAG_FLOOR * HARD_LIMIT) as u64));
        assert!(!small.is_full(LAG_FLOOR as u64));
    }
}
