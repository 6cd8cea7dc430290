//! Reading the journal without the index: a replay of the log into memory,
//! for the `journal` commands (they work while the daemon runs, when sled's
//! directory is locked by it) and for tests. What it shows never includes a
//! clear PAN.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::cutover::Cutover;
use super::index::TxnState;
use super::record::{Record, RecordKind, ReversalReason, Source, TxnId};
use super::wal::{self, WalError};

/// Every transaction in the log (from `from` on), in id order.
pub fn replay(dir: &Path, cutover: &Cutover) -> Result<BTreeMap<TxnId, TxnState>, WalError> {
    let mut states: BTreeMap<TxnId, TxnState> = BTreeMap::new();
    wal::scan(dir, 0, |_, entry| {
        let Some(record) = entry.record() else {
            return Err(WalError::Corrupt {
                segment: String::new(),
                offset: entry.offset,
                reason: wal::Corruption::NotARecord(entry.seq),
            });
        };
        match &record {
            Record::Received(request) => {
                states.insert(
                    entry.seq,
                    TxnState::new(entry.seq, entry.ts, cutover, (**request).clone()),
                );
            }
            other => {
                if let Some(state) = states.get_mut(&other.txn(entry.seq)) {
                    state.apply(entry.seq, other);
                }
            }
        }
        Ok(())
    })?;
    Ok(states)
}

/// A transaction as the commands print it (masked PAN, no sealed bytes).
#[derive(Debug, Clone, Serialize)]
pub struct TxnView {
    /// Journal id.
    pub id: TxnId,
    /// Business date, `YYYY-MM-DD`.
    pub date: String,
    /// When received, µs since the epoch.
    pub received_at: u64,
    /// Kind of request.
    pub kind: String,
    /// Request MTI.
    pub mti: String,
    /// Field 3.
    pub processing_code: String,
    /// The amount that stands, in minor units: the request's amount, less
    /// what a reversal takes back — 0 after a full reversal, the amount
    /// that stands after a partial one (field 95). A reversal counts from
    /// the moment it is queued (the switch delivers it until the
    /// destination acknowledges it; see `reversal`), as clearing counts it.
    pub amount: u64,
    /// The amount requested (field 4), in minor units.
    pub original_amount: u64,
    /// ISO 4217 numeric currency.
    pub currency: String,
    /// Masked PAN.
    pub pan: String,
    /// Terminal id.
    pub terminal: String,
    /// Merchant id.
    pub merchant: Option<String>,
    /// Terminal STAN.
    pub stan: String,
    /// RRN.
    pub rrn: String,
    /// Destination.
    pub destination: Option<String>,
    /// Switch STAN on the destination.
    pub switch_stan: Option<u32>,
    /// Where it stands.
    pub state: String,
    /// Response code given to the terminal.
    pub code: Option<String>,
    /// Authorisation id.
    pub auth_id: Option<String>,
    /// Who decided.
    pub source: Option<String>,
    /// For a reversal request: the transaction it reverses.
    pub reverses: Option<TxnId>,
    /// Reversal owed for this transaction: `pending` or `acknowledged`.
    pub reversal: Option<String>,
    /// What the reversal takes back: `full`, or `partial` (an amount
    /// stands; see `amount`).
    pub reversal_kind: Option<String>,
    /// Why the reversal was queued.
    pub reversal_reason: Option<String>,
    /// Reversal attempts made.
    pub reversal_attempts: Option<u32>,
    /// The risk rule that declined it.
    pub risk_rule: Option<String>,
}

impl From<&TxnState> for TxnView {
    fn from(s: &TxnState) -> TxnView {
        let r = &s.request;
        let date = format!(
            "{}-{}-{}",
            s.date.get(..4).unwrap_or_default(),
            s.date.get(4..6).unwrap_or_default(),
            s.date.get(6..).unwrap_or_default()
        );
        TxnView {
            id: s.id,
            date,
            received_at: s.received_at,
            kind: r.kind.to_string(),
            mti: r.mti.clone(),
            processing_code: r.processing_code.clone(),
            amount: standing_amount(s),
            original_amount: r.amount,
            currency: r.currency.clone(),
            pan: r.pan.masked.clone(),
            terminal: r.terminal.clone(),
            merchant: r.merchant.as_ref().map(|m| m.id.clone()),
            stan: r.stan.clone(),
            rrn: r.rrn.clone(),
            destination: s.forwarded.as_ref().map(|f| f.destination.clone()),
            switch_stan: s.forwarded.as_ref().map(|f| f.switch_stan),
            state: s.phase.name().to_string(),
            code: s.code.clone(),
            auth_id: s.auth_id.clone(),
            source: s.source.map(|src| match src {
                Source::Destination => "destination".to_string(),
                Source::Switch => "switch".to_string(),
            }),
            reverses: r.original,
            reversal: s.reversal.as_ref().map(|rv| {
                if rv.acknowledged.is_some() {
                    "acknowledged".to_string()
                } else {
                    "pending".to_string()
                }
            }),
            reversal_kind: s.reversal.as_ref().map(|rv| {
                if rv.replacement.is_some_and(|left| left > 0) {
                    "partial".to_string()
                } else {
                    "full".to_string()
                }
            }),
            reversal_reason: s.reversal.as_ref().map(|rv| {
                match rv.reason {
                    ReversalReason::Timeout => "timeout",
                    ReversalReason::Terminal => "terminal",
                    ReversalReason::Recovery => "recovery",
                    ReversalReason::UnreadableAnswer => "unreadable_answer",
                }
                .to_string()
            }),
            reversal_attempts: s.reversal.as_ref().map(|rv| rv.attempts),
            risk_rule: s.risk_rule.clone(),
        }
    }
}

/// What stands of a transaction's amount once its reversal (if any) is
/// delivered: nothing after a full reversal, the replacement amount
/// (never more than the original) after a partial one.
fn standing_amount(s: &TxnState) -> u64 {
    match &s.reversal {
        None => s.request.amount,
        Some(rv) => rv.replacement.map_or(0, |left| left.min(s.request.amount)),
    }
}

/// Header of the CSV export.
pub const CSV_HEADER: &str = "id,date,received_at,kind,mti,processing_code,amount,currency,pan,terminal,merchant,stan,rrn,destination,switch_stan,state,code,auth_id,source,reverses,reversal,reversal_reason,reversal_attempts,risk_rule,original_amount,reversal_kind";

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

impl TxnView {
    /// One CSV line (RFC 4180 quoting), in [`CSV_HEADER`] order.
    pub fn csv(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        [
            self.id.to_string(),
            self.date.clone(),
            self.received_at.to_string(),
            self.kind.clone(),
            self.mti.clone(),
            self.processing_code.clone(),
            self.amount.to_string(),
            self.currency.clone(),
            self.pan.clone(),
            self.terminal.clone(),
            opt(&self.merchant),
            self.stan.clone(),
            self.rrn.clone(),
            opt(&self.destination),
            num(self.switch_stan.map(u64::from)),
            self.state.clone(),
            opt(&self.code),
            opt(&self.auth_id),
            opt(&self.source),
            num(self.reverses),
            opt(&self.reversal),
            opt(&self.reversal_reason),
            num(self.reversal_attempts.map(u64::from)),
            opt(&self.risk_rule),
            // Added later: last, so readers by position keep their columns.
            self.original_amount.to_string(),
            opt(&self.reversal_kind),
        ]
        .iter()
        .map(|v| csv_field(v))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// Counts of records by kind, over the whole log.
pub fn record_counts(dir: &Path) -> Result<BTreeMap<RecordKind, u64>, WalError> {
    let mut counts = BTreeMap::new();
    wal::scan(dir, 0, |_, entry| {
        *counts.entry(entry.kind).or_insert(0) += 1;
        Ok(())
    })?;
    Ok(counts)
}
