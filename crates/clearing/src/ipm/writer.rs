//! The writer of the acquirer's outgoing IPM file.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use iso8583::error::{CodecError, ErrorKind, Location};
use iso8583::{Dialect, Message};
use zeroize::{Zeroize, Zeroizing};

use super::pos::{NameLocation, pos_data_code, terminal_type};
use super::{
    BLOCK, BLOCK_DATA, FileInfo, IpmError, IpmTotals, MAX_CHECKSUM, MAX_MESSAGES, MTI_FILE,
    MTI_PRESENTMENT, PAD, UNBLOCKED_CHUNK, all_digits, ipm_dialect, pds, valid_local_time,
    write_digits,
};
use crate::item::Presentment;
use crate::journal::TxnId;

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

    acceptor(m, values, p)?;

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

/// DE 42 (card acceptor ID) and DE 43 (card acceptor name/location) of `p`,
/// checked and set in `m`.
fn acceptor(m: &mut Message, values: &mut Values, p: &Presentment) -> Result<(), IpmError> {
    let err = |de: u8, reason: &'static str| IpmError::Field {
        txn: p.txn,
        de,
        reason,
    };
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
    Ok(())
}
