//! The canonical transaction: what the middle of the switch knows.
//!
//! A terminal's request is decoded in its own dialect at the edge, then lifted
//! into a [`Txn`]: the typed facts the switch decides on (kind, PAN, amount,
//! terminal, STAN …) plus the request in ISO 8583:1987 field semantics, which
//! every 1987 dialect shares. Destination adapters turn it into their own
//! dialect (translating to 1993 where a bank needs it) and back.

use crate::card::Pan;
use crate::iso8583::{Message, Mti};

pub use crate::iso8583::kind::TxnKind;

/// Why a request is refused by the switch itself. Each maps to exactly one
/// ISO 8583:1987 response code, in [`Refusal::response_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The message could not be decoded or misses a mandatory field.
    #[error("format error")]
    Format,
    /// The MTI or processing code is not one the switch supports.
    #[error("invalid transaction")]
    InvalidTransaction,
    /// Field 41 names no registered terminal.
    #[error("unknown terminal")]
    UnknownTerminal,
    /// The terminal is disabled, or may not do this kind of transaction.
    #[error("transaction not permitted to terminal")]
    NotPermitted,
    /// The PAN fails the Luhn check.
    #[error("invalid card number")]
    InvalidCard,
    /// No route for the PAN's BIN.
    #[error("no such issuer")]
    NoRoute,
    /// A reversal or a completion names an original the switch does not
    /// know (for a completion: no approved pre-authorisation).
    #[error("original transaction not found")]
    OriginalNotFound,
    /// A completion for more than its pre-authorisation approved.
    #[error("invalid amount")]
    InvalidAmount,
    /// The destination has no link up, or did not answer in time.
    #[error("issuer unavailable")]
    IssuerUnavailable,
    /// Something failed inside the switch.
    #[error("system malfunction")]
    System,
    /// The terminal's MAC is missing or wrong.
    #[error("security violation")]
    SecurityViolation,
    /// The PIN block does not decipher to a valid block under the
    /// terminal's key.
    #[error("incorrect PIN block")]
    PinBlock,
    /// A risk rule declined the request; the rule chose the code (61, 62,
    /// 65, 57 or 58).
    #[error("declined by a risk rule ({0})")]
    Risk(&'static str),
}

impl Refusal {
    /// The ISO 8583:1987 response code (field 39) for this refusal.
    pub fn response_code(self) -> &'static str {
        match self {
            Refusal::Format => "30",
            Refusal::InvalidTransaction => "12",
            Refusal::UnknownTerminal => "03",
            Refusal::NotPermitted => "58",
            Refusal::InvalidCard => "14",
            Refusal::NoRoute => "15",
            Refusal::OriginalNotFound => "25",
            Refusal::InvalidAmount => "13",
            Refusal::IssuerUnavailable => "91",
            Refusal::System => "96",
            Refusal::SecurityViolation => "63",
            Refusal::PinBlock => "55",
            Refusal::Risk(code) => code,
        }
    }
}

/// A terminal's request, typed, with the request message in 1987 semantics.
#[derive(Debug, Clone)]
pub struct Txn {
    /// What is asked.
    pub kind: TxnKind,
    /// The request as received (1987 field semantics).
    pub request: Message,
}

impl Txn {
    /// What a decoded terminal request asks for. Refuses what the switch
    /// does not handle, and requests that miss the fields every kind needs.
    pub fn classify(request: &Message) -> Result<TxnKind, Refusal> {
        let kind = match (request.mti().as_str(), request.processing_code()) {
            ("0100", Some(_)) => TxnKind::Authorization,
            ("0200", Some(pc)) if pc.starts_with("00") => TxnKind::Purchase,
            ("0200", Some(pc)) if pc.starts_with("20") => TxnKind::Refund,
            ("0400" | "0401" | "0420" | "0421", _) => TxnKind::Reversal,
            ("0220" | "0221", Some(pc)) if pc.starts_with("00") => TxnKind::Completion,
            ("0100" | "0200", None) => return Err(Refusal::Format),
            _ => return Err(Refusal::InvalidTransaction),
        };
        if [4, 11, 41].iter().any(|f| !request.contains(*f))
            || (!request.contains(2) && !request.contains(35))
        {
            return Err(Refusal::Format);
        }
        Ok(kind)
    }

    /// The PAN: field 2, or the PAN part of track 2.
    pub fn pan(&self) -> Option<Pan<'_>> {
        self.request
            .pan()
            .or_else(|| self.request.track2().map(|t| t.pan()))
    }

    /// Terminal id (field 41).
    pub fn terminal_id(&self) -> &str {
        self.request.terminal_id().unwrap_or_default()
    }

    /// The terminal's STAN (field 11) as sent.
    pub fn stan(&self) -> &str {
        self.request.text(11).unwrap_or_default()
    }

    /// The request MTI.
    pub fn mti(&self) -> Mti {
        self.request.mti()
    }
}
