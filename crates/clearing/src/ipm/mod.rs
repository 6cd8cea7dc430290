//! Mastercard IPM clearing files: the writer of the acquirer's outgoing file
//! (one First Presentment/1240 per [`Presentment`]) and a streaming reader of
//! any IPM file (reconciliation reads a bank's file with it).
//!
//! The layout, field by field, with its sources, is in
//! `specs/clearing-ipm.md`. In short:
//!
//! ```text
//! file    = VBS stream, optionally 1014-blocked
//! VBS     = { len:u32 big-endian, message[len] } … 00 00 00 00
//! 1014    = { VBS bytes[1012], 40 40 } …, the last block padded with 40
//! message = MTI (4 EBCDIC digits) · bitmap (16 bytes binary, bit 1 always
//!           set) · data elements in bit order, text in EBCDIC code page 500,
//!           LLVAR / LLLVAR lengths as 2 / 3 EBCDIC digits
//! file    = 1644/697 header · 1240/200 first presentments · 1644/695 trailer
//! ```
//!
//! A message is an ISO 8583 message of the `ipm` dialect (`specs/ipm.toml`,
//! built into `crates/iso8583`): the writer builds each one as a
//! [`Message`] and the dialect encodes it; the reader decodes each record
//! with it. This module keeps what is
//! not the message codec: the VBS records and 1014 blocking of the file,
//! what goes in each element (from a [`Presentment`]), and the PDS inside
//! DE 48 ([`pds`]).
//!
//! The writer streams: it holds one record and one block (1,014 bytes, or
//! 8 KiB unblocked) whatever the number of records, and reuses both buffers.
//! A presentment that does not fit the layout is refused with
//! [`IpmError::Field`] before any of it is written, so the caller can report
//! it and go on with the next one.
//!
//! The reader never trusts its input: every length is checked against what
//! is left, a record longer than [`MAX_RECORD_LEN`] is refused before any
//! allocation, and every error names the record number and the byte offset
//! in the file as stored (block padding included).

use std::io;
use std::sync::{Arc, OnceLock};

use iso8583::error::CodecError;
use iso8583::{Dialect, Mti, SpecError};

use crate::journal::TxnId;

pub mod pds;
mod pos;
mod reader;
mod writer;

pub use pos::{check_name_location, pos_data_code};
pub use reader::{IpmMessage, IpmReader, looks_blocked};
pub use writer::IpmWriter;

/// EBCDIC code page 500, the text of IPM files (the `ipm` dialect's
/// `ebcdic = "cp500"`): kept here under its old name.
pub use iso8583::ebcdic::cp500;

/// Bytes of VBS data in one 1014-byte block.
pub const BLOCK_DATA: usize = 1012;
/// Size of one block of a 1014-blocked file: 1,012 data bytes and two 0x40.
pub const BLOCK: usize = 1014;
/// The padding byte of 1014 blocking (an EBCDIC space).
pub const PAD: u8 = 0x40;
/// Longest record the reader accepts (cardutil's default limit is 6,000; the
/// largest message the IPM layout allows is a little over that).
pub const MAX_RECORD_LEN: usize = 16 * 1024;
/// Largest DE 71 message number and PDS 0306 message count (8 digits).
pub const MAX_MESSAGES: u64 = 99_999_999;
/// Largest PDS 0301 file amount checksum (16 digits).
pub const MAX_CHECKSUM: u64 = 9_999_999_999_999_999;

/// Size of the output chunk of an unblocked file.
const UNBLOCKED_CHUNK: usize = 8 * 1024;
/// PDS 0105 file type of a file the member sends to the clearing system
/// (`001` is a file the clearing system sends to the member).
const FILE_TYPE_OUTGOING: &[u8; 3] = b"002";

/// File Header and File Trailer.
const MTI_FILE: Mti = Mti::from_static("1644");
/// First Presentment.
const MTI_PRESENTMENT: Mti = Mti::from_static("1240");
/// MTI and the two bitmaps: the shortest IPM message.
const MESSAGE_HEAD: usize = 4 + 16;

/// The `ipm` dialect (`specs/ipm.toml`), loaded once.
fn load_ipm_dialect() -> Result<Arc<Dialect>, Arc<SpecError>> {
    static IPM: OnceLock<Result<Arc<Dialect>, Arc<SpecError>>> = OnceLock::new();
    IPM.get_or_init(|| match Dialect::builtin("ipm") {
        Some(result) => result.map_err(Arc::new),
        None => Err(Arc::new(SpecError::Unknown("ipm".into()))),
    })
    .clone()
}

/// [`load_ipm_dialect`] as an [`IpmError`].
fn ipm_dialect() -> Result<Arc<Dialect>, IpmError> {
    load_ipm_dialect().map_err(IpmError::Dialect)
}

/// What identifies one outgoing IPM file: PDS 0105 (file ID) of its header
/// and trailer, DE 32 of its presentments, and whether it is 1014-blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Business date of the file, `YYYYMMDD`. Its `YYMMDD` is the file
    /// reference date (PDS 0105 subfield 2).
    pub date: String,
    /// The acquirer's IPM member / processor ID, 11 digits (PDS 0105
    /// subfield 3), left-padded with zeros as Mastercard assigns it.
    pub processor_id: String,
    /// File sequence number, 1–99,999 (PDS 0105 subfield 4): unique for one
    /// processor ID and file reference date.
    pub sequence: u32,
    /// Acquiring institution ID code, 1–11 digits (DE 32 of every
    /// presentment).
    pub acquiring_institution: String,
    /// Forwarding institution ID code, 1–11 digits: the acquirer's
    /// clearing member id (DE 33, and DE 94 as the transaction originator,
    /// of every presentment).
    pub forwarding_institution: String,
    /// Whether the file is 1014-blocked (as transferred to and from
    /// Mastercard's mainframe) rather than plain VBS.
    pub blocked: bool,
}

impl FileInfo {
    /// The 25-digit file ID (PDS 0105): file type `002` (a file the member
    /// sends to the clearing system), file reference date `YYMMDD`,
    /// processor ID (11), file sequence number (5).
    pub fn file_id(&self) -> Result<String, IpmError> {
        let id = self.file_id_bytes()?;
        Ok(id.iter().map(|&b| char::from(b)).collect())
    }

    /// [`FileInfo::file_id`] as ASCII bytes, validating every field.
    fn file_id_bytes(&self) -> Result<[u8; 25], IpmError> {
        let bad = |field, reason| IpmError::FileInfo { field, reason };
        let date = self.date.as_bytes();
        let valid_date = date.len() == 8
            && all_digits(date)
            && date
                .get(..4)
                .zip(date.get(4..6))
                .zip(date.get(6..8))
                .is_some_and(|((y, m), d)| valid_ymd(number(y), number(m), number(d)));
        if !valid_date {
            return Err(bad("date", "must be a calendar date YYYYMMDD"));
        }
        let processor = self.processor_id.as_bytes();
        if processor.len() != 11 || !all_digits(processor) {
            return Err(bad("processor_id", "must be 11 digits"));
        }
        if !(1..=99_999).contains(&self.sequence) {
            return Err(bad("sequence", "must be 1 to 99999"));
        }
        let acquirer = self.acquiring_institution.as_bytes();
        if acquirer.is_empty() || acquirer.len() > 11 || !all_digits(acquirer) {
            return Err(bad("acquiring_institution", "must be 1 to 11 digits"));
        }
        let forwarder = self.forwarding_institution.as_bytes();
        if forwarder.is_empty() || forwarder.len() > 11 || !all_digits(forwarder) {
            return Err(bad("forwarding_institution", "must be 1 to 11 digits"));
        }
        let mut id = [b'0'; 25];
        let (file_type, rest) = id.split_at_mut(3);
        file_type.copy_from_slice(FILE_TYPE_OUTGOING);
        let (reference_date, rest) = rest.split_at_mut(6);
        reference_date.copy_from_slice(date.get(2..8).unwrap_or(b"000000"));
        let (processor_id, sequence) = rest.split_at_mut(11);
        processor_id.copy_from_slice(processor);
        write_digits(sequence, u64::from(self.sequence));
        Ok(id)
    }
}

/// What a finished file holds, as its trailer states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpmTotals {
    /// Messages in the file, header and trailer included (PDS 0306).
    pub messages: u64,
    /// First presentments (1240/200) in the file.
    pub presentments: u64,
    /// Sum of DE 4 of every message in the file (PDS 0301).
    pub amount_checksum: u64,
}

/// Why an IPM file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpmError {
    /// Reading or writing the underlying file failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A [`FileInfo`] value does not fit its place in the layout; no file
    /// was started.
    #[error("IPM file info: {field} {reason}")]
    FileInfo {
        /// The [`FileInfo`] field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A presentment's value does not fit its data element. Nothing of the
    /// presentment was written: the writer takes the next one.
    #[error("transaction {txn}: DE {de}: {reason}")]
    Field {
        /// The journal id of the refused presentment.
        txn: TxnId,
        /// The data element (ISO 8583:1993 / IPM number).
        de: u8,
        /// What is wrong with the value (never the value itself: it may be
        /// card data).
        reason: &'static str,
    },
    /// The file cannot take one more presentment: its message count (DE 71,
    /// PDS 0306, 8 digits) or amount checksum (PDS 0301, 16 digits) would
    /// overflow. Nothing was written: finish this file and start the next
    /// sequence number.
    #[error("transaction {txn}: the IPM file is full: {reason}")]
    Full {
        /// The journal id of the refused presentment.
        txn: TxnId,
        /// Which limit it would pass.
        reason: &'static str,
    },
    /// The built-in `ipm` dialect (`specs/ipm.toml`) does not load: a build
    /// defect (a unit test loads it), never caused by input.
    #[error("the IPM dialect: {0}")]
    Dialect(#[source] Arc<SpecError>),
    /// A File Header or Trailer the writer built does not encode under the
    /// `ipm` dialect (its values are checked before: a defect, not input).
    #[error("IPM file header or trailer: {0}")]
    Encode(#[source] CodecError),
    /// An earlier write to the output failed: the file is incomplete and the
    /// writer takes nothing more.
    #[error("an earlier write failed: the IPM file is incomplete")]
    Broken,
    /// The input is not a well-formed IPM file at this place.
    #[error("IPM record {record} at byte {offset}: {reason}")]
    Malformed {
        /// 1-based number of the record (message) being read.
        record: u64,
        /// Byte offset in the file as stored (block padding counted).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The input ends before the zero-length record that closes a VBS file
    /// (or in the middle of a record): the file is incomplete.
    #[error(
        "IPM record {record} at byte {offset}: the file ends before its zero-length end record"
    )]
    Truncated {
        /// 1-based number of the record that should have started or been
        /// complete.
        record: u64,
        /// Byte offset in the file as stored where that record starts.
        offset: u64,
    },
}

/// Whether every byte is an ASCII digit.
fn all_digits(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_digit)
}

/// Value of ASCII digits (callers check them; at most 4 here).
fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, &d| {
        n.saturating_mul(10)
            .saturating_add(u32::from(d.wrapping_sub(b'0')))
    })
}

/// Whether year, month, day make a calendar date (Gregorian).
fn valid_ymd(year: u32, month: u32, day: u32) -> bool {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// Whether `YYMMDDhhmmss` is a real local date and time (years 2000–2099).
pub(crate) fn valid_local_time(text: &[u8]) -> bool {
    if text.len() != 12 || !all_digits(text) {
        return false;
    }
    let part = |i: usize| text.get(i..i + 2).map(number).unwrap_or(99);
    valid_ymd(2000 + part(0), part(2), part(4)) && part(6) < 24 && part(8) < 60 && part(10) < 60
}

/// Fills `out` with the decimal digits of `value`, zero-padded on the left
/// (high digits dropped if it does not fit: callers check).
fn write_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests;
