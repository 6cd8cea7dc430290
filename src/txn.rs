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

/// A terminal id (field 41) as the switch keys it: space-padded (or cut)
/// to eight bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalId([u8; 8]);

impl TerminalId {
    /// The key of a terminal id as sent.
    pub fn new(id: &str) -> TerminalId {
        let mut padded = [b' '; 8];
        for (slot, byte) in padded.iter_mut().zip(id.bytes()) {
            *slot = byte;
        }
        TerminalId(padded)
    }

    /// The eight bytes.
    pub fn bytes(&self) -> [u8; 8] {
        self.0
    }
}

/// The original data elements of a reversal (field 90): the original's STAN
/// and transmission time, as the terminal sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalData<'a> {
    /// The original's STAN (the reversal's own when field 90 is absent or
    /// too short to name one).
    pub stan: &'a str,
    /// The original's field 7 (`MMDDhhmmss`); `None` when not sent or all
    /// zeros.
    pub transmission: Option<&'a str>,
}

/// A terminal's request, typed: what the middle of the switch reads, lifted
/// once from the request at the edge (numbers parsed, texts named), with the
/// request message itself kept in 1987 semantics for translation and the
/// answer's echoed fields.
///
/// Numeric facts are parsed when the `Txn` is made; text facts are borrowed
/// from the request when asked for, so making a `Txn` copies nothing.
#[derive(Debug, Clone)]
pub struct Txn {
    kind: TxnKind,
    /// Field 4 in minor units (0 when not numeric).
    amount: u64,
    /// Field 11, parsed.
    stan: u32,
    /// Field 41, padded.
    terminal: TerminalId,
    /// Field 95's first 12 digits for a reversal: the amount that stands.
    replacement: Option<u64>,
    request: Message,
}

/// A request that cannot be made a [`Txn`]: no readable PAN, or a STAN
/// that is not a number. The request is handed back for the answer.
#[derive(Debug)]
pub struct Malformed {
    /// The request, unchanged.
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

    /// Lifts a classified request (see [`Txn::classify`]) into a `Txn`.
    pub fn new(kind: TxnKind, request: Message) -> Result<Txn, Malformed> {
        let stan = request.text(11).unwrap_or_default().parse().ok();
        let (Some(stan), true) = (stan, pan_of(&request).is_some()) else {
            return Err(Malformed { request });
        };
        let replacement = (kind == TxnKind::Reversal)
            .then(|| request.text(95).and_then(|r| r.get(..12)?.parse().ok()))
            .flatten();
        Ok(Txn {
            kind,
            amount: request.amount().unwrap_or(0),
            stan,
            terminal: TerminalId::new(request.terminal_id().unwrap_or_default()),
            replacement,
            request,
        })
    }

    /// What is asked.
    pub fn kind(&self) -> TxnKind {
        self.kind
    }

    /// The request as received (1987 field semantics).
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// The request back, for the answer.
    pub fn into_request(self) -> Message {
        self.request
    }

    /// The PAN: field 2, or the PAN part of track 2.
    pub fn pan(&self) -> Pan<'_> {
        pan_of(&self.request).unwrap_or(Pan::new(""))
    }

    /// Transaction amount (field 4) in minor units of [`Txn::currency`],
    /// exact; 0 when the field is not a number.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// Currency (field 49, ISO 4217 numeric) when the terminal sent one.
    pub fn currency(&self) -> Option<&str> {
        self.request.currency()
    }

    /// Terminal id (field 41) as sent.
    pub fn terminal_id(&self) -> &str {
        self.request.terminal_id().unwrap_or_default()
    }

    /// Terminal id, padded as the switch keys it.
    pub fn terminal(&self) -> TerminalId {
        self.terminal
    }

    /// The terminal's STAN (field 11), parsed.
    pub fn stan(&self) -> u32 {
        self.stan
    }

    /// The terminal's STAN (field 11) as sent.
    pub fn stan_text(&self) -> &str {
        self.request.text(11).unwrap_or_default()
    }

    /// The request MTI.
    pub fn mti(&self) -> Mti {
        self.request.mti()
    }

    /// The MTI class (`[class, function]`, repeat bit cleared).
    pub fn class(&self) -> [u8; 2] {
        self.request.mti().class_key()
    }

    /// Processing code (field 3).
    pub fn processing_code(&self) -> Option<&str> {
        self.request.processing_code()
    }

    /// Transmission date and time (field 7, `MMDDhhmmss`), empty if absent.
    pub fn transmission(&self) -> &str {
        self.request.transmission_time().unwrap_or_default()
    }

    /// Local time (field 12, `hhmmss`).
    pub fn local_time(&self) -> Option<&str> {
        self.request.local_time()
    }

    /// Local date (field 13, `MMDD`).
    pub fn local_date(&self) -> Option<&str> {
        self.request.local_date()
    }

    /// POS entry mode (field 22).
    pub fn entry_mode(&self) -> Option<&str> {
        self.request.pos_entry_mode()
    }

    /// POS condition code (field 25).
    pub fn condition(&self) -> Option<&str> {
        self.request.pos_condition()
    }

    /// The terminal's RRN (field 37), when it sent one.
    pub fn rrn(&self) -> Option<&str> {
        self.request.rrn()
    }

    /// Whether the terminal sent an RRN (field 37, readable or not).
    pub fn has_rrn(&self) -> bool {
        self.request.contains(37)
    }

    /// For a reversal or completion: the original it names (field 90), or
    /// failing that the request's own STAN with no transmission time.
    pub fn original(&self) -> OriginalData<'_> {
        let data = self.request.original_data();
        OriginalData {
            stan: data.and_then(|d| d.get(4..10)).unwrap_or(self.stan_text()),
            transmission: data
                .and_then(|d| d.get(10..20))
                .filter(|t| *t != "0000000000"),
        }
    }

    /// For a partial reversal (field 95): the amount that stands.
    pub fn replacement(&self) -> Option<u64> {
        self.replacement
    }
}

/// The PAN of a request: field 2, or the PAN part of track 2.
fn pan_of(request: &Message) -> Option<Pan<'_>> {
    request.pan().or_else(|| request.track2().map(|t| t.pan()))
}
