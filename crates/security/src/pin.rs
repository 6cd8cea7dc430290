//! ISO 9564-1 PIN blocks (formats 0, 1, 3 and 4) and PIN translation.
//!
//! | format | block | layout of the clear PIN field | bound to the PAN |
//! |---|---|---|---|
//! | 0 | 8 bytes | `0 N PIN F…F` | XOR `0000` + 12 rightmost PAN digits without the check digit |
//! | 1 | 8 bytes | `1 N PIN` + random digits | no |
//! | 3 | 8 bytes | `3 N PIN` + random nibbles A–F | as format 0 |
//! | 4 | 16 bytes | `4 N PIN A…A` (16 nibbles) + 8 random bytes | enciphered twice around the PAN field `M PAN 0…0` |
//!
//! Formats 0, 1 and 3 are enciphered with an 8-byte block cipher (TDES);
//! format 4 with a 16-byte one (AES, or SM4 for the national algorithms):
//! `E(K, E(K, PIN field) XOR PAN field)`.
//!
//! The clear PIN exists only in [`Zeroizing`] buffers and never in an
//! error message.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::block::{KeyError, SecretKey};

/// A PIN block could not be built, read or translated. No variant carries
/// PIN digits or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// A PIN must be 4 to 12 decimal digits.
    #[error("a PIN must be 4 to 12 digits")]
    BadPin,
    /// The PAN is not 12 to 19 digits (formats 0 and 3 need 13).
    #[error("the PAN cannot be bound to the PIN block (digits, length)")]
    BadPan,
    /// The block has the wrong length for its format.
    #[error("a format {format} PIN block is {expected} bytes, not {actual}")]
    Length {
        /// The format.
        format: u8,
        /// Bytes it needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The key does not fit the format (8-byte block cipher for 0/1/3,
    /// 16-byte for 4).
    #[error("format {format} needs a {needs}-byte block cipher key")]
    WrongKey {
        /// The format.
        format: u8,
        /// The block size it needs.
        needs: usize,
    },
    /// The deciphered block is not a well-formed block of the expected
    /// format (wrong key, wrong PAN or a corrupted block).
    #[error("the PIN block is not a valid format {0} block")]
    Malformed(u8),
    /// The cipher refused the data.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Translating a PAN-bound block (format 0, 3 or 4) into format 1 would
    /// drop the binding to the PAN, which ISO 9564-1 forbids.
    #[error("a PAN-bound PIN block is never translated into format 1")]
    Downgrade,
}

/// An ISO 9564-1 PIN block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinFormat {
    /// Format 0 (ANSI X9.8): PIN XOR PAN, TDES.
    Iso0,
    /// Format 1: PIN with random fill, no PAN, TDES.
    Iso1,
    /// Format 3: PIN with random A–F fill XOR PAN, TDES.
    Iso3,
    /// Format 4: AES (or SM4), two encipherments around the PAN field.
    Iso4,
}

/// A name that is not one of the PIN block formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PIN block format `{0}` (iso0, iso1, iso3 or iso4)")]
pub struct UnknownPinFormat(pub String);

impl std::str::FromStr for PinFormat {
    type Err = UnknownPinFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iso0" => Ok(PinFormat::Iso0),
            "iso1" => Ok(PinFormat::Iso1),
            "iso3" => Ok(PinFormat::Iso3),
            "iso4" => Ok(PinFormat::Iso4),
            _ => Err(UnknownPinFormat(s.to_string())),
        }
    }
}

impl PinFormat {
    /// The format's number.
    pub fn number(self) -> u8 {
        match self {
            PinFormat::Iso0 => 0,
            PinFormat::Iso1 => 1,
            PinFormat::Iso3 => 3,
            PinFormat::Iso4 => 4,
        }
    }

    /// Length of the block in bytes.
    pub fn block_len(self) -> usize {
        if self == PinFormat::Iso4 { 16 } else { 8 }
    }

    fn check_key(self, key: &SecretKey) -> Result<(), PinError> {
        if key.algorithm().block_len() == self.block_len() {
            Ok(())
        } else {
            Err(PinError::WrongKey {
                format: self.number(),
                needs: self.block_len(),
            })
        }
    }
}

/// Clear PIN digits as ASCII, zeroized on drop.
pub type ClearPin = Zeroizing<Vec<u8>>;

fn random(len: usize) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    // The OS generator does not fail on Linux once booted; should it, the
    // fill stays zero, which still yields a valid (if less private) block.
    let _ = getrandom::fill(&mut bytes);
    bytes
}

fn check_pin(pin: &[u8]) -> Result<(), PinError> {
    if (4..=12).contains(&pin.len()) && pin.iter().all(u8::is_ascii_digit) {
        Ok(())
    } else {
        Err(PinError::BadPin)
    }
}

/// Packs nibbles (values 0–15) two to a byte.
fn pack(nibbles: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(
        nibbles
            .chunks(2)
            .map(|p| (p.first().copied().unwrap_or(0) << 4) | p.get(1).copied().unwrap_or(0))
            .collect(),
    )
}

fn unpack(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect())
}

fn xor_into(target: &mut [u8], other: &[u8]) {
    for (t, o) in target.iter_mut().zip(other) {
        *t ^= o;
    }
}

/// The PAN field of formats 0 and 3: `0000` and the 12 rightmost digits of
/// the PAN without its check digit (left-padded with zeros when there are
/// fewer).
fn pan_field_8(pan: &str) -> Result<Vec<u8>, PinError> {
    let digits = pan.as_bytes();
    if !(2..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PinError::BadPan);
    }
    let body = digits.get(..digits.len() - 1).unwrap_or_default();
    let twelve = body
        .get(body.len().saturating_sub(12)..)
        .unwrap_or_default();
    let mut nibbles = vec![0u8; 16 - twelve.len()];
    nibbles.extend(twelve.iter().map(|d| d - b'0'));
    Ok(pack(&nibbles).to_vec())
}

/// The PAN field of format 4: `M` (PAN length − 12, 0 for shorter PANs),
/// the PAN (left-padded with zeros to 12 digits), then zeros to 32 nibbles.
fn pan_field_16(pan: &str) -> Result<Vec<u8>, PinError> {
    let digits = pan.as_bytes();
    if !(1..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PinError::BadPan);
    }
    let m = digits.len().saturating_sub(12) as u8;
    let mut nibbles = vec![m];
    nibbles.extend(std::iter::repeat_n(0, 12usize.saturating_sub(digits.len())));
    nibbles.extend(digits.iter().map(|d| d - b'0'));
    nibbles.resize(32, 0);
    Ok(pack(&nibbles).to_vec())
}

/// The clear PIN field of `format` for `pin`. `fill` supplies the random
/// part (format 1: digits; 3: A–F; 4: the last 8 bytes).
fn pin_field(format: PinFormat, pin: &[u8], fill: &[u8]) -> Zeroizing<Vec<u8>> {
    let n = pin.len() as u8;
    let mut nibbles = Zeroizing::new(vec![format.number(), n]);
    nibbles.extend(pin.iter().map(|d| d - b'0'));
    let mut fill = fill.iter();
    while nibbles.len() < 16 {
        let mut r = || fill.next().copied().unwrap_or(0);
        nibbles.push(match format {
            PinFormat::Iso0 => 0xF,
            PinFormat::Iso1 => r() % 10,
            PinFormat::Iso3 => 0xA + r() % 6,
            PinFormat::Iso4 => 0xA,
        });
    }
    let mut field = pack(&nibbles);
    if format == PinFormat::Iso4 {
        field.extend(fill.take(8));
    }
    field
}

/// The clear block of formats 0, 1 and 3, or the clear PIN field of 4.
fn clear_block(
    format: PinFormat,
    pin: &[u8],
    pan: &str,
    fill: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PinError> {
    check_pin(pin)?;
    let mut block = pin_field(format, pin, fill);
    if matches!(format, PinFormat::Iso0 | PinFormat::Iso3) {
        xor_into(&mut block, &pan_field_8(pan)?);
    }
    Ok(block)
}

/// Reads the PIN out of a clear block (formats 0/1/3) or clear PIN field
/// (format 4), checking the control nibble, length and fill.
fn read_clear(format: PinFormat, block: &[u8], pan: &str) -> Result<ClearPin, PinError> {
    let malformed = PinError::Malformed(format.number());
    let mut block = Zeroizing::new(block.to_vec());
    if matches!(format, PinFormat::Iso0 | PinFormat::Iso3) {
        xor_into(&mut block, &pan_field_8(pan)?);
    }
    let nibbles = unpack(block.get(..8).ok_or(malformed.clone())?);
    let (Some(&control), Some(&n)) = (nibbles.first(), nibbles.get(1)) else {
        return Err(malformed);
    };
    let n = usize::from(n);
    if control != format.number() || !(4..=12).contains(&n) {
        return Err(malformed);
    }
    let digits = nibbles.get(2..2 + n).ok_or(malformed.clone())?;
    let fill = nibbles.get(2 + n..).unwrap_or_default();
    let fill_ok = match format {
        PinFormat::Iso0 => fill.iter().all(|&f| f == 0xF),
        PinFormat::Iso1 => true,
        PinFormat::Iso3 => fill.iter().all(|&f| f >= 0xA),
        PinFormat::Iso4 => fill.iter().all(|&f| f == 0xA),
    };
    if !fill_ok || digits.iter().any(|&d| d > 9) {
        return Err(malformed);
    }
    Ok(Zeroizing::new(digits.iter().map(|d| d + b'0').collect()))
}

fn encipher_with_fill(
    format: PinFormat,
    key: &SecretKey,
    pin: &[u8],
    pan: &str,
    fill: &[u8],
) -> Result<Vec<u8>, PinError> {
    format.check_key(key)?;
    let cipher = key.cipher();
    let mut block = clear_block(format, pin, pan, fill)?;
    cipher.encrypt(&mut block)?;
    if format == PinFormat::Iso4 {
        xor_into(&mut block, &pan_field_16(pan)?);
        cipher.encrypt(&mut block)?;
    }
    Ok(block.to_vec())
}

/// Builds and enciphers a PIN block for `pin` (ASCII digits) and `pan`.
pub fn encipher(
    format: PinFormat,
    key: &SecretKey,
    pin: &[u8],
    pan: &str,
) -> Result<Vec<u8>, PinError> {
    encipher_with_fill(format, key, pin, pan, &random(16))
}

/// Deciphers a PIN block and returns the clear PIN.
pub fn decipher(
    format: PinFormat,
    key: &SecretKey,
    block: &[u8],
    pan: &str,
) -> Result<ClearPin, PinError> {
    format.check_key(key)?;
    if block.len() != format.block_len() {
        return Err(PinError::Length {
            format: format.number(),
            expected: format.block_len(),
            actual: block.len(),
        });
    }
    let cipher = key.cipher();
    let mut clear = Zeroizing::new(block.to_vec());
    cipher.decrypt(&mut clear)?;
    if format == PinFormat::Iso4 {
        xor_into(&mut clear, &pan_field_16(pan)?);
        cipher.decrypt(&mut clear)?;
    }
    read_clear(format, &clear, pan)
}

/// One side of a PIN translation: the key a block is enciphered under and
/// its format.
#[derive(Debug, Clone, Copy)]
pub struct PinZone<'a> {
    /// The PIN key (TPK, ZPK, or a DUKPT-derived key).
    pub key: &'a SecretKey,
    /// The block format.
    pub format: PinFormat,
}

/// Translates a PIN block from one zone to another (TPK → ZPK), changing
/// format if the zones differ. The clear PIN lives only in a zeroized
/// buffer inside this call.
pub fn translate(
    block: &[u8],
    pan: &str,
    from: PinZone<'_>,
    to: PinZone<'_>,
) -> Result<Vec<u8>, PinError> {
    if to.format == PinFormat::Iso1 && from.format != PinFormat::Iso1 {
        return Err(PinError::Downgrade);
    }
    let pin = decipher(from.format, from.key, block, pan)?;
    encipher(to.format, to.key, &pin, pan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::KeyAlgorithm;

    fn key(alg: KeyAlgorithm, hex: &str) -> SecretKey {
        SecretKey::new(alg, &hex::decode(hex).unwrap()).unwrap()
    }

    /// ISO 9564-1 format 0 example: PIN 1234, PAN 4321 9876 5432 1098 7 →
    /// PIN field 041234FFFFFFFFFF, PAN field 0000987654321098, clear block
    /// 0412AC89ABCDEF67.
    #[test]
    fn iso0_clear_block_example() {
        let block = clear_block(PinFormat::Iso0, b"1234", "43219876543210987", &[]).unwrap();
        assert_eq!(hex::encode_upper(&*block), "0412AC89ABCDEF67");
        let pin = read_clear(PinFormat::Iso0, &block, "43219876543210987").unwrap();
        assert_eq!(&pin[..], b"1234");
    }

    /// psec (knovichikhin/psec, psec/pinblock.py) doctests: clear format 0
    /// and 3 blocks for PAN 5544332211009966 decode to 1234.
    #[test]
    fn iso0_and_iso3_published_blocks() {
        let pan = "5544332211009966";
        let b0 = hex::decode("041277CDDEEFF669").unwrap();
        assert_eq!(&read_clear(PinFormat::Iso0, &b0, pan).unwrap()[..], b"1234");
        let b3 = hex::decode("341277EEEFCCB43C").unwrap();
        assert_eq!(&read_clear(PinFormat::Iso3, &b3, pan).unwrap()[..], b"1234");
    }

    /// ANSI X9.24-3:2017 supplementary test vectors (AES PIN block format 4),
    /// as quoted in Leon Lynch's crypto library tests
    /// (test/pinblock_format4_test.c): PIN 1234 → PIN field
    /// 441234AAAAAAAAAA…, PAN 4111111111111111 → PAN field
    /// 44111111111111111000000000000000; psec's doctest for the PAN field of
    /// 112233445566778899.
    #[test]
    fn iso4_fields_published() {
        let field = pin_field(PinFormat::Iso4, b"1234", &[0x55; 16]);
        assert_eq!(hex::encode_upper(&field[..8]), "441234AAAAAAAAAA");
        assert_eq!(hex::encode_upper(&field[8..]), "5555555555555555");
        assert_eq!(
            hex::encode_upper(pan_field_16("4111111111111111").unwrap()),
            "44111111111111111000000000000000"
        );
        assert_eq!(
            hex::encode_upper(pan_field_16("112233445566778899").unwrap()),
            "61122334455667788990000000000000"
        );
        assert_eq!(
            hex::encode_upper(pan_field_16("123456789").unwrap()),
            "00001234567890000000000000000000"
        );
    }

    /// psec doctests for format 4 (two encipherments): key
    /// 00112233445566778899AABBCCDDEEFF, PIN 1234, PAN 1234567890123456,
    /// fill 1122334455667788 → 7CDF645C86CAF763AE34637A66997534; and block
    /// E4BE5B623AF7E006AC319E5B93544564 deciphers to 1234.
    #[test]
    fn iso4_published_encipherment() {
        let k = key(KeyAlgorithm::Aes128, "00112233445566778899AABBCCDDEEFF");
        let pan = "1234567890123456";
        let fill = hex::decode("1122334455667788").unwrap();
        let block = encipher_with_fill(PinFormat::Iso4, &k, b"1234", pan, &fill).unwrap();
        assert_eq!(
            hex::encode_upper(&block),
            "7CDF645C86CAF763AE34637A66997534"
        );
        let published = hex::decode("E4BE5B623AF7E006AC319E5B93544564").unwrap();
        assert_eq!(
            &decipher(PinFormat::Iso4, &k, &published, pan).unwrap()[..],
            b"1234"
        );
    }

    #[test]
    fn every_format_round_trips_and_random_fill_differs() {
        let tdes = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let aes = key(KeyAlgorithm::Aes256, &"AB".repeat(32));
        let sm4 = key(KeyAlgorithm::Sm4, "0123456789ABCDEFFEDCBA9876543210");
        let pan = "4761739001010119";
        for (format, k) in [
            (PinFormat::Iso0, &tdes),
            (PinFormat::Iso1, &tdes),
            (PinFormat::Iso3, &tdes),
            (PinFormat::Iso4, &aes),
            (PinFormat::Iso4, &sm4),
        ] {
            for pin in [&b"1234"[..], b"987654321098"] {
                let block = encipher(format, k, pin, pan).unwrap();
                assert_eq!(block.len(), format.block_len());
                assert_eq!(&decipher(format, k, &block, pan).unwrap()[..], pin);
            }
        }
        let a = encipher(PinFormat::Iso4, &aes, b"1234", pan).unwrap();
        let b = encipher(PinFormat::Iso4, &aes, b"1234", pan).unwrap();
        assert_ne!(a, b, "format 4 blocks carry random fill");
    }

    #[test]
    fn translation_changes_key_and_format() {
        let tpk = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let zpk = key(KeyAlgorithm::Aes128, "00112233445566778899AABBCCDDEEFF");
        let pan = "4761739001010119";
        let from = PinZone {
            key: &tpk,
            format: PinFormat::Iso0,
        };
        let to = PinZone {
            key: &zpk,
            format: PinFormat::Iso4,
        };
        let block = encipher(PinFormat::Iso0, &tpk, b"4321", pan).unwrap();
        let out = translate(&block, pan, from, to).unwrap();
        assert_eq!(
            &decipher(PinFormat::Iso4, &zpk, &out, pan).unwrap()[..],
            b"4321"
        );
    }

    #[test]
    fn a_pan_bound_block_is_never_translated_into_format_1() {
        let tpk = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let pan = "4761739001010119";
        let block = encipher(PinFormat::Iso0, &tpk, b"1234", pan).unwrap();
        let zone = |format| PinZone { key: &tpk, format };
        assert_eq!(
            translate(&block, pan, zone(PinFormat::Iso0), zone(PinFormat::Iso1)),
            Err(PinError::Downgrade)
        );
    }

    #[test]
    fn bad_input_is_refused_precisely() {
        let tdes = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let aes = key(KeyAlgorithm::Aes128, "00112233445566778899AABBCCDDEEFF");
        let pan = "4761739001010119";
        assert_eq!(
            encipher(PinFormat::Iso0, &tdes, b"12", pan),
            Err(PinError::BadPin)
        );
        assert_eq!(
            encipher(PinFormat::Iso0, &tdes, b"12a4", pan),
            Err(PinError::BadPin)
        );
        assert_eq!(
            encipher(PinFormat::Iso0, &tdes, b"1234", "4111x"),
            Err(PinError::BadPan)
        );
        // A short PAN is left-padded with zeros (ISO 9564-1).
        assert_eq!(
            hex::encode_upper(pan_field_8("123456789").unwrap()),
            "0000000012345678"
        );
        assert!(matches!(
            encipher(PinFormat::Iso4, &tdes, b"1234", pan),
            Err(PinError::WrongKey { format: 4, .. })
        ));
        assert!(matches!(
            decipher(PinFormat::Iso0, &tdes, &[0; 7], pan),
            Err(PinError::Length { .. })
        ));
        // A block under another key reads as garbage, never as a PIN.
        let block = encipher(PinFormat::Iso4, &aes, b"1234", pan).unwrap();
        let other = key(KeyAlgorithm::Aes128, "FFEEDDCCBBAA99887766554433221100");
        assert!(matches!(
            decipher(PinFormat::Iso4, &other, &block, pan),
            Err(PinError::Malformed(4))
        ));
        for len in 0..20 {
            let _ = decipher(PinFormat::Iso0, &tdes, &vec![0xFF; len], pan);
            let _ = decipher(PinFormat::Iso4, &aes, &vec![0x00; len], pan);
        }
    }
}
