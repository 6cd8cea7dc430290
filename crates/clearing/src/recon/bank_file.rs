//! Bank settlement files: the CSV format read and written, IPM files read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use iso8583::card::mask_pan;

use super::{BankFormat, BankItem, CSV_HEADER, Direction, ReconError, TRAILER};
use crate::ipm::{IpmMessage, IpmReader};

/// Longest line accepted in a CSV bank file (bytes, without the newline).
const MAX_LINE: usize = 1024;

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
