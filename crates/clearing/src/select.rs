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
//! code 00, 08 or 11 ([`iso8583::codes::approves`]), whoever gave it (a
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

use std::collections::{HashMap, HashSet};

use iso8583::kind::TxnKind;

use super::ard::ArdPrefix;
use super::item::{ClearedKind, Presentment, Reversed};
use crate::journal::{Entry, Event, Journal, Kind, PanVault, ReadError, Request, Segment, TxnId};

/// Why a day could not be selected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// The log could not be read, or is corrupt.
    #[error(transparent)]
    Journal(#[from] ReadError),
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

/// What pass 1 notes while it reads.
struct Noting<'a> {
    date: &'a str,
    low: u64,
    high: u64,
    flags: Vec<u8>,
    replacements: HashMap<TxnId, u64>,
    /// (completion, the pre-authorisation it completes)
    completing: Vec<(TxnId, TxnId)>,
}

impl Noting<'_> {
    /// The flags of transaction `txn`, when it is one of the day's.
    fn flags_of(&mut self, txn: TxnId) -> Option<&mut u8> {
        let at = txn
            .checked_sub(self.low)
            .filter(|_| txn <= self.high)
            .map(|a| a as usize)?;
        if self.flags.len() <= at {
            self.flags.resize(at + 1, 0);
        }
        self.flags.get_mut(at)
    }

    /// Notes one record filed under `segment_date`.
    fn note(&mut self, segment_date: &str, entry: &dyn Entry) -> Result<(), ReadError> {
        let seq = entry.seq();
        match entry.kind() {
            // A request belongs to the date its segment was filed under.
            Kind::Request => {
                if seq <= self.high && segment_date == self.date {
                    if let Some(f) = self.flags_of(seq) {
                        *f |= flag::RECEIVED;
                    }
                    if entry.request_kind() == Some(TxnKind::Completion)
                        && let Some(original) = entry.request()?.original
                    {
                        self.completing.push((seq, original));
                    }
                }
            }
            Kind::Forwarded | Kind::Ignored => {}
            _ => {
                let event = entry.event()?;
                let txn = event.txn();
                let Some(f) = self.flags_of(txn) else {
                    return Ok(());
                };
                match event {
                    Event::Responded { code, .. } => {
                        *f |= flag::ENDED;
                        if iso8583::codes::approves(&code) {
                            *f |= flag::APPROVED;
                        }
                    }
                    Event::Ended { .. } => *f |= flag::ENDED,
                    Event::ReversalQueued { replacement, .. } => match replacement {
                        Some(amount) => {
                            *f |= flag::PARTIAL;
                            self.replacements
                                .entry(txn)
                                .and_modify(|a| *a = (*a).min(amount))
                                .or_insert(amount);
                        }
                        None => *f |= flag::REVERSED,
                    },
                    Event::Forwarded { .. } | Event::Other { .. } => {}
                }
            }
        }
        Ok(())
    }
}

/// Pass 1 over the journal's log for business date `date`, up to `cutoff`
/// (the end of the log when `None`).
pub fn survey(
    journal: &dyn Journal,
    date: &str,
    cutoff: Option<u64>,
) -> Result<Survey, SelectError> {
    let all = journal.segments()?;
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
    let mut noting = Noting {
        date,
        low,
        high,
        flags: Vec::new(),
        replacements: HashMap::new(),
        completing: Vec::new(),
    };
    journal.follow(low, limit, &mut |segment_date, entry| {
        if entry.seq() > limit {
            return Ok(());
        }
        last = entry.seq();
        noting.note(segment_date, entry)
    })?;
    survey.low = low;
    survey.flags = noting.flags;
    survey.replacements = noting.replacements;
    survey.cutoff = cutoff.unwrap_or(last);
    let mut completed: HashSet<TxnId> = HashSet::new();
    let mut completing = noting.completing;
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
    /// The journal.
    pub journal: &'a dyn Journal,
    /// Opens the sealed PANs.
    pub vault: &'a dyn PanVault,
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
    let scanned = with
        .journal
        .follow(survey.low, survey.cutoff, &mut |segment_date, entry| {
            let seq = entry.seq();
            if seq > survey.cutoff || failure.is_some() {
                return Ok(());
            }
            let step = match entry.kind() {
                Kind::Request if segment_date == survey.date => {
                    match receive(survey, &with, &ard, entry) {
                        Ok(found) => {
                            if let Some(p) = found {
                                pending.insert(seq, p);
                            }
                            Ok(())
                        }
                        Err(e) => Err(E::from(e)),
                    }
                }
                Kind::Forwarded | Kind::Responded if !pending.is_empty() => match entry.event() {
                    Ok(Event::Forwarded { txn, destination }) => {
                        if let Some(p) = pending.get_mut(&txn) {
                            p.destination = destination;
                        }
                        Ok(())
                    }
                    Ok(Event::Responded { txn, auth_id, .. }) => match pending.remove(&txn) {
                        Some(p) => {
                            presented += u64::from(p.presentment.is_some());
                            p.hand_out(auth_id, &mut sink)
                        }
                        None => Ok(()),
                    },
                    Ok(_) => Ok(()),
                    Err(e) => Err(SelectError::from(e).into()),
                },
                _ => Ok(()),
            };
            if let Err(e) = step {
                failure = Some(e);
            }
            Ok(())
        });
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
    entry: &dyn Entry,
) -> Result<Option<Pending>, SelectError> {
    let (seq, ts) = (entry.seq(), entry.ts());
    let f = survey.flags(seq);
    if f & flag::RECEIVED == 0 || f & flag::APPROVED == 0 {
        return Ok(None);
    }
    let kind = match entry.request_kind() {
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
    let mut request = entry.request()?;
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
        .open_sealed(&request.sealed_pan)
        .ok_or(SelectError::Pan { txn: seq })?;
    let ard = ard.ard(seq);
    let local_time = local_time(&request, &survey.date, ts);
    let presentment = Presentment {
        txn: seq,
        kind,
        pan,
        masked_pan: request.masked_pan,
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
fn local_time(request: &Request, date: &str, ts: u64) -> String {
    let receipt = || base::clock::DateTime::from_unix(ts / 1_000_000).yymmddhhmmss();
    let (Some(mmdd), Some(hhmmss), Some(business)) = (
        request.local_date.as_deref(),
        request.local_time.as_deref(),
        crate::dates::civil_date(date),
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

    fn request_at(date: &str, time: &str) -> Request {
        Request {
            kind: TxnKind::Purchase,
            processing_code: "000000".into(),
            amount: 1,
            currency: "978".into(),
            masked_pan: "411111******1111".into(),
            sealed_pan: Vec::new(),
            terminal: "T".into(),
            merchant: None,
            stan: "1".into(),
            local_time: Some(time.into()),
            local_date: Some(date.into()),
            entry_mode: None,
            condition: None,
            rrn: String::new(),
            original: None,
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
}
