//! [`Message`]: an MTI and the fields present, with the decoder and encoder.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::bitmap::Bitmaps;
use super::ebcdic;
use super::error::{CodecError, Direction, ErrorKind, Location};
use super::field::{self, Cursor, Decoded};
use super::spec::{DataEncoding, Dialect, MtiEncoding};
use crate::card::{Pan, PinBlock, Track2};

/// A message type indicator: four decimal digits (version, class, function,
/// origin), e.g. `0200`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mti([u8; 4]);

impl Mti {
    /// An MTI from a literal, checked at compile time when used in a const:
    /// `const ECHO: Mti = Mti::from_static("0800");`.
    pub const fn from_static(text: &'static str) -> Mti {
        let b = text.as_bytes();
        assert!(b.len() == 4, "an MTI has four digits");
        let digits = [b[0], b[1], b[2], b[3]];
        let mut i = 0;
        while i < 4 {
            assert!(digits[i].is_ascii_digit(), "an MTI has four digits");
            i += 1;
        }
        Mti(digits)
    }

    /// Parses four ASCII digits.
    pub fn parse(text: &str) -> Result<Mti, ErrorKind> {
        match text.as_bytes() {
            &[a, b, c, d] if [a, b, c, d].iter().all(u8::is_ascii_digit) => Ok(Mti([a, b, c, d])),
            _ => Err(ErrorKind::BadMti),
        }
    }

    /// The four digits as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The response MTI of a request (`0200` → `0210`, `0420` → `0430`):
    /// the function digit plus one. `None` if this MTI is already a response
    /// or an advice response (odd function digit).
    pub fn response(&self) -> Option<Mti> {
        let [v, c, f, o] = self.0;
        (f % 2 == 0 && f < b'9').then_some(Mti([v, c, f + 1, o]))
    }

    /// Whether the function digit marks a request or advice (even digit).
    pub fn is_request(&self) -> bool {
        self.0[2].is_multiple_of(2)
    }

    /// Whether this is network management (class 8: 0800, 1814 …), which
    /// is neither MAC'd nor translated.
    pub fn is_network_management(&self) -> bool {
        self.0[1] == b'8'
    }

    /// The version digit: `0` for ISO 8583:1987, `1` for 1993, `2` for 2003.
    pub fn version(&self) -> u8 {
        self.0[0] - b'0'
    }

    /// Message class and function with the response bit cleared, e.g. `20`
    /// for 0200, 0210, 1200 and 1210 alike: what a request and its response
    /// share, for matching them up.
    pub fn class_key(&self) -> [u8; 2] {
        [self.0[1], self.0[2] & !1]
    }

    /// The same message type under another version digit (`0200` → `1200`).
    pub fn with_version(&self, version: u8) -> Mti {
        let [_, c, f, o] = self.0;
        Mti([b'0' + version % 10, c, f, o])
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

/// An ISO 8583 message: the MTI and the fields present, each held in its
/// logical form — text for every class but `b`, raw bytes for `b`.
///
/// A decoded message keeps the frame it came from and points into it where
/// the wire form is the logical form (ASCII text, binary); BCD, EBCDIC and hex
/// values are translated into one buffer per message. Fields set by hand are
/// held on their own. `Debug` masks card data.
#[derive(Clone)]
pub struct Message {
    mti: Mti,
    /// The frame the message was decoded from (empty when built by hand).
    frame: Bytes,
    /// Values translated while decoding.
    decoded: Bytes,
    /// Values given to [`Message::set`].
    owned: Vec<Bytes>,
    /// Fields present, sorted by number, no duplicates.
    slots: Vec<Slot>,
}

/// One field present and where its value lives.
#[derive(Debug, Clone, Copy)]
struct Slot {
    number: u8,
    value: Value,
}

#[derive(Debug, Clone, Copy)]
enum Value {
    /// `frame[start..end]`.
    Frame(usize, usize),
    /// `decoded[start..end]`.
    Decoded(usize, usize),
    /// `owned[index]`.
    Owned(usize),
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.mti == other.mti && self.fields().eq(other.fields())
    }
}

impl Eq for Message {}

impl Message {
    /// An empty message of type `mti`.
    pub fn new(mti: Mti) -> Message {
        // Room for a typical request without growing the vectors field by field.
        const TYPICAL_FIELDS: usize = 20;
        Message {
            mti,
            frame: Bytes::new(),
            decoded: Bytes::new(),
            owned: Vec::with_capacity(TYPICAL_FIELDS),
            slots: Vec::with_capacity(TYPICAL_FIELDS),
        }
    }

    /// The message type indicator.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Changes the message type indicator.
    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    fn find(&self, number: u8) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&number, |s| s.number)
    }

    fn value(&self, value: Value) -> &[u8] {
        let found = match value {
            Value::Frame(start, end) => self.frame.get(start..end),
            Value::Decoded(start, end) => self.decoded.get(start..end),
            Value::Owned(index) => self.owned.get(index).map(|b| &b[..]),
        };
        found.unwrap_or_default()
    }

    /// Sets field `number` to `value` (text, or raw bytes for class `b`).
    /// The value is checked against the dialect when the message is encoded.
    pub fn set(&mut self, number: u8, value: impl Into<Bytes>) -> &mut Message {
        let value = value.into();
        let index = match self.find(number) {
            Ok(i) => match self.slots.get(i).map(|s| s.value) {
                Some(Value::Owned(existing)) => existing,
                _ => self.owned.len(),
            },
            Err(_) => self.owned.len(),
        };
        if let Some(slot) = self.owned.get_mut(index) {
            *slot = value;
        } else {
            self.owned.push(value);
        }
        let slot = Slot {
            number,
            value: Value::Owned(index),
        };
        match self.find(number) {
            Ok(i) => {
                if let Some(existing) = self.slots.get_mut(i) {
                    *existing = slot;
                }
            }
            Err(i) => self.slots.insert(i, slot),
        }
        self
    }

    /// Removes every field (the MTI stays), keeping the allocations: for
    /// building message after message of one kind in place.
    pub fn clear(&mut self) {
        self.frame = Bytes::new();
        self.decoded = Bytes::new();
        self.owned.clear();
        self.slots.clear();
    }

    /// Removes field `number`, returning its value.
    pub fn remove(&mut self, number: u8) -> Option<Bytes> {
        let value = self.get_bytes(number)?;
        let i = self.find(number).ok()?;
        if let Some(Value::Owned(index)) = self.slots.get(i).map(|s| s.value)
            && let Some(owned) = self.owned.get_mut(index)
        {
            *owned = Bytes::new();
        }
        self.slots.remove(i);
        Some(value)
    }

    /// The value of field `number`.
    pub fn get(&self, number: u8) -> Option<&[u8]> {
        let i = self.find(number).ok()?;
        self.slots.get(i).map(|s| self.value(s.value))
    }

    /// The value of field `number` as a zero-copy `Bytes` handle.
    pub fn get_bytes(&self, number: u8) -> Option<Bytes> {
        let i = self.find(number).ok()?;
        let bytes = match self.slots.get(i)?.value {
            Value::Frame(start, end) => self.frame.slice(start..end),
            Value::Decoded(start, end) => self.decoded.slice(start..end),
            Value::Owned(index) => self.owned.get(index)?.clone(),
        };
        Some(bytes)
    }

    /// The value of field `number` as text (`None` if absent or not UTF-8).
    pub fn text(&self, number: u8) -> Option<&str> {
        self.get(number).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether field `number` is present.
    pub fn contains(&self, number: u8) -> bool {
        self.find(number).is_ok()
    }

    /// The fields present, ascending by number.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.slots.iter().map(|s| (s.number, self.value(s.value)))
    }

    /// Decodes one message (without framing) under `dialect`.
    ///
    /// The whole frame must be consumed: bytes after the last field are an
    /// error ([`ErrorKind::TrailingBytes`]).
    pub fn decode(dialect: &Dialect, frame: Bytes) -> Result<Message, CodecError> {
        match Message::read(dialect, frame) {
            (Some(message), None) => Ok(message),
            (_, Some(error)) => Err(error),
            (None, None) => Err(CodecError {
                direction: Direction::Decode,
                location: Location::Mti,
                offset: 0,
                kind: ErrorKind::BadMti,
            }),
        }
    }

    /// What can be read of a malformed frame: the MTI and every field before
    /// the first error (`None` if not even the MTI can be read). Used to
    /// answer a malformed request with the terminal's own STAN and terminal
    /// id, so the terminal can match the format-error response.
    pub fn salvage(dialect: &Dialect, frame: Bytes) -> Option<Message> {
        Message::read(dialect, frame).0
    }

    /// Decodes as far as it can: the message read so far (if the MTI could be
    /// read) and the first error, if any.
    fn read(dialect: &Dialect, frame: Bytes) -> (Option<Message>, Option<CodecError>) {
        let mut cur = Cursor::new(&frame);
        let at = |location, offset, kind| CodecError {
            direction: Direction::Decode,
            location,
            offset,
            kind,
        };
        let mti = match read_mti(&mut cur, dialect.mti_encoding())
            .and_then(|mti| allowed(dialect, mti))
        {
            Ok(mti) => mti,
            Err(kind) => return (None, Some(at(Location::Mti, 0, kind))),
        };
        let start = cur.position();
        let tertiary = dialect.has_tertiary_bitmap();
        let bitmaps = Bitmaps::decode(
            &mut cur,
            dialect.bitmap_encoding(),
            tertiary,
            dialect.always_secondary_bitmap(),
        )
        .map_err(|k| at(Location::Bitmap, start, k));
        let mut slots = Vec::with_capacity(bitmaps.as_ref().map_or(0, Bitmaps::count));
        let mut scratch = Vec::new();
        let mut error = bitmaps.as_ref().err().cloned();
        if let Ok(bitmaps) = &bitmaps {
            for number in bitmaps.fields(tertiary) {
                let offset = cur.position();
                let Some(spec) = dialect.field(number) else {
                    error = Some(at(
                        Location::Field(number),
                        offset,
                        ErrorKind::UndefinedField,
                    ));
                    break;
                };
                if scratch.capacity() == 0
                    && !matches!(spec.data, DataEncoding::Ascii | DataEncoding::Binary)
                {
                    // Decoded values are never more than twice the wire bytes
                    // (BCD), so one buffer sized from the frame serves them all.
                    scratch.reserve_exact(2 * frame.len());
                }
                let value = match field::decode(spec, &mut cur, &mut scratch) {
                    Ok(Decoded::Frame(start, end)) => Value::Frame(start, end),
                    Ok(Decoded::Scratch(start, end)) => Value::Decoded(start, end),
                    Err(kind) => {
                        error = Some(at(Location::Field(number), offset, kind));
                        break;
                    }
                };
                slots.push(Slot { number, value });
            }
        }
        if error.is_none() && cur.remaining() > 0 {
            let count = cur.remaining();
            error = Some(at(
                Location::End,
                cur.position(),
                ErrorKind::TrailingBytes { count },
            ));
        }
        let message = Message {
            mti,
            frame,
            decoded: into_bytes(scratch),
            owned: Vec::new(),
            slots,
        };
        (Some(message), error)
    }

    /// Reads only the MTI at the start of `frame` under `dialect`. A message
    /// that does not decode is still answered with a format error when its
    /// MTI can be read; `None` means even the MTI is unreadable.
    pub fn peek_mti(dialect: &Dialect, frame: &Bytes) -> Option<Mti> {
        read_mti(&mut Cursor::new(frame), dialect.mti_encoding()).ok()
    }

    /// Encodes the message under `dialect`, appending to `out`.
    pub fn encode(&self, dialect: &Dialect, out: &mut BytesMut) -> Result<(), CodecError> {
        let base = out.len();
        let at = |location, offset: usize, kind| CodecError {
            direction: Direction::Encode,
            location,
            offset: offset - base,
            kind,
        };
        write_mti(self.mti, dialect.mti_encoding(), out);
        let mut bitmaps = Bitmaps::default();
        let tertiary = dialect.has_tertiary_bitmap();
        for number in self.slots.iter().map(|s| s.number) {
            let structural = number == 1 || (tertiary && number == 65);
            if structural || dialect.field(number).is_none() {
                return Err(at(
                    Location::Field(number),
                    out.len(),
                    ErrorKind::InvalidFieldNumber,
                ));
            }
            bitmaps.set(number);
        }
        bitmaps.encode(
            out,
            dialect.bitmap_encoding(),
            tertiary,
            dialect.always_secondary_bitmap(),
        );
        for (number, value) in self.fields() {
            let offset = out.len();
            let fail = |kind| at(Location::Field(number), offset, kind);
            let spec = dialect
                .field(number)
                .ok_or_else(|| fail(ErrorKind::InvalidFieldNumber))?;
            field::encode(spec, value, out).map_err(fail)?;
        }
        Ok(())
    }

    /// Encodes the message under `dialect` into a new buffer.
    pub fn to_bytes(&self, dialect: &Dialect) -> Result<Bytes, CodecError> {
        let mut out = BytesMut::with_capacity(256);
        self.encode(dialect, &mut out)?;
        Ok(out.freeze())
    }

    fn number<T: std::str::FromStr>(&self, field: u8) -> Option<T> {
        self.text(field).and_then(|t| t.parse().ok())
    }

    /// Field 2, primary account number (masks itself when printed).
    pub fn pan(&self) -> Option<Pan<'_>> {
        self.text(2).map(Pan::new)
    }

    /// Field 3, processing code.
    pub fn processing_code(&self) -> Option<&str> {
        self.text(3)
    }

    /// Field 4, transaction amount in minor units.
    pub fn amount(&self) -> Option<u64> {
        self.number(4)
    }

    /// Field 7, transmission date and time (`MMDDhhmmss`).
    pub fn transmission_time(&self) -> Option<&str> {
        self.text(7)
    }

    /// Field 11, system trace audit number.
    pub fn stan(&self) -> Option<u32> {
        self.number(11)
    }

    /// Field 12, local transaction time (`hhmmss`; `YYMMDDhhmmss` in 1993).
    pub fn local_time(&self) -> Option<&str> {
        self.text(12)
    }

    /// Field 13, local transaction date (`MMDD`).
    pub fn local_date(&self) -> Option<&str> {
        self.text(13)
    }

    /// Field 14, card expiry date (`YYMM`).
    pub fn expiry(&self) -> Option<&str> {
        self.text(14)
    }

    /// Field 22, point-of-service entry mode.
    pub fn pos_entry_mode(&self) -> Option<&str> {
        self.text(22)
    }

    /// Field 25, point-of-service condition code.
    pub fn pos_condition(&self) -> Option<&str> {
        self.text(25)
    }

    /// Field 35, track 2 data (masks itself when printed).
    pub fn track2(&self) -> Option<Track2<'_>> {
        self.text(35).map(Track2::new)
    }

    /// Field 37, retrieval reference number.
    pub fn rrn(&self) -> Option<&str> {
        self.text(37)
    }

    /// Field 38, authorisation identification response.
    pub fn auth_id(&self) -> Option<&str> {
        self.text(38)
    }

    /// Field 39, response code.
    pub fn response_code(&self) -> Option<&str> {
        self.text(39)
    }

    /// Field 41, card acceptor terminal id.
    pub fn terminal_id(&self) -> Option<&str> {
        self.text(41)
    }

    /// Field 42, card acceptor (merchant) id.
    pub fn merchant_id(&self) -> Option<&str> {
        self.text(42)
    }

    /// Field 49, transaction currency code.
    pub fn currency(&self) -> Option<&str> {
        self.text(49)
    }

    /// Field 52, the enciphered PIN block (masks itself when printed).
    pub fn pin_block(&self) -> Option<PinBlock<'_>> {
        self.get(52).map(PinBlock::new)
    }

    /// The MAC: field 128 when the secondary bitmap is in use, else field 64.
    pub fn mac(&self) -> Option<&[u8]> {
        self.get(128).or_else(|| self.get(64))
    }

    /// Field 70, network management information code.
    pub fn network_code(&self) -> Option<&str> {
        self.text(70)
    }

    /// Field 90, original data elements.
    pub fn original_data(&self) -> Option<&str> {
        self.text(90)
    }
}

/// Fields whose values are card data and are masked in `Debug`.
pub const SENSITIVE_FIELDS: [u8; 7] = [2, 34, 35, 36, 45, 52, 55];

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"mti", &self.mti.as_str());
        for (n, v) in self.fields() {
            match (&n, std::str::from_utf8(v)) {
                (2 | 34, Ok(text)) => map.entry(&n, &crate::card::mask_pan(text)),
                (35, Ok(text)) => map.entry(&n, &crate::card::mask_track2(text)),
                (n, _) if SENSITIVE_FIELDS.contains(n) => map.entry(n, &"<masked>"),
                (n, Ok(text)) => map.entry(n, &text),
                (n, Err(_)) => map.entry(n, &hex::encode_upper(v)),
            };
        }
        map.finish()
    }
}

/// The scratch buffer as `Bytes` without a second allocation: a vector whose
/// length equals its capacity converts in place (the padding is never read).
fn into_bytes(mut scratch: Vec<u8>) -> Bytes {
    scratch.resize(scratch.capacity(), 0);
    Bytes::from(scratch)
}

fn read_mti(cur: &mut Cursor<'_>, encoding: MtiEncoding) -> Result<Mti, ErrorKind> {
    let mut digits = [0u8; 4];
    match encoding {
        MtiEncoding::Ascii => digits.copy_from_slice(cur.take(4)?),
        MtiEncoding::Ebcdic => {
            for (d, &b) in digits.iter_mut().zip(cur.take(4)?) {
                *d = ebcdic::to_ascii(b).ok_or(ErrorKind::BadMti)?;
            }
        }
        MtiEncoding::Bcd => {
            let raw = cur.take(2)?;
            let nibbles = raw.iter().flat_map(|b| [b >> 4, b & 0x0F]);
            for (d, nibble) in digits.iter_mut().zip(nibbles) {
                *d = if nibble <= 9 {
                    b'0' + nibble
                } else {
                    return Err(ErrorKind::BadMti);
                };
            }
        }
    }
    if digits.iter().all(u8::is_ascii_digit) {
        Ok(Mti(digits))
    } else {
        Err(ErrorKind::BadMti)
    }
}

/// The MTI if the dialect's edition has such a message type.
fn allowed(dialect: &Dialect, mti: Mti) -> Result<Mti, ErrorKind> {
    if dialect.version().allows_mti(mti.0) {
        Ok(mti)
    } else {
        Err(ErrorKind::MtiNotAllowed(mti))
    }
}

fn write_mti(mti: Mti, encoding: MtiEncoding, out: &mut BytesMut) {
    let [a, b, c, d] = mti.0.map(|x| x - b'0');
    match encoding {
        MtiEncoding::Ascii => out.extend_from_slice(&mti.0),
        MtiEncoding::Ebcdic => out.extend_from_slice(&mti.0.map(|x| 0xF0 | (x - b'0'))),
        MtiEncoding::Bcd => {
            out.put_u8(a << 4 | b);
            out.put_u8(c << 4 | d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPM-like dialect: EBCDIC 500, secondary bitmap always, classes
    /// unchecked (or checked, for comparison).
    fn dialect(check_classes: bool) -> Dialect {
        let text = format!(
            "name = \"t\"\nmti = \"ebcdic\"\nbitmap = \"binary\"\nsecondary_bitmap = \"always\"\n\
             version = 1993\nebcdic = \"cp500\"\ncheck_classes = {check_classes}\n[fields]\n\
             4 = {{ name = \"amount\", class = \"n\", fixed = 4, data = \"ebcdic\" }}\n\
             43 = {{ name = \"name\", class = \"ans\", ll = 20, data = \"ebcdic\", prefix = \"ebcdic\" }}\n"
        );
        Dialect::from_toml(&text, "t.toml").unwrap()
    }

    #[test]
    fn cp500_text_and_the_secondary_bitmap_always() {
        let d = dialect(true);
        let mut m = Message::new(Mti::parse("1240").unwrap());
        m.set(4, "1234").set(43, "[A]!^|");
        let wire = m.to_bytes(&d).unwrap();
        assert_eq!(
            hex::encode_upper(&wire),
            "F1F2F4F0\
             90000000002000000000000000000000\
             F1F2F3F4\
             F0F64AC15A4F5FBB"
        );
        let back = Message::decode(&d, wire).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.text(43), Some("[A]!^|"));
        // Bit 1 cleared: refused, at the bitmap.
        let mut bytes = m.to_bytes(&d).unwrap().to_vec();
        bytes[4] &= 0x7F;
        let e = Message::decode(&d, Bytes::from(bytes)).unwrap_err();
        assert_eq!((e.location, e.offset), (Location::Bitmap, 4));
        assert_eq!(e.kind, ErrorKind::NoSecondaryBitmap);
    }

    #[test]
    fn unchecked_classes_take_every_byte_both_ways() {
        // DE 4 "12A4" and a DE 43 with CP500 bytes outside printable ASCII
        // (0x51 = é, 0x25 = line feed).
        let wire = Bytes::from(
            hex::decode(
                "F1F2F4F0\
                 90000000002000000000000000000000\
                 F1F2C1F4\
                 F0F3C15125",
            )
            .unwrap(),
        );
        let strict = dialect(true);
        let e = Message::decode(&strict, wire.clone()).unwrap_err();
        assert_eq!(e.location, Location::Field(4));
        let lenient = dialect(false);
        let m = Message::decode(&lenient, wire.clone()).unwrap();
        assert_eq!(m.text(4), Some("12A4"));
        assert_eq!(m.get(43), Some(&[b'A', 0xE9, 0x0A][..]), "Latin-1 bytes");
        assert_eq!(m.to_bytes(&lenient).unwrap(), wire);
        // Cleared and built again in place: the same message.
        let mut again = m.clone();
        again.clear();
        assert_eq!(again.fields().count(), 0);
        again.set(43, m.get_bytes(43).unwrap()).set(4, "12A4");
        assert_eq!(again, m);
        // Lengths are still the dialect's.
        let mut long = Message::new(Mti::parse("1240").unwrap());
        long.set(4, "12345");
        let e = long.to_bytes(&lenient).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::WrongLength {
                len: 5,
                expected: 4
            }
        );
    }
}
