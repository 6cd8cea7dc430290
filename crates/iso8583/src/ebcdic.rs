//! EBCDIC (code page 1047, as jPOS's `ISOUtil.asciiToEbcdic`) for the
//! printable ASCII range `0x20..=0x7E`, the only characters ISO 8583 text
//! fields may carry. Other bytes have no mapping and are refused.
//!
//! [`cp500`] is code page 500, the one of Mastercard IPM files, as a total
//! mapping to and from Latin-1 (a dialect's `ebcdic = "cp500"`).

/// CP1047 code of each printable ASCII character, starting at space (0x20).
const ASCII_TO_EBCDIC: [u8; 95] = [
    0x40, 0x5A, 0x7F, 0x7B, 0x5B, 0x6C, 0x50, 0x7D, 0x4D, 0x5D, 0x5C, 0x4E, 0x6B, 0x60, 0x4B,
    0x61, // space ! " # $ % & ' ( ) * + , - . /
    0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, // 0-9
    0x7A, 0x5E, 0x4C, 0x7E, 0x6E, 0x6F, 0x7C, // : ; < = > ? @
    0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, // A-I
    0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, // J-R
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, // S-Z
    0xAD, 0xE0, 0xBD, 0x5F, 0x6D, 0x79, // [ \ ] ^ _ `
    0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, // a-i
    0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, // j-r
    0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, // s-z
    0xC0, 0x4F, 0xD0, 0xA1, // { | } ~
];

/// Reverse table: EBCDIC byte → ASCII byte, 0 where there is no mapping.
const EBCDIC_TO_ASCII: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < ASCII_TO_EBCDIC.len() {
        table[ASCII_TO_EBCDIC[i] as usize] = 0x20 + i as u8;
        i += 1;
    }
    table
};

/// EBCDIC code of a printable ASCII byte, or `None` outside `0x20..=0x7E`.
pub fn from_ascii(byte: u8) -> Option<u8> {
    byte.checked_sub(0x20)
        .and_then(|i| ASCII_TO_EBCDIC.get(usize::from(i)))
        .copied()
}

/// Printable ASCII byte for an EBCDIC code, or `None` if it has no mapping.
pub fn to_ascii(byte: u8) -> Option<u8> {
    match EBCDIC_TO_ASCII[usize::from(byte)] {
        0 => None,
        ascii => Some(ascii),
    }
}

/// EBCDIC code page 500 (the encoding of Mastercard IPM files, and the one
/// cardutil reads them with), as a total mapping between bytes and the
/// Latin-1 characters U+0000–U+00FF: every byte decodes to one character and
/// back (a dialect with `ebcdic = "cp500"` holds values as Latin-1 bytes).
///
/// It differs from code page 1047 (this module's [`from_ascii`] and
/// [`to_ascii`]) on `[ ] ^ ! |` and a few Latin-1 letters; the table was
/// taken from Python's `codecs` `cp500` and the tests compare with it for
/// every byte.
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

    /// The Latin-1 byte (code point) a CP500 byte stands for.
    pub fn to_latin1(byte: u8) -> u8 {
        DECODE[usize::from(byte)]
    }

    /// The CP500 byte of a Latin-1 byte (code point).
    pub fn from_latin1(latin1: u8) -> u8 {
        ENCODE[usize::from(latin1)]
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_printable_character() {
        for ascii in 0x20u8..=0x7E {
            let e = from_ascii(ascii).unwrap();
            assert_eq!(to_ascii(e), Some(ascii), "ascii {ascii:#04x}");
        }
        assert_eq!(from_ascii(0x7F), None);
        assert_eq!(from_ascii(0x0A), None);
        assert_eq!(to_ascii(0x00), None);
    }

    #[test]
    fn known_codes() {
        assert_eq!(from_ascii(b'0'), Some(0xF0));
        assert_eq!(from_ascii(b'A'), Some(0xC1));
        assert_eq!(from_ascii(b' '), Some(0x40));
        assert_eq!(from_ascii(b'='), Some(0x7E));
    }

    /// Python 3: `bytes(range(0x20, 0x7f)).decode('latin-1').encode('cp500').hex()`.
    const PYTHON_CP500_PRINTABLE: &str = "404f7f7b5b6c507d4d5d5c4e6b604b61f0f1f2f3f4f5f6f7f8f97a5e4c7e6e6f7cc1c2c3c4c5c6c7c8c9d1d2d3d4d5d6d7d8d9e2e3e4e5e6e7e8e94ae05a5f6d79818283848586878889919293949596979899a2a3a4a5a6a7a8a9c0bbd0a1";

    /// Python 3: `bytes(range(256)).decode('cp500').encode('latin-1').hex()`.
    const PYTHON_CP500_DECODE: &str = "000102039c09867f978d8e0b0c0d0e0f101112139d8508871819928f1c1d1e1f80818283840a171b88898a8b8c050607909116939495960498999a9b14159e1a20a0e2e4e0e1e3e5e7f15b2e3c282b2126e9eaebe8edeeefecdf5d242a293b5e2d2fc2c4c0c1c3c5c7d1a62c255f3e3ff8c9cacbc8cdcecfcc603a2340273d22d8616263646566676869abbbf0fdfeb1b06a6b6c6d6e6f707172aabae6b8c6a4b57e737475767778797aa1bfd0dddeaea2a3a5b7a9a7b6bcbdbeac7cafa8b4d77b414243444546474849adf4f6f2f3f57d4a4b4c4d4e4f505152b9fbfcf9faff5cf7535455565758595ab2d4d6d2d3d530313233343536373839b3dbdcd9da9f";

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
        for b in 0..=255u8 {
            assert_eq!(cp500::from_latin1(cp500::to_latin1(b)), b);
        }
    }
}
