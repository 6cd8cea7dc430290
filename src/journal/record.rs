//! What the journal records: one [`Record`] per step of a transaction's life.
//!
//! ```text
//! Received ─▶ Forwarded ─▶ Responded                      (answered)
//!    │            └──────▶ TimedOut ─▶ ReversalQueued ─▶ ReversalAcknowledged
//!    └─▶ Responded (refused by the switch, never forwarded)
//! recovery: Received without Forwarded ─▶ NotProcessed
//!           Forwarded without an end    ─▶ ReversalQueued
//! ```
//!
//! Payloads are postcard (a compact, self-delimiting binary serde format).
//! No record holds a clear PAN, track 2, CVV or PIN block: the PAN is a
//! [`SealedPan`].

use serde::{Deserialize, Serialize};

use super::vault::SealedPan;
use crate::txn::TxnKind;

/// A transaction's id: the sequence number of its `Received` record.
pub type TxnId = u64;

/// The merchant a terminal belongs to, as registered when the request came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    /// Field 42.
    pub id: String,
    /// Merchant category code (field 18).
    pub mcc: String,
    /// Field 43.
    pub name_location: String,
}

/// A terminal request as the switch received it (1987 semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// What was asked.
    pub kind: TxnKind,
    /// Request MTI.
    pub mti: String,
    /// Field 3.
    pub processing_code: String,
    /// Field 4, in minor units of `currency`.
    pub amount: u64,
    /// Field 49 (or the terminal's currency).
    pub currency: String,
    /// The card.
    pub pan: SealedPan,
    /// Field 41.
    pub terminal: String,
    /// The terminal's merchant, when the terminal is registered.
    pub merchant: Option<Merchant>,
    /// Field 11 as sent by the terminal.
    pub stan: String,
    /// Field 7 as sent by the terminal.
    pub transmission: String,
    /// Field 12 (`hhmmss`).
    pub local_time: Option<String>,
    /// Field 13 (`MMDD`).
    pub local_date: Option<String>,
    /// Field 22, POS entry mode.
    pub entry_mode: Option<String>,
    /// Field 25, POS condition code.
    pub condition: Option<String>,
    /// Field 37 (the terminal's, or the one the switch gave).
    pub rrn: String,
    /// For a reversal: the transaction it reverses, when found.
    pub original: Option<TxnId>,
    /// For a partial reversal (field 95): the amount that stands.
    pub replacement: Option<u64>,
}

/// Where a request went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// Destination name.
    pub destination: String,
    /// The switch's STAN on that destination.
    pub switch_stan: u32,
    /// Field 7 as sent to the destination.
    pub transmission: String,
    /// For a 1993 destination, field 12 as sent (`YYMMDDhhmmss`).
    pub local_93: Option<String>,
}

/// Who produced a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The destination answered.
    Destination,
    /// The switch answered itself (refusal, reversal accepted, replay).
    Switch,
}

/// Why a reversal was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReversalReason {
    /// The destination did not answer in time.
    Timeout,
    /// The terminal sent a reversal (0400/0420).
    Terminal,
    /// Found forwarded without an end when the switch started.
    Recovery,
    /// The destination answered without a readable outcome (no field 39,
    /// or one outside its code set): it may have approved.
    UnreadableAnswer,
}

/// One step in a transaction's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A terminal request was received (its id is this record's sequence).
    Received(Box<Received>),
    /// The request is about to leave for a destination (durable first).
    Forwarded {
        /// The transaction.
        txn: TxnId,
        /// Where it goes.
        to: Forwarded,
    },
    /// The answer given to the terminal.
    Responded {
        /// The transaction.
        txn: TxnId,
        /// 1987 response code.
        code: String,
        /// Authorisation id (field 38), on approval.
        auth_id: Option<String>,
        /// Who decided.
        source: Source,
    },
    /// The destination did not answer in time; the terminal got 91.
    TimedOut {
        /// The transaction.
        txn: TxnId,
    },
    /// A reversal of `txn` is owed to its destination (store-and-forward).
    ReversalQueued {
        /// The transaction reversed.
        txn: TxnId,
        /// Why.
        reason: ReversalReason,
        /// Amount that stands after a partial reversal (`None`: full).
        replacement: Option<u64>,
    },
    /// The store-and-forward worker sent the reversal (attempt 1 is 0420,
    /// later ones 0421).
    ReversalSent {
        /// The transaction reversed.
        txn: TxnId,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// The destination acknowledged the reversal.
    ReversalAcknowledged {
        /// The transaction reversed.
        txn: TxnId,
        /// The destination's response code (1987).
        code: String,
    },
    /// Received before a crash and never forwarded: nothing to undo.
    NotProcessed {
        /// The transaction.
        txn: TxnId,
    },
    /// A risk rule declined the request (its answer follows in a
    /// `Responded` record).
    RiskDeclined {
        /// The transaction.
        txn: TxnId,
        /// The rule's id.
        rule: String,
    },
}

impl Record {
    /// The record kind byte written in the frame header.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Received(_) => RecordKind::Received,
            Record::Forwarded { .. } => RecordKind::Forwarded,
            Record::Responded { .. } => RecordKind::Responded,
            Record::TimedOut { .. } => RecordKind::TimedOut,
            Record::ReversalQueued { .. } => RecordKind::ReversalQueued,
            Record::ReversalSent { .. } => RecordKind::ReversalSent,
            Record::ReversalAcknowledged { .. } => RecordKind::ReversalAcknowledged,
            Record::NotProcessed { .. } => RecordKind::NotProcessed,
            Record::RiskDeclined { .. } => RecordKind::RiskDeclined,
        }
    }

    /// The transaction the record is about.
    pub fn txn(&self, seq: u64) -> TxnId {
        match self {
            Record::Received(_) => seq,
            Record::Forwarded { txn, .. }
            | Record::Responded { txn, .. }
            | Record::TimedOut { txn }
            | Record::ReversalQueued { txn, .. }
            | Record::ReversalSent { txn, .. }
            | Record::ReversalAcknowledged { txn, .. }
            | Record::NotProcessed { txn }
            | Record::RiskDeclined { txn, .. } => *txn,
        }
    }
}

/// Record kinds as numbered in the frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// [`Record::Received`].
    Received = 1,
    /// [`Record::Forwarded`].
    Forwarded = 2,
    /// [`Record::Responded`].
    Responded = 3,
    /// [`Record::TimedOut`].
    TimedOut = 4,
    /// [`Record::ReversalQueued`].
    ReversalQueued = 5,
    /// [`Record::ReversalSent`].
    ReversalSent = 6,
    /// [`Record::ReversalAcknowledged`].
    ReversalAcknowledged = 7,
    /// [`Record::NotProcessed`].
    NotProcessed = 8,
    /// [`Record::RiskDeclined`].
    RiskDeclined = 9,
}

impl RecordKind {
    /// Every kind, in number order.
    pub const ALL: [RecordKind; 9] = [
        RecordKind::Received,
        RecordKind::Forwarded,
        RecordKind::Responded,
        RecordKind::TimedOut,
        RecordKind::ReversalQueued,
        RecordKind::ReversalSent,
        RecordKind::ReversalAcknowledged,
        RecordKind::NotProcessed,
        RecordKind::RiskDeclined,
    ];

    /// The kind numbered `byte`.
    pub fn from_byte(byte: u8) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// Name for listings.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Received => "received",
            RecordKind::Forwarded => "forwarded",
            RecordKind::Responded => "responded",
            RecordKind::TimedOut => "timed_out",
            RecordKind::ReversalQueued => "reversal_queued",
            RecordKind::ReversalSent => "reversal_sent",
            RecordKind::ReversalAcknowledged => "reversal_acknowledged",
            RecordKind::NotProcessed => "not_processed",
            RecordKind::RiskDeclined => "risk_declined",
        }
    }
}

/// Serialises a record's payload.
pub fn encode(record: &Record) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    postcard::to_stdvec(record).unwrap_or_default()
}

/// Reads a record's payload; `None` if it is not a valid record.
pub fn decode(payload: &[u8]) -> Option<Record> {
    postcard::from_bytes(payload).ok()
}
