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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::ipm::{IpmError, IpmMessage, IpmReader};
use super::item::Presentment;
use crate::journal::TxnId;
use iso8583::card::mask_pan;

/// The header line of a CSV bank settlement file.
pub const CSV_HEADER: &str = "rrn,ard,pan,amount,currency,auth_code,type";

/// First column of the trailer line.
const TRAILER: &str = "TRAILER";

/// Longest line accepted in a CSV bank file (bytes, without the newline).
const MAX_LINE: usize = 1024;

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

/// Reads one line into `buf` (newline and a `\r` before it removed).
/// `Ok(false)` at the end of the input.
fn next_line(input: &mut impl BufRead, buf: &mut Vec<u8>, line: usize) -> Result<bool, ReconError> {
    buf.clear();
    let limit = u64::try_from(MAX_LINE)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let read = input
        .by_ref()
        .take(limit)
        .read_until(b'\n', buf)
        .map_err(|source| ReconError::Io { line, source })?;
    if read == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > MAX_LINE {
        return Err(ReconError::LineTooLong {
            line,
            max: MAX_LINE,
        });
    }
    Ok(true)
}

fn field_error(line: usize, column: &'static str, reason: impl Into<String>) -> ReconError {
    ReconError::Field {
        line,
        column,
        reason: reason.into(),
    }
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn alnum_or_space(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
}

/// Whether `text` is a PAN masked to first 6 / last 4: 13–19 characters,
/// six digits, at least three `*`, four digits.
pub fn is_masked_pan(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(13..=19).contains(&bytes.len()) {
        return false;
    }
    let (head, rest) = bytes.split_at(6);
    let (middle, tail) = rest.split_at(rest.len() - 4);
    head.iter().all(u8::is_ascii_digit)
        && middle.iter().all(|&b| b == b'*')
        && tail.iter().all(u8::is_ascii_digit)
}

/// Parses an amount of digits in minor units.
fn amount(text: &str, line: usize, column: &'static str) -> Result<u64, ReconError> {
    if !all_digits(text) {
        return Err(field_error(line, column, "expected digits (minor units)"));
    }
    text.parse()
        .map_err(|_| field_error(line, column, "amount too large"))
}

/// Checks an ISO 4217 numeric currency code.
fn currency(text: &str, line: usize, column: &'static str) -> Result<String, ReconError> {
    if text.len() != 3 || !all_digits(text) || text == "000" {
        return Err(field_error(
            line,
            column,
            "expected an ISO 4217 numeric currency code (3 digits)",
        ));
    }
    Ok(text.to_string())
}

/// One item line of the CSV file.
fn parse_item(text: &str, line: usize) -> Result<BankItem, ReconError> {
    let columns: Vec<&str> = text.split(',').collect();
    let [rrn, ard, pan, amount_text, currency_text, auth_code, kind] = columns.as_slice() else {
        return Err(ReconError::Columns {
            line,
            found: columns.len(),
            expected: 7,
        });
    };
    if rrn.is_empty() || rrn.len() > 12 || !alnum_or_space(rrn) || rrn.trim().is_empty() {
        return Err(field_error(
            line,
            "rrn",
            "expected 1-12 letters, digits or spaces",
        ));
    }
    if !ard.is_empty() && (ard.len() != 23 || !all_digits(ard)) {
        return Err(field_error(line, "ard", "expected 23 digits or nothing"));
    }
    if !is_masked_pan(pan) {
        return Err(field_error(
            line,
            "pan",
            "expected a PAN masked to first 6 / last 4 (e.g. 476173******0119)",
        ));
    }
    let amount = amount(amount_text, line, "amount")?;
    let currency = currency(currency_text, line, "currency")?;
    if auth_code.len() > 6 || !alnum_or_space(auth_code) {
        return Err(field_error(
            line,
            "auth_code",
            "expected at most 6 letters, digits or spaces",
        ));
    }
    let direction = Direction::parse(kind)
        .ok_or_else(|| field_error(line, "type", "expected `debit` or `credit`"))?;
    Ok(BankItem {
        line,
        rrn: (*rrn).to_string(),
        ard: (*ard).to_string(),
        masked_pan: (*pan).to_string(),
        amount,
        currency,
        auth_code: (*auth_code).to_string(),
        direction,
    })
}

/// Sums of the items of a file, as its trailer states them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sums {
    count: u128,
    debits: u128,
    credits: u128,
}

impl Sums {
    fn add(&mut self, item: &BankItem) {
        self.count = self.count.saturating_add(1);
        let amount = u128::from(item.amount);
        match item.direction {
            Direction::Debit => self.debits = self.debits.saturating_add(amount),
            Direction::Credit => self.credits = self.credits.saturating_add(amount),
        }
    }
}

/// Checks the trailer line against the items read.
fn check_trailer(text: &str, line: usize, sums: Sums) -> Result<(), ReconError> {
    let trailer_error = |reason: String| ReconError::Trailer { line, reason };
    let columns: Vec<&str> = text.split(',').collect();
    let [_, count, debits, credits] = columns.as_slice() else {
        return Err(trailer_error(format!(
            "{} column(s), expected 4: TRAILER,<count>,<debits>,<credits>",
            columns.len()
        )));
    };
    let mut stated = [0u128; 3];
    for ((slot, value), name) in stated.iter_mut().zip([count, debits, credits]).zip([
        "count",
        "sum of debits",
        "sum of credits",
    ]) {
        if !all_digits(value) {
            return Err(trailer_error(format!("{name}: expected digits")));
        }
        *slot = value
            .parse()
            .map_err(|_| trailer_error(format!("{name}: too large")))?;
    }
    let [count, debits, credits] = stated;
    if count != sums.count {
        return Err(trailer_error(format!(
            "states {count} item line(s), the file has {}",
            sums.count
        )));
    }
    if debits != sums.debits {
        return Err(trailer_error(format!(
            "states debits of {debits}, the lines sum to {}",
            sums.debits
        )));
    }
    if credits != sums.credits {
        return Err(trailer_error(format!(
            "states credits of {credits}, the lines sum to {}",
            sums.credits
        )));
    }
    Ok(())
}

/// Reads a CSV bank settlement file (format in the [module
/// documentation](self)): its items in file order, once the trailer has
/// been checked.
pub fn read_bank_csv(mut input: impl BufRead) -> Result<Vec<BankItem>, ReconError> {
    let mut buf = Vec::new();
    let mut line = 1;
    if !next_line(&mut input, &mut buf, line)? {
        return Err(ReconError::Empty);
    }
    let header = buf.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&buf);
    if header != CSV_HEADER.as_bytes() {
        return Err(ReconError::Header { line });
    }
    let mut items = Vec::new();
    let mut sums = Sums::default();
    loop {
        line += 1;
        if !next_line(&mut input, &mut buf, line)? {
            return Err(ReconError::MissingTrailer { line });
        }
        let text = std::str::from_utf8(&buf).map_err(|_| ReconError::NotText { line })?;
        if text == TRAILER || text.starts_with("TRAILER,") {
            check_trailer(text, line, sums)?;
            break;
        }
        let item = parse_item(text, line)?;
        sums.add(&item);
        items.push(item);
    }
    line += 1;
    if next_line(&mut input, &mut buf, line)? {
        return Err(ReconError::AfterTrailer { line });
    }
    Ok(items)
}

/// Writes `items` as a CSV bank settlement file: header, one line per
/// item, trailer. The items' `line` is not written.
pub fn write_bank_csv(items: &[BankItem], mut out: impl Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    let mut sums = Sums::default();
    for item in items {
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            item.rrn,
            item.ard,
            item.masked_pan,
            item.amount,
            item.currency,
            item.auth_code,
            item.direction
        )?;
        sums.add(item);
    }
    writeln!(
        out,
        "{TRAILER},{},{},{}",
        sums.count, sums.debits, sums.credits
    )?;
    out.flush()
}

/// Reads a bank settlement file in `format`; errors name the file.
pub fn read_bank_file(path: &Path, format: BankFormat) -> Result<Vec<BankItem>, ReconError> {
    let file = File::open(path).map_err(|source| ReconError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let items = match format {
        BankFormat::Csv => read_bank_csv(BufReader::new(file)),
        BankFormat::Ipm => read_bank_ipm(file),
    };
    items.map_err(|e| e.in_file(path))
}

/// Reads an IPM bank file ([`super::ipm`]; 1014-blocked or plain VBS,
/// detected from its first bytes): one [`BankItem`] per `1240` message, its
/// `line` the message's record number. `1644` file header and trailer
/// messages are skipped; any other message type is refused (it could carry
/// an amount this reconciliation would silently ignore).
pub fn read_bank_ipm(input: impl Read) -> Result<Vec<BankItem>, ReconError> {
    let reader = IpmReader::detect(input).map_err(ReconError::IpmFile)?;
    let mut items = Vec::new();
    for message in reader {
        let message = message.map_err(ReconError::IpmFile)?;
        match message.mti.as_str() {
            "1644" => {}
            "1240" => items.push(ipm_item(&message)?),
            _ => {
                return Err(ReconError::IpmMessage {
                    message: message.record,
                    reason: "message type is neither 1240 (presentment) nor 1644 (file header or trailer)",
                });
            }
        }
    }
    Ok(items)
}

/// The [`BankItem`] of one `1240` message.
fn ipm_item(message: &IpmMessage) -> Result<BankItem, ReconError> {
    let err = |de: u8, reason: &'static str| ReconError::IpmField {
        message: message.record,
        de,
        reason,
    };
    let pan = message.field(2).ok_or_else(|| err(2, "missing"))?;
    if !(13..=19).contains(&pan.len()) || !all_digits(pan) {
        return Err(err(2, "expected a PAN of 13 to 19 digits"));
    }
    let masked_pan = mask_pan(pan);
    let processing = message.field(3).ok_or_else(|| err(3, "missing"))?;
    if processing.len() != 6 || !all_digits(processing) {
        return Err(err(3, "expected 6 digits"));
    }
    let direction = if processing.starts_with("20") {
        Direction::Credit
    } else {
        Direction::Debit
    };
    let amount_text = message.field(4).ok_or_else(|| err(4, "missing"))?;
    if !all_digits(amount_text) {
        return Err(err(4, "expected digits (minor units)"));
    }
    let amount = amount_text
        .parse()
        .map_err(|_| err(4, "amount too large"))?;
    let ard = message.field(31).unwrap_or_default();
    if !ard.is_empty() && (ard.len() != 23 || !all_digits(ard)) {
        return Err(err(31, "expected 23 digits"));
    }
    let rrn = message.field(37).unwrap_or_default().trim_end();
    if rrn.len() > 12 || !alnum_or_space(rrn) {
        return Err(err(37, "expected at most 12 letters, digits or spaces"));
    }
    if ard.is_empty() && rrn.trim().is_empty() {
        return Err(err(31, "missing, and no DE 37 to match by instead"));
    }
    let currency = message.field(49).ok_or_else(|| err(49, "missing"))?;
    if currency.len() != 3 || !all_digits(currency) || currency == "000" {
        return Err(err(
            49,
            "expected an ISO 4217 numeric currency code (3 digits)",
        ));
    }
    let auth_code = message.field(38).unwrap_or_default().trim_end();
    if auth_code.len() > 6 || !alnum_or_space(auth_code) {
        return Err(err(38, "expected at most 6 letters, digits or spaces"));
    }
    Ok(BankItem {
        line: usize::try_from(message.record).unwrap_or(usize::MAX),
        rrn: rrn.to_string(),
        ard: ard.to_string(),
        masked_pan,
        amount,
        currency: currency.to_string(),
        auth_code: auth_code.to_string(),
        direction,
    })
}

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakKind {
    /// Cleared by the switch, not in the bank's file.
    MissingAtBank,
    /// In the bank's file, not cleared by the switch.
    UnknownToSwitch,
    /// Matched, but the amounts differ.
    AmountMismatch,
    /// Matched, but the currencies differ.
    CurrencyMismatch,
    /// Matched, but the masked PANs differ.
    PanMismatch,
    /// Matched, but one side debits the card and the other credits it.
    DirectionMismatch,
}

impl BreakKind {
    /// Every kind, in report order.
    pub const ALL: [BreakKind; 6] = [
        BreakKind::MissingAtBank,
        BreakKind::UnknownToSwitch,
        BreakKind::AmountMismatch,
        BreakKind::CurrencyMismatch,
        BreakKind::PanMismatch,
        BreakKind::DirectionMismatch,
    ];

    /// Name in the breaks file and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::MissingAtBank => "missing_at_bank",
            BreakKind::UnknownToSwitch => "unknown_to_switch",
            BreakKind::AmountMismatch => "amount_mismatch",
            BreakKind::CurrencyMismatch => "currency_mismatch",
            BreakKind::PanMismatch => "pan_mismatch",
            BreakKind::DirectionMismatch => "type_mismatch",
        }
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One break: a switch item, a bank item or a pair that disagree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Break {
    /// What kind.
    pub kind: BreakKind,
    /// The matching key: the ARD when the bank line (or, for a missing
    /// item, the switch item) has one, else the RRN.
    pub key: String,
    /// RRN (the switch's when there is a switch item).
    pub rrn: String,
    /// ARD (the switch's when there is a switch item); may be empty.
    pub ard: String,
    /// Line of the bank item (message number for IPM), if any.
    pub bank_line: Option<usize>,
    /// The switch's transaction id, if any.
    pub switch_txn: Option<TxnId>,
    /// The switch's amount, if any.
    pub switch_amount: Option<u64>,
    /// The bank's amount, if any.
    pub bank_amount: Option<u64>,
    /// The switch's currency, if any.
    pub switch_currency: Option<String>,
    /// The bank's currency, if any.
    pub bank_currency: Option<String>,
    /// The switch's masked PAN, if any.
    pub switch_pan: Option<String>,
    /// The bank's masked PAN, if any.
    pub bank_pan: Option<String>,
    /// The switch's debit or credit, if any.
    pub switch_direction: Option<Direction>,
    /// The bank's debit or credit, if any.
    pub bank_direction: Option<Direction>,
}

impl Break {
    fn new(kind: BreakKind, switch: Option<&SwitchItem>, bank: Option<&BankItem>) -> Break {
        let key = match (bank, switch) {
            (Some(b), _) if !b.ard.is_empty() => b.ard.clone(),
            (Some(b), _) => b.rrn.clone(),
            (None, Some(s)) if !s.ard.is_empty() => s.ard.clone(),
            (None, Some(s)) => s.rrn.clone(),
            (None, None) => String::new(),
        };
        let rrn = switch
            .map(|s| s.rrn.clone())
            .or_else(|| bank.map(|b| b.rrn.clone()))
            .unwrap_or_default();
        let ard = switch
            .map(|s| s.ard.clone())
            .filter(|a| !a.is_empty())
            .or_else(|| bank.map(|b| b.ard.clone()))
            .unwrap_or_default();
        Break {
            kind,
            key,
            rrn,
            ard,
            bank_line: bank.map(|b| b.line),
            switch_txn: switch.map(|s| s.txn),
            switch_amount: switch.map(|s| s.amount),
            bank_amount: bank.map(|b| b.amount),
            switch_currency: switch.map(|s| s.currency.clone()),
            bank_currency: bank.map(|b| b.currency.clone()),
            switch_pan: switch.map(|s| s.masked_pan.clone()),
            bank_pan: bank.map(|b| b.masked_pan.clone()),
            switch_direction: switch.map(|s| s.direction),
            bank_direction: bank.map(|b| b.direction),
        }
    }

    /// The masked PAN for the breaks file: the switch's, else the bank's;
    /// `switch/bank` for a PAN mismatch.
    pub fn masked_pan(&self) -> String {
        match (&self.switch_pan, &self.bank_pan) {
            (Some(s), Some(b)) if s != b => format!("{s}/{b}"),
            (Some(s), _) => s.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Matched totals of one currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Matched items.
    pub count: u64,
    /// Sum of matched debits, minor units.
    pub debits: u128,
    /// Sum of matched credits, minor units.
    pub credits: u128,
}

/// The result of a reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recon {
    switch_items: usize,
    bank_items: usize,
    matched: u64,
    totals: BTreeMap<String, Totals>,
    breaks: Vec<Break>,
}

/// How closely a switch item must agree with a bank item to be taken in a
/// matching pass.
#[derive(Debug, Clone, Copy)]
enum Closeness {
    /// Amount, currency, type and PAN.
    Exact,
    /// Amount and currency.
    AmountCurrency,
    /// Same key only.
    Key,
}

impl Closeness {
    fn accepts(self, s: &SwitchItem, b: &BankItem) -> bool {
        let amount_currency = s.amount == b.amount && s.currency == b.currency;
        match self {
            Closeness::Exact => {
                amount_currency && s.direction == b.direction && s.masked_pan == b.masked_pan
            }
            Closeness::AmountCurrency => amount_currency,
            Closeness::Key => true,
        }
    }
}

/// Reconciles what the switch cleared with what the bank settled (see the
/// [module documentation](self) for the matching rules).
pub fn reconcile(switch: Vec<SwitchItem>, bank: Vec<BankItem>) -> Recon {
    let mut by_ard: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_rrn: HashMap<&str, Vec<usize>> = HashMap::new();
    for (at, item) in switch.iter().enumerate() {
        if !item.ard.is_empty() {
            by_ard.entry(item.ard.as_str()).or_default().push(at);
        }
        if !item.rrn.is_empty() {
            by_rrn.entry(item.rrn.as_str()).or_default().push(at);
        }
    }
    let mut taken = vec![false; switch.len()];
    let mut pair: Vec<Option<usize>> = vec![None; bank.len()];
    for closeness in [Closeness::Exact, Closeness::AmountCurrency, Closeness::Key] {
        for (b, slot) in bank.iter().zip(pair.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let candidates = if b.ard.is_empty() {
                by_rrn.get(b.rrn.as_str())
            } else {
                by_ard.get(b.ard.as_str())
            };
            let chosen = candidates.into_iter().flatten().copied().find(|&at| {
                taken.get(at) == Some(&false)
                    && switch.get(at).is_some_and(|s| closeness.accepts(s, b))
            });
            if let Some(at) = chosen {
                if let Some(t) = taken.get_mut(at) {
                    *t = true;
                }
                *slot = Some(at);
            }
        }
    }

    let mut recon = Recon {
        switch_items: switch.len(),
        bank_items: bank.len(),
        ..Recon::default()
    };
    for (b, slot) in bank.iter().zip(&pair) {
        let Some(s) = slot.and_then(|at| switch.get(at)) else {
            recon
                .breaks
                .push(Break::new(BreakKind::UnknownToSwitch, None, Some(b)));
            continue;
        };
        let differences = [
            (s.amount != b.amount, BreakKind::AmountMismatch),
            (s.currency != b.currency, BreakKind::CurrencyMismatch),
            (s.masked_pan != b.masked_pan, BreakKind::PanMismatch),
            (s.direction != b.direction, BreakKind::DirectionMismatch),
        ];
        let mut clean = true;
        for (differs, kind) in differences {
            if differs {
                clean = false;
                recon.breaks.push(Break::new(kind, Some(s), Some(b)));
            }
        }
        if clean {
            recon.matched += 1;
            let totals = recon.totals.entry(s.currency.clone()).or_default();
            totals.count += 1;
            let amount = u128::from(s.amount);
            match s.direction {
                Direction::Debit => totals.debits = totals.debits.saturating_add(amount),
                Direction::Credit => totals.credits = totals.credits.saturating_add(amount),
            }
        }
    }
    for (s, was_taken) in switch.iter().zip(&taken) {
        if !was_taken {
            recon
                .breaks
                .push(Break::new(BreakKind::MissingAtBank, Some(s), None));
        }
    }
    recon.breaks.sort();
    recon
}

/// Quotes a CSV value if it needs it.
fn csv_value(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Header of the breaks file written by [`Recon::write_breaks`].
pub const BREAKS_HEADER: &str = "break,key,rrn,ard,switch_amount,bank_amount,switch_currency,\
bank_currency,masked_pan,bank_line,switch_txn,switch_type,bank_type";

impl Recon {
    /// The breaks, in their deterministic order.
    pub fn breaks(&self) -> &[Break] {
        &self.breaks
    }

    /// Pairs that agree in everything.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// Matched totals per currency.
    pub fn totals(&self) -> &BTreeMap<String, Totals> {
        &self.totals
    }

    /// Breaks of one kind.
    pub fn count(&self, kind: BreakKind) -> usize {
        self.breaks.iter().filter(|b| b.kind == kind).count()
    }

    /// Whether there is no break at all.
    pub fn is_clean(&self) -> bool {
        self.breaks.is_empty()
    }

    /// Writes the breaks as CSV: the [`BREAKS_HEADER`] line, then one line
    /// per break (`break,key,rrn,ard,switch_amount,bank_amount,
    /// switch_currency,bank_currency,masked_pan,bank_line,switch_txn,
    /// switch_type,bank_type`); a side that has no item leaves its columns
    /// empty.
    pub fn write_breaks(&self, mut out: impl Write) -> io::Result<()> {
        writeln!(out, "{BREAKS_HEADER}")?;
        for b in &self.breaks {
            let columns = [
                b.kind.as_str().to_string(),
                csv_value(&b.key),
                csv_value(&b.rrn),
                csv_value(&b.ard),
                opt(b.switch_amount),
                opt(b.bank_amount),
                csv_value(&opt(b.switch_currency.as_deref())),
                csv_value(&opt(b.bank_currency.as_deref())),
                csv_value(&b.masked_pan()),
                opt(b.bank_line),
                opt(b.switch_txn),
                opt(b.switch_direction),
                opt(b.bank_direction),
            ];
            writeln!(out, "{}", columns.join(","))?;
        }
        out.flush()
    }

    /// A human summary: items on each side, count per outcome, matched
    /// amounts per currency.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "switch items: {}\nbank items: {}\nmatched: {}\n",
            self.switch_items, self.bank_items, self.matched
        );
        for kind in BreakKind::ALL {
            text.push_str(&format!("{kind}: {}\n", self.count(kind)));
        }
        for (currency, t) in &self.totals {
            text.push_str(&format!(
                "matched {currency}: {} item(s), debits {}, credits {}\n",
                t.count, t.debits, t.credits
            ));
        }
        text.push_str(if self.is_clean() {
            "clean\n"
        } else {
            "breaks found\n"
        });
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::ipm::{FileInfo, IpmWriter};
    use super::super::item::ClearedKind;
    use super::*;

    #[test]
    fn break_reports_are_named_after_their_destination() {
        assert_eq!(
            breaks_file_name("20261125", Some("bank_a")).unwrap(),
            "breaks-bank_a-20261125.csv"
        );
        assert_eq!(
            breaks_file_name("20261125", None).unwrap(),
            "breaks-20261125.csv"
        );
        for bad in ["", "../x", "a/b", "a.b", "a b"] {
            assert!(
                matches!(
                    breaks_file_name("20261125", Some(bad)),
                    Err(ReconError::Destination(_))
                ),
                "{bad:?}"
            );
        }
    }

    fn s(txn: TxnId, rrn: &str, amount: u64) -> SwitchItem {
        SwitchItem {
            txn,
            ard: String::new(),
            rrn: rrn.into(),
            amount,
            currency: "978".into(),
            masked_pan: "476173******0119".into(),
            direction: Direction::Debit,
            destination: "visa".into(),
        }
    }

    fn b(line: usize, rrn: &str, amount: u64) -> BankItem {
        BankItem {
            line,
            rrn: rrn.into(),
            ard: String::new(),
            masked_pan: "476173******0119".into(),
            amount,
            currency: "978".into(),
            auth_code: "A00001".into(),
            direction: Direction::Debit,
        }
    }

    fn kinds(recon: &Recon) -> Vec<(BreakKind, String)> {
        recon
            .breaks()
            .iter()
            .map(|b| (b.kind, b.rrn.clone()))
            .collect()
    }

    #[test]
    fn clean_recon() {
        let switch = vec![s(1, "R1", 100), s(2, "R2", 250)];
        let bank = vec![b(2, "R2", 250), b(3, "R1", 100)];
        let recon = reconcile(switch, bank);
        assert!(recon.is_clean(), "{:?}", recon.breaks());
        assert_eq!(recon.matched(), 2);
        assert_eq!(
            recon.totals().get("978"),
            Some(&Totals {
                count: 2,
                debits: 350,
                credits: 0
            })
        );
        let summary = recon.summary();
        assert!(summary.contains("matched: 2\n"), "{summary}");
        assert!(summary.contains("missing_at_bank: 0\n"), "{summary}");
        assert!(
            summary.contains("matched 978: 2 item(s), debits 350, credits 0"),
            "{summary}"
        );
        let mut out = Vec::new();
        recon.write_breaks(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{BREAKS_HEADER}\n")
        );
    }

    #[test]
    fn every_break_kind() {
        let mut credit = s(5, "R5", 500);
        credit.direction = Direction::Credit;
        let switch = vec![
            s(1, "R1", 100),
            s(2, "R2", 200),
            s(3, "R3", 300),
            s(4, "R4", 400),
            credit,
            s(6, "R6", 600),
        ];
        let mut bank = vec![
            b(2, "R2", 201),
            b(3, "R3", 300),
            b(4, "R4", 400),
            b(5, "R5", 500),
            b(6, "R6", 600),
            b(7, "R9", 900),
        ];
        bank[1].currency = "840".into();
        bank[2].masked_pan = "476173******0127".into();
        let recon = reconcile(switch, bank);
        assert_eq!(
            kinds(&recon),
            [
                (BreakKind::MissingAtBank, "R1".to_string()),
                (BreakKind::UnknownToSwitch, "R9".into()),
                (BreakKind::AmountMismatch, "R2".into()),
                (BreakKind::CurrencyMismatch, "R3".into()),
                (BreakKind::PanMismatch, "R4".into()),
                (BreakKind::DirectionMismatch, "R5".into()),
            ]
        );
        assert_eq!(recon.matched(), 1);
        assert!(!recon.is_clean());
        for kind in BreakKind::ALL {
            assert_eq!(recon.count(kind), 1, "{kind}");
        }
        let mut out = Vec::new();
        recon.write_breaks(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert_eq!(
            lines[1],
            "missing_at_bank,R1,R1,,100,,978,,476173******0119,,1,debit,"
        );
        assert_eq!(
            lines[2],
            "unknown_to_switch,R9,R9,,,900,,978,476173******0119,7,,,debit"
        );
        assert_eq!(
            lines[3],
            "amount_mismatch,R2,R2,,200,201,978,978,476173******0119,2,2,debit,debit"
        );
        assert_eq!(
            lines[5],
            "pan_mismatch,R4,R4,,400,400,978,978,476173******0119/476173******0127,4,4,debit,debit"
        );
        assert!(recon.summary().contains("type_mismatch: 1\n"));
    }

    #[test]
    fn two_differences_are_two_breaks() {
        let mut bank = b(2, "R1", 101);
        bank.currency = "840".into();
        let recon = reconcile(vec![s(1, "R1", 100)], vec![bank]);
        assert_eq!(
            kinds(&recon),
            [
                (BreakKind::AmountMismatch, "R1".to_string()),
                (BreakKind::CurrencyMismatch, "R1".into())
            ]
        );
        assert_eq!(recon.matched(), 0);
    }

    #[test]
    fn duplicate_rrns_resolved_by_amount() {
        // Three switch items share an RRN; the bank lines come in another
        // order and each finds the one with its amount.
        let switch = vec![s(1, "DUP", 100), s(2, "DUP", 200), s(3, "DUP", 300)];
        let bank = vec![b(2, "DUP", 300), b(3, "DUP", 100), b(4, "DUP", 200)];
        let recon = reconcile(switch.clone(), bank);
        assert!(recon.is_clean(), "{:?}", recon.breaks());
        assert_eq!(recon.matched(), 3);

        // Greedy matching in file order would take item 1 (amount 100) for
        // the first line and report two breaks; exact candidates go first.
        let bank = vec![b(2, "DUP", 999), b(3, "DUP", 100), b(4, "DUP", 300)];
        let recon = reconcile(switch, bank);
        let breaks = recon.breaks();
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert_eq!(breaks[0].kind, BreakKind::AmountMismatch);
        assert_eq!(breaks[0].switch_txn, Some(2));
        assert_eq!(breaks[0].bank_line, Some(2));
    }

    #[test]
    fn ard_first_then_rrn() {
        let mut a = s(1, "R1", 100);
        a.ard = "24123456330000000000017".into();
        let mut c = s(2, "R1", 100);
        c.ard = "24123456330000000000025".into();
        // The bank line has the second ARD and the same RRN as the first.
        let mut line = b(2, "R1", 100);
        line.ard = c.ard.clone();
        let recon = reconcile(vec![a.clone(), c.clone()], vec![line]);
        assert_eq!(recon.breaks().len(), 1);
        assert_eq!(recon.breaks()[0].kind, BreakKind::MissingAtBank);
        assert_eq!(recon.breaks()[0].switch_txn, Some(1));
        assert_eq!(recon.breaks()[0].key, a.ard);

        // An ARD the switch does not know is unknown even if its RRN is.
        let mut line = b(2, "R1", 100);
        line.ard = "24123456330000000000033".into();
        let recon = reconcile(vec![a], vec![line]);
        assert_eq!(recon.count(BreakKind::UnknownToSwitch), 1);
        assert_eq!(recon.count(BreakKind::MissingAtBank), 1);
    }

    #[test]
    fn break_order_is_deterministic() {
        let switch: Vec<SwitchItem> = (0..20).map(|i| s(i, &format!("R{i:02}"), 10)).collect();
        let bank: Vec<BankItem> = (10..30)
            .map(|i| b(usize::try_from(i).unwrap(), &format!("R{i:02}"), 10))
            .collect();
        let one = reconcile(switch.clone(), bank.clone());
        let mut rev_switch = switch;
        rev_switch.reverse();
        let mut rev_bank = bank;
        rev_bank.reverse();
        let two = reconcile(rev_switch, rev_bank);
        assert_eq!(one.breaks(), two.breaks());
        assert_eq!(one.count(BreakKind::MissingAtBank), 10);
        assert_eq!(one.count(BreakKind::UnknownToSwitch), 10);
        assert_eq!(one.breaks()[0].rrn, "R00");
    }

    const GOOD: &str = "rrn,ard,pan,amount,currency,auth_code,type\n\
        612300000001,24123456330000000123475,476173******0119,1250,978,A00001,debit\n\
        612300000002,,476173******0127,990,978,A00002,credit\n\
        612300000003,,545454******5454,300,840,,debit\n\
        TRAILER,3,1550,990\n";

    fn parse(text: &str) -> Result<Vec<BankItem>, ReconError> {
        read_bank_csv(text.as_bytes())
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_documented_format() {
        let items = parse(GOOD).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].line, 2);
        assert_eq!(items[0].ard, "24123456330000000123475");
        assert_eq!(items[1].direction, Direction::Credit);
        assert_eq!(items[2].masked_pan, "545454******5454");
        assert_eq!(items[2].auth_code, "");
        // CRLF and no final newline are fine; the round trip is exact.
        let crlf = GOOD.replace('\n', "\r\n");
        assert_eq!(parse(crlf.trim_end()).unwrap(), items);
        let mut out = Vec::new();
        write_bank_csv(&items, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), GOOD);
        // The module documentation's example.
        let doc = "rrn,ard,pan,amount,currency,auth_code,type\n\
            612300000001,24123456330000000123475,476173******0119,1250,978,A00001,debit\n\
            612300000002,,476173******0127,990,978,A00002,credit\n\
            612300000003,,545454******5454,300,840,A00003,debit\n\
            TRAILER,3,1550,990\n";
        assert_eq!(parse(doc).unwrap().len(), 3);
        assert_eq!(parse(&format!("{CSV_HEADER}\nTRAILER,0,0,0")).unwrap(), []);
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        let replace = |line: usize, with: &str| {
            let mut lines: Vec<&str> = GOOD.lines().collect();
            lines[line - 1] = with;
            lines.join("\n")
        };
        let cases = [
            (
                replace(3, "612300000002,,476173******0127,990,978,A00002"),
                "line 3: 6 column(s), expected 7",
            ),
            (
                replace(3, "612300000002,,476173******0127,990,978,A00002,credit,x"),
                "line 3: 8 column(s)",
            ),
            (
                replace(3, "612300000002,,476173******0127,9x0,978,A00002,credit"),
                "line 3, column `amount`: expected digits",
            ),
            (
                replace(3, "612300000002,,476173******0127,-990,978,A00002,credit"),
                "line 3, column `amount`",
            ),
            (
                replace(
                    3,
                    "612300000002,,476173******0127,99999999999999999999,978,A00002,credit",
                ),
                "line 3, column `amount`: amount too large",
            ),
            (
                replace(2, "612300000001,,476173******0119,1250,97,A00001,debit"),
                "line 2, column `currency`",
            ),
            (
                replace(2, "612300000001,,476173******0119,1250,EUR,A00001,debit"),
                "line 2, column `currency`",
            ),
            (
                replace(4, "612300000003,,5454545454545454,300,840,,debit"),
                "line 4, column `pan`",
            ),
            (
                replace(4, "612300000003,123,545454******5454,300,840,,debit"),
                "line 4, column `ard`",
            ),
            (
                replace(4, "612300000003,,545454******5454,300,840,,refund"),
                "line 4, column `type`",
            ),
            (
                replace(4, "612300000003,,545454******5454,300,840,TOOLONG,debit"),
                "line 4, column `auth_code`",
            ),
            (
                replace(4, ",,545454******5454,300,840,,debit"),
                "line 4, column `rrn`",
            ),
            (replace(3, ""), "line 3: 1 column(s)"),
            (replace(1, "rrn,pan,amount"), "line 1: expected the header"),
            (String::new(), "line 1: empty file"),
            (
                format!("{CSV_HEADER}\n"),
                "line 2: end of file without the trailer",
            ),
            (
                GOOD.replace("TRAILER,3,1550,990\n", ""),
                "line 5: end of file without the trailer",
            ),
            (format!("{GOOD}more\n"), "line 6: text after the trailer"),
            (format!("{GOOD}\n"), "line 6: text after the trailer"),
        ];
        for (text, expected) in cases {
            let e = error(&text);
            assert!(
                e.starts_with(expected),
                "{e:?} should start with {expected:?}"
            );
            assert!(!e.contains("5454545454545454"), "no clear PAN in {e}");
        }
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes[60] = 0xff;
        assert!(
            read_bank_csv(&bytes[..])
                .unwrap_err()
                .to_string()
                .starts_with("line 2: not UTF-8")
        );
        let long = format!("{CSV_HEADER}\n{}\n", "1".repeat(5000));
        assert!(error(&long).starts_with("line 2: longer than 1024 bytes"));
    }

    #[test]
    fn trailer_mismatch_names_the_trailer_line() {
        let cases = [
            (
                "TRAILER,2,1550,990",
                "line 5 (trailer): states 2 item line(s), the file has 3",
            ),
            (
                "TRAILER,3,1551,990",
                "line 5 (trailer): states debits of 1551, the lines sum to 1550",
            ),
            (
                "TRAILER,3,1550,0",
                "line 5 (trailer): states credits of 0, the lines sum to 990",
            ),
            (
                "TRAILER,3,1550",
                "line 5 (trailer): 3 column(s), expected 4",
            ),
            (
                "TRAILER,3,15x0,990",
                "line 5 (trailer): sum of debits: expected digits",
            ),
            ("TRAILER", "line 5 (trailer): 1 column(s)"),
        ];
        for (trailer, expected) in cases {
            let text = GOOD.replace("TRAILER,3,1550,990", trailer);
            let e = error(&text);
            assert!(
                e.starts_with(expected),
                "{e:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.csv");
        std::fs::write(&path, GOOD.replace(",978,A00002", ",97,A00002")).unwrap();
        let e = read_bank_file(&path, BankFormat::Csv)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: line 3, column `currency`", path.display())),
            "{e}"
        );
        let missing = dir.path().join("none.csv");
        let e = read_bank_file(&missing, BankFormat::Csv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.csv: cannot open"), "{e}");
        std::fs::write(&path, GOOD).unwrap();
        assert_eq!(read_bank_file(&path, BankFormat::Csv).unwrap().len(), 3);
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let good_lines: Vec<&str> = GOOD.lines().collect();
        let alphabet = b"0123456789,*TRAILERdebitcredit\r\n \xff-A";
        for round in 0..3000 {
            let bytes: Vec<u8> = if round % 3 == 0 {
                (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect()
            } else if round % 3 == 1 {
                // Valid lines shuffled, dropped, duplicated.
                let mut text = String::new();
                for _ in 0..rng.usize(0..8) {
                    text.push_str(good_lines[rng.usize(..good_lines.len())]);
                    text.push('\n');
                }
                text.into_bytes()
            } else {
                // A valid file with a few bytes mutated.
                let mut bytes = GOOD.as_bytes().to_vec();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(..bytes.len());
                    bytes[at] = alphabet[rng.usize(..alphabet.len())];
                }
                bytes
            };
            if let Ok(items) = read_bank_csv(&bytes[..]) {
                let switch: Vec<SwitchItem> = items
                    .iter()
                    .map(|i| s(i.line as u64, &i.rrn, i.amount))
                    .collect();
                let recon = reconcile(switch, items);
                let _ = recon.summary();
                recon.write_breaks(io::sink()).unwrap();
            }
        }
    }

    fn presentment(txn: TxnId, kind: ClearedKind, amount: u64) -> Presentment {
        Presentment {
            txn,
            kind,
            pan: "5413330089010434".to_string().into(),
            masked_pan: "541333******0434".into(),
            processing_code: if kind.is_credit() { "200000" } else { "000000" }.into(),
            amount,
            approved_amount: amount,
            currency: "826".into(),
            local_time: "240315101112".into(),
            entry_mode: "051".into(),
            condition: "00".into(),
            merchant_id: "MERCHANT0000001".into(),
            mcc: "5411".into(),
            name_location: format!("{:<22} {:<13} GBR", "DEMO STORE", "LONDON"),
            terminal: "TERM0001".into(),
            stan: format!("{txn:06}"),
            rrn: format!("2403150{txn:05}"),
            auth_id: format!("A{txn:04}"),
            destination: "mc".into(),
            ard: super::super::ard::ard("412345", "20240315", txn).unwrap(),
            date: "20240315".into(),
        }
    }

    fn ipm_file(blocked: bool, items: &[Presentment]) -> Vec<u8> {
        let info = FileInfo {
            date: "20240315".into(),
            processor_id: "00000012345".into(),
            sequence: 1,
            acquiring_institution: "412345".into(),
            forwarding_institution: "412345".into(),
            blocked,
        };
        let mut writer = IpmWriter::new(Vec::new(), &info).unwrap();
        for p in items {
            writer.push(p).unwrap();
        }
        writer.finish().unwrap().0
    }

    #[test]
    fn reads_an_ipm_bank_file() {
        let cleared = [
            presentment(1, ClearedKind::Purchase, 1250),
            presentment(2, ClearedKind::Refund, 990),
            presentment(3, ClearedKind::Completion, 4200),
        ];
        for blocked in [false, true] {
            let bytes = ipm_file(blocked, &cleared);
            let items = read_bank_ipm(&bytes[..]).unwrap();
            assert_eq!(items.len(), 3);
            let first = &items[0];
            assert_eq!(first.line, 2, "record 1 is the file header");
            assert_eq!(first.ard, cleared[0].ard);
            assert_eq!(first.rrn, "", "the IPM layout has no DE 37");
            assert_eq!(first.masked_pan, "541333******0434");
            assert_eq!((first.amount, first.currency.as_str()), (1250, "826"));
            assert_eq!(first.auth_code, "A0001");
            assert_eq!(first.direction, Direction::Debit);
            assert_eq!(items[1].direction, Direction::Credit);
            let switch = cleared.iter().map(SwitchItem::from).collect();
            let recon = reconcile(switch, items);
            assert!(recon.is_clean(), "{:?}", recon.breaks());
            assert_eq!(recon.matched(), 3);
        }
        // Through a named file, and a break found by ARD.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.ipm");
        std::fs::write(&path, ipm_file(true, &cleared[..2])).unwrap();
        let bank = read_bank_file(&path, BankFormat::Ipm).unwrap();
        let switch = cleared.iter().map(SwitchItem::from).collect();
        let recon = reconcile(switch, bank);
        assert_eq!(recon.breaks().len(), 1);
        assert_eq!(recon.breaks()[0].kind, BreakKind::MissingAtBank);
        assert_eq!(recon.breaks()[0].key, cleared[2].ard);
    }

    #[test]
    fn ipm_errors_name_the_record() {
        let bytes = ipm_file(false, &[presentment(1, ClearedKind::Purchase, 100)]);
        // Truncated: the reader's error, with record and offset.
        let e = read_bank_ipm(&bytes[..bytes.len() - 6])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("IPM record "), "{e}");
        // A message type other than 1240/1644 (EBCDIC `1240` → `1740`).
        let mut fee = bytes.clone();
        let at = fee
            .windows(4)
            .position(|w| w == [0xF1, 0xF2, 0xF4, 0xF0])
            .unwrap();
        fee[at + 1] = 0xF7;
        let e = read_bank_ipm(&fee[..]).unwrap_err().to_string();
        assert!(e.starts_with("IPM record 2: message type"), "{e}");
        // A malformed amount in DE 4: find the 12 EBCDIC digits of 100.
        let mut amount = bytes;
        let digits: Vec<u8> = format!("{:012}", 100)
            .bytes()
            .map(|b| b - b'0' + 0xF0)
            .collect();
        let at = amount.windows(12).position(|w| w == &digits[..]).unwrap();
        amount[at + 3] = 0xC1; // `A`
        let e = read_bank_ipm(&amount[..]).unwrap_err().to_string();
        assert_eq!(e, "IPM record 2, DE 4: expected digits (minor units)");
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..400);
            let random: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = read_bank_ipm(&random[..]);
        }
    }

    #[test]
    fn switch_item_from_presentment() {
        let p = Presentment {
            txn: 42,
            kind: ClearedKind::Refund,
            pan: "4761739001010119".to_string().into(),
            masked_pan: "476173******0119".into(),
            processing_code: "200000".into(),
            amount: 990,
            approved_amount: 990,
            currency: "978".into(),
            local_time: "261126101500".into(),
            entry_mode: String::new(),
            condition: String::new(),
            merchant_id: "M1".into(),
            mcc: "5411".into(),
            name_location: String::new(),
            terminal: "TERM0001".into(),
            stan: "000001".into(),
            rrn: "612300000002".into(),
            auth_id: "A00002".into(),
            destination: "visa".into(),
            ard: "24123456330000000000421".into(),
            date: "20261126".into(),
        };
        let item = SwitchItem::from(&p);
        assert_eq!(item.direction, Direction::Credit);
        assert_eq!((item.txn, item.amount), (42, 990));
        assert_eq!(item.ard, p.ard);
        assert_eq!(item.destination, "visa");
    }
}
