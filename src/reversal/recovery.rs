//! What a start does with transactions a crash (or kill) left open.
//!
//! After the index has replayed the log, every transaction still in flight
//! is settled: one received but never forwarded is marked `NotProcessed`
//! (nothing left the switch); one forwarded without an answer may have been
//! approved by its bank, so a reversal is queued for it (unless one already
//! is) and it is closed as timed out. The store-and-forward queue is then
//! every reversal not yet acknowledged, oldest first.

use std::collections::BTreeMap;

use tracing::info;

use super::saf::SafItem;
use crate::journal::index::Phase;
use crate::journal::record::{Record, ReversalReason};
use crate::journal::{Journal, JournalError};

/// What recovery did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Transactions received and never forwarded.
    pub not_processed: usize,
    /// Reversals queued for transactions forwarded without an answer.
    pub reversals_queued: usize,
    /// The store-and-forward queue to start with.
    pub saf: Vec<SafItem>,
    /// Sequence of the last record recovery wrote (0 if none).
    pub last_seq: u64,
}

/// Settles open transactions and returns the store-and-forward queue.
pub async fn recover(journal: &Journal) -> Result<Recovered, JournalError> {
    let index = journal.index();
    let mut queue = BTreeMap::new();
    for state in index.saf_all()? {
        if let Some(item) = SafItem::from_state(&state) {
            queue.insert(state.reversal.as_ref().map_or(0, |r| r.queued_seq), item);
        }
    }
    let mut recovered = Recovered::default();
    let mut records = Vec::new();
    for state in index.in_flight()? {
        let txn = state.id;
        match state.phase {
            Phase::Received => {
                records.push((state, Record::NotProcessed { txn }));
                recovered.not_processed += 1;
            }
            Phase::Forwarded => {
                if state.reversal.is_none() {
                    let record = Record::ReversalQueued {
                        txn,
                        reason: ReversalReason::Recovery,
                        replacement: None,
                    };
                    records.push((state.clone(), record));
                    recovered.reversals_queued += 1;
                }
                records.push((state, Record::TimedOut { txn }));
            }
            _ => {}
        }
    }
    let count = records.len();
    for (i, (mut state, record)) in records.into_iter().enumerate() {
        // Groups are written in order: once the last record is durable, so
        // is every record appended before it.
        let seq = if i + 1 == count {
            journal.commit(&record).await?
        } else {
            journal.append(&record)?
        };
        recovered.last_seq = seq;
        if matches!(record, Record::ReversalQueued { .. }) {
            state.apply(seq, &record);
            if let Some(item) = SafItem::from_state(&state) {
                queue.insert(seq, item);
            }
        }
    }
    recovered.saf = queue.into_values().collect();
    // The switch reads the index as it starts (recent transactions, their
    // reversals): it must already hold what recovery just wrote.
    journal.indexed(recovered.last_seq).await;
    info!(
        not_processed = recovered.not_processed,
        reversals_queued = recovered.reversals_queued,
        saf_queue = recovered.saf.len(),
        "journal recovery done"
    );
    Ok(recovered)
}
