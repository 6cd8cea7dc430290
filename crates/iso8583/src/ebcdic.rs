//! EBCDIC (code page 1047, as jPOS's `ISOUtil.asciiToEbcdic`) for the
//! printable ASCII range `0x20..=0x7E`, the only characters ISO 8583 text
//! fields may carry. Other bytes have no mapping and are refused.

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
}
