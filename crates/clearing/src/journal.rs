//! The journal as clearing reads it: the narrow reader API the switch's
//! journal implements. Clearing never sees the journal's storage format;
//! it reads a business day's records through [`Journal`] and [`Entry`] and
//! opens sealed PANs through [`PanVault`].

use std::path::Path;

use iso8583::kind::TxnKind;
use zeroize::Zeroizing;

/// A transaction's id: the journal's sequence number of its request.
pub type TxnId = u64;

/// One segment of the journal's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The business date its records were filed under (`YYYYMMDD`).
    pub date: String,
    /// The sequence number of its first record.
    pub first_seq: u64,
}

/// The journal could not be read, or is corrupt. Shows the journal's own
/// message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReadError(Box<dyn std::error::Error + Send + Sync>);

impl ReadError {
    /// Wraps the journal's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> ReadError {
        ReadError(Box::new(error))
    }
}

/// What a record is, known from its header without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request received from a terminal (its id is the record's
    /// sequence): [`Entry::request`].
    Request,
    /// Where a request went: [`Event::Forwarded`].
    Forwarded,
    /// The answer given to the terminal: [`Event::Responded`].
    Responded,
    /// A transaction that ended without an answer (timed out, or never
    /// processed): [`Event::Ended`].
    Ended,
    /// A reversal owed to a destination: [`Event::ReversalQueued`].
    ReversalQueued,
    /// A step clearing reads only for its transaction id (a reversal
    /// acknowledged): [`Event::Other`].
    Other,
    /// A step clearing does not read (a reversal sent, a risk decline).
    Ignored,
}

/// A record other than a request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The request is about to leave for a destination.
    Forwarded {
        /// The transaction.
        txn: TxnId,
        /// The destination's name.
        destination: String,
    },
    /// The answer given to the terminal.
    Responded {
        /// The transaction.
        txn: TxnId,
        /// 1987 response code.
        code: String,
        /// Authorisation id (field 38), on approval.
        auth_id: Option<String>,
    },
    /// The transaction ended without an answer.
    Ended {
        /// The transaction.
        txn: TxnId,
    },
    /// A reversal of `txn` is owed.
    ReversalQueued {
        /// The transaction reversed.
        txn: TxnId,
        /// The amount that stands after a partial reversal (`None`: full).
        replacement: Option<u64>,
    },
    /// Any other step of `txn`.
    Other {
        /// The transaction.
        txn: TxnId,
    },
}

impl Event {
    /// The transaction the record is about.
    pub fn txn(&self) -> TxnId {
        match self {
            Event::Forwarded { txn, .. }
            | Event::Responded { txn, .. }
            | Event::Ended { txn }
            | Event::ReversalQueued { txn, .. }
            | Event::Other { txn } => *txn,
        }
    }
}

/// The merchant of a request, as registered when it came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merchant {
    /// Field 42.
    pub id: String,
    /// Merchant category code (field 18).
    pub mcc: String,
    /// Field 43.
    pub name_location: String,
}

/// A terminal request as the journal recorded it (1987 semantics). `Debug`
/// shows the masked PAN only.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// What was asked.
    pub kind: TxnKind,
    /// Field 3.
    pub processing_code: String,
    /// Field 4, in minor units of `currency`.
    pub amount: u64,
    /// Field 49 (or the terminal's currency).
    pub currency: String,
    /// The PAN masked to first 6 / last 4.
    pub masked_pan: String,
    /// The PAN as sealed in the journal ([`PanVault::open_sealed`]).
    pub sealed_pan: Vec<u8>,
    /// Field 41.
    pub terminal: String,
    /// The terminal's merchant, when the terminal is registered.
    pub merchant: Option<Merchant>,
    /// Field 11 as sent by the terminal.
    pub stan: String,
    /// Field 12 (`hhmmss`).
    pub local_time: Option<String>,
    /// Field 13 (`MMDD`).
    pub local_date: Option<String>,
    /// Field 22, POS entry mode.
    pub entry_mode: Option<String>,
    /// Field 25, POS condition code.
    pub condition: Option<String>,
    /// Field 37.
    pub rrn: String,
    /// For a completion: the pre-authorisation it completes, when found.
    pub original: Option<TxnId>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("pan", &self.masked_pan)
            .field("amount", &self.amount)
            .field("terminal", &self.terminal)
            .field("stan", &self.stan)
            .finish_non_exhaustive()
    }
}

/// One record of the log.
pub trait Entry {
    /// Its sequence number.
    fn seq(&self) -> u64;
    /// Microseconds since the Unix epoch when it was appended.
    fn ts(&self) -> u64;
    /// What it is.
    fn kind(&self) -> Kind;
    /// For a [`Kind::Request`]: the kind of request, read without decoding
    /// the rest.
    fn request_kind(&self) -> Option<TxnKind>;
    /// A [`Kind::Request`] record, decoded; an error naming the record when
    /// it does not decode.
    fn request(&self) -> Result<Request, ReadError>;
    /// Any other record, decoded; an error naming the record when it does
    /// not decode or names a transaction after itself.
    fn event(&self) -> Result<Event, ReadError>;
}

/// The journal's log and directory, as clearing reads them.
pub trait Journal: Sync + std::fmt::Debug {
    /// The journal's directory: clearing keeps its batch records under
    /// `DIR/clearing`.
    fn dir(&self) -> &Path;
    /// The log's segments, oldest first.
    fn segments(&self) -> Result<Vec<Segment>, ReadError>;
    /// The business date now (`YYYYMMDD`), an early cutover included.
    fn business_date(&self) -> String;
    /// The business date the cutover schedule gives now (`YYYYMMDD`),
    /// ignoring an early cutover.
    fn scheduled_date(&self) -> String;
    /// Reads the log from sequence `from` up to `limit` (or its end) in
    /// order, telling `visit` each record with the business date of its
    /// segment, checking every record; a record being written at the very
    /// end is not read. The first error `visit` returns ends the reading.
    fn follow(
        &self,
        from: u64,
        limit: u64,
        visit: &mut dyn FnMut(&str, &dyn Entry) -> Result<(), ReadError>,
    ) -> Result<(), ReadError>;
}

/// Opens the PANs the journal sealed.
pub trait PanVault: Sync + std::fmt::Debug {
    /// The clear PAN of [`Request::sealed_pan`]; `None` when it does not
    /// open under this vault's key.
    fn open_sealed(&self, sealed: &[u8]) -> Option<Zeroizing<String>>;
}
