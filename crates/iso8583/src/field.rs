//! Reading and writing one field under its [`FieldSpec`].

use bytes::{BufMut, Bytes, BytesMut};

use super::ebcdic;
use super::error::ErrorKind;
use super::spec::{Class, CodePage, DataEncoding, FieldSpec, Length, Pad, PrefixEncoding};

/// A read position in a frame. Every read is bounds-checked and fails with
/// [`ErrorKind::Truncated`] instead of reading past the end.
pub(crate) struct Cursor<'a> {
    frame: &'a Bytes,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(frame: &'a Bytes) -> Self {
        Cursor { frame, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.frame.len() - self.pos
    }

    /// The next `n` bytes as a slice.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let frame: &'a [u8] = self.frame;
        let end = self.pos.checked_add(n).filter(|end| *end <= frame.len());
        match end.and_then(|end| frame.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(ErrorKind::Truncated {
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    /// The next byte.
    pub(crate) fn take_u8(&mut self) -> Result<u8, ErrorKind> {
        let byte = self.take(1)?.first().copied();
        byte.ok_or(ErrorKind::Truncated {
            needed: 1,
            available: 0,
        })
    }

    /// Skips the next `n` bytes and returns their offsets in the frame.
    fn take_range(&mut self, n: usize) -> Result<(usize, usize), ErrorKind> {
        let start = self.pos;
        self.take(n)?;
        Ok((start, self.pos))
    }
}

/// Where a decoded value lives: start and end offsets in one of two buffers.
pub(crate) enum Decoded {
    /// In the frame itself (ASCII text, binary): zero-copy.
    Frame(usize, usize),
    /// In the scratch buffer (translated from BCD, EBCDIC or hex).
    Scratch(usize, usize),
}

/// Reads one field at the cursor. Values that need translating (BCD, EBCDIC,
/// hex) are appended to `scratch`; they are never longer than twice the wire
/// bytes read, and those are bounded by the frame, so nothing here allocates
/// in proportion to a length prefix.
pub(crate) fn decode(
    spec: &FieldSpec,
    cur: &mut Cursor<'_>,
    scratch: &mut Vec<u8>,
) -> Result<Decoded, ErrorKind> {
    let len = match spec.length {
        Length::Fixed(n) => n,
        Length::Variable {
            digits,
            max,
            prefix,
        } => {
            let len = read_prefix(cur, digits, prefix)?;
            if len > max {
                return Err(ErrorKind::TooLong { len, max });
            }
            len
        }
    };
    let start = scratch.len();
    match spec.data {
        DataEncoding::Ascii => {
            let (start, end) = cur.take_range(len)?;
            if spec.check_class {
                check_class(spec.class, cur.frame.get(start..end).unwrap_or_default())?;
            }
            Ok(Decoded::Frame(start, end))
        }
        DataEncoding::Binary => {
            let (start, end) = cur.take_range(len)?;
            Ok(Decoded::Frame(start, end))
        }
        DataEncoding::Ebcdic(CodePage::Cp1047) => {
            let raw = cur.take(len)?;
            for (index, &byte) in raw.iter().enumerate() {
                let ascii = ebcdic::to_ascii(byte).ok_or(ErrorKind::BadContent {
                    class: spec.class,
                    index,
                    byte,
                })?;
                scratch.push(ascii);
            }
            if spec.check_class {
                check_class(spec.class, scratch.get(start..).unwrap_or_default())?;
            }
            Ok(Decoded::Scratch(start, scratch.len()))
        }
        DataEncoding::Ebcdic(CodePage::Cp500) => {
            let raw = cur.take(len)?;
            scratch.extend(raw.iter().map(|&byte| ebcdic::cp500::to_latin1(byte)));
            if spec.check_class {
                check_class(spec.class, scratch.get(start..).unwrap_or_default())?;
            }
            Ok(Decoded::Scratch(start, scratch.len()))
        }
        DataEncoding::Hex => {
            let raw = cur.take(len * 2)?;
            for (pair, chunk) in raw.chunks_exact(2).enumerate() {
                let &[hi, lo] = chunk else { continue };
                let hi = hex_value(hi).ok_or(ErrorKind::BadHex {
                    index: pair * 2,
                    byte: hi,
                })?;
                let lo = hex_value(lo).ok_or(ErrorKind::BadHex {
                    index: pair * 2 + 1,
                    byte: lo,
                })?;
                scratch.push(hi << 4 | lo);
            }
            Ok(Decoded::Scratch(start, scratch.len()))
        }
        DataEncoding::Bcd(pad) => {
            let mut digits = len;
            let mut index = 0;
            if spec.class == Class::Xn && len > 0 {
                let sign = cur.take_u8()?;
                if !spec.class.allows(0, sign) {
                    return Err(ErrorKind::BadContent {
                        class: spec.class,
                        index: 0,
                        byte: sign,
                    });
                }
                scratch.push(sign);
                digits -= 1;
                index = 1;
            }
            let raw = cur.take(digits.div_ceil(2))?;
            unpack_bcd(raw, digits, pad, spec.class, index, scratch)?;
            Ok(Decoded::Scratch(start, scratch.len()))
        }
    }
}

fn unpack_bcd(
    raw: &[u8],
    digits: usize,
    pad: Pad,
    class: Class,
    first_index: usize,
    out: &mut Vec<u8>,
) -> Result<(), ErrorKind> {
    let digit = |nibble: u8, index: usize| match nibble {
        0..=9 => Ok(b'0' + nibble),
        0xD if class == Class::Z => Ok(b'='),
        _ => Err(ErrorKind::BadContent {
            class,
            index,
            byte: nibble,
        }),
    };
    let mut body = raw;
    let mut index = first_index;
    let mut tail = None;
    if digits % 2 == 1 {
        match pad {
            Pad::Left => {
                if let Some((&first, rest)) = body.split_first() {
                    if first >> 4 != 0 {
                        return Err(ErrorKind::BadPad { nibble: first >> 4 });
                    }
                    out.push(digit(first & 0x0F, index)?);
                    index += 1;
                    body = rest;
                }
            }
            Pad::Right0 | Pad::RightF => {
                if let Some((&last, rest)) = body.split_last() {
                    let nibble = last & 0x0F;
                    if nibble != 0 && nibble != 0x0F {
                        return Err(ErrorKind::BadPad { nibble });
                    }
                    tail = Some(last >> 4);
                    body = rest;
                }
            }
        }
    }
    for &byte in body {
        let (hi, lo) = (byte >> 4, byte & 0x0F);
        if hi <= 9 && lo <= 9 {
            out.extend_from_slice(&[b'0' + hi, b'0' + lo]);
        } else {
            out.extend_from_slice(&[digit(hi, index)?, digit(lo, index + 1)?]);
        }
        index += 2;
    }
    if let Some(last) = tail {
        out.push(digit(last, index)?);
    }
    Ok(())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

fn check_class(class: Class, value: &[u8]) -> Result<(), ErrorKind> {
    // The common classes are checked branch-free over the whole value (which
    // the compiler vectorises); the position is only searched for on failure.
    let valid = match class {
        Class::B => return Ok(()),
        Class::N => value.iter().fold(true, |ok, b| ok & b.is_ascii_digit()),
        Class::Ans => value
            .iter()
            .fold(true, |ok, b| ok & (b.wrapping_sub(0x20) <= 0x5E)),
        _ => false,
    };
    if valid {
        return Ok(());
    }
    let bad = value
        .iter()
        .enumerate()
        .position(|(i, b)| !class.allows(i, *b));
    match bad.and_then(|index| value.get(index).map(|b| (index, *b))) {
        Some((index, byte)) => Err(ErrorKind::BadContent { class, index, byte }),
        None => Ok(()),
    }
}

fn read_prefix(
    cur: &mut Cursor<'_>,
    digits: u8,
    encoding: PrefixEncoding,
) -> Result<usize, ErrorKind> {
    let digit = |byte: u8, value: u8| {
        if value <= 9 {
            Ok(usize::from(value))
        } else {
            Err(ErrorKind::BadLengthPrefix { byte })
        }
    };
    let mut len = 0usize;
    match encoding {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let zero = if encoding == PrefixEncoding::Ascii {
                b'0'
            } else {
                0xF0
            };
            for &byte in cur.take(usize::from(digits))? {
                len = len * 10 + digit(byte, byte.wrapping_sub(zero))?;
            }
        }
        PrefixEncoding::Bcd => {
            let width = if digits == 2 { 1 } else { 2 };
            for &byte in cur.take(width)? {
                len = len * 100 + digit(byte, byte >> 4)? * 10 + digit(byte, byte & 0x0F)?;
            }
        }
        PrefixEncoding::Binary => {
            for &byte in cur.take(if digits == 2 { 1 } else { 2 })? {
                len = len << 8 | usize::from(byte);
            }
        }
    }
    Ok(len)
}

/// Writes one field. The value is in its logical form: text for every class
/// but `b`, raw bytes for `b`.
pub fn encode(spec: &FieldSpec, value: &[u8], out: &mut BytesMut) -> Result<(), ErrorKind> {
    let len = value.len();
    if spec.check_class {
        check_class(spec.class, value)?;
    }
    match spec.length {
        Length::Fixed(expected) if len != expected => {
            return Err(ErrorKind::WrongLength { len, expected });
        }
        Length::Fixed(_) => {}
        Length::Variable { max, .. } if len > max => {
            return Err(ErrorKind::TooLong { len, max });
        }
        Length::Variable { digits, prefix, .. } => write_prefix(out, digits, prefix, len),
    }
    match spec.data {
        DataEncoding::Ascii | DataEncoding::Binary => out.extend_from_slice(value),
        DataEncoding::Ebcdic(CodePage::Cp500) => {
            // Copied, then translated in place: one table look-up a byte.
            let start = out.len();
            out.extend_from_slice(value);
            if let Some(written) = out.get_mut(start..) {
                for byte in written {
                    *byte = ebcdic::cp500::from_latin1(*byte);
                }
            }
        }
        DataEncoding::Ebcdic(CodePage::Cp1047) => {
            for (index, &byte) in value.iter().enumerate() {
                let code = ebcdic::from_ascii(byte).ok_or(ErrorKind::BadContent {
                    class: spec.class,
                    index,
                    byte,
                })?;
                out.put_u8(code);
            }
        }
        DataEncoding::Hex => {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            for &byte in value {
                out.put_u8(HEX[usize::from(byte >> 4)]);
                out.put_u8(HEX[usize::from(byte & 0x0F)]);
            }
        }
        DataEncoding::Bcd(pad) => {
            let digits = match (spec.class, value.split_first()) {
                (Class::Xn, Some((sign, rest))) => {
                    out.put_u8(*sign);
                    rest
                }
                _ => value,
            };
            pack_bcd(digits, pad, out);
        }
    }
    Ok(())
}

/// Packs digits (and `=` as nibble D), already checked by the class.
fn pack_bcd(digits: &[u8], pad: Pad, out: &mut BytesMut) {
    let nibble = |c: u8| {
        if c == b'=' {
            0xD
        } else {
            c.wrapping_sub(b'0') & 0x0F
        }
    };
    let odd = digits.len() % 2 == 1;
    let mut rest = digits;
    if odd
        && pad == Pad::Left
        && let Some((first, tail)) = rest.split_first()
    {
        out.put_u8(nibble(*first));
        rest = tail;
    }
    let mut pairs = rest.chunks_exact(2);
    for pair in &mut pairs {
        if let [hi, lo] = pair {
            out.put_u8(nibble(*hi) << 4 | nibble(*lo));
        }
    }
    if let [last] = pairs.remainder() {
        let fill = if pad == Pad::RightF { 0x0F } else { 0x00 };
        out.put_u8(nibble(*last) << 4 | fill);
    }
}

fn write_prefix(out: &mut BytesMut, digits: u8, encoding: PrefixEncoding, len: usize) {
    let wide = digits != 2;
    match encoding {
        PrefixEncoding::Ascii | PrefixEncoding::Ebcdic => {
            let zero = if encoding == PrefixEncoding::Ascii {
                b'0'
            } else {
                0xF0
            };
            let all = [
                zero + (len / 1000 % 10) as u8,
                zero + (len / 100 % 10) as u8,
                zero + (len / 10 % 10) as u8,
                zero + (len % 10) as u8,
            ];
            out.extend_from_slice(all.get(4 - usize::from(digits)..).unwrap_or(&all));
        }
        PrefixEncoding::Bcd => {
            let bcd = |v: usize| (((v / 10 % 10) << 4) | (v % 10)) as u8;
            if wide {
                out.put_u8(bcd(len / 100));
            }
            out.put_u8(bcd(len));
        }
        PrefixEncoding::Binary => {
            if wide {
                out.put_u16(len as u16);
            } else {
                out.put_u8(len as u8);
            }
        }
    }
}
