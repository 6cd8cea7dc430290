//! Which transactions of a business date clear: two streaming passes over
//! the journal's log, in memory of one byte per record of the day's
//! sequence range, plus the day's partial reversals and completions and
//! the few transactions in progress — never the day's data itself.
//!
//! A request belongs to the business date of the segment the journal filed
//! it in (the writer names each segment after the business date of its
//! records), whatever segments are added while clearing runs.
//!
//! - **Survey** (pass 1) reads the day's segments and every later one up to
//!   a *cutoff* sequence and notes, per transaction of the day, whether it
//!   was received, answered, approved, reversed in full or in part, and
//!   which pre-authorisation each completion completes. Only small records
//!   are decoded.
//! - **Presentment** (pass 2) reads the log again up to the same cutoff and
//!   hands out one [`DayItem::Presented`] per transaction that clears (with
//!   its destination from its `Forwarded` record and its approval code from
//!   its `Responded` record) and one [`DayItem::Reversed`] per approval a
//!   reversal took back.
//!
//! What clears: approved purchases and refunds (0200, processing code 00 /
//! 20) and approved completions (0220) of approved pre-authorisations (the
//! first completion of each), less full reversals; a partial reversal
//! (field 95) leaves the amount that stands. Pre-authorisations, reversals
//! themselves, declines and timeouts do not clear. Approval means response
//! code 00, 08 or 11 ([`crate::codes::approves`]), whoever gave it (a
//! switch approval without a destination, such as a future stand-in, would
//! go to the [`STAND_IN`] file).
//!
//! What is reported as reversed: every approved purchase, refund or
//! completion a reversal took back, in full or in part — a completion
//! reversed in full included, although it does not clear (the settlement
//! report's reversal columns count it).
//!
//! The selection is a function of the log up to the cutoff: the cutoff is
//! recorded with the batch, so a reissue sees exactly what the first run
//! saw, whatever the log gained since.

use std::collections::HashMap;
use std::path::Path;

use super::ard::ArdPrefix;
use super::item::{ClearedKind, Presentment, Reversed};
use crate::journal::record::{Received, Record, RecordKind};
use crate::journal::wal::{self, Segment, WalError};
use crate::journal::{TxnId, Vault};
use crate::txn::TxnKind;

/// Why a day could not be selected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The log could not be read, or is corrupt.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A PAN could not be opened with the data key.
    #[error("transaction {txn}: the PAN cannot be opened with this data key")]
    Pan {
        /// The transaction.
        txn: TxnId,
    },
    /// The acquirer BIN or the date is malformed.
    #[error("cannot form acquirer reference data from BIN {bin:?} and date {date}")]
    Ard {
        /// The configured BIN.
        bin: String,
        /// The business date.
        date: String,
    },
    /// An approved transaction has no answer record up to the cutoff
    /// (impossible in a log the switch wrote).
    #[error("transaction {txn} is approved but its answer was not found up to sequence {cutoff}")]
    Inconsistent {
        /// The transaction.
        txn: TxnId,
        /// The cutoff.
        cutoff: u64,
    },
}

/// Per-transaction notes of the survey.
mod flag {
    pub const RECEIVED: u8 = 1;
    pub const ENDED: u8 = 2;
    pub const APPROVED: u8 = 4;
    pub const REVERSED: u8 = 8;
    pub const PARTIAL: u8 = 16;
}

/// What pass 1 learnt of a day.
#[derive(Debug)]
pub struct Survey {
    date: String,
    /// Last sequence number taken into account.
    cutoff: u64,
    /// Sequence of the day's first record.
    low: u64,
    flags: Vec<u8>,
    /// Amounts that stand after partial reversals.
    replacements: HashMap<TxnId, u64>,
    /// Completions of the day that clear (the first approved, unreversed
    /// completion of each pre-authorisation).
    completions: HashMap<TxnId, TxnId>,
    /// Completions that were not the first of their pre-authorisation.
    duplicate_completions: Vec<TxnId>,
}

impl Survey {
    /// The business date surveyed (`YYYYMMDD`).
    pub fn date(&self) -> &str {
        &self.date
    }

    /// The last log sequence taken into account.
    pub fn cutoff(&self) -> u64 {
        self.cutoff
    }

    fn flags(&self, txn: TxnId) -> u8 {
        txn.checked_sub(self.low)
            .and_then(|at| self.flags.get(usize::try_from(at).ok()?))
            .copied()
            .unwrap_or(0)
    }

    /// Transactions of the day received and not yet ended (neither answered
    /// nor timed out nor reversed): the day cannot be cleared while any is
    /// in flight.
    pub fn in_flight(&self) -> Vec<TxnId> {
        self.ids()
            .filter(|&id| {
                let f = self.flags(id);
                f & flag::RECEIVED != 0 && f & (flag::ENDED | flag::REVERSED | flag::PARTIAL) == 0
            })
            .collect()
    }

    /// Requests of the day.
    pub fn received(&self) -> u64 {
        self.ids()
            .filter(|&id| self.flags(id) & flag::RECEIVED != 0)
            .count() as u64
    }

    /// Completions refused from clearing because their pre-authorisation
    /// was completed before.
    pub fn duplicate_completions(&self) -> &[TxnId] {
        &self.duplicate_completions
    }

    fn ids(&self) -> impl Iterator<Item = TxnId> + '_ {
        (0..self.flags.len() as u64).map(|at| self.low + at)
    }
}

/// The day's segments: the range of sequences its records use.
fn day_range(all: &[Segment], date: &str) -> Option<(u64, u64)> {
    let first = all.iter().position(|s| s.date == date)?;
    let last = all.iter().rposition(|s| s.date == date)?;
    let low = all.get(first)?.first_seq;
    let high = all
        .get(last + 1)
        .map_or(u64::MAX, |next| next.first_seq.saturating_sub(1));
    Some((low, high))
}

/// The kind of a `Received` record's request, read from its payload
/// without decoding the rest (postcard writes the record's variant index,
/// 0 for `Received`, then the request's first field, its kind).
fn received_kind(payload: &[u8]) -> Option<TxnKind> {
    match payload {
        [0, 0, ..] => Some(TxnKind::Authorization),
        [0, 1, ..] => Some(TxnKind::Purchase),
        [0, 2, ..] => Some(TxnKind::Refund),
        [0, 3, ..] => Some(TxnKind::Reversal),
        [0, 4, ..] => Some(TxnKind::Completion),
        _ => None,
    }
}

/// Reads the log from sequence `from` up to `limit` (or its end) in
/// order, telling `visit` each record's segment date, a few MiB at a time
/// (memory does not grow with segment size), checking every record's CRC;
/// a record being written at the very end is not read. Every corruption it
/// reports names the segment file and the offset, as `journal verify` does.
fn follow(
    log: &Path,
    from: u64,
    limit: u64,
    mut visit: impl FnMut(&str, &wal::Entry<'_>) -> Result<(), WalError>,
) -> Result<(), WalError> {
    let mut follower = wal::Follower::new(log, from);
    let mut failure = None;
    loop {
        let polled = follower.poll_dated(limit, 1 << 16, |date, entry| {
            if failure.is_none()
                && let Err(e) = visit(date, entry)
            {
                failure = Some(e);
            }
        });
        let visited = polled?;
        if let Some(e) = failure {
            return Err(e);
        }
        if visited == 0 {
            return Ok(());
        }
    }
}

/// The segment file that holds record `seq`, for error messages.
fn segment_of(log: &Path, seq: u64) -> String {
    wal::segments(log)
        .ok()
        .and_then(|all| {
            all.iter()
                .rfind(|s| s.first_seq <= seq)
                .map(|s| s.path.display().to_string())
        })
        .unwrap_or_else(|| log.display().to_string())
}

/// A record that passes its CRC but does not decode, named as `journal
/// verify` names it.
fn undecodable(log: &Path, entry: &wal::Entry<'_>) -> WalError {
    WalError::Corrupt {
        segment: segment_of(log, entry.seq),
        offset: entry.offset,
        reason: format!("record {} passes its CRC but does not decode", entry.seq),
    }
}

/// Pass 1 over `log` for business date `date`, up to `cutoff` (the end of
/// the log when `None`).
pub fn survey(log: &Path, date: &str, cutoff: Option<u64>) -> Result<Survey, SelectError> {
    let all = wal::segments(log)?;
    let mut survey = Survey {
        date: date.to_string(),
        cutoff: cutoff.unwrap_or(0),
        low: 0,
        flags: Vec::new(),
        replacements: HashMap::new(),
        completions: HashMap::new(),
        duplicate_completions: Vec::new(),
    };
    let Some((low, high)) = day_range(&all, date) else {
        return Ok(survey);
    };
    let limit = cutoff.unwrap_or(u64::MAX);
    let mut last = low.saturating_sub(1);
    let mut completing: Vec<(TxnId, TxnId)> = Vec::new();
    let mut flags: Vec<u8> = Vec::new();
    survey.low = low;
    follow(log, low, limit, |segment_date, entry| {
        if entry.seq > limit {
            return Ok(());
        }
        last = entry.seq;
        let bad = || undecodable(log, entry);
        match entry.kind {
            // A request belongs to the date its segment was filed under.
            RecordKind::Received => {
                if entry.seq <= high && segment_date == date {
                    let at = (entry.seq - low) as usize;
                    if flags.len() <= at {
                        flags.resize(at + 1, 0);
                    }
                    if let Some(f) = flags.get_mut(at) {
                        *f |= flag::RECEIVED;
                    }
                    if received_kind(entry.payload) == Some(TxnKind::Completion) {
                        let Some(Record::Received(r)) = entry.record() else {
                            return Err(bad());
                        };
                        if let Some(original) = r.original {
                            completing.push((entry.seq, original));
                        }
                    }
                }
            }
            RecordKind::Forwarded | RecordKind::ReversalSent | RecordKind::RiskDeclined => {}
            _ => {
                let record = entry.record().ok_or_else(bad)?;
                let txn = record.txn(entry.seq);
                if txn > entry.seq {
                    return Err(bad());
                }
                let Some(at) = txn
                    .checked_sub(low)
                    .filter(|_| txn <= high)
                    .map(|a| a as usize)
                else {
                    return Ok(());
                };
                if flags.len() <= at {
                    flags.resize(at + 1, 0);
                }
                let Some(f) = flags.get_mut(at) else {
                    return Ok(());
                };
                match record {
                    Record::Responded { code, .. } => {
                        *f |= flag::ENDED;
                        if crate::codes::approves(&code) {
                            *f |= flag::APPROVED;
                        }
                    }
                    Record::TimedOut { .. } | Record::NotProcessed { .. } => *f |= flag::ENDED,
                    Record::ReversalQueued { replacement, .. } => match replacement {
                        Some(amount) => {
                            *f |= flag::PARTIAL;
                            survey
                                .replacements
                                .entry(txn)
                                .and_modify(|a| *a = (*a).min(amount))
                                .or_insert(amount);
                        }
                        None => *f |= flag::REVERSED,
                    },
                    _ => {}
                }
            }
        }
        Ok(())
    })?;
    survey.flags = flags;
    survey.cutoff = cutoff.unwrap_or(last);
    let mut completed: std::collections::HashSet<TxnId> = std::collections::HashSet::new();
    completing.sort_unstable();
    for (completion, original) in completing {
        let f = survey.flags(completion);
        if f & flag::APPROVED == 0 || f & flag::REVERSED != 0 {
            continue;
        }
        if completed.insert(original) {
            survey.completions.insert(completion, original);
        } else {
            survey.duplicate_completions.push(completion);
        }
    }
    Ok(survey)
}

/// One thing of the day that clearing reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayItem {
    /// A transaction that clears.
    Presented(Box<Presentment>),
    /// An approval a reversal took back (in full, or the part reversed).
    Reversed(Reversed),
}

/// What pass 2 needs besides the survey.
#[derive(Debug, Clone, Copy)]
pub struct Presenting<'a> {
    /// The journal's log directory.
    pub log: &'a Path,
    /// Opens the sealed PANs.
    pub vault: &'a Vault,
    /// The acquirer's BIN for acquirer reference data.
    pub acquirer_bin: &'a str,
}

/// Name of the destination of a transaction the switch approved itself
/// (stand-in) without forwarding it.
pub const STAND_IN: &str = "stand-in";

/// Pass 2: hands `sink` every item of the surveyed day, in log order of the
/// transactions' answers. Returns the number of presentments.
pub fn present<E: From<SelectError>>(
    survey: &Survey,
    with: Presenting<'_>,
    mut sink: impl FnMut(DayItem) -> Result<(), E>,
) -> Result<u64, E> {
    if survey.flags.is_empty() {
        return Ok(0);
    }
    let Some(ard) = ArdPrefix::new(with.acquirer_bin, &survey.date) else {
        return Err(SelectError::Ard {
            bin: with.acquirer_bin.to_string(),
            date: survey.date.clone(),
        }
        .into());
    };
    let mut pending: HashMap<TxnId, Pending> = HashMap::new();
    let mut presented = 0u64;
    let mut failure: Option<E> = None;
    let scanned = follow(
        with.log,
        survey.low,
        survey.cutoff,
        |segment_date, entry| {
            if entry.seq > survey.cutoff || failure.is_some() {
                return Ok(());
            }
            let step = match entry.kind {
                RecordKind::Received if segment_date == survey.date => {
                    match receive(survey, &with, &ard, entry) {
                        Ok(found) => {
                            if let Some(p) = found {
                                pending.insert(entry.seq, p);
                            }
                            Ok(())
                        }
                        Err(e) => Err(E::from(e)),
                    }
                }
                RecordKind::Forwarded | RecordKind::Responded if !pending.is_empty() => match entry
                    .record()
                {
                    Some(Record::Forwarded { txn, to }) => {
                        if let Some(p) = pending.get_mut(&txn) {
                            p.destination = to.destination;
                        }
                        Ok(())
                    }
                    Some(Record::Responded { txn, auth_id, .. }) => match pending.remove(&txn) {
                        Some(p) => {
                            presented += u64::from(p.presentment.is_some());
                            p.hand_out(auth_id, &mut sink)
                        }
                        None => Ok(()),
                    },
                    _ => Err(SelectError::from(undecodable(with.log, entry)).into()),
                },
                _ => Ok(()),
            };
            if let Err(e) = step {
                failure = Some(e);
            }
            Ok(())
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    scanned.map_err(SelectError::from)?;
    if let Some(txn) = pending.keys().min() {
        return Err(SelectError::Inconsistent {
            txn: *txn,
            cutoff: survey.cutoff,
        }
        .into());
    }
    Ok(presented)
}

/// An approved transaction of the day waiting for its `Forwarded` and
/// `Responded` records.
#[derive(Debug)]
struct Pending {
    /// What clears of it (nothing after a full reversal).
    presentment: Option<Box<Presentment>>,
    /// What a reversal took back of it.
    reversed: Option<Reversed>,
    /// Where it went.
    destination: String,
}

impl Pending {
    /// Completes the items with the destination and the approval code and
    /// hands them to `sink`.
    fn hand_out<E>(
        self,
        auth_id: Option<String>,
        sink: &mut impl FnMut(DayItem) -> Result<(), E>,
    ) -> Result<(), E> {
        let destination = if self.destination.is_empty() {
            STAND_IN.to_string()
        } else {
            self.destination
        };
        if let Some(mut r) = self.reversed {
            r.destination = destination.clone();
            sink(DayItem::Reversed(r))?;
        }
        if let Some(mut p) = self.presentment {
            // An approval code clearing files cannot carry is left out
            // rather than stopping the day's clearing.
            p.auth_id = auth_id
                .filter(|a| a.len() <= 6 && a.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
                .unwrap_or_default();
            p.destination = destination;
            sink(DayItem::Presented(p))?;
        }
        Ok(())
    }
}

/// Pass 2 for one `Received` record: what it contributes, if anything.
fn receive(
    survey: &Survey,
    with: &Presenting<'_>,
    ard: &ArdPrefix,
    entry: &wal::Entry<'_>,
) -> Result<Option<Pending>, SelectError> {
    let (seq, payload, ts) = (entry.seq, entry.payload, entry.ts);
    let f = survey.flags(seq);
    if f & flag::RECEIVED == 0 || f & flag::APPROVED == 0 {
        return Ok(None);
    }
    let kind = match received_kind(payload) {
        Some(TxnKind::Purchase) => ClearedKind::Purchase,
        Some(TxnKind::Refund) => ClearedKind::Refund,
        Some(TxnKind::Completion) if survey.completions.contains_key(&seq) => {
            ClearedKind::Completion
        }
        // A completion reversed in full does not clear (the survey left it
        // out of `completions`), but its approval was taken back: it is
        // reported as a reversal like any other.
        Some(TxnKind::Completion) if f & flag::REVERSED != 0 => ClearedKind::Completion,
        _ => return Ok(None),
    };
    let Some(Record::Received(request)) = crate::journal::record::decode(payload) else {
        return Err(undecodable(with.log, entry).into());
    };
    let mut request = *request;
    let merchant = request.merchant.take().unwrap_or_default();
    let standing = if f & flag::REVERSED != 0 {
        0
    } else if f & flag::PARTIAL != 0 {
        survey
            .replacements
            .get(&seq)
            .copied()
            .unwrap_or(request.amount)
            .min(request.amount)
    } else {
        request.amount
    };
    let reversed = (standing < request.amount).then(|| Reversed {
        txn: seq,
        kind,
        merchant_id: merchant.id.clone(),
        destination: String::new(),
        currency: request.currency.clone(),
        amount: request.amount - standing,
    });
    if standing == 0 {
        return Ok(Some(Pending {
            presentment: None,
            reversed,
            destination: String::new(),
        }));
    }
    let pan = with
        .vault
        .open(&request.pan)
        .map_err(|_| SelectError::Pan { txn: seq })?;
    let ard = ard.ard(seq);
    let local_time = local_time(&request, &survey.date, ts);
    let presentment = Presentment {
        txn: seq,
        kind,
        pan,
        masked_pan: request.pan.masked,
        processing_code: request.processing_code,
        amount: standing,
        approved_amount: request.amount,
        currency: request.currency,
        local_time,
        entry_mode: request.entry_mode.unwrap_or_default(),
        condition: request.condition.unwrap_or_default(),
        merchant_id: merchant.id,
        mcc: merchant.mcc,
        name_location: merchant.name_location,
        terminal: request.terminal,
        stan: request.stan,
        rrn: request.rrn,
        auth_id: String::new(),
        destination: String::new(),
        ard,
        date: survey.date.clone(),
    };
    Ok(Some(Pending {
        presentment: Some(Box::new(presentment)),
        reversed,
        destination: String::new(),
    }))
}

/// `YYMMDDhhmmss` of the terminal's local date and time (fields 13 and 12),
/// the year taken from the business date (the year before for a December
/// local date in a January business day, the year after for the reverse);
/// the switch's receipt time (UTC) when the terminal sent none or sent one
/// that is not a real date and time (one bad terminal must not stop a
/// day's clearing).
fn local_time(request: &Received, date: &str, ts: u64) -> String {
    let receipt = || crate::clock::DateTime::from_unix(ts / 1_000_000).yymmddhhmmss();
    let (Some(mmdd), Some(hhmmss), Some(business)) = (
        request.local_date.as_deref(),
        request.local_time.as_deref(),
        super::civil_date(date),
    ) else {
        return receipt();
    };
    let year = match (mmdd.get(..2), business.month()) {
        (Some("12"), 1) => business.year() - 1,
        (Some("01"), 12) => business.year() + 1,
        _ => business.year(),
    };
    let text = format!("{:02}{mmdd}{hhmmss}", year.rem_euclid(100));
    if super::ipm::valid_local_time(text.as_bytes()) {
        text
    } else {
        receipt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::encode;

    fn request_at(date: &str, time: &str) -> Received {
        Received {
            kind: TxnKind::Purchase,
            mti: "0200".into(),
            processing_code: "000000".into(),
            amount: 1,
            currency: "978".into(),
            pan: Vault::new(&[7; 32]).seal("4111111111111111"),
            terminal: "T".into(),
            merchant: None,
            stan: "1".into(),
            transmission: String::new(),
            local_time: Some(time.into()),
            local_date: Some(date.into()),
            entry_mode: None,
            condition: None,
            rrn: String::new(),
            original: None,
            replacement: None,
        }
    }

    #[test]
    fn local_times_take_the_year_of_the_business_date_or_fall_back() {
        // 2026-11-25T10:15:00Z
        let ts = 1_795_601_700_000_000;
        assert_eq!(
            local_time(&request_at("1125", "101500"), "20261125", ts),
            "261125101500"
        );
        assert_eq!(
            local_time(&request_at("1231", "235959"), "20270101", ts),
            "261231235959"
        );
        assert_eq!(
            local_time(&request_at("0101", "000001"), "20261231", ts),
            "270101000001"
        );
        for (date, time) in [
            ("1399", "101500"),
            ("0230", "101500"),
            ("0229", "101500"),
            ("1125", "246000"),
        ] {
            assert_eq!(
                local_time(&request_at(date, time), "20261125", ts),
                "261125101500",
                "{date} {time} falls back to the receipt time"
            );
        }
        assert_eq!(
            local_time(&request_at("0229", "101500"), "20240229", ts),
            "240229101500"
        );
    }

    #[test]
    fn the_kind_is_read_from_the_payload_as_postcard_writes_it() {
        for kind in TxnKind::ALL {
            let vault = Vault::new(&[7; 32]);
            let record = Record::Received(Box::new(Received {
                kind,
                mti: "0200".into(),
                processing_code: "000000".into(),
                amount: 1,
                currency: "978".into(),
                pan: vault.seal("4111111111111111"),
                terminal: "T".into(),
                merchant: None,
                stan: "1".into(),
                transmission: String::new(),
                local_time: None,
                local_date: None,
                entry_mode: None,
                condition: None,
                rrn: String::new(),
                original: None,
                replacement: None,
            }));
            assert_eq!(received_kind(&encode(&record)), Some(kind), "{kind}");
        }
        assert_eq!(received_kind(&[1, 0]), None);
        assert_eq!(received_kind(&[]), None);
    }
}
