//! Reconciliation: what the switch cleared ([`SwitchItem`], from each
//! [`Presentment`]) against what a bank says it settled ([`BankItem`], read
//! from the bank's settlement file), and the breaks between the two.
//!
//! # Bank settlement file, CSV
//!
//! The format the bank simulator writes
//! ([`Ledger::settlement_csv`](crate::sim::ledger::Ledger::settlement_csv))
//! and `recon --format csv` reads:
//!
//! ```text
//! rrn,ard,pan,amount,currency,auth_code,type
//! 612300000001,24123456330000000123475,476173******0119,1250,978,A00001,debit
//! 612300000002,,476173******0127,990,978,A00002,credit
//! 612300000003,,545454******5454,300,840,A00003,debit
//! TRAILER,3,1550,990
//! ```
//!
//! * The first line is exactly that header.
//! * One line per settled item, seven comma-separated columns, no quoting:
//!   * `rrn` — retrieval reference number (field 37), 1–12 ASCII letters,
//!     digits or spaces;
//!   * `ard` — acquirer reference data, 23 digits, or empty when the bank
//!     does not know it (then the line is matched by RRN);
//!   * `pan` — the PAN masked to its first 6 and last 4 digits with `*`
//!     between (13–19 characters); a clear PAN is refused;
//!   * `amount` — integer minor units of `currency`, digits only;
//!   * `currency` — ISO 4217 numeric code, 3 digits;
//!   * `auth_code` — approval code (field 38), 0–6 ASCII letters, digits or
//!     spaces;
//!   * `type` — `debit` (the card is charged) or `credit` (refunded).
//! * The last line is the trailer `TRAILER,<count>,<sum of debits>,<sum of
//!   credits>`: the number of item lines and the sums of their amounts per
//!   type, checked when reading.
//!
//! Lines end with `\n` (a `\r` before it is accepted). Reading is strict: a
//! wrong column count, a malformed field, a blank line, a missing or wrong
//! trailer, anything after the trailer is a [`ReconError`] naming the line
//! number (1 = header) and the column — never the value, which could be card
//! data.
//!
//! # Bank settlement file, IPM
//!
//! An IPM file ([`read_bank_ipm`], `recon --format ipm`) as [`super::ipm`]
//! reads it: every `1240` presentment becomes a [`BankItem`] (DE 31 ARD,
//! DE 37 RRN if present, DE 4 amount, DE 49 currency, DE 2 PAN — masked at
//! once, DE 38 approval code, DE 3 processing code: `20…` is a credit);
//! `1644` file header and trailer messages are skipped, any other message
//! type is refused. The "line" of an IPM item is its record number in the
//! file (1 = the header), and errors name it and the data element.
//!
//! # Matching
//!
//! A bank item is matched by its ARD when it has one, else by its RRN. When
//! several switch items share the key, the one with equal amount, currency,
//! type and PAN is preferred, then one with equal amount and currency, then
//! the first in switch order. A matched pair that differs in amount,
//! currency, masked PAN or type is a break (one per difference), as are
//! switch items no bank line claimed ([`BreakKind::MissingAtBank`]) and bank
//! lines matching no switch item ([`BreakKind::UnknownToSwitch`]). Breaks are
//! sorted by kind, key, RRN, bank line and switch transaction, so the same
//! inputs always give the same report.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ipm::IpmError;
use crate::item::Presentment;
use crate::journal::TxnId;

/// The header line of a CSV bank settlement file.
pub const CSV_HEADER: &str = "rrn,ard,pan,amount,currency,auth_code,type";

/// First column of the trailer line.
const TRAILER: &str = "TRAILER";

/// Debit or credit of the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The card is charged (purchase, completion).
    Debit,
    /// The card is credited (refund).
    Credit,
}

impl Direction {
    /// Name in files: `debit` or `credit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "debit",
            Direction::Credit => "credit",
        }
    }

    /// The direction a name in a file stands for.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "debit" => Some(Direction::Debit),
            "credit" => Some(Direction::Credit),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transaction the switch cleared, as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchItem {
    /// The journal's transaction id.
    pub txn: TxnId,
    /// Acquirer reference data (23 digits).
    pub ard: String,
    /// Retrieval reference number (field 37).
    pub rrn: String,
    /// The amount cleared, in minor units of `currency`.
    pub amount: u64,
    /// ISO 4217 numeric currency code.
    pub currency: String,
    /// PAN masked to first 6 / last 4.
    pub masked_pan: String,
    /// Debit or credit of the card.
    pub direction: Direction,
    /// The destination whose clearing file carried it.
    pub destination: String,
}

impl From<&Presentment> for SwitchItem {
    fn from(p: &Presentment) -> SwitchItem {
        SwitchItem {
            txn: p.txn,
            ard: p.ard.clone(),
            rrn: p.rrn.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            masked_pan: p.masked_pan.clone(),
            direction: if p.kind.is_credit() {
                Direction::Credit
            } else {
                Direction::Debit
            },
            destination: p.destination.clone(),
        }
    }
}

/// One item of a bank's settlement file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankItem {
    /// Where it is in the file: line number for CSV (1 = header), message
    /// number for IPM; 0 for an item not read from a file.
    pub line: usize,
    /// Retrieval reference number.
    pub rrn: String,
    /// Acquirer reference data; empty when the bank does not give it.
    pub ard: String,
    /// PAN masked to first 6 / last 4.
    pub masked_pan: String,
    /// Amount in minor units of `currency`.
    pub amount: u64,
    /// ISO 4217 numeric currency code, 3 digits.
    pub currency: String,
    /// Approval code (field 38); may be empty.
    pub auth_code: String,
    /// Debit or credit of the card.
    pub direction: Direction,
}

/// Format of a bank settlement file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BankFormat {
    /// The CSV format described in the [module documentation](self).
    Csv,
    /// An IPM file of `1240` presentments.
    Ipm,
}

/// Why a bank settlement file cannot be reconciled.
#[derive(Debug, Error)]
pub enum ReconError {
    /// The file cannot be opened.
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An error inside a named file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: Box<ReconError>,
    },
    /// Reading failed.
    #[error("line {line}: read error: {source}")]
    Io {
        /// The line being read.
        line: usize,
        /// Why.
        source: io::Error,
    },
    /// The file is empty (no header line).
    #[error("line 1: empty file, expected the header `{CSV_HEADER}`")]
    Empty,
    /// The first line is not the header.
    #[error("line {line}: expected the header `{CSV_HEADER}`")]
    Header {
        /// The line (1).
        line: usize,
    },
    /// A line is not UTF-8.
    #[error("line {line}: not UTF-8 text")]
    NotText {
        /// The line.
        line: usize,
    },
    /// A line is longer than any valid line.
    #[error("line {line}: longer than {max} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// A line has the wrong number of columns.
    #[error("line {line}: {found} column(s), expected {expected}")]
    Columns {
        /// The line.
        line: usize,
        /// Columns found.
        found: usize,
        /// Columns expected.
        expected: usize,
    },
    /// A column holds a malformed value.
    #[error("line {line}, column `{column}`: {reason}")]
    Field {
        /// The line.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The trailer's count or sums disagree with the lines, or it is
    /// malformed.
    #[error("line {line} (trailer): {reason}")]
    Trailer {
        /// The trailer's line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file ends without a trailer.
    #[error("line {line}: end of file without the trailer `TRAILER,<count>,<debits>,<credits>`")]
    MissingTrailer {
        /// The line where the trailer was expected.
        line: usize,
    },
    /// A line follows the trailer.
    #[error("line {line}: text after the trailer")]
    AfterTrailer {
        /// The line.
        line: usize,
    },
    /// An IPM file is not well formed (the error names the record and
    /// byte offset).
    #[error("{0}")]
    IpmFile(#[source] IpmError),
    /// An IPM message of a type reconciliation cannot take.
    #[error("IPM record {message}: {reason}")]
    IpmMessage {
        /// The message's record number (1 = first).
        message: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A data element of an IPM presentment is missing or malformed.
    #[error("IPM record {message}, DE {de}: {reason}")]
    IpmField {
        /// The message's record number (1 = first).
        message: u64,
        /// The data element.
        de: u8,
        /// What is wrong (never the value: it may be card data).
        reason: &'static str,
    },
    /// A destination given to reconcile cannot be a destination's name
    /// (the break report is named after it).
    #[error(
        "`{0}` is not a destination name (destinations are named with letters, digits, `_` and `-`)"
    )]
    Destination(String),
}

/// The default break report's file name: `breaks-DEST-YYYYMMDD.csv` for
/// one destination (reconciling bank A, then bank B, leaves both reports),
/// `breaks-YYYYMMDD.csv` for every destination at once. A destination name
/// is letters, digits, `_` and `-` (as `[clearing]` requires of
/// destinations), so no two (destination, date) pairs share a name and the
/// name never leaves the output directory.
pub fn breaks_file_name(date: &str, destination: Option<&str>) -> Result<String, ReconError> {
    match destination {
        None => Ok(format!("breaks-{date}.csv")),
        Some(d)
            if !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(format!("breaks-{d}-{date}.csv"))
        }
        Some(d) => Err(ReconError::Destination(d.to_string())),
    }
}

impl ReconError {
    /// This error, naming `path`.
    fn in_file(self, path: &Path) -> ReconError {
        ReconError::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}
mod bank_file;
mod breaks;

pub use bank_file::{is_masked_pan, read_bank_csv, read_bank_file, read_bank_ipm, write_bank_csv};
pub use breaks::{BREAKS_HEADER, Break, BreakKind, Recon, Totals, reconcile};

#[cfg(test)]
mod tests;
