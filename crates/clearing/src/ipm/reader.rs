//! A streaming reader of any IPM file.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;
use iso8583::error::{CodecError, ErrorKind, Location};
use iso8583::spec::{Class, Length};
use iso8583::{Dialect, Message};
use zeroize::Zeroizing;

use std::sync::Arc;

use iso8583::SpecError;

use super::{
    BLOCK, BLOCK_DATA, IpmError, MAX_RECORD_LEN, MESSAGE_HEAD, PAD, UNBLOCKED_CHUNK,
    load_ipm_dialect, pds,
};

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
