//! The index: derived state in sled, rebuilt from the log whenever needed.
//!
//! One sled tree, keys prefixed by what they index:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `t` | txn id (u64 BE) | [`TxnState`] (postcard) |
//! | `k` | terminal (8) ‖ STAN (6) ‖ field 7 (10) ‖ id | — |
//! | `r` | RRN (12) ‖ id | — |
//! | `d` | business date (8) | id of its first transaction |
//! | `i` | id (in flight: received, no end yet) | — |
//! | `s` | destination ‖ 0 ‖ queued seq ‖ id (store-and-forward queue) | — |
//! | `m` | `applied` | every transaction up to this log sequence is in (u64 BE) |
//! | `m` | `inflight` | highest id ever written in flight (u64 BE) |
//!
//! Records are applied in batches (the indexer's, up to a few hundred
//! records), each one atomic sled batch together with the `applied` mark;
//! the indexer holds a transaction that began in a batch until it ends and
//! writes it once ([`staged`]). Applying a record twice gives the same
//! state, so replaying the log from the mark after any crash is always
//! right. The log is the truth: deleting the sled directory loses nothing
//! ([`Index::rebuild`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cutover::Cutover;
use super::record::{Forwarded, Received, Record, ReversalReason, Source, TxnId};
use super::wal::{self, WalError, business_date};

pub(crate) mod staged;
pub use staged::{Flush, Held};

/// The index could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// sled failed (or the directory is held by a running daemon).
    #[error("journal index {path}: {source}")]
    Store {
        /// The sled directory.
        path: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// An entry does not decode (written by another version, or damaged):
    /// never skipped, since a transaction missing from the index could be
    /// a reversal owed.
    #[error(
        "journal index {path}: transaction {id} does not decode; rebuild the index with `cardswitch journal reindex`"
    )]
    Undecodable {
        /// The sled directory.
        path: String,
        /// The transaction.
        id: TxnId,
    },
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Received, not yet forwarded nor answered.
    Received,
    /// Forwarded, no answer yet.
    Forwarded,
    /// Answered to the terminal.
    Answered,
    /// The destination did not answer in time.
    TimedOut,
    /// Never forwarded before a crash.
    NotProcessed,
}

impl Phase {
    /// Whether the transaction has ended (as far as the terminal goes).
    pub fn ended(self) -> bool {
        matches!(
            self,
            Phase::Answered | Phase::TimedOut | Phase::NotProcessed
        )
    }

    /// Name for listings.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Received => "received",
            Phase::Forwarded => "forwarded",
            Phase::Answered => "answered",
            Phase::TimedOut => "timed_out",
            Phase::NotProcessed => "not_processed",
        }
    }
}

/// A reversal owed for a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalState {
    /// Why.
    pub reason: ReversalReason,
    /// Amount that stands after a partial reversal.
    pub replacement: Option<u64>,
    /// Sequence of the `ReversalQueued` record (its place in the queue).
    pub queued_seq: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// The destination's code once acknowledged.
    pub acknowledged: Option<String>,
}

/// Everything known of one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnState {
    /// Id (sequence of its `Received` record).
    pub id: TxnId,
    /// When received (µs since the epoch).
    pub received_at: u64,
    /// Business date (`YYYYMMDD`).
    pub date: String,
    /// The request.
    pub request: Received,
    /// Where it went.
    pub forwarded: Option<Forwarded>,
    /// Where it stands.
    pub phase: Phase,
    /// Response code given to the terminal.
    pub code: Option<String>,
    /// Authorisation id given to the terminal.
    pub auth_id: Option<String>,
    /// Who decided the response.
    pub source: Option<Source>,
    /// A reversal owed or done.
    pub reversal: Option<ReversalState>,
    /// The risk rule that declined it.
    pub risk_rule: Option<String>,
    /// For a pre-authorisation: the approved completion (0220) that
    /// completed it.
    pub completed_by: Option<TxnId>,
}

impl TxnState {
    /// A new state from a `Received` record.
    pub fn new(id: TxnId, ts: u64, cutover: &Cutover, request: Received) -> TxnState {
        TxnState {
            id,
            received_at: ts,
            date: business_date(ts, cutover),
            request,
            forwarded: None,
            phase: Phase::Received,
            code: None,
            auth_id: None,
            source: None,
            reversal: None,
            risk_rule: None,
            completed_by: None,
        }
    }

    /// Applies one later record (idempotent).
    pub fn apply(&mut self, seq: u64, record: &Record) {
        match record {
            Record::Received(_) => {}
            Record::Forwarded { to, .. } => {
                self.forwarded = Some(to.clone());
                if self.phase == Phase::Received {
                    self.phase = Phase::Forwarded;
                }
            }
            Record::Responded {
                code,
                auth_id,
                source,
                ..
            } => {
                self.phase = Phase::Answered;
                self.code = Some(code.clone());
                self.auth_id = auth_id.clone();
                self.source = Some(*source);
            }
            Record::TimedOut { .. } => {
                self.phase = Phase::TimedOut;
                self.code = Some("91".into());
                self.source = Some(Source::Switch);
            }
            Record::NotProcessed { .. } => self.phase = Phase::NotProcessed,
            Record::RiskDeclined { rule, .. } => self.risk_rule = Some(rule.clone()),
            Record::ReversalQueued {
                reason,
                replacement,
                ..
            } => {
                if self.reversal.is_none() {
                    self.reversal = Some(ReversalState {
                        reason: *reason,
                        replacement: *replacement,
                        queued_seq: seq,
                        attempts: 0,
                        acknowledged: None,
                    });
                }
            }
            Record::ReversalSent { attempt, .. } => {
                if let Some(r) = &mut self.reversal {
                    r.attempts = r.attempts.max(*attempt);
                }
            }
            Record::ReversalAcknowledged { code, .. } => {
                if let Some(r) = &mut self.reversal {
                    r.acknowledged = Some(code.clone());
                }
            }
        }
    }

    /// Whether a reversal is queued and not yet acknowledged.
    pub fn reversal_pending(&self) -> bool {
        self.reversal
            .as_ref()
            .is_some_and(|r| r.acknowledged.is_none())
    }
}

/// A (terminal, STAN, transmission) key, padded to fixed widths.
pub fn request_key(terminal: &str, stan: &str, transmission: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 8 + 6 + 10 + 8);
    key.push(b'k');
    key.extend_from_slice(format!("{terminal:<8.8}{stan:0>6.6}").as_bytes());
    key.extend_from_slice(format!("{transmission:0>10.10}").as_bytes());
    key
}

fn id_key(prefix: u8, id: TxnId) -> [u8; 9] {
    let mut key = [prefix; 9];
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

fn saf_key(destination: &str, queued: u64, id: TxnId) -> Vec<u8> {
    let mut key = Vec::with_capacity(destination.len() + 18);
    key.push(b's');
    key.extend_from_slice(destination.as_bytes());
    key.push(0);
    key.extend_from_slice(&queued.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn tail_id(key: &[u8]) -> Option<TxnId> {
    let bytes: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

const APPLIED: &[u8] = b"mapplied";
/// Key of the index's format version: an index written by another version
/// is emptied at open and rebuilt from the log.
const SCHEMA: &[u8] = b"mschema";
/// Bumped whenever [`TxnState`] or the keys change.
const SCHEMA_VERSION: u32 = 3;

/// A raw key and value of the index.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The sled index.
#[derive(Debug, Clone)]
pub struct Index {
    db: sled::Db,
    path: String,
    cutover: Cutover,
}

impl Index {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path, cutover: Cutover) -> Result<Index, IndexError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| IndexError::Store {
                path: path.clone(),
                source,
            })?;
        let index = Index { db, path, cutover };
        index.check_schema()?;
        Ok(index)
    }

    /// Empties an index of another format (the log replays into it).
    fn check_schema(&self) -> Result<(), IndexError> {
        let current = SCHEMA_VERSION.to_be_bytes();
        let found = self.store(self.db.get(SCHEMA))?;
        if found.as_deref() == Some(current.as_slice()) {
            return Ok(());
        }
        if !self.db.is_empty() {
            tracing::warn!(path = %self.path, "journal index written by another version: rebuilding it from the log");
            self.store(self.db.clear())?;
        }
        self.store(self.db.insert(SCHEMA, &current).map(|_| ()))
    }

    fn store<T>(&self, result: sled::Result<T>) -> Result<T, IndexError> {
        result.map_err(|source| IndexError::Store {
            path: self.path.clone(),
            source,
        })
    }

    /// The last log sequence applied (0 for none).
    pub fn applied(&self) -> Result<u64, IndexError> {
        let value = self.store(self.db.get(APPLIED))?;
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// A transaction by id.
    pub fn txn(&self, id: TxnId) -> Result<Option<TxnState>, IndexError> {
        let value = self.store(self.db.get(id_key(b't', id)))?;
        value.map(|v| self.decode(id, &v)).transpose()
    }

    fn decode(&self, id: TxnId, value: &[u8]) -> Result<TxnState, IndexError> {
        postcard::from_bytes(value).map_err(|_| IndexError::Undecodable {
            path: self.path.clone(),
            id,
        })
    }

    fn ids_with_prefix(&self, prefix: &[u8]) -> Result<Vec<TxnId>, IndexError> {
        let mut ids = Vec::new();
        for item in self.db.scan_prefix(prefix) {
            let (key, _) = self.store(item)?;
            ids.extend(tail_id(&key));
        }
        Ok(ids)
    }

    fn states(&self, ids: Vec<TxnId>) -> Result<Vec<TxnState>, IndexError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.txn(id)?);
        }
        Ok(out)
    }

    /// Transactions of a terminal with a STAN (and, when given, a field 7).
    pub fn by_request(
        &self,
        terminal: &str,
        stan: &str,
        transmission: Option<&str>,
    ) -> Result<Vec<TxnState>, IndexError> {
        let mut prefix = request_key(terminal, stan, transmission.unwrap_or(""));
        if transmission.is_none() {
            prefix.truncate(1 + 8 + 6);
        }
        let ids = self.ids_with_prefix(&prefix)?;
        self.states(ids)
    }

    /// Transactions with an RRN.
    pub fn by_rrn(&self, rrn: &str) -> Result<Vec<TxnState>, IndexError> {
        let ids = self.ids_with_prefix(format!("r{rrn:<12.12}").as_bytes())?;
        self.states(ids)
    }

    /// Transactions of a business date (`YYYYMMDD`), in id order. Ids grow
    /// with time and so do business dates: a date's transactions are the
    /// ids from its first to the next date's first.
    pub fn by_date(&self, date: &str) -> Result<Vec<TxnState>, IndexError> {
        let first_of = |value: sled::IVec| {
            <[u8; 8]>::try_from(value.as_ref())
                .ok()
                .map(u64::from_be_bytes)
        };
        let Some(first) = self
            .store(self.db.get(format!("d{date}")))?
            .and_then(first_of)
        else {
            return Ok(Vec::new());
        };
        let next = match self.store(
            self.db
                .range(format!("d{date}\u{ff}").into_bytes()..b"e".to_vec())
                .next()
                .transpose(),
        )? {
            Some((_, value)) => first_of(value).unwrap_or(u64::MAX),
            None => u64::MAX,
        };
        let mut out = Vec::new();
        for item in self.db.range(id_key(b't', first)..id_key(b't', next)) {
            let (key, value) = self.store(item)?;
            out.push(self.decode(tail_id(&key).unwrap_or_default(), &value)?);
        }
        Ok(out)
    }

    /// The newest `count` transactions, newest first.
    pub fn newest(&self, count: usize) -> Result<Vec<TxnState>, IndexError> {
        let mut out = Vec::new();
        for item in self
            .db
            .range(id_key(b't', 0)..=id_key(b't', u64::MAX))
            .rev()
            .take(count)
        {
            let (key, value) = self.store(item)?;
            out.push(self.decode(tail_id(&key).unwrap_or_default(), &value)?);
        }
        Ok(out)
    }

    /// Transactions received and not yet ended.
    pub fn in_flight(&self) -> Result<Vec<TxnState>, IndexError> {
        let ids = self.ids_with_prefix(b"i")?;
        self.states(ids)
    }

    /// The store-and-forward queue of a destination, oldest first.
    pub fn saf(&self, destination: &str) -> Result<Vec<TxnState>, IndexError> {
        let mut prefix = vec![b's'];
        prefix.extend_from_slice(destination.as_bytes());
        prefix.push(0);
        let ids = self.ids_with_prefix(&prefix)?;
        self.states(ids)
    }

    /// Every reversal queued and not yet acknowledged, any destination.
    pub fn saf_all(&self) -> Result<Vec<TxnState>, IndexError> {
        let ids = self.ids_with_prefix(b"s")?;
        self.states(ids)
    }

    /// Applies the log from the record after [`Index::applied`]; returns how
    /// many records were applied.
    pub fn catch_up(&self, log: &Path, mut progress: impl FnMut(u64)) -> Result<u64, IndexError> {
        let from = self.applied()? + 1;
        let mut chunk = Vec::new();
        let mut applied = 0;
        // The first failed batch stops the replay: a later batch would move
        // the `applied` mark past records that are not in.
        let mut failure = None;
        let scanned = wal::scan(log, from, |_, e| {
            if let Some(record) = e.record() {
                chunk.push((e.seq, e.ts, record));
            }
            if chunk.len() >= 4096 {
                applied += chunk.len() as u64;
                if let Err(err) = self.apply(std::mem::take(&mut chunk)) {
                    failure = Some(err);
                    return Err(WalError::Closed);
                }
                progress(applied);
            }
            Ok(())
        });
        if let Some(err) = failure {
            return Err(err);
        }
        scanned?;
        applied += chunk.len() as u64;
        self.apply(chunk)?;
        progress(applied);
        self.store(self.db.flush().map(|_| ()))?;
        Ok(applied)
    }

    /// Empties the index and rebuilds it from the whole log.
    pub fn rebuild(&self, log: &Path, progress: impl FnMut(u64)) -> Result<u64, IndexError> {
        self.store(self.db.clear())?;
        self.store(
            self.db
                .insert(SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                .map(|_| ()),
        )?;
        self.catch_up(log, progress)
    }

    /// Every key and value, for comparing two indexes — but the indexer's
    /// own bookkeeping (the highest id ever written in flight), which
    /// depends on how the records came in, not on what they say.
    pub fn dump(&self) -> Result<Vec<KeyValue>, IndexError> {
        let mut out = Vec::new();
        for item in self.db.iter() {
            let (k, v) = self.store(item)?;
            if k != staged::IN_FLIGHT_HIGH {
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Makes sled write what it holds.
    pub fn flush(&self) -> Result<(), IndexError> {
        self.store(self.db.flush().map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_that_does_not_decode_is_an_error_not_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), Cutover::default()).unwrap();
        index.db.insert(id_key(b't', 7), &[0xff, 0xff][..]).unwrap();
        let e = index.txn(7).unwrap_err().to_string();
        assert!(
            e.contains("transaction 7 does not decode") && e.contains("reindex"),
            "{e}"
        );
        assert!(index.newest(10).is_err());
        assert!(index.txn(8).unwrap().is_none());
    }

    #[test]
    fn an_index_of_another_format_is_emptied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open(dir.path(), Cutover::default()).unwrap();
            index.db.insert(id_key(b't', 7), &[0xff][..]).unwrap();
            index.db.insert(APPLIED, &9u64.to_be_bytes()[..]).unwrap();
            index.db.insert(SCHEMA, &1u32.to_be_bytes()[..]).unwrap();
            index.db.flush().unwrap();
        }
        let index = Index::open(dir.path(), Cutover::default()).unwrap();
        assert_eq!(index.applied().unwrap(), 0, "replayed from the start");
        assert!(index.txn(7).unwrap().is_none());
        drop(index);
        // Opened again by the same version: kept.
        let index = Index::open(dir.path(), Cutover::default()).unwrap();
        index.db.insert(APPLIED, &3u64.to_be_bytes()[..]).unwrap();
        index.db.flush().unwrap();
        drop(index);
        assert_eq!(
            Index::open(dir.path(), Cutover::default())
                .unwrap()
                .applied()
                .unwrap(),
            3
        );
    }
}
