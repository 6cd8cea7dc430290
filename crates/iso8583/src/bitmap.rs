//! Primary, secondary and (where a dialect declares one) tertiary bitmaps.
//!
//! Bit 1 is the most significant bit of the first byte. Bit 1 announces the
//! secondary bitmap; in a dialect with a tertiary bitmap, bit 65 announces it.

use bytes::{BufMut, BytesMut};

use super::error::ErrorKind;
use super::field::Cursor;
use super::spec::BitmapEncoding;

/// Up to three 64-bit bitmaps; `maps[0]` holds bits 1..=64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bitmaps {
    maps: [u64; 3],
}

const fn mask(bit: u8) -> u64 {
    1u64 << (63 - (bit - 1) % 64)
}

impl Bitmaps {
    /// Sets the bit for `field` (1..=192); other numbers are ignored.
    pub(crate) fn set(&mut self, field: u8) {
        if let Some(map) = field
            .checked_sub(1)
            .and_then(|i| self.maps.get_mut(usize::from(i / 64)))
        {
            *map |= mask(field);
        }
    }

    /// Whether bit `field` is set.
    pub(crate) fn is_set(&self, field: u8) -> bool {
        field
            .checked_sub(1)
            .and_then(|i| self.maps.get(usize::from(i / 64)))
            .is_some_and(|map| map & mask(field) != 0)
    }

    /// Number of bits set (an upper bound on the fields present).
    pub(crate) fn count(&self) -> usize {
        self.maps.iter().map(|m| m.count_ones() as usize).sum()
    }

    /// Data fields present, ascending: every set bit except 1, and except 65
    /// when it is the tertiary bitmap indicator.
    pub(crate) fn fields(&self, tertiary: bool) -> SetBits {
        SetBits {
            maps: self.maps,
            index: 0,
            tertiary,
        }
    }

    /// Reads the bitmaps at the cursor. With `always_secondary`, a primary
    /// bitmap without bit 1 is refused.
    pub(crate) fn decode(
        cur: &mut Cursor<'_>,
        encoding: BitmapEncoding,
        tertiary: bool,
        always_secondary: bool,
    ) -> Result<Bitmaps, ErrorKind> {
        let mut bitmaps = Bitmaps::default();
        bitmaps.maps[0] = read_one(cur, encoding)?;
        if always_secondary && !bitmaps.is_set(1) {
            return Err(ErrorKind::NoSecondaryBitmap);
        }
        if bitmaps.is_set(1) {
            bitmaps.maps[1] = read_one(cur, encoding)?;
            if tertiary && bitmaps.is_set(65) {
                bitmaps.maps[2] = read_one(cur, encoding)?;
            }
        }
        Ok(bitmaps)
    }

    /// Sets the indicator bits the data bits imply (bit 1 always with
    /// `always_secondary`), then writes the bitmaps.
    pub(crate) fn encode(
        mut self,
        out: &mut BytesMut,
        encoding: BitmapEncoding,
        tertiary: bool,
        always_secondary: bool,
    ) {
        if tertiary && self.maps[2] != 0 {
            self.set(65);
        }
        if always_secondary || self.maps[1] != 0 || self.maps[2] != 0 {
            self.set(1);
        }
        let count = if !self.is_set(1) {
            1
        } else if tertiary && self.is_set(65) {
            3
        } else {
            2
        };
        for map in self.maps.iter().take(count) {
            match encoding {
                BitmapEncoding::Binary => out.put_u64(*map),
                BitmapEncoding::Hex => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    for shift in (0..16).rev() {
                        out.put_u8(HEX[(map >> (shift * 4) & 0xF) as usize]);
                    }
                }
            }
        }
    }
}

/// Iterator over the data-field bits of [`Bitmaps`], ascending.
pub(crate) struct SetBits {
    maps: [u64; 3],
    index: usize,
    tertiary: bool,
}

impl Iterator for SetBits {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        loop {
            let map = self.maps.get_mut(self.index)?;
            if *map == 0 {
                self.index += 1;
                continue;
            }
            let offset = map.leading_zeros() as u8;
            *map &= !(1u64 << (63 - offset));
            let bit = self.index as u8 * 64 + offset + 1;
            if bit != 1 && !(self.tertiary && bit == 65) {
                return Some(bit);
            }
        }
    }
}

fn read_one(cur: &mut Cursor<'_>, encoding: BitmapEncoding) -> Result<u64, ErrorKind> {
    match encoding {
        BitmapEncoding::Binary => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(cur.take(8)?);
            Ok(u64::from_be_bytes(raw))
        }
        BitmapEncoding::Hex => {
            let mut map = 0u64;
            for &byte in cur.take(16)? {
                let nibble = match byte {
                    b'0'..=b'9' => byte - b'0',
                    b'A'..=b'F' => byte - b'A' + 10,
                    b'a'..=b'f' => byte - b'a' + 10,
                    _ => return Err(ErrorKind::BadBitmap { byte }),
                };
                map = map << 4 | u64::from(nibble);
            }
            Ok(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_numbering_is_msb_first() {
        let mut b = Bitmaps::default();
        b.set(2);
        b.set(64);
        b.set(66);
        b.set(128);
        let mut out = BytesMut::new();
        b.encode(&mut out, BitmapEncoding::Binary, false, false);
        assert_eq!(hex::encode_upper(&out), "C0000000000000014000000000000001");
        assert_eq!(b.fields(false).collect::<Vec<_>>(), vec![2, 64, 66, 128]);
    }

    #[test]
    fn hex_bitmap_matches_binary() {
        let mut b = Bitmaps::default();
        b.set(3);
        b.set(11);
        let mut out = BytesMut::new();
        b.encode(&mut out, BitmapEncoding::Hex, false, false);
        assert_eq!(&out[..], b"2020000000000000");
    }

    #[test]
    fn always_secondary_writes_and_wants_bit_1() {
        let mut b = Bitmaps::default();
        b.set(24);
        let mut out = BytesMut::new();
        b.encode(&mut out, BitmapEncoding::Binary, false, true);
        assert_eq!(hex::encode_upper(&out), "80000100000000000000000000000000");
        let frame = out.freeze();
        let back = Bitmaps::decode(
            &mut Cursor::new(&frame),
            BitmapEncoding::Binary,
            false,
            true,
        );
        assert_eq!(
            back.map(|b| b.fields(false).collect::<Vec<_>>()),
            Ok(vec![24])
        );
        let primary_only = bytes::Bytes::from_static(&[0, 0, 1, 0, 0, 0, 0, 0]);
        let refused = Bitmaps::decode(
            &mut Cursor::new(&primary_only),
            BitmapEncoding::Binary,
            false,
            true,
        );
        assert_eq!(refused, Err(ErrorKind::NoSecondaryBitmap));
        let taken = Bitmaps::decode(
            &mut Cursor::new(&primary_only),
            BitmapEncoding::Binary,
            false,
            false,
        );
        assert_eq!(
            taken.map(|b| b.fields(false).collect::<Vec<_>>()),
            Ok(vec![24])
        );
    }
}
