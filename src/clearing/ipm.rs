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

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

use zeroize::Zeroizing;

use super::item::Presentment;
use crate::journal::TxnId;

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

/// EBCDIC code page 500 (the encoding of IPM files, and the one cardutil
/// reads them with), as a total mapping between bytes and the Latin-1
/// characters U+0000–U+00FF: every byte decodes to one character and back.
///
/// It differs from code page 1047 (the crate's
/// [`crate::iso8583::ebcdic`]) on `[ ] ^ ! |` and a few Latin-1 letters; the
/// table was taken from Python's `codecs` `cp500` and the tests compare with
/// it for every byte.
pub mod cp500 {
    /// Latin-1 code point of each CP500 byte.
    const DECODE: [u8; 256] = [
        0x00, 0x01, 0x02, 0x03, 0x9C, 0x09, 0x86, 0x7F, 0x97, 0x8D, 0x8E, 0x0B, 0x0C, 0x0D, 0x0E,
        0x0F, // 0x0_
        0x10, 0x11, 0x12, 0x13, 0x9D, 0x85, 0x08, 0x87, 0x18, 0x19, 0x92, 0x8F, 0x1C, 0x1D, 0x1E,
        0x1F, // 0x1_
        0x80, 0x81, 0x82, 0x83, 0x84, 0x0A, 0x17, 0x1B, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x05, 0x06,
        0x07, // 0x2_
        0x90, 0x91, 0x16, 0x93, 0x94, 0x95, 0x96, 0x04, 0x98, 0x99, 0x9A, 0x9B, 0x14, 0x15, 0x9E,
        0x1A, // 0x3_
        0x20, 0xA0, 0xE2, 0xE4, 0xE0, 0xE1, 0xE3, 0xE5, 0xE7, 0xF1, 0x5B, 0x2E, 0x3C, 0x28, 0x2B,
        0x21, // 0x4_
        0x26, 0xE9, 0xEA, 0xEB, 0xE8, 0xED, 0xEE, 0xEF, 0xEC, 0xDF, 0x5D, 0x24, 0x2A, 0x29, 0x3B,
        0x5E, // 0x5_
        0x2D, 0x2F, 0xC2, 0xC4, 0xC0, 0xC1, 0xC3, 0xC5, 0xC7, 0xD1, 0xA6, 0x2C, 0x25, 0x5F, 0x3E,
        0x3F, // 0x6_
        0xF8, 0xC9, 0xCA, 0xCB, 0xC8, 0xCD, 0xCE, 0xCF, 0xCC, 0x60, 0x3A, 0x23, 0x40, 0x27, 0x3D,
        0x22, // 0x7_
        0xD8, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0xAB, 0xBB, 0xF0, 0xFD, 0xFE,
        0xB1, // 0x8_
        0xB0, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x71, 0x72, 0xAA, 0xBA, 0xE6, 0xB8, 0xC6,
        0xA4, // 0x9_
        0xB5, 0x7E, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0xA1, 0xBF, 0xD0, 0xDD, 0xDE,
        0xAE, // 0xA_
        0xA2, 0xA3, 0xA5, 0xB7, 0xA9, 0xA7, 0xB6, 0xBC, 0xBD, 0xBE, 0xAC, 0x7C, 0xAF, 0xA8, 0xB4,
        0xD7, // 0xB_
        0x7B, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0xAD, 0xF4, 0xF6, 0xF2, 0xF3,
        0xF5, // 0xC_
        0x7D, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x51, 0x52, 0xB9, 0xFB, 0xFC, 0xF9, 0xFA,
        0xFF, // 0xD_
        0x5C, 0xF7, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0xB2, 0xD4, 0xD6, 0xD2, 0xD3,
        0xD5, // 0xE_
        0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0xB3, 0xDB, 0xDC, 0xD9, 0xDA,
        0x9F, // 0xF_
    ];

    /// CP500 byte of each Latin-1 code point (the inverse of `DECODE`).
    const ENCODE: [u8; 256] = {
        let mut table = [0u8; 256];
        let mut byte = 0;
        while byte < 256 {
            table[DECODE[byte] as usize] = byte as u8;
            byte += 1;
        }
        table
    };

    /// CP500 byte of each printable ASCII character, 0 for every other
    /// ASCII byte (no printable character encodes to 0).
    const PRINTABLE: [u8; 128] = {
        let mut table = [0u8; 128];
        let mut ascii = 0x20;
        while ascii < 0x7F {
            table[ascii] = ENCODE[ascii];
            ascii += 1;
        }
        table
    };

    /// The CP500 byte of a printable ASCII byte (`0x20..=0x7E`), `None` for
    /// any other byte.
    pub fn from_printable_ascii(byte: u8) -> Option<u8> {
        match PRINTABLE.get(usize::from(byte)) {
            None | Some(0) => None,
            Some(&e) => Some(e),
        }
    }

    /// The character a CP500 byte stands for (always one of U+0000–U+00FF).
    pub fn to_char(byte: u8) -> char {
        char::from(DECODE[usize::from(byte)])
    }

    /// The CP500 byte of a character, `None` beyond U+00FF.
    pub fn from_char(c: char) -> Option<u8> {
        u8::try_from(u32::from(c))
            .ok()
            .map(|latin1| ENCODE[usize::from(latin1)])
    }

    /// Decodes CP500 bytes to text; never fails.
    pub fn decode(bytes: &[u8]) -> String {
        bytes.iter().map(|&b| to_char(b)).collect()
    }

    /// Appends the CP500 encoding of printable ASCII `text` to `out`. On a
    /// byte outside `0x20..=0x7E`, `out` is left as it was and the error is
    /// that byte's index.
    pub fn encode_printable(text: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
        let start = out.len();
        for (i, &byte) in text.iter().enumerate() {
            match from_printable_ascii(byte) {
                Some(e) => out.push(e),
                None => {
                    out.truncate(start);
                    return Err(i);
                }
            }
        }
        Ok(())
    }
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

/// The output side: VBS bytes in, the file (blocked or not) out, with one
/// block buffered.
struct Sink<W: Write> {
    out: W,
    blocked: bool,
    /// The current block (blocked) or chunk (unblocked). It holds card data:
    /// zeroed when dropped.
    pending: Zeroizing<Vec<u8>>,
}

impl<W: Write> Sink<W> {
    fn new(out: W, blocked: bool) -> Self {
        let capacity = if blocked { BLOCK } else { UNBLOCKED_CHUNK };
        Sink {
            out,
            blocked,
            pending: Zeroizing::new(Vec::with_capacity(capacity)),
        }
    }

    /// Appends VBS bytes; writes out every block (or chunk) they complete.
    fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.blocked {
            while !data.is_empty() {
                let room = BLOCK_DATA.saturating_sub(self.pending.len());
                let (now, rest) = data.split_at(room.min(data.len()));
                self.pending.extend_from_slice(now);
                data = rest;
                if self.pending.len() >= BLOCK_DATA {
                    self.pending.extend_from_slice(&[PAD, PAD]);
                    self.out.write_all(&self.pending)?;
                    self.pending.clear();
                }
            }
        } else {
            if self.pending.len() + data.len() > UNBLOCKED_CHUNK {
                self.out.write_all(&self.pending)?;
                self.pending.clear();
            }
            if data.len() > UNBLOCKED_CHUNK {
                self.out.write_all(data)?;
            } else {
                self.pending.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// Writes what is pending, the last block padded to 1,014 bytes with
    /// 0x40 (blocked), and flushes.
    fn close(&mut self) -> io::Result<()> {
        if self.blocked && !self.pending.is_empty() {
            self.pending.resize(BLOCK, PAD);
        }
        if !self.pending.is_empty() {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        self.out.flush()
    }
}

/// Writes one outgoing IPM file, streaming: header at [`IpmWriter::new`], one
/// First Presentment/1240 per [`IpmWriter::push`], trailer and end at
/// [`IpmWriter::finish`]. A writer dropped without `finish` leaves an
/// incomplete file (no trailer, no end record), which any reader refuses.
///
/// Wrap a `File` in a `BufWriter` only if you like: the writer already
/// writes whole blocks (1,014 bytes) or 8 KiB chunks.
pub struct IpmWriter<W: Write> {
    sink: Sink<W>,
    /// The record being built, reused (it holds the PAN: zeroed when
    /// dropped).
    record: Zeroizing<Vec<u8>>,
    /// PDS 0105 of the header and trailer, ASCII.
    file_id: [u8; 25],
    /// DE 32, ASCII digits.
    acquirer: String,
    /// DE 33 and DE 94, ASCII digits.
    forwarder: String,
    /// Messages written so far (header included).
    messages: u64,
    presentments: u64,
    checksum: u64,
    broken: bool,
}

impl<W: Write> IpmWriter<W> {
    /// Starts a file on `out` and writes its File Header/1644 (DE 24 `697`,
    /// PDS 0105, DE 71 = 1).
    pub fn new(out: W, info: &FileInfo) -> Result<Self, IpmError> {
        let file_id = info.file_id_bytes()?;
        let mut writer = IpmWriter {
            sink: Sink::new(out, info.blocked),
            record: Zeroizing::new(Vec::with_capacity(512)),
            file_id,
            acquirer: info.acquiring_institution.clone(),
            forwarder: info.forwarding_institution.clone(),
            messages: 0,
            presentments: 0,
            checksum: 0,
            broken: false,
        };
        encode_file_message(&mut writer.record, b"697", &file_id, 1, None);
        writer.emit()?;
        writer.messages = 1;
        Ok(writer)
    }

    /// Writes one First Presentment/1240 (DE 24 `200`). On
    /// [`IpmError::Field`] or [`IpmError::Full`] nothing was written and the
    /// writer takes the next presentment.
    pub fn push(&mut self, p: &Presentment) -> Result<(), IpmError> {
        if self.broken {
            return Err(IpmError::Broken);
        }
        // Room for this message and the trailer.
        let number = self.messages + 1;
        if number + 1 > MAX_MESSAGES {
            return Err(IpmError::Full {
                txn: p.txn,
                reason: "more than 99,999,999 messages (DE 71, PDS 0306)",
            });
        }
        let checksum = self
            .checksum
            .checked_add(p.amount)
            .filter(|&sum| sum <= MAX_CHECKSUM)
            .ok_or(IpmError::Full {
                txn: p.txn,
                reason: "amount checksum beyond 16 digits (PDS 0301)",
            })?;
        encode_presentment(
            &mut self.record,
            p,
            Institutions {
                acquirer: self.acquirer.as_bytes(),
                forwarder: self.forwarder.as_bytes(),
            },
            number,
        )?;
        self.emit()?;
        self.messages = number;
        self.presentments += 1;
        self.checksum = checksum;
        Ok(())
    }

    /// Writes the File Trailer/1644 (DE 24 `695`, PDS 0105, PDS 0301 amount
    /// checksum, PDS 0306 message count), the zero-length end record and the
    /// block padding, flushes, and hands back the output with the totals.
    pub fn finish(mut self) -> Result<(W, IpmTotals), IpmError> {
        if self.broken {
            return Err(IpmError::Broken);
        }
        let number = self.messages + 1;
        encode_file_message(
            &mut self.record,
            b"695",
            &self.file_id,
            number,
            Some((self.checksum, number)),
        );
        self.emit()?;
        self.sink.put(&[0, 0, 0, 0])?;
        self.sink.close()?;
        let totals = IpmTotals {
            messages: number,
            presentments: self.presentments,
            amount_checksum: self.checksum,
        };
        let IpmWriter { sink, .. } = self;
        Ok((sink.out, totals))
    }

    /// Hands the built record to the sink; a failed write breaks the writer.
    fn emit(&mut self) -> Result<(), IpmError> {
        let result = self.sink.put(&self.record);
        self.record.clear();
        result.map_err(|e| {
            self.broken = true;
            IpmError::Io(e)
        })
    }
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

/// The record being built: buffer and bitmap.
struct Builder<'a> {
    buf: &'a mut Vec<u8>,
    bitmap: [u8; 16],
}

impl<'a> Builder<'a> {
    /// Starts a record: length placeholder, MTI, bitmap placeholder.
    fn new(buf: &'a mut Vec<u8>, mti: &[u8; 4]) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        buf.extend(mti.iter().map(|&d| 0xF0 | (d & 0x0F)));
        buf.extend_from_slice(&[0; 16]);
        Builder {
            buf,
            bitmap: [0; 16],
        }
    }

    /// Marks data element `de` present.
    fn set(&mut self, de: u8) {
        let bit = usize::from(de.saturating_sub(1));
        if let Some(byte) = self.bitmap.get_mut(bit / 8) {
            *byte |= 0x80 >> (bit % 8);
        }
    }

    /// Appends `value` as `width` EBCDIC digits (callers check it fits).
    fn num(&mut self, value: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let width = width.min(digits.len());
        if let Some(slot) = digits.get_mut(..width) {
            write_digits(slot, value);
            self.buf.extend(slot.iter().map(|&d| 0xF0 | (d & 0x0F)));
        }
    }

    /// Appends ASCII digits (callers check them) in EBCDIC.
    fn digits(&mut self, digits: &[u8]) {
        self.buf.extend(digits.iter().map(|&d| 0xF0 | (d & 0x0F)));
    }

    /// Appends printable ASCII text in CP500; `Err` on any other byte.
    fn text(&mut self, text: &[u8]) -> Result<(), ()> {
        cp500::encode_printable(text, self.buf).map_err(|_| ())
    }

    /// Appends `count` EBCDIC spaces.
    fn spaces(&mut self, count: usize) {
        self.buf.extend(std::iter::repeat_n(PAD, count));
    }

    /// Writes the bitmap (bit 1 set: IPM always has the secondary bitmap)
    /// and the record length.
    fn finish(mut self) {
        self.bitmap[0] |= 0x80;
        if let Some(slot) = self.buf.get_mut(8..24) {
            slot.copy_from_slice(&self.bitmap);
        }
        let len = u32::try_from(self.buf.len().saturating_sub(4)).unwrap_or(u32::MAX);
        if let Some(slot) = self.buf.get_mut(..4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// Builds a File Header (`697`) or File Trailer (`695`, with amount
/// checksum and message count) 1644 message.
fn encode_file_message(
    buf: &mut Vec<u8>,
    function: &[u8; 3],
    file_id: &[u8; 25],
    number: u64,
    trailer: Option<(u64, u64)>,
) {
    let mut b = Builder::new(buf, b"1644");
    b.set(24);
    b.digits(function);
    b.set(48);
    let pds_len = 7 + 25 + if trailer.is_some() { 7 + 16 + 7 + 8 } else { 0 };
    b.num(pds_len, 3);
    b.digits(b"0105025");
    b.digits(file_id);
    if let Some((checksum, count)) = trailer {
        b.digits(b"0301016");
        b.num(checksum, 16);
        b.digits(b"0306008");
        b.num(count, 8);
    }
    b.set(71);
    b.num(number, 8);
    b.finish();
}

/// The institution ids every presentment carries (ASCII digits).
#[derive(Debug, Clone, Copy)]
struct Institutions<'a> {
    /// DE 32.
    acquirer: &'a [u8],
    /// DE 33 and DE 94.
    forwarder: &'a [u8],
}

/// Builds one First Presentment/1240 for `p`, message number `number`.
fn encode_presentment(
    buf: &mut Vec<u8>,
    p: &Presentment,
    institutions: Institutions<'_>,
    number: u64,
) -> Result<(), IpmError> {
    let err = |de: u8, reason: &'static str| IpmError::Field {
        txn: p.txn,
        de,
        reason,
    };
    let mut b = Builder::new(buf, b"1240");

    let pan = p.pan.as_bytes();
    if pan.is_empty() || pan.len() > 19 || !all_digits(pan) {
        return Err(err(2, "PAN must be 1 to 19 digits"));
    }
    b.set(2);
    b.num(pan.len() as u64, 2);
    b.digits(pan);

    let processing = p.processing_code.as_bytes();
    if processing.len() != 6 || !all_digits(processing) {
        return Err(err(3, "processing code must be 6 digits"));
    }
    b.set(3);
    b.digits(processing);

    if p.amount > 999_999_999_999 {
        return Err(err(4, "amount beyond 12 digits"));
    }
    b.set(4);
    b.num(p.amount, 12);

    let local = p.local_time.as_bytes();
    if !valid_local_time(local) {
        return Err(err(12, "local date and time must be a real YYMMDDhhmmss"));
    }
    b.set(12);
    b.digits(local);

    let pos = pos_data_code(&p.entry_mode, &p.condition);
    b.set(22);
    b.text(&pos).map_err(|()| err(22, "not printable"))?;

    b.set(24);
    b.digits(b"200");

    let mcc = p.mcc.as_bytes();
    if mcc.len() != 4 || !all_digits(mcc) {
        return Err(err(26, "MCC must be 4 digits"));
    }
    b.set(26);
    b.digits(mcc);

    let ard = p.ard.as_bytes();
    if ard.len() != 23 || !all_digits(ard) {
        return Err(err(31, "acquirer reference data must be 23 digits"));
    }
    b.set(31);
    b.digits(b"23");
    b.digits(ard);

    b.set(32);
    b.num(institutions.acquirer.len() as u64, 2);
    b.digits(institutions.acquirer);

    b.set(33);
    b.num(institutions.forwarder.len() as u64, 2);
    b.digits(institutions.forwarder);

    let approval = p.auth_id.as_bytes();
    if !approval.is_empty() {
        if approval.len() > 6 {
            return Err(err(38, "approval code longer than 6 characters"));
        }
        b.set(38);
        b.text(approval)
            .map_err(|()| err(38, "approval code not printable ASCII"))?;
        b.spaces(6 - approval.len());
    }

    let merchant = p.merchant_id.as_bytes();
    if merchant.is_empty() || merchant.len() > 15 {
        return Err(err(42, "card acceptor ID must be 1 to 15 characters"));
    }
    b.set(42);
    b.text(merchant)
        .map_err(|()| err(42, "card acceptor ID not printable ASCII"))?;
    b.spaces(15 - merchant.len());

    let location = NameLocation::parse(p.name_location.as_bytes()).map_err(|r| err(43, r))?;
    b.set(43);
    b.num(location.len() as u64, 2);
    let printable = |()| err(43, "name/location not printable ASCII");
    b.text(location.name).map_err(printable)?;
    // Subfield 2 (street address) is empty: two delimiters in a row.
    b.text(b"\\\\").map_err(printable)?;
    b.text(location.city).map_err(printable)?;
    b.text(b"\\").map_err(printable)?;
    b.spaces(10); // subfield 4, postal code: not known
    b.text(&location.state).map_err(printable)?;
    b.text(&location.country).map_err(printable)?;

    let terminal_type = terminal_type(&pos, mcc);
    b.set(48);
    b.num(7 + terminal_type.len() as u64, 3);
    b.digits(b"0023");
    b.num(terminal_type.len() as u64, 3);
    b.text(terminal_type)
        .map_err(|()| err(48, "not printable ASCII"))?;

    let currency = p.currency.as_bytes();
    if currency.len() != 3 || !all_digits(currency) {
        return Err(err(49, "currency must be 3 digits (ISO 4217 numeric)"));
    }
    b.set(49);
    b.digits(currency);

    b.set(71);
    b.num(number, 8);

    b.set(94);
    b.num(institutions.forwarder.len() as u64, 2);
    b.digits(institutions.forwarder);
    b.finish();
    Ok(())
}

/// Whether a 1987 field 43 (a terminal's `name_location`) can become IPM
/// DE 43: the reason when it cannot (checked when the config is loaded, so a
/// bad entry does not stop a day's clearing).
pub fn check_name_location(field: &str) -> Result<(), &'static str> {
    NameLocation::parse(field.as_bytes()).map(|_| ())
}

/// IPM DE 22 (POS data code, 12 positions, ISO 8583:1993 layout) of a
/// transaction, from what the journal kept: the 1987 POS entry mode (field
/// 22: PAN entry mode, 2 digits, and PIN entry capability, 1 digit) and POS
/// condition code (field 25, 2 digits). A 12-character alphanumeric entry
/// mode is already a 1993 POS data code (the `iso93` dialects) and is used
/// as it is. What the 1987 fields cannot tell is sent as "unknown". The
/// mapping, subfield by subfield, is in `specs/clearing-ipm.md`.
pub fn pos_data_code(entry_mode: &str, condition: &str) -> [u8; 12] {
    let mode = entry_mode.as_bytes();
    if mode.len() == 12 && mode.iter().all(u8::is_ascii_alphanumeric) {
        let mut code = [b'0'; 12];
        code.copy_from_slice(mode);
        return code;
    }
    let (pan_mode, pin): (&[u8], u8) = if mode.len() == 3 && all_digits(mode) {
        (
            mode.get(..2).unwrap_or(b""),
            mode.get(2).copied().unwrap_or(b'0'),
        )
    } else {
        (b"", b'0')
    };
    let condition = condition.as_bytes();
    let ecommerce = matches!(pan_mode, b"81" | b"09" | b"82") || condition == b"59";
    let card_read = matches!(pan_mode, b"02" | b"05" | b"07" | b"80" | b"90" | b"91");

    // 1 card data input capability: what the entry mode proves.
    let input_capability = match pan_mode {
        b"01" => b'6',                 // key entry
        b"02" | b"90" => b'2',         // magnetic stripe reader
        b"05" | b"79" | b"80" => b'D', // chip terminal: magnetic stripe and ICC
        b"07" => b'M',                 // contactless M/Chip
        b"91" => b'A',                 // contactless magnetic stripe
        _ => b'0',                     // unknown
    };
    // 2 cardholder authentication capability, from the PIN entry capability.
    let auth_capability = match pin {
        b'1' | b'9' => b'1', // PIN entry capability
        b'2' => b'0',        // no electronic authentication capability
        b'8' => b'5',        // PIN pad inoperative
        _ => b'9',           // unknown
    };
    // 3 card capture capability: ISO condition 02 is an unattended terminal
    // able to retain the card.
    let capture = if condition == b"02" { b'1' } else { b'9' };
    // 4 terminal operating environment.
    let environment = if ecommerce {
        b'5' // on cardholder premises, unattended
    } else {
        match condition {
            b"00" | b"05" => b'1', // on acceptor premises, attended
            b"02" => b'2',         // on acceptor premises, unattended
            _ => b'9',
        }
    };
    // 5 cardholder present.
    let cardholder = if ecommerce {
        b'5' // not present, electronic order
    } else {
        match condition {
            b"00" | b"02" | b"05" => b'0',
            b"01" | b"08" => b'1', // not present, unspecified
            _ => b'9',
        }
    };
    // 6 card present.
    let card = if card_read {
        b'1'
    } else if ecommerce {
        b'0'
    } else {
        match condition {
            b"00" | b"02" => b'1',
            b"01" | b"05" | b"08" => b'0',
            _ => b'9',
        }
    };
    // 7 card data input mode.
    let input_mode = match pan_mode {
        b"01" | b"79" => b'6', // key entered at a terminal
        b"02" => b'2',         // magnetic stripe, track data not required
        b"05" => b'C',         // chip, online authorised
        b"07" => b'M',         // contactless M/Chip
        b"09" => b'R',         // e-commerce with DSRP cryptogram
        b"10" => b'7',         // credential on file
        b"80" | b"90" => b'B', // magnetic stripe, track data unaltered
        b"81" => b'S',         // electronic commerce
        b"82" => b'T',         // PAN auto-entry via server
        b"91" => b'A',         // contactless magnetic stripe
        _ => b'0',
    };
    // 12 PIN capture capability.
    let pin_capture = if pin == b'2' { b'0' } else { b'1' };
    [
        input_capability,
        auth_capability,
        capture,
        environment,
        cardholder,
        card,
        input_mode,
        b'9', // 8 cardholder authentication method: unknown
        b'9', // 9 cardholder authentication entity: unknown
        b'0', // 10 card data output capability: unknown
        b'0', // 11 terminal data output capability: unknown
        pin_capture,
    ]
}

/// PDS 0023 (terminal type): `CT6` (cardholder-activated terminal level 6,
/// electronic commerce) when DE 22 says electronic order, `ATM` for MCC
/// 6011, else `NA` (terminal type not available: the journal does not know
/// whether a POS terminal was attended or a CAT).
fn terminal_type(pos: &[u8; 12], mcc: &[u8]) -> &'static [u8] {
    if pos.get(4) == Some(&b'5') {
        b"CT6"
    } else if mcc == b"6011" {
        b"ATM"
    } else {
        b"NA"
    }
}

/// The 1987 field 43 (40 characters, Mastercard authorisation layout) cut
/// into the IPM DE 43 subfields.
///
/// ```text
/// 1987:  name (22) · space · city (13) · space · state or country (3)
/// IPM:   name \ street \ city \ postal code (10) state (3) country (3)
/// ```
///
/// The street and postal code are not in the 1987 field: the street is
/// empty and the postal code 10 spaces. Three letters at positions 38–40
/// are an ISO 3166 alpha-3 country (state spaces); two letters and a space
/// are a U.S. state code (country `USA`).
struct NameLocation<'a> {
    name: &'a [u8],
    city: &'a [u8],
    state: [u8; 3],
    country: [u8; 3],
}

impl<'a> NameLocation<'a> {
    fn parse(field: &'a [u8]) -> Result<Self, &'static str> {
        if field.len() > 40 {
            return Err("name/location longer than 40 characters");
        }
        let name = trim(field.get(..23).unwrap_or(field));
        let city = trim(field.get(23..37).unwrap_or(b""));
        let code = field
            .get(37..40)
            .ok_or("no state or country code at positions 38-40")?;
        if name.is_empty() {
            return Err("no card acceptor name");
        }
        if name.len() > 22 {
            return Err("card acceptor name longer than 22 characters");
        }
        if city.len() > 13 {
            return Err("card acceptor city longer than 13 characters");
        }
        if name.contains(&b'\\') || city.contains(&b'\\') {
            return Err("backslash (the subfield delimiter) in name or city");
        }
        let (state, country) = match code {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                (*b"   ", [*a, *b, *c])
            }
            [a, b, b' '] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
                ([*a, *b, b' '], *b"USA")
            }
            _ => {
                return Err("positions 38-40 must be an alpha-3 country code or a U.S. state code");
            }
        };
        Ok(NameLocation {
            name,
            city,
            state,
            country,
        })
    }

    /// Length of the IPM DE 43 text.
    fn len(&self) -> usize {
        self.name.len() + 2 + self.city.len() + 1 + 10 + 3 + 3
    }
}

/// `bytes` without leading and trailing spaces.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(b"")
}

/// How a data element's length is known.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Fixed number of bytes.
    Fixed(usize),
    /// Variable: a prefix of this many EBCDIC digits gives the length.
    Var(usize),
}

/// The IPM layout of data element `de` (as cardutil's `bit_config`), `None`
/// for an element IPM does not use.
fn layout(de: usize) -> Option<Layout> {
    use Layout::{Fixed, Var};
    Some(match de {
        2 | 31 | 32 | 33 | 43 | 93 | 94 | 95 | 100 => Var(2),
        48 | 54 | 55 | 62 | 63 | 72 | 105 | 111 | 123 | 124 | 125 | 127 => Var(3),
        3 | 38 | 73 => Fixed(6),
        4 | 5 | 6 | 12 | 22 | 37 => Fixed(12),
        9 | 10 | 41 | 71 => Fixed(8),
        14 | 25 | 26 => Fixed(4),
        23 | 24 | 40 | 49 | 50 | 51 => Fixed(3),
        30 => Fixed(24),
        42 => Fixed(15),
        _ => return None,
    })
}

/// Data elements that carry private data subelements (PDS).
fn carries_pds(de: usize) -> bool {
    matches!(de, 48 | 62 | 123 | 124 | 125)
}

/// One message of an IPM file, as text.
#[derive(Clone, PartialEq, Eq)]
pub struct IpmMessage {
    /// 1-based record number in the file.
    pub record: u64,
    /// Byte offset of the record's length prefix in the file as stored.
    pub offset: u64,
    /// Message type indicator, e.g. `1240`.
    pub mti: String,
    /// Each data element present, decoded from CP500 (DE 55, binary, as
    /// uppercase hex). DE 2 is the clear PAN: `Debug` masks it.
    pub fields: BTreeMap<u8, String>,
    /// Every PDS of DE 48, 62 and 123–125, by tag (a later one wins).
    pub pds: BTreeMap<u16, String>,
}

impl IpmMessage {
    /// The text of data element `de`.
    pub fn field(&self, de: u8) -> Option<&str> {
        self.fields.get(&de).map(String::as_str)
    }

    /// The text of PDS `tag`.
    pub fn pds(&self, tag: u16) -> Option<&str> {
        self.pds.get(&tag).map(String::as_str)
    }

    /// DE 24, the function code (`697` header, `200` first presentment,
    /// `695` trailer …).
    pub fn function_code(&self) -> Option<&str> {
        self.field(24)
    }
}

impl fmt::Debug for IpmMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked: BTreeMap<u8, String> = self
            .fields
            .iter()
            .map(|(&de, value)| {
                let shown = if de == 2 {
                    mask_pan(value)
                } else {
                    value.clone()
                };
                (de, shown)
            })
            .collect();
        f.debug_struct("IpmMessage")
            .field("record", &self.record)
            .field("offset", &self.offset)
            .field("mti", &self.mti)
            .field("fields", &masked)
            .field("pds", &self.pds)
            .finish()
    }
}

/// First 6 and last 4 characters of a PAN, the rest as `*`.
fn mask_pan(pan: &str) -> String {
    let count = pan.chars().count();
    pan.chars()
        .enumerate()
        .map(|(i, c)| if i < 6 || i + 4 >= count { c } else { '*' })
        .collect()
}

/// Reads an IPM file message by message, streaming (one block and one
/// record in memory). Yields each message; stops after the zero-length end
/// record, or after the first error (which names the record and offset).
/// Never panics, whatever the bytes.
pub struct IpmReader<R: Read> {
    inner: R,
    blocked: bool,
    /// Current block (blocked) or chunk; it holds card data, zeroed when
    /// dropped.
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Raw bytes read from `inner` so far.
    raw: u64,
    /// VBS bytes consumed so far.
    vbs: u64,
    /// Records read so far.
    records: u64,
    record: Zeroizing<Vec<u8>>,
    done: bool,
}

impl<R: Read> IpmReader<R> {
    /// A reader of a 1014-blocked (`blocked`) or plain VBS file.
    pub fn new(inner: R, blocked: bool) -> Self {
        let size = if blocked { BLOCK } else { UNBLOCKED_CHUNK };
        IpmReader {
            inner,
            blocked,
            buf: Zeroizing::new(vec![0; size]),
            pos: 0,
            end: 0,
            eof: false,
            raw: 0,
            vbs: 0,
            records: 0,
            record: Zeroizing::new(Vec::new()),
            done: false,
        }
    }

    /// Whether the file is read as 1014-blocked.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// File offset (as stored) of VBS position `vbs`.
    fn raw_offset(&self, vbs: u64) -> u64 {
        if self.blocked {
            vbs + 2 * (vbs / BLOCK_DATA as u64)
        } else {
            vbs
        }
    }

    fn malformed(&self, vbs: u64, reason: String) -> IpmError {
        IpmError::Malformed {
            record: self.records + 1,
            offset: self.raw_offset(vbs),
            reason,
        }
    }

    /// Reads the next block or chunk; `false` at the end of the input.
    fn fill(&mut self) -> Result<bool, IpmError> {
        if self.eof {
            return Ok(false);
        }
        let at = self.raw;
        let n = read_full(&mut self.inner, self.buf.as_mut_slice())?;
        self.raw += n as u64;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        if self.blocked {
            if n < BLOCK {
                return Err(IpmError::Malformed {
                    record: self.records + 1,
                    offset: at,
                    reason: format!("the last block has {n} bytes, not {BLOCK}"),
                });
            }
            if self.buf.get(BLOCK_DATA..BLOCK) != Some(&[PAD, PAD][..]) {
                return Err(IpmError::Malformed {
                    record: self.records + 1,
                    offset: at + BLOCK_DATA as u64,
                    reason: "a 1014-byte block does not end with 40 40 (not blocked?)".into(),
                });
            }
            self.end = BLOCK_DATA;
        } else {
            self.end = n;
        }
        self.pos = 0;
        Ok(true)
    }

    /// Appends up to `want` VBS bytes to the record buffer; how many came.
    fn take(&mut self, want: usize) -> Result<usize, IpmError> {
        let mut got = 0;
        while got < want {
            if self.pos >= self.end && !self.fill()? {
                break;
            }
            let n = (self.end - self.pos).min(want - got);
            let chunk = self.buf.get(self.pos..self.pos + n).unwrap_or(&[]);
            self.record.extend_from_slice(chunk);
            self.pos += n;
            got += n;
            self.vbs += n as u64;
        }
        Ok(got)
    }

    /// The next message, `None` after the end record.
    fn next_message(&mut self) -> Result<Option<IpmMessage>, IpmError> {
        let start = self.vbs;
        let truncated = |reader: &Self| IpmError::Truncated {
            record: reader.records + 1,
            offset: reader.raw_offset(start),
        };
        self.record.clear();
        if self.take(4)? < 4 {
            return Err(truncated(self));
        }
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(self.record.get(..4).unwrap_or(&[0; 4]));
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Ok(None);
        }
        if len > MAX_RECORD_LEN {
            return Err(self.malformed(
                start,
                format!("record length {len} is beyond the limit of {MAX_RECORD_LEN}"),
            ));
        }
        self.record.clear();
        if self.take(len)? < len {
            return Err(truncated(self));
        }
        let message = self.parse(start)?;
        self.records += 1;
        Ok(Some(message))
    }

    /// Decodes the record in the buffer, which started at VBS offset `start`.
    fn parse(&self, start: u64) -> Result<IpmMessage, IpmError> {
        let data = start + 4;
        let rec: &[u8] = &self.record;
        let bad = |at: usize, reason: String| self.malformed(data + at as u64, reason);
        if rec.len() < 20 {
            return Err(bad(
                0,
                format!(
                    "a record of {} bytes is shorter than an MTI and two bitmaps",
                    rec.len()
                ),
            ));
        }
        let (mti, rest) = rec.split_at(4);
        let (bitmap, _) = rest.split_at(16);
        let mti = cp500::decode(mti);
        if !mti.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(0, "the MTI is not four EBCDIC digits".into()));
        }
        if bitmap.first().is_none_or(|b| b & 0x80 == 0) {
            return Err(bad(
                4,
                "bit 1 (secondary bitmap, always set in IPM) is not set".into(),
            ));
        }
        let mut message = IpmMessage {
            record: self.records + 1,
            offset: self.raw_offset(start),
            mti,
            fields: BTreeMap::new(),
            pds: BTreeMap::new(),
        };
        let mut pos = 20;
        for de in 2..=128usize {
            let bit = de - 1;
            let set = bitmap
                .get(bit / 8)
                .is_some_and(|byte| byte & (0x80 >> (bit % 8)) != 0);
            if !set {
                continue;
            }
            let Some(kind) = layout(de) else {
                return Err(bad(
                    4,
                    format!("DE {de} is set but is not in the IPM layout"),
                ));
            };
            let len = match kind {
                Layout::Fixed(n) => n,
                Layout::Var(digits) => {
                    let prefix = rec.get(pos..pos + digits).ok_or_else(|| {
                        bad(
                            pos,
                            format!("DE {de} length runs past the end of the record"),
                        )
                    })?;
                    let len = ebcdic_number(prefix).ok_or_else(|| {
                        bad(pos, format!("DE {de} length is not {digits} EBCDIC digits"))
                    })?;
                    pos += digits;
                    len
                }
            };
            let value = rec.get(pos..pos + len).ok_or_else(|| {
                bad(
                    pos,
                    format!("DE {de} ({len} bytes) runs past the end of the record"),
                )
            })?;
            if carries_pds(de) {
                parse_pds(value, &mut message.pds)
                    .map_err(|(at, reason)| bad(pos + at, format!("DE {de}: {reason}")))?;
            }
            let text = if de == 55 {
                hex::encode_upper(value)
            } else {
                cp500::decode(value)
            };
            message.fields.insert(de as u8, text);
            pos += len;
        }
        if pos != rec.len() {
            return Err(bad(
                pos,
                format!("{} bytes after the last data element", rec.len() - pos),
            ));
        }
        Ok(message)
    }
}

impl<R: Read> IpmReader<io::Chain<io::Cursor<Vec<u8>>, R>> {
    /// A reader that guesses whether the file is 1014-blocked from its first
    /// 2,028 bytes, as cardutil's `ipm_info` does: blocked if it is at least
    /// one block long and the first (and second, if there is one) block ends
    /// with 40 40. A plain VBS file can fool it (EBCDIC spaces at the wrong
    /// place): prefer [`IpmReader::new`] when the bank says which it is.
    pub fn detect(mut inner: R) -> Result<Self, IpmError> {
        let mut head = vec![0u8; 2 * BLOCK];
        let n = read_full(&mut inner, &mut head)?;
        head.truncate(n);
        let blocked = looks_blocked(&head);
        Ok(IpmReader::new(io::Cursor::new(head).chain(inner), blocked))
    }
}

/// Whether the first bytes of a file look 1014-blocked (see
/// [`IpmReader::detect`]).
pub fn looks_blocked(head: &[u8]) -> bool {
    let ends_block = |end: usize| head.get(end - 2..end) == Some(&[PAD, PAD][..]);
    head.len() >= BLOCK && ends_block(BLOCK) && (head.len() < 2 * BLOCK || ends_block(2 * BLOCK))
}

impl<R: Read> Iterator for IpmReader<R> {
    type Item = Result<IpmMessage, IpmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_message() {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; how many bytes came.
fn read_full<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match inner.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n.min(rest.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Value of EBCDIC digits (F0–F9), `None` if any byte is not one.
fn ebcdic_number(bytes: &[u8]) -> Option<usize> {
    bytes.iter().try_fold(0usize, |n, &b| {
        (0xF0..=0xF9)
            .contains(&b)
            .then(|| n * 10 + usize::from(b - 0xF0))
    })
}

/// Splits PDS data (tag 4 digits, length 3 digits, data) into `out`. On
/// error: offset in `data` and reason.
fn parse_pds(data: &[u8], out: &mut BTreeMap<u16, String>) -> Result<(), (usize, String)> {
    let mut pos = 0;
    while pos < data.len() {
        let tag = data
            .get(pos..pos + 4)
            .and_then(ebcdic_number)
            .ok_or_else(|| (pos, "PDS tag is not 4 EBCDIC digits".to_string()))?;
        let len = data
            .get(pos + 4..pos + 7)
            .and_then(ebcdic_number)
            .ok_or_else(|| {
                (
                    pos + 4,
                    format!("PDS {tag:04} length is not 3 EBCDIC digits"),
                )
            })?;
        let value = data.get(pos + 7..pos + 7 + len).ok_or_else(|| {
            (
                pos + 7,
                format!("PDS {tag:04} ({len} bytes) runs past its field"),
            )
        })?;
        out.insert(tag as u16, cp500::decode(value));
        pos += 7 + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clearing::ClearedKind;

    /// Python 3: `bytes(range(0x20, 0x7f)).decode('latin-1').encode('cp500').hex()`.
    const PYTHON_CP500_PRINTABLE: &str = "404f7f7b5b6c507d4d5d5c4e6b604b61f0f1f2f3f4f5f6f7f8f97a5e4c7e6e6f7cc1c2c3c4c5c6c7c8c9d1d2d3d4d5d6d7d8d9e2e3e4e5e6e7e8e94ae05a5f6d79818283848586878889919293949596979899a2a3a4a5a6a7a8a9c0bbd0a1";

    /// Python 3: `bytes(range(256)).decode('cp500').encode('latin-1').hex()`.
    const PYTHON_CP500_DECODE: &str = "000102039c09867f978d8e0b0c0d0e0f101112139d8508871819928f1c1d1e1f80818283840a171b88898a8b8c050607909116939495960498999a9b14159e1a20a0e2e4e0e1e3e5e7f15b2e3c282b2126e9eaebe8edeeefecdf5d242a293b5e2d2fc2c4c0c1c3c5c7d1a62c255f3e3ff8c9cacbc8cdcecfcc603a2340273d22d8616263646566676869abbbf0fdfeb1b06a6b6c6d6e6f707172aabae6b8c6a4b57e737475767778797aa1bfd0dddeaea2a3a5b7a9a7b6bcbdbeac7cafa8b4d77b414243444546474849adf4f6f2f3f57d4a4b4c4d4e4f505152b9fbfcf9faff5cf7535455565758595ab2d4d6d2d3d530313233343536373839b3dbdcd9da9f";

    fn info(blocked: bool) -> FileInfo {
        FileInfo {
            date: "20240315".into(),
            processor_id: "00000012345".into(),
            sequence: 7,
            acquiring_institution: "412345".into(),
            forwarding_institution: "412345".into(),
            blocked,
        }
    }

    fn presentment(txn: TxnId, amount: u64) -> Presentment {
        Presentment {
            txn,
            kind: ClearedKind::Purchase,
            pan: Zeroizing::new("5413330089010434".into()),
            masked_pan: "541333******0434".into(),
            processing_code: "000000".into(),
            amount,
            approved_amount: amount,
            currency: "826".into(),
            local_time: "240315101112".into(),
            entry_mode: "051".into(),
            condition: "00".into(),
            merchant_id: "MERCHANT0000001".into(),
            mcc: "5411".into(),
            name_location: location("DEMO STORE [1]!^|", "LONDON", "GBR"),
            terminal: "TERM0001".into(),
            stan: "000123".into(),
            rrn: "240315000123".into(),
            auth_id: "A1B2C3".into(),
            destination: "mc".into(),
            ard: "24123454075000000000121".into(),
            date: "20240315".into(),
        }
    }

    /// A 1987 field 43: name (22) and a space, city (13) and a space, code.
    fn location(name: &str, city: &str, code: &str) -> String {
        format!("{name:<23}{city:<14}{code}")
    }

    fn write_file(blocked: bool, items: &[Presentment]) -> (Vec<u8>, IpmTotals) {
        let mut writer = IpmWriter::new(Vec::new(), &info(blocked)).unwrap();
        for p in items {
            writer.push(p).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_all(bytes: &[u8], blocked: bool) -> Vec<IpmMessage> {
        IpmReader::new(bytes, blocked)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    fn ebcdic(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        cp500::encode_printable(text.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn cp500_matches_python_codecs() {
        let mut printable = Vec::new();
        for ascii in 0x20u8..=0x7E {
            printable.push(cp500::from_printable_ascii(ascii).unwrap());
        }
        assert_eq!(hex::encode(&printable), PYTHON_CP500_PRINTABLE);
        let decoded: Vec<u8> = (0..=255u8)
            .map(|b| u8::try_from(u32::from(cp500::to_char(b))).unwrap())
            .collect();
        assert_eq!(hex::encode(decoded), PYTHON_CP500_DECODE);
        for b in 0..=255u8 {
            assert_eq!(cp500::from_char(cp500::to_char(b)), Some(b));
        }
        // Where CP500 and CP1047 differ.
        for (c, e) in [
            (b'[', 0x4A),
            (b']', 0x5A),
            (b'!', 0x4F),
            (b'^', 0x5F),
            (b'|', 0xBB),
        ] {
            assert_eq!(cp500::from_printable_ascii(c), Some(e));
        }
        assert_eq!(cp500::from_printable_ascii(0x7F), None);
        assert_eq!(cp500::from_printable_ascii(0x0A), None);
        assert_eq!(cp500::from_printable_ascii(0xE9), None);
        assert_eq!(cp500::from_char('é'), Some(0x51));
        assert_eq!(cp500::from_char('€'), None);
    }

    #[test]
    fn header_bytes_by_hand() {
        let (bytes, _) = write_file(false, &[]);
        let mut expected = vec![0x00, 0x00, 0x00, 66];
        expected.extend_from_slice(&[0xF1, 0xF6, 0xF4, 0xF4]); // 1644
        // bits 1, 24, 48 | 71
        expected.extend_from_slice(&[0x80, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00]);
        expected.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
        expected.extend_from_slice(&[0xF6, 0xF9, 0xF7]); // DE 24 697
        expected.extend(ebcdic("032")); // DE 48 LLL
        expected.extend(ebcdic("0105025"));
        expected.extend(ebcdic("0022403150000001234500007")); // file ID
        expected.extend(ebcdic("00000001")); // DE 71
        assert_eq!(expected.len(), 70);
        assert_eq!(
            bytes.get(..70),
            Some(&expected[..]),
            "{}",
            hex::encode(&bytes)
        );
        assert_eq!(info(false).file_id().unwrap(), "0022403150000001234500007");
    }

    #[test]
    fn round_trip_unblocked_and_blocked() {
        let mut items: Vec<Presentment> = (1..=5).map(|i| presentment(i, 1000 * i)).collect();
        items[1].kind = ClearedKind::Refund;
        items[1].processing_code = "200000".into();
        items[2].auth_id = String::new();
        items[3].entry_mode = "812".into();
        items[3].condition = "59".into();
        items[4].name_location = location("SHOP ON MAIN", "NEW YORK", "NY ");
        items[4].mcc = "6011".into();
        for blocked in [false, true] {
            let (bytes, totals) = write_file(blocked, &items);
            assert_eq!(
                totals,
                IpmTotals {
                    messages: 7,
                    presentments: 5,
                    amount_checksum: 15_000
                }
            );
            let messages = read_all(&bytes, blocked);
            assert_eq!(messages.len(), 7);
            let detected: Vec<_> = IpmReader::detect(&bytes[..])
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(detected, messages, "detect, blocked = {blocked}");

            let header = &messages[0];
            assert_eq!(header.mti, "1644");
            assert_eq!(header.function_code(), Some("697"));
            assert_eq!(header.pds(105), Some("0022403150000001234500007"));
            assert_eq!(header.field(71), Some("00000001"));

            for (i, (m, p)) in messages[1..6].iter().zip(&items).enumerate() {
                assert_eq!(m.mti, "1240");
                assert_eq!(m.record, i as u64 + 2);
                assert_eq!(m.field(2), Some(p.pan.as_str()));
                assert_eq!(m.field(3), Some(p.processing_code.as_str()));
                assert_eq!(m.field(4), Some(format!("{:012}", p.amount).as_str()));
                assert_eq!(m.field(12), Some("240315101112"));
                assert_eq!(m.field(24), Some("200"));
                assert_eq!(m.field(26), Some(p.mcc.as_str()));
                assert_eq!(m.field(31), Some(p.ard.as_str()));
                assert_eq!(m.field(32), Some("412345"));
                assert_eq!(m.field(42), Some("MERCHANT0000001"));
                assert_eq!(m.field(49), Some("826"));
                assert_eq!(m.field(71), Some(format!("{:08}", i + 2).as_str()));
            }
            let m = &messages[1..6];
            assert_eq!(m[0].field(22), Some("D19101C99001"));
            assert_eq!(m[0].field(38), Some("A1B2C3"));
            let de43 = format!("DEMO STORE [1]!^|\\\\LONDON\\{}GBR", " ".repeat(13));
            assert_eq!(m[0].field(43), Some(de43.as_str()));
            assert_eq!(m[0].pds(23), Some("NA"));
            assert_eq!(m[0].pds.len(), 1);
            assert_eq!(m[2].field(38), None);
            assert_eq!(m[3].field(22), Some("009550S99000"));
            assert_eq!(m[3].pds(23), Some("CT6"));
            let de43 = format!("SHOP ON MAIN\\\\NEW YORK\\{}NY USA", " ".repeat(10));
            assert_eq!(m[4].field(43), Some(de43.as_str()));
            assert_eq!(m[4].pds(23), Some("ATM"));

            let trailer = &messages[6];
            assert_eq!(trailer.function_code(), Some("695"));
            assert_eq!(trailer.pds(105), header.pds(105));
            assert_eq!(trailer.pds(301), Some("0000000000015000"));
            assert_eq!(trailer.pds(306), Some("00000007"));
            assert_eq!(trailer.field(71), Some("00000007"));
        }
    }

    #[test]
    fn vbs_ends_with_zero_length_record() {
        let (bytes, _) = write_file(false, &[presentment(1, 5)]);
        assert_eq!(bytes.get(bytes.len() - 4..), Some(&[0u8, 0, 0, 0][..]));
        // Walk the length chain: header, presentment, trailer, end.
        let mut at = 0;
        let mut lengths = Vec::new();
        loop {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            lengths.push(len);
            at += 4 + len;
            if len == 0 {
                break;
            }
        }
        assert_eq!(at, bytes.len());
        assert_eq!(lengths.len(), 4);
    }

    #[test]
    fn blocks_of_1014_with_padding() {
        let items: Vec<Presentment> = (1..=40).map(|i| presentment(i, i)).collect();
        let (plain, _) = write_file(false, &items);
        let (blocked, _) = write_file(true, &items);
        assert!(plain.len() > 3 * BLOCK_DATA, "spans several blocks");
        assert_eq!(blocked.len() % BLOCK, 0);
        assert_eq!(blocked.len() / BLOCK, plain.len().div_ceil(BLOCK_DATA));
        let mut unblocked = Vec::new();
        for block in blocked.chunks(BLOCK) {
            assert_eq!(block.len(), BLOCK);
            assert_eq!(&block[BLOCK_DATA..], &[PAD, PAD]);
            unblocked.extend_from_slice(&block[..BLOCK_DATA]);
        }
        assert_eq!(&unblocked[..plain.len()], &plain[..]);
        assert!(unblocked[plain.len()..].iter().all(|&b| b == PAD));
        // A file that is exactly one block long gets no extra block.
        let (small, _) = write_file(true, &[]);
        assert_eq!(small.len(), BLOCK);
    }

    #[test]
    fn trailer_checksum_and_count() {
        let items: Vec<Presentment> = (1..=3).map(|i| presentment(i, 999_999_999_999)).collect();
        let (bytes, totals) = write_file(true, &items);
        assert_eq!(totals.messages, 5);
        assert_eq!(totals.amount_checksum, 2_999_999_999_997);
        let trailer = read_all(&bytes, true).pop().unwrap();
        assert_eq!(trailer.pds(301), Some("0002999999999997"));
        assert_eq!(trailer.pds(306), Some("00000005"));
    }

    #[test]
    fn checksum_overflow_is_refused_before_writing() {
        let mut writer = IpmWriter::new(Vec::new(), &info(false)).unwrap();
        let big = presentment(1, 999_999_999_999);
        for _ in 0..10_000 {
            writer.push(&big).unwrap();
        }
        assert!(matches!(
            writer.push(&big),
            Err(IpmError::Full { txn: 1, .. })
        ));
        writer.push(&presentment(2, 9_999)).unwrap();
        let (bytes, totals) = writer.finish().unwrap();
        assert_eq!(totals.amount_checksum, MAX_CHECKSUM);
        assert_eq!(totals.presentments, 10_001);
        let trailer = read_all(&bytes, false).pop().unwrap();
        assert_eq!(trailer.pds(301), Some("9999999999999999"));
    }

    #[test]
    fn bad_presentments_are_refused_and_the_file_stays_valid() {
        type Spoil = fn(&mut Presentment);
        let cases: [(u8, Spoil); 16] = [
            (2, |p| p.pan = Zeroizing::new("54133300890104X4".into())),
            (2, |p| p.pan = Zeroizing::new("54133300890104345678".into())),
            (2, |p| p.pan = Zeroizing::new(String::new())),
            (3, |p| p.processing_code = "00000".into()),
            (4, |p| p.amount = 1_000_000_000_000),
            (12, |p| p.local_time = "240230101112".into()),
            (12, |p| p.local_time = "2403151011".into()),
            (26, |p| p.mcc = "54a1".into()),
            (31, |p| p.ard = "2412345".into()),
            (38, |p| p.auth_id = "1234567".into()),
            (38, |p| p.auth_id = "12\u{e9}45".into()),
            (42, |p| p.merchant_id = "M\tX".into()),
            (43, |p| {
                p.name_location = location("SHOP\\ONE", "LONDON", "GBR")
            }),
            (43, |p| p.name_location = location("SHOP", "LONDON", "826")),
            (43, |p| p.name_location = String::new()),
            (49, |p| p.currency = "GBP".into()),
        ];
        let mut writer = IpmWriter::new(Vec::new(), &info(true)).unwrap();
        for (i, (de, spoil)) in cases.iter().enumerate() {
            let mut p = presentment(100 + i as u64, 1);
            spoil(&mut p);
            match writer.push(&p) {
                Err(IpmError::Field {
                    txn,
                    de: got,
                    reason,
                }) => {
                    assert_eq!((txn, got), (100 + i as u64, *de), "{reason}");
                    assert!(!reason.contains("5413"));
                }
                other => panic!("case {i}: {other:?}"),
            }
        }
        writer.push(&presentment(1, 10)).unwrap();
        let (bytes, totals) = writer.finish().unwrap();
        assert_eq!(totals.presentments, 1);
        let messages = read_all(&bytes, true);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1].field(71), Some("00000002"));
    }

    #[test]
    fn bad_file_info_is_refused() {
        let cases: [fn(&mut FileInfo); 6] = [
            |i| i.date = "20240230".into(),
            |i| i.date = "2024031".into(),
            |i| i.processor_id = "1234".into(),
            |i| i.sequence = 0,
            |i| i.sequence = 100_000,
            |i| i.acquiring_institution = "123456789012".into(),
        ];
        for spoil in cases {
            let mut i = info(false);
            spoil(&mut i);
            assert!(matches!(
                IpmWriter::new(Vec::new(), &i),
                Err(IpmError::FileInfo { .. })
            ));
        }
    }

    #[test]
    fn pos_data_code_mapping() {
        let cases = [
            ("051", "00", "D19101C99001"),        // chip, PIN pad
            ("071", "00", "M19101M99001"),        // contactless M/Chip
            ("901", "00", "219101B99001"),        // magnetic stripe, full track
            ("912", "00", "A09101A99000"),        // contactless stripe, no PIN pad
            ("801", "00", "D19101B99001"),        // chip fallback to stripe
            ("012", "08", "609910699000"),        // keyed, mail/telephone order
            ("812", "59", "009550S99000"),        // e-commerce
            ("100", "01", "099910799001"),        // credential on file
            ("028", "02", "251201299001"),        // unattended, PIN pad down
            ("", "", "099999099001"),             // nothing known
            ("ab", "zz", "099999099001"),         // garbage: nothing known
            ("A00101A00000", "", "A00101A00000"), // already ISO 8583:1993
        ];
        for (mode, condition, expected) in cases {
            let got = pos_data_code(mode, condition);
            assert_eq!(
                std::str::from_utf8(&got).unwrap(),
                expected,
                "{mode} / {condition}"
            );
        }
    }

    #[test]
    fn name_location_mapping() {
        let l = NameLocation::parse(b"CLOSED STORE           LONDON        GBR").unwrap();
        assert_eq!((l.name, l.city), (&b"CLOSED STORE"[..], &b"LONDON"[..]));
        assert_eq!((l.state, l.country), (*b"   ", *b"GBR"));
        let l = NameLocation::parse(b"A                      NEW YORK      NY ").unwrap();
        assert_eq!((l.state, l.country), (*b"NY ", *b"USA"));
        assert!(NameLocation::parse(b"ABCDEFGHIJKLMNOPQRSTUVW LONDON        GBR").is_err());
        assert!(NameLocation::parse(b"ABCDEFGHIJKLMNOPQRSTUV LONDON        GBR").is_ok());
        assert!(NameLocation::parse(b"                       LONDON        GBR").is_err());
        assert!(NameLocation::parse(b"SHOP                   LONDON        gbr").is_err());
        assert!(NameLocation::parse(b"SHOP                   LONDON").is_err());
        let no_city = location("SHOP", "", "FRA");
        let l = NameLocation::parse(no_city.as_bytes()).unwrap();
        assert_eq!(l.city, b"");
    }

    #[test]
    fn reader_errors_name_record_and_offset() {
        let items = [presentment(1, 1), presentment(2, 2)];
        let (plain, _) = write_file(false, &items);
        let header_len = 70;
        let first_len = u32::from_be_bytes(plain[70..74].try_into().unwrap()) as usize;

        // Truncated in the second presentment.
        let cut = &plain[..header_len + 4 + first_len + 10];
        let results: Vec<_> = IpmReader::new(cut, false).collect();
        assert_eq!(results.len(), 3);
        assert!(matches!(
            results[2],
            Err(IpmError::Truncated { record: 3, offset }) if offset == (header_len + 4 + first_len) as u64
        ));

        // No end record.
        let cut = &plain[..plain.len() - 4];
        let last = IpmReader::new(cut, false).last().unwrap();
        assert!(matches!(last, Err(IpmError::Truncated { record: 5, .. })));

        // An unknown data element (bit 7) in the first presentment.
        let mut bad = plain.clone();
        bad[header_len + 8] |= 0x02;
        let err = IpmReader::new(&bad[..], false).nth(1).unwrap().unwrap_err();
        assert!(
            matches!(&err, IpmError::Malformed { record: 2, offset, reason } if *offset == (header_len + 8) as u64 && reason.contains("DE 7")),
            "{err}"
        );

        // A PAN length prefix that is not digits.
        let mut bad = plain.clone();
        bad[header_len + 24] = 0xC1;
        let err = IpmReader::new(&bad[..], false).nth(1).unwrap().unwrap_err();
        assert!(
            matches!(&err, IpmError::Malformed { record: 2, offset, .. } if *offset == (header_len + 24) as u64),
            "{err}"
        );

        // A huge record length is refused before allocating.
        let mut bad = plain.clone();
        bad[..4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        let err = IpmReader::new(&bad[..], false).next().unwrap().unwrap_err();
        assert!(matches!(
            err,
            IpmError::Malformed {
                record: 1,
                offset: 0,
                ..
            }
        ));

        // Blocked file read with a damaged block trailer: the offset is the
        // stored file's.
        let many: Vec<Presentment> = (1..=10).map(|i| presentment(i, i)).collect();
        let (mut blocked, _) = write_file(true, &many);
        blocked[BLOCK + BLOCK_DATA] = 0x00;
        let err = IpmReader::new(&blocked[..], true)
            .find_map(Result::err)
            .unwrap();
        assert!(
            matches!(&err, IpmError::Malformed { offset, .. } if *offset == (BLOCK + BLOCK_DATA) as u64),
            "{err}"
        );
        // Offsets of messages in a blocked file count the padding.
        let (blocked, _) = write_file(true, &many);
        let (plain, _) = write_file(false, &many);
        let stored: Vec<u64> = read_all(&blocked, true).iter().map(|m| m.offset).collect();
        let vbs: Vec<u64> = read_all(&plain, false).iter().map(|m| m.offset).collect();
        assert!(stored.iter().any(|&o| o > BLOCK as u64));
        for (s, v) in stored.iter().zip(&vbs) {
            assert_eq!(*s, v + 2 * (v / BLOCK_DATA as u64));
        }
    }

    /// Written by cardutil 0.7.3 (`IpmWriter(out, encoding='cp500')`, see
    /// `specs/clearing-ipm.md`): header, one 1240 with elements this crate
    /// does not write (DE 5, 9, 14, 23, 33, 37, 41, 50, binary DE 55, three
    /// PDS), trailer.
    const CARDUTIL_FILE: &str = "00000042f1f6f4f480000100000100000200000000000000f6f9f7f0f3f2f0f1f0f5f0f2f5f0f0f1f2f4f0f3f1f5f0f0f0f0f0f0f5f8f9f1f0f0f1f1f0f1f0f0f0f0f0f0f0f10000012cf1f2f4f0f89407428ce1c2000200000000000000f1f6f2f2f2f3f0f0f0f0f4f8f4f0f0f0f1f1f0f0f0f0f0f0f0f0f0f0f0f0f0f1f2f3f4f5f0f0f0f0f0f0f0f1f5f0f0f0f6f1f0f0f0f0f0f0f2f4f0f3f1f4f2f3f5f9f0f1f2f7f1f2c3f5f1f0f1f0c3f1f1f1f0f1f0f0f1f2f0f0f5f9f9f9f2f3f7f5f4f1f2f3f4f5f4f0f7f5f0f0f0f0f0f0f0f0f1f2f3f0f6f0f0f0f0f0f0d9d9d5f0f0f0f0f0f0f0f0f1c1c2c3f1f2f3e3c5d9d4f0f0f0f1d4c5d9c3c8f0f0f0f0f0f0f0f0f0f1f4f4c3c1c6c5404ae4d5d65ae0f140c8c9c7c840e2e34fe0d7c1d9c9e2e0f7f5f0f0f140404040405fbb40c6d9c1f0f3f5f0f0f2f3f0f0f3c3e3f2f0f1f5f8f0f1f0d4c3c3f1f1f1f1f1f1e7f0f1f6f5f0f0f1d4f9f7f8f8f2f6f0f1f19f2608a1b2c3d4e5f60718f0f0f0f0f0f0f0f200000068f1f6f4f480000100000100000200000000000000f6f9f5f0f7f0f0f1f0f5f0f2f5f0f0f1f2f4f0f3f1f5f0f0f0f0f0f0f5f8f9f1f0f0f1f1f0f1f0f3f0f1f0f1f6f0f0f0f0f0f0f0f0f0f0f0f1f2f3f4f5f0f3f0f6f0f0f8f0f0f0f0f0f0f0f3f0f0f0f0f0f0f0f300000000";

    #[test]
    fn reads_a_file_written_by_cardutil() {
        let plain = hex::decode(CARDUTIL_FILE).unwrap();
        // cardutil's blocked output of the same records: these bytes padded
        // with 40 to one block.
        let mut blocked = plain.clone();
        blocked.resize(BLOCK, PAD);
        for (bytes, is_blocked) in [(&plain, false), (&blocked, true)] {
            let messages = read_all(bytes, is_blocked);
            assert_eq!(messages.len(), 3);
            assert_eq!(messages[0].pds(105), Some("0012403150000005891001101"));
            let m = &messages[1];
            assert_eq!(m.mti, "1240");
            let expect = [
                (2, "2223000048400011"),
                (4, "000000012345"),
                (5, "000000015000"),
                (9, "61000000"),
                (12, "240314235901"),
                (14, "2712"),
                (22, "C51010C11101"),
                (23, "001"),
                (33, "000000"),
                (37, "RRN000000001"),
                (41, "TERM0001"),
                (43, "CAFE [UNO]\\1 HIGH ST!\\PARIS\\75001     ^| FRA"),
                (48, "0023003CT20158010MCC111111X0165001M"),
                (50, "826"),
                (55, "9F2608A1B2C3D4E5F60718"),
                (71, "00000002"),
            ];
            for (de, value) in expect {
                assert_eq!(m.field(de), Some(value), "DE {de}");
            }
            assert_eq!(m.pds(23), Some("CT2"));
            assert_eq!(m.pds(158), Some("MCC111111X"));
            assert_eq!(m.pds(165), Some("M"));
            assert_eq!(messages[2].pds(301), Some("0000000000012345"));
            assert_eq!(messages[2].pds(306), Some("00000003"));
        }
    }

    #[test]
    fn debug_masks_the_pan() {
        let (bytes, _) = write_file(false, &[presentment(1, 1)]);
        let m = &read_all(&bytes, false)[1];
        let shown = format!("{m:?}");
        assert!(shown.contains("541333******0434"), "{shown}");
        assert!(!shown.contains("5413330089010434"));
    }

    /// Feeds `bytes` to the reader (blocked, unblocked and detected) to the
    /// end; it must stop without panicking.
    fn read_everything(bytes: &[u8]) {
        for blocked in [false, true] {
            let count = IpmReader::new(bytes, blocked).take(100_000).count();
            assert!(count <= bytes.len() / 4 + 1);
        }
        if let Ok(reader) = IpmReader::detect(bytes) {
            let _ = reader.take(100_000).count();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        #[test]
        fn reader_never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            read_everything(&bytes);
        }

        #[test]
        fn reader_never_panics_on_mutated_files(
            blocked: bool,
            count in 0usize..6,
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..8),
            cut in proptest::option::of(proptest::num::usize::ANY),
        ) {
            let items: Vec<Presentment> = (1..=count as u64).map(|i| presentment(i, i)).collect();
            let (mut bytes, _) = write_file(blocked, &items);
            for (at, value) in edits {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            read_everything(&bytes);
        }
    }

    /// Writes sample files for the check with cardutil (see
    /// `specs/clearing-ipm.md`): `cargo test --lib clearing::ipm -- --ignored
    /// write_sample_files`, then read `/tmp/cardswitch-ipm-sample-*.ipm`.
    #[test]
    #[ignore]
    fn write_sample_files() {
        let mut items: Vec<Presentment> = (1..=3).map(|i| presentment(i, 1234 * i)).collect();
        items[1].processing_code = "200000".into();
        items[1].kind = ClearedKind::Refund;
        items[2].entry_mode = "812".into();
        items[2].condition = "59".into();
        items[2].auth_id = "XY789 ".into();
        for (blocked, name) in [(true, "blocked"), (false, "vbs")] {
            let (bytes, totals) = write_file(blocked, &items);
            let path = std::env::temp_dir().join(format!("cardswitch-ipm-sample-{name}.ipm"));
            std::fs::write(&path, &bytes).unwrap();
            println!("{}: {} bytes, {totals:?}", path.display(), bytes.len());
        }
    }

    /// Throughput of the writer (release: `cargo test --release --lib
    /// clearing::ipm -- --ignored --nocapture writer_throughput`).
    #[test]
    #[ignore]
    fn writer_throughput() {
        let items: Vec<Presentment> = (1..=1000).map(|i| presentment(i, i)).collect();
        let total = 2_000_000;
        for blocked in [false, true] {
            let start = std::time::Instant::now();
            let mut writer = IpmWriter::new(io::sink(), &info(blocked)).unwrap();
            for i in 0..total {
                writer.push(&items[i % items.len()]).unwrap();
            }
            let (_, totals) = writer.finish().unwrap();
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "blocked={blocked}: {} records in {seconds:.3} s = {:.0} records/s",
                totals.presentments,
                totals.presentments as f64 / seconds
            );
        }
    }
}
