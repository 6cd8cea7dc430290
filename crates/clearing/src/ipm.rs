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

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use zeroize::{Zeroize, Zeroizing};

use super::item::Presentment;
use crate::journal::TxnId;
use iso8583::error::{CodecError, ErrorKind, Location};
use iso8583::spec::{Class, Length};
use iso8583::{Dialect, Message, Mti, SpecError};

#[path = "pds.rs"]
pub mod pds;

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
    dialect: Arc<Dialect>,
    /// The record being encoded, reused (it holds the PAN: zeroed when
    /// dropped).
    record: ZeroOnDrop,
    /// Where the values of the elements other than the PAN are put, one
    /// allocation for many messages.
    values: Values,
    /// The 1240 message, built again in place for each presentment.
    presentment: Message,
    /// PDS 0105 of the header and trailer, ASCII.
    file_id: [u8; 25],
    /// DE 32, ASCII digits.
    acquirer: Bytes,
    /// DE 33 and DE 94, ASCII digits.
    forwarder: Bytes,
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
            dialect: ipm_dialect()?,
            record: ZeroOnDrop(BytesMut::with_capacity(512)),
            values: Values(BytesMut::with_capacity(VALUES_CHUNK)),
            presentment: Message::new(MTI_PRESENTMENT),
            file_id,
            acquirer: Bytes::copy_from_slice(info.acquiring_institution.as_bytes()),
            forwarder: Bytes::copy_from_slice(info.forwarding_institution.as_bytes()),
            messages: 0,
            presentments: 0,
            checksum: 0,
            broken: false,
        };
        let header = file_message(&mut writer.values, b"697", &file_id, 1, None);
        writer.encode(&header).map_err(IpmError::Encode)?;
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
        let built = presentment(
            &mut self.presentment,
            &mut self.values,
            p,
            Institutions {
                acquirer: &self.acquirer,
                forwarder: &self.forwarder,
            },
            number,
        );
        let encoded = built.and_then(|()| {
            encode_record(&mut self.record.0, &self.dialect, &self.presentment)
                .map_err(|e| field_error(p.txn, &e))
        });
        // The values go now (the PAN's buffer is zeroed); the message's
        // room stays for the next presentment.
        self.presentment.clear();
        encoded?;
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
        let trailer = file_message(
            &mut self.values,
            b"695",
            &self.file_id,
            number,
            Some((self.checksum, number)),
        );
        self.encode(&trailer).map_err(IpmError::Encode)?;
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

    /// Encodes `message` as the record to emit.
    fn encode(&mut self, message: &Message) -> Result<(), CodecError> {
        encode_record(&mut self.record.0, &self.dialect, message)
    }

    /// Hands the built record to the sink; a failed write breaks the writer.
    fn emit(&mut self) -> Result<(), IpmError> {
        let result = self.sink.put(&self.record.0);
        self.record.0.clear();
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

/// Encodes `message` under `dialect` into `record` as one VBS record (4-byte
/// big-endian length, then the message); on error `record` is empty.
fn encode_record(
    record: &mut BytesMut,
    dialect: &Dialect,
    message: &Message,
) -> Result<(), CodecError> {
    record.clear();
    record.extend_from_slice(&[0; 4]);
    if let Err(e) = message.encode(dialect, record) {
        record.clear();
        return Err(e);
    }
    let len = u32::try_from(record.len().saturating_sub(4)).unwrap_or(u32::MAX);
    if let Some(slot) = record.get_mut(..4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// A reused buffer zeroed when dropped (it holds card data).
struct ZeroOnDrop(BytesMut);

impl Drop for ZeroOnDrop {
    fn drop(&mut self) {
        self.0.clear();
        let capacity = self.0.capacity();
        self.0.resize(capacity, 0);
        self.0.as_mut().zeroize();
    }
}

/// Size of each allocation [`Values`] takes.
const VALUES_CHUNK: usize = 8 * 1024;

/// Values of data elements, cut from one shared buffer (one allocation for
/// many messages; a chunk is freed when the last message using it is). Not
/// for card data: the PAN gets its own buffer, zeroed when dropped.
struct Values(BytesMut);

impl Values {
    /// `parts` one after the other as one value.
    fn put(&mut self, parts: &[&[u8]]) -> Bytes {
        let len = parts.iter().map(|p| p.len()).sum();
        if self.0.capacity() < len {
            self.0.reserve(VALUES_CHUNK.max(len));
        }
        for part in parts {
            self.0.extend_from_slice(part);
        }
        self.0.split().freeze()
    }

    /// `value` as `width` decimal digits, zero-padded (callers check it
    /// fits; at most 20 digits).
    fn number(&mut self, value: u64, width: usize) -> Bytes {
        let mut digits = [b'0'; 20];
        let width = width.min(digits.len());
        let slot = digits.get_mut(..width).unwrap_or_default();
        write_digits(slot, value);
        self.put(&[slot])
    }
}

/// The File Header (`697`) or File Trailer (`695`, with amount checksum and
/// message count) 1644 message.
fn file_message(
    values: &mut Values,
    function: &[u8; 3],
    file_id: &[u8; 25],
    number: u64,
    trailer: Option<(u64, u64)>,
) -> Message {
    let mut m = Message::new(MTI_FILE);
    m.set(24, values.put(&[function]));
    let mut additional = Vec::with_capacity(71);
    pds::push(&mut additional, 105, file_id);
    if let Some((checksum, count)) = trailer {
        let mut digits = [b'0'; 16];
        write_digits(&mut digits, checksum);
        pds::push(&mut additional, 301, &digits);
        let mut digits = [b'0'; 8];
        write_digits(&mut digits, count);
        pds::push(&mut additional, 306, &digits);
    }
    m.set(48, values.put(&[&additional]));
    m.set(71, values.number(number, 8));
    m
}

/// The institution ids every presentment carries (ASCII digits).
#[derive(Debug, Clone, Copy)]
struct Institutions<'a> {
    /// DE 32.
    acquirer: &'a Bytes,
    /// DE 33 and DE 94.
    forwarder: &'a Bytes,
}

/// A presentment's element the `ipm` dialect refused (its values are checked
/// before, so this names the element without the value).
fn field_error(txn: TxnId, e: &CodecError) -> IpmError {
    let de = match e.location {
        Location::Field(de) => de,
        _ => 0,
    };
    let reason = match e.kind {
        ErrorKind::WrongLength { .. } => "wrong length for its IPM layout",
        ErrorKind::TooLong { .. } => "longer than its IPM layout allows",
        ErrorKind::BadContent { .. } => "a character its IPM layout does not allow",
        _ => "does not fit its IPM layout",
    };
    IpmError::Field { txn, de, reason }
}

/// Whether every byte is printable ASCII (`0x20..=0x7E`), the characters
/// the writer puts in text elements.
fn printable(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..=0x7E).contains(b))
}

/// EBCDIC spaces are ASCII spaces here: the dialect translates.
const SPACES: &[u8; 15] = b"               ";

/// The First Presentment/1240 of `p`, message number `number`, built in
/// `m` (cleared first). Every value is checked first: a presentment that
/// does not fit is refused ([`IpmError::Field`]) before anything is
/// encoded.
fn presentment(
    m: &mut Message,
    values: &mut Values,
    p: &Presentment,
    institutions: Institutions<'_>,
    number: u64,
) -> Result<(), IpmError> {
    let err = |de: u8, reason: &'static str| IpmError::Field {
        txn: p.txn,
        de,
        reason,
    };
    m.clear();

    let pan = p.pan.as_bytes();
    if pan.is_empty() || pan.len() > 19 || !all_digits(pan) {
        return Err(err(2, "PAN must be 1 to 19 digits"));
    }
    // The clear PAN in a buffer of its own, zeroed when the message goes.
    m.set(2, Bytes::from_owner(Zeroizing::new(pan.to_vec())));

    let processing = p.processing_code.as_bytes();
    if processing.len() != 6 || !all_digits(processing) {
        return Err(err(3, "processing code must be 6 digits"));
    }
    m.set(3, values.put(&[processing]));

    if p.amount > 999_999_999_999 {
        return Err(err(4, "amount beyond 12 digits"));
    }
    m.set(4, values.number(p.amount, 12));

    let local = p.local_time.as_bytes();
    if !valid_local_time(local) {
        return Err(err(12, "local date and time must be a real YYMMDDhhmmss"));
    }
    m.set(12, values.put(&[local]));

    let pos = pos_data_code(&p.entry_mode, &p.condition);
    if !printable(&pos) {
        return Err(err(22, "not printable"));
    }
    m.set(22, values.put(&[&pos]));

    m.set(24, Bytes::from_static(b"200"));

    let mcc = p.mcc.as_bytes();
    if mcc.len() != 4 || !all_digits(mcc) {
        return Err(err(26, "MCC must be 4 digits"));
    }
    m.set(26, values.put(&[mcc]));

    let ard = p.ard.as_bytes();
    if ard.len() != 23 || !all_digits(ard) {
        return Err(err(31, "acquirer reference data must be 23 digits"));
    }
    m.set(31, values.put(&[ard]));

    m.set(32, institutions.acquirer.clone());
    m.set(33, institutions.forwarder.clone());

    let approval = p.auth_id.as_bytes();
    if !approval.is_empty() {
        if approval.len() > 6 {
            return Err(err(38, "approval code longer than 6 characters"));
        }
        if !printable(approval) {
            return Err(err(38, "approval code not printable ASCII"));
        }
        let fill = SPACES.get(..6 - approval.len()).unwrap_or_default();
        m.set(38, values.put(&[approval, fill]));
    }

    let merchant = p.merchant_id.as_bytes();
    if merchant.is_empty() || merchant.len() > 15 {
        return Err(err(42, "card acceptor ID must be 1 to 15 characters"));
    }
    if !printable(merchant) {
        return Err(err(42, "card acceptor ID not printable ASCII"));
    }
    let fill = SPACES.get(..15 - merchant.len()).unwrap_or_default();
    m.set(42, values.put(&[merchant, fill]));

    let location = NameLocation::parse(p.name_location.as_bytes()).map_err(|r| err(43, r))?;
    if !printable(location.name) || !printable(location.city) {
        return Err(err(43, "name/location not printable ASCII"));
    }
    // Subfield 2 (street address) is empty: two delimiters in a row;
    // subfield 4 (postal code) is not known: 10 spaces.
    let postal_code = SPACES.get(..10).unwrap_or_default();
    m.set(
        43,
        values.put(&[
            location.name,
            b"\\\\",
            location.city,
            b"\\",
            postal_code,
            &location.state,
            &location.country,
        ]),
    );

    let terminal_type = terminal_type(&pos, mcc);
    let pds_head = pds::head(23, terminal_type.len());
    m.set(48, values.put(&[&pds_head, terminal_type]));

    let currency = p.currency.as_bytes();
    if currency.len() != 3 || !all_digits(currency) {
        return Err(err(49, "currency must be 3 digits (ISO 4217 numeric)"));
    }
    m.set(49, values.put(&[currency]));

    m.set(71, values.number(number, 8));
    m.set(94, institutions.forwarder.clone());
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
    /// The record being read (it holds card data: zeroed when dropped, also
    /// after it has been handed to the decoder).
    record: Zeroizing<Vec<u8>>,
    /// The `ipm` dialect, or why it did not load (the first read says so).
    dialect: Result<Arc<Dialect>, Arc<SpecError>>,
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
            dialect: load_ipm_dialect(),
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
        self.record.reserve_exact(len);
        if self.take(len)? < len {
            return Err(truncated(self));
        }
        // The decoder takes the record as it is (no copy); it is zeroed
        // when the decoded message is dropped.
        let frame = Bytes::from_owner(Zeroizing::new(std::mem::take(&mut *self.record)));
        let message = self.parse(start, frame)?;
        self.records += 1;
        Ok(Some(message))
    }

    /// Decodes the record `frame` (without its length), which started at
    /// VBS offset `start`, under the `ipm` dialect.
    fn parse(&self, start: u64, frame: Bytes) -> Result<IpmMessage, IpmError> {
        let data = start + 4;
        let bad = |at: usize, reason: String| self.malformed(data + at as u64, reason);
        let dialect = self
            .dialect
            .as_ref()
            .map_err(|e| IpmError::Dialect(e.clone()))?;
        if frame.len() < MESSAGE_HEAD {
            return Err(bad(
                0,
                format!(
                    "a record of {} bytes is shorter than an MTI and two bitmaps",
                    frame.len()
                ),
            ));
        }
        let decoded = match Message::decode(dialect, frame.clone()) {
            Ok(decoded) => decoded,
            Err(e) => {
                // A bad PDS in an element before the one the decoder
                // stopped at comes first in the record.
                if let Some(partial) = Message::salvage(dialect, frame.clone())
                    && let Err((at, reason)) = elements(&partial, dialect)
                {
                    return Err(bad(at, reason));
                }
                let (at, reason) = decode_error(&e, dialect, frame.len());
                return Err(bad(at, reason));
            }
        };
        let (fields, pds) = elements(&decoded, dialect).map_err(|(at, r)| bad(at, r))?;
        Ok(IpmMessage {
            record: self.records + 1,
            offset: self.raw_offset(start),
            mti: decoded.mti().as_str().to_string(),
            fields,
            pds,
        })
    }
}

/// Text of a value as the `ipm` dialect holds it: one Latin-1 byte per
/// character (CP500 decodes every byte to one).
fn latin1(value: &[u8]) -> String {
    value.iter().map(|&b| char::from(b)).collect()
}

/// Elements by number (binary ones, DE 55, as uppercase hex) and the PDS of
/// those that carry them; on a bad PDS, its offset in the record and why.
type Elements = (BTreeMap<u8, String>, BTreeMap<u16, String>);

/// The elements of a decoded message as [`IpmMessage`] holds them.
fn elements(message: &Message, dialect: &Dialect) -> Result<Elements, (usize, String)> {
    let mut fields = BTreeMap::new();
    let mut all_pds = BTreeMap::new();
    // Where each element starts in the record: every IPM element is one
    // byte per character or binary, after its 2 or 3 digit length.
    let mut pos = MESSAGE_HEAD;
    for (de, value) in message.fields() {
        let (prefix, class) = match dialect.field(de) {
            Some(spec) => match spec.length {
                Length::Fixed(_) => (0, spec.class),
                Length::Variable { digits, .. } => (usize::from(digits), spec.class),
            },
            None => (0, Class::Ans),
        };
        let at = pos + prefix;
        if pds::carries_pds(de) {
            for found in pds::split(value) {
                let found = found.map_err(|(i, e)| (at + i, format!("DE {de}: {e}")))?;
                all_pds.insert(found.tag, latin1(found.data));
            }
        }
        let text = if class == Class::B {
            hex::encode_upper(value)
        } else {
            latin1(value)
        };
        fields.insert(de, text);
        pos = at + value.len();
    }
    Ok((fields, all_pds))
}

/// Offset in the record and reason of what the decoder refused, in the
/// reader's words.
fn decode_error(e: &CodecError, dialect: &Dialect, record_len: usize) -> (usize, String) {
    let at = e.offset;
    match (e.location, &e.kind) {
        (Location::Mti | Location::Bitmap, ErrorKind::Truncated { .. }) => (
            0,
            format!("a record of {record_len} bytes is shorter than an MTI and two bitmaps"),
        ),
        (Location::Mti, ErrorKind::BadMti) => (0, "the MTI is not four EBCDIC digits".into()),
        (Location::Mti, ErrorKind::MtiNotAllowed(mti)) => (
            0,
            format!("the MTI {mti} is not an ISO 8583:1993 message type"),
        ),
        (Location::Bitmap, ErrorKind::NoSecondaryBitmap) => (
            4,
            "bit 1 (secondary bitmap, always set in IPM) is not set".into(),
        ),
        (Location::Field(de), ErrorKind::UndefinedField) => {
            (4, format!("DE {de} is set but is not in the IPM layout"))
        }
        (Location::Field(de), kind) => {
            let digits = match dialect.field(de).map(|s| s.length) {
                Some(Length::Variable { digits, .. }) => usize::from(digits),
                _ => 0,
            };
            match kind {
                ErrorKind::BadLengthPrefix { .. } => {
                    (at, format!("DE {de} length is not {digits} EBCDIC digits"))
                }
                ErrorKind::Truncated { .. } if record_len.saturating_sub(at) < digits => (
                    at,
                    format!("DE {de} length runs past the end of the record"),
                ),
                ErrorKind::Truncated { needed, .. } => (
                    at + digits,
                    format!("DE {de} ({needed} bytes) runs past the end of the record"),
                ),
                ErrorKind::TooLong { len, max } => (
                    at,
                    format!("DE {de} length {len} is beyond the IPM maximum {max}"),
                ),
                other => (at, format!("DE {de}: {other}")),
            }
        }
        (Location::End, ErrorKind::TrailingBytes { count }) => {
            (at, format!("{count} bytes after the last data element"))
        }
        (location, kind) => (at, format!("{location}: {kind}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClearedKind;

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

    #[test]
    fn reader_errors_from_the_dialect() {
        let (plain, _) = write_file(false, &[presentment(1, 1)]);
        // The first presentment: record at 70, message at 74.
        let first = 74;
        let error_at = |spoil: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = plain.clone();
            spoil(&mut bytes);
            match IpmReader::new(&bytes[..], false).nth(1) {
                Some(Err(IpmError::Malformed {
                    record,
                    offset,
                    reason,
                })) => (record, offset, reason),
                other => panic!("{other:?}"),
            }
        };
        // Version digit 0: not an ISO 8583:1993 message type.
        let (record, offset, reason) = error_at(&|b| b[first] = 0xF0);
        assert_eq!((record, offset), (2, first as u64));
        assert!(reason.contains("0240 is not an ISO 8583:1993"), "{reason}");
        // Bit 1 cleared.
        let (_, offset, reason) = error_at(&|b| b[first + 4] &= 0x7F);
        assert_eq!(offset, first as u64 + 4);
        assert!(reason.starts_with("bit 1 (secondary bitmap"), "{reason}");
        // A PAN length of 25: beyond DE 2's maximum.
        let (_, offset, reason) =
            error_at(&|b| b[first + 20..first + 22].copy_from_slice(&[0xF2, 0xF5]));
        assert_eq!(offset, first as u64 + 20);
        assert_eq!(reason, "DE 2 length 25 is beyond the IPM maximum 19");
        // A PDS tag that is not digits: the offset is the tag's in the file.
        let tag = plain
            .windows(7)
            .position(|w| w == ebcdic("0023002"))
            .unwrap();
        let (_, offset, reason) = error_at(&|b| b[tag + 1] = 0xC1);
        assert_eq!(offset, tag as u64);
        assert_eq!(reason, "DE 48: PDS tag is not 4 EBCDIC digits");
        // A DE 2 running past the end of the record.
        let mut short = plain[..first + 24].to_vec();
        short[70..74].copy_from_slice(&24u32.to_be_bytes());
        short.extend_from_slice(&[0, 0, 0, 0]);
        let err = IpmReader::new(&short[..], false)
            .nth(1)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, IpmError::Malformed { offset, reason, .. }
                if *offset == first as u64 + 22 && reason == "DE 2 (16 bytes) runs past the end of the record"),
            "{err}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(500))]

        /// Whatever record the `ipm` dialect decodes, it encodes again to
        /// the same bytes (the invariant the codec's fuzz target checks for
        /// every built-in dialect), edits or not.
        #[test]
        fn decoded_records_encode_to_the_same_bytes(
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..4),
        ) {
            let (bytes, _) = write_file(false, &[presentment(1, 1), presentment(2, 2)]);
            let dialect = ipm_dialect().unwrap();
            let mut at = 0;
            while let Some(prefix) = bytes.get(at..at + 4) {
                let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
                if len == 0 {
                    break;
                }
                let mut record = bytes[at + 4..at + 4 + len].to_vec();
                for (i, value) in &edits {
                    let i = i % record.len();
                    record[i] = *value;
                }
                let frame = Bytes::from(record);
                if let Ok(m) = Message::decode(&dialect, frame.clone()) {
                    proptest::prop_assert_eq!(m.to_bytes(&dialect).unwrap(), frame);
                }
                at += 4 + len;
            }
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
