//! Applying records to the index: each batch of records becomes one atomic
//! sled batch, and a transaction that begins in the indexer is held in its
//! memory until it ends (or has been in flight for [`HOLD`]), so that it is
//! written once — its state, its terminal and RRN keys — instead of once
//! per record with a read of the state between (the index's cost per
//! transaction went from about ten sled operations to three).
//!
//! The index's `applied` mark never passes a held transaction: it is the
//! sequence before the oldest one held (or the last record read when none
//! is), so that a restart replays every held transaction from its
//! `Received` record. Records after the mark that were already applied are
//! applied again on that replay, which gives the same state (see
//! [`TxnState::apply`]); a transaction that begins again on replay is
//! rebuilt from its first record. Its in-flight key can only be in the index
//! if it was once written in flight, which the `minflight` key bounds: the
//! highest id ever written in flight.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::{
    super::record::{Received, Record, TxnId},
    APPLIED, Index, IndexError, TxnState, id_key, request_key, saf_key,
};

/// How long a transaction may stay in the indexer's memory before it is
/// written in flight (µs): a destination's answer usually comes within
/// milliseconds; one that takes longer is written as the index always did,
/// so that the index is never further behind than this for want of an
/// answer.
pub(crate) const HOLD: u64 = 200_000;

/// Key of the highest transaction id ever written in flight.
pub(super) const IN_FLIGHT_HIGH: &[u8] = b"minflight";

/// Transactions that began in the indexer and are not yet in the index.
#[derive(Debug, Default)]
pub struct Held {
    states: BTreeMap<TxnId, TxnState>,
    /// The highest id ever written in flight (`minflight`): a transaction
    /// at or below it may have an in-flight key to remove when it ends.
    in_flight_high: u64,
}

impl Held {
    /// Nothing held; the in-flight bound read from the index.
    pub fn load(index: &Index) -> Result<Held, IndexError> {
        let high = index
            .store(index.db.get(IN_FLIGHT_HIGH))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Held {
            states: BTreeMap::new(),
            in_flight_high: high,
        })
    }

    /// How many transactions are held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// When the oldest held transaction was received (µs since the epoch).
    pub fn oldest_received(&self) -> Option<u64> {
        self.states.values().map(|s| s.received_at).min()
    }
}

/// When held transactions are written whatever their phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Those held longer than [`HOLD`] at this time (µs since the epoch).
    Expired(u64),
    /// All of them (the end of a replay, the indexer stopping).
    All,
}

impl Index {
    /// Applies records in log order as one atomic batch and writes every
    /// transaction they touch.
    pub fn apply(&self, entries: Vec<(u64, u64, Record)>) -> Result<(), IndexError> {
        let Some(last) = entries.last().map(|(seq, _, _)| *seq) else {
            return Ok(());
        };
        let mut held = Held::load(self)?;
        self.apply_held(&mut held, entries, last, Flush::All)?;
        Ok(())
    }

    /// Applies records in log order as one atomic batch, holding the
    /// transactions that begin in it until they end (see the module's
    /// description); `read_through` is the last log sequence read. Returns
    /// the new `applied` mark: every transaction with an id at or below it
    /// is in the index. After an error `held` must be loaded again and the
    /// log read again from the index's mark.
    pub fn apply_held(
        &self,
        held: &mut Held,
        entries: Vec<(u64, u64, Record)>,
        read_through: u64,
        flush: Flush,
    ) -> Result<u64, IndexError> {
        let mut staged = Staged::new(held);
        for (seq, ts, record) in entries {
            let id = record.txn(seq);
            match record {
                Record::Received(request) => staged.receive(self, id, ts, *request),
                other => staged.advance(self, seq, id, other)?,
            }
        }
        staged.link_completions(self)?;
        let mut batch = staged.into_batch(self, flush)?;
        let mark = held.states.keys().next().map_or(read_through, |oldest| {
            read_through.min(oldest.saturating_sub(1))
        });
        batch.insert(APPLIED, &mark.to_be_bytes());
        self.store(self.db.apply_batch(batch))?;
        Ok(mark)
    }
}

/// One batch while it is built: the sled writes so far, the held
/// transactions, and the others its records touch.
struct Staged<'h> {
    batch: sled::Batch,
    held: &'h mut Held,
    /// Transactions read from the index for this batch.
    touched: BTreeMap<TxnId, TxnState>,
    /// Approved completions: (pre-authorisation, completion).
    completions: Vec<(TxnId, TxnId)>,
    /// The first transaction of each business date in this batch.
    dates: BTreeMap<String, TxnId>,
}

impl<'h> Staged<'h> {
    fn new(held: &'h mut Held) -> Staged<'h> {
        Staged {
            batch: sled::Batch::default(),
            held,
            touched: BTreeMap::new(),
            completions: Vec::new(),
            dates: BTreeMap::new(),
        }
    }

    /// A transaction begins: its terminal and RRN keys, and its state held.
    fn receive(&mut self, index: &Index, id: TxnId, ts: u64, request: Received) {
        let state = TxnState::new(id, ts, &index.cutover, request);
        let mut key = request_key(
            &state.request.terminal,
            &state.request.stan,
            &state.request.transmission,
        );
        key.extend_from_slice(&id.to_be_bytes());
        self.batch.insert(key, &[]);
        let mut rrn = format!("r{:<12.12}", state.request.rrn).into_bytes();
        rrn.extend_from_slice(&id.to_be_bytes());
        self.batch.insert(rrn, &[]);
        if !self.dates.contains_key(&state.date) {
            self.dates.insert(state.date.clone(), id);
        }
        self.touched.remove(&id);
        self.held.states.insert(id, state);
    }

    /// A later record of a transaction: its state moves on, an approved
    /// completion is noted for its pre-authorisation, and the transaction
    /// joins or leaves its destination's store-and-forward queue. A record
    /// for a transaction the index does not know is logged and skipped.
    fn advance(
        &mut self,
        index: &Index,
        seq: u64,
        id: TxnId,
        record: Record,
    ) -> Result<(), IndexError> {
        let Some(state) = self.state(index, id)? else {
            tracing::warn!(
                txn = id,
                seq,
                "journal index: record for an unknown transaction"
            );
            return Ok(());
        };
        let was_pending = state.reversal_pending();
        state.apply(seq, &record);
        let completes = match &record {
            Record::Responded { code, .. }
                if state.request.kind == crate::txn::TxnKind::Completion
                    && crate::codes::approves(code) =>
            {
                state.request.original
            }
            _ => None,
        };
        let queue = match (&state.reversal, &state.forwarded) {
            (Some(r), Some(f)) => Some((
                saf_key(&f.destination, r.queued_seq, id),
                state.reversal_pending(),
            )),
            _ => None,
        };
        if let Some(original) = completes {
            self.completions.push((original, id));
        }
        match queue {
            Some((key, true)) => self.batch.insert(key, &[]),
            Some((key, false)) if was_pending => self.batch.remove(key),
            _ => {}
        }
        Ok(())
    }

    /// A transaction's state as this batch has it: held, or read from the
    /// index the first time the batch touches it; `None` when the index
    /// does not know it.
    fn state(&mut self, index: &Index, id: TxnId) -> Result<Option<&mut TxnState>, IndexError> {
        if let Some(state) = self.held.states.get_mut(&id) {
            return Ok(Some(state));
        }
        Ok(match self.touched.entry(id) {
            Entry::Occupied(slot) => Some(slot.into_mut()),
            Entry::Vacant(slot) => index.txn(id)?.map(|state| slot.insert(state)),
        })
    }

    /// Marks each pre-authorisation with the first approved completion
    /// seen for it (one the index does not know is skipped).
    fn link_completions(&mut self, index: &Index) -> Result<(), IndexError> {
        for (original, completion) in std::mem::take(&mut self.completions) {
            if let Some(state) = self.state(index, original)? {
                state.completed_by.get_or_insert(completion);
            }
        }
        Ok(())
    }

    /// The finished batch: every touched state and its in-flight mark; each
    /// held transaction that ended, or that `flush` says to write; and the
    /// first transaction of each business date not yet indexed.
    fn into_batch(self, index: &Index, flush: Flush) -> Result<sled::Batch, IndexError> {
        let Staged {
            mut batch,
            held,
            touched,
            dates,
            ..
        } = self;
        for (id, state) in touched {
            write_state(&mut batch, id, &state, true);
        }
        let due = |state: &TxnState| match flush {
            Flush::All => true,
            Flush::Expired(now) => now.saturating_sub(state.received_at) > HOLD,
        };
        let written: Vec<TxnId> = held
            .states
            .iter()
            .filter(|(_, state)| state.phase.ended() || due(state))
            .map(|(id, _)| *id)
            .collect();
        let mut in_flight_high = held.in_flight_high;
        for id in written {
            let Some(state) = held.states.remove(&id) else {
                continue;
            };
            write_state(&mut batch, id, &state, id <= held.in_flight_high);
            if !state.phase.ended() {
                in_flight_high = in_flight_high.max(id);
            }
        }
        if in_flight_high > held.in_flight_high {
            held.in_flight_high = in_flight_high;
            batch.insert(IN_FLIGHT_HIGH, &in_flight_high.to_be_bytes());
        }
        for (date, first) in dates {
            let key = format!("d{date}");
            if index.store(index.db.get(&key))?.is_none() {
                batch.insert(key.as_bytes(), &first.to_be_bytes());
            }
        }
        Ok(batch)
    }
}

/// A transaction's state and its in-flight key: set while it is in
/// flight, removed once it ended when `may_be_in_flight` (it may have been
/// written in flight before).
fn write_state(batch: &mut sled::Batch, id: TxnId, state: &TxnState, may_be_in_flight: bool) {
    if !state.phase.ended() {
        batch.insert(&id_key(b'i', id), &[]);
    } else if may_be_in_flight {
        batch.remove(&id_key(b'i', id));
    }
    batch.insert(
        &id_key(b't', id),
        postcard::to_stdvec(state).unwrap_or_default(),
    );
}

#[cfg(test)]
#[path = "staged_tests.rs"]
mod tests;
