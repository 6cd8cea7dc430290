//! Message authentication codes over ISO 8583 messages.
//!
//! | [`MacAlgorithm`] | standard | key |
//! |---|---|---|
//! | `retail` | ISO 9797-1 MAC algorithm 3 / ANSI X9.19 retail MAC, padding method 1 | double-length TDES |
//! | `cbc-des` | ISO 9797-1 MAC algorithm 1 (CBC-MAC), single DES, padding method 1 (legacy terminals) | DES |
//! | `aes-cmac` | NIST SP 800-38B CMAC, leftmost 8 bytes | AES-128/192/256 |
//! | `sm4` | ISO 9797-1 MAC algorithm 1 with SM4 (GB/T 32907), padding method 1, leftmost 8 bytes | SM4 |
//!
//! The MAC covers the encoded message (MTI, bitmaps and every field) up to
//! the MAC field, which is the last field of the message: field 64 when the
//! message has no secondary bitmap, field 128 when it has one. Both are
//! 8-byte binary fields (16 hex characters in ASCII dialects).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::block::{KeyAlgorithm, SecretKey, aes_cmac_full, full_mac};
use iso8583::{Dialect, Message};

/// Length of a MAC in ISO 8583 fields 64 and 128.
pub const MAC_LEN: usize = 8;

/// A MAC could not be computed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacError {
    /// The key's algorithm does not fit the MAC algorithm.
    #[error("MAC algorithm {mac} needs key algorithm {needs}, not {actual}")]
    WrongKey {
        /// The MAC algorithm.
        mac: MacAlgorithm,
        /// What it needs.
        needs: &'static str,
        /// The key's algorithm.
        actual: KeyAlgorithm,
    },
    /// The message carries no MAC field (64 or 128).
    #[error("the message carries no MAC (field 64 or 128)")]
    Missing,
    /// The MAC field is not the last field of the message.
    #[error("the MAC field {0} is not the last field of the message")]
    NotLast(u8),
    /// The dialect has no MAC field to encode.
    #[error("the message cannot be encoded: the dialect has no field {0}")]
    NoMacField(u8),
    /// The MAC field could not be encoded for MAC calculation.
    #[error("the message cannot be encoded: {0}")]
    Field(#[source] iso8583::ErrorKind),
    /// The message could not be encoded for MAC calculation.
    #[error("the message cannot be encoded: {0}")]
    Encode(#[source] iso8583::CodecError),
    /// The MAC does not match.
    #[error("MAC mismatch")]
    Mismatch,
}

/// A MAC algorithm, chosen per terminal profile and per destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MacAlgorithm {
    /// ISO 9797-1 algorithm 3 / ANSI X9.19 retail MAC (TDES).
    Retail,
    /// ISO 9797-1 algorithm 1, single DES CBC-MAC.
    CbcDes,
    /// AES-CMAC (NIST SP 800-38B), leftmost 8 bytes.
    AesCmac,
    /// SM4 CBC-MAC (ISO 9797-1 algorithm 1), leftmost 8 bytes.
    Sm4,
}

impl std::fmt::Display for MacAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MacAlgorithm::Retail => "retail",
            MacAlgorithm::CbcDes => "cbc-des",
            MacAlgorithm::AesCmac => "aes-cmac",
            MacAlgorithm::Sm4 => "sm4",
        })
    }
}

/// A name that is not one of the MAC algorithms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown MAC algorithm `{0}` (retail, cbc-des, aes-cmac or sm4)")]
pub struct UnknownMacAlgorithm(pub String);

impl std::str::FromStr for MacAlgorithm {
    type Err = UnknownMacAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            MacAlgorithm::Retail,
            MacAlgorithm::CbcDes,
            MacAlgorithm::AesCmac,
            MacAlgorithm::Sm4,
        ]
        .into_iter()
        .find(|a| a.to_string() == s)
        .ok_or_else(|| UnknownMacAlgorithm(s.to_string()))
    }
}

impl MacAlgorithm {
    /// Whether `key` can be used with this algorithm; the error says which
    /// key it needs.
    pub fn check_key(self, key: KeyAlgorithm) -> Result<(), MacError> {
        let (fits, needs) = match self {
            MacAlgorithm::Retail => (key == KeyAlgorithm::Tdes2, "tdes2"),
            MacAlgorithm::CbcDes => (key == KeyAlgorithm::Des, "des"),
            MacAlgorithm::AesCmac => (key.is_aes(), "aes128, aes192 or aes256"),
            MacAlgorithm::Sm4 => (key == KeyAlgorithm::Sm4, "sm4"),
        };
        if fits {
            Ok(())
        } else {
            Err(MacError::WrongKey {
                mac: self,
                needs,
                actual: key,
            })
        }
    }
}

/// The 8-byte MAC of `data` under `key`.
pub fn compute(
    algorithm: MacAlgorithm,
    key: &SecretKey,
    data: &[u8],
) -> Result<[u8; MAC_LEN], MacError> {
    algorithm.check_key(key.algorithm())?;
    let k = key.expose();
    let full = match algorithm {
        MacAlgorithm::Retail => full_mac::<retail_mac::RetailMac<des::Des>>(k, data),
        MacAlgorithm::CbcDes => full_mac::<cbc_mac::CbcMac<des::Des>>(k, data),
        MacAlgorithm::AesCmac => aes_cmac_full(key, data),
        MacAlgorithm::Sm4 => full_mac::<cbc_mac::CbcMac<sm4::Sm4>>(k, data),
    };
    full.get(..MAC_LEN)
        .and_then(|m| <[u8; MAC_LEN]>::try_from(m).ok())
        .ok_or(MacError::Mismatch)
}

/// Checks `mac` against the MAC of `data`, in constant time.
pub fn verify(
    algorithm: MacAlgorithm,
    key: &SecretKey,
    data: &[u8],
    mac: &[u8],
) -> Result<(), MacError> {
    let expected = compute(algorithm, key, data)?;
    let same = mac.len() == MAC_LEN
        && expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(MacError::Mismatch)
    }
}

/// The MAC field a message uses: 128 when it has a secondary bitmap (any
/// field above 64), else 64.
pub fn mac_field(message: &Message) -> u8 {
    if message.fields().any(|(n, _)| n > 64) {
        128
    } else {
        64
    }
}

/// Bytes the MAC field takes on the wire in `dialect`.
fn encoded_mac_len(dialect: &Dialect, field: u8) -> Result<usize, MacError> {
    let spec = dialect.field(field).ok_or(MacError::NoMacField(field))?;
    let mut out = BytesMut::new();
    iso8583::field::encode(spec, &[0; MAC_LEN], &mut out).map_err(MacError::Field)?;
    Ok(out.len())
}

/// Sets the MAC field of `message` to the MAC of its encoding under
/// `dialect` and returns the final encoding.
pub fn sign(
    dialect: &Dialect,
    message: &mut Message,
    algorithm: MacAlgorithm,
    key: &SecretKey,
) -> Result<Bytes, MacError> {
    algorithm.check_key(key.algorithm())?;
    message.remove(64);
    message.remove(128);
    if message.fields().any(|(n, _)| n > 128) {
        // Fields of a tertiary bitmap would follow field 128.
        return Err(MacError::NotLast(128));
    }
    let field = mac_field(message);
    message.set(field, Bytes::from_static(&[0; MAC_LEN]));
    let encoded = message.to_bytes(dialect).map_err(MacError::Encode)?;
    let covered = covered(dialect, &encoded, field)?;
    let mac = compute(algorithm, key, covered)?;
    message.set(field, Bytes::copy_from_slice(&mac));
    message.to_bytes(dialect).map_err(MacError::Encode)
}

/// The part of an encoded message the MAC covers: everything before the
/// MAC field, which is its last `encoded_mac_len` bytes.
fn covered<'a>(dialect: &Dialect, encoded: &'a [u8], field: u8) -> Result<&'a [u8], MacError> {
    let len = encoded_mac_len(dialect, field)?;
    encoded
        .len()
        .checked_sub(len)
        .and_then(|end| encoded.get(..end))
        .ok_or(MacError::Missing)
}

/// Verifies the MAC of a received message: `frame` is the message as it
/// arrived (without length prefix or header) and `message` its decoding.
pub fn verify_message(
    dialect: &Dialect,
    frame: &[u8],
    message: &Message,
    algorithm: MacAlgorithm,
    key: &SecretKey,
) -> Result<(), MacError> {
    let field = mac_field(message);
    let mac = message.get(field).ok_or(MacError::Missing)?;
    if message.fields().last().map(|(n, _)| n) != Some(field) {
        return Err(MacError::NotLast(field));
    }
    verify(algorithm, key, covered(dialect, frame, field)?, mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: KeyAlgorithm, hex: &str) -> SecretKey {
        SecretKey::new(alg, &hex::decode(hex).unwrap()).unwrap()
    }

    /// ISO/IEC 9797-1:2011 annex B.4 / ANSI X9.19: MAC algorithm 3 with
    /// K = 0123456789ABCDEF, K' = FEDCBA9876543210.
    #[test]
    fn x919_retail_mac_vector() {
        let k = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let mac = compute(MacAlgorithm::Retail, &k, b"Now is the time for all ").unwrap();
        assert_eq!(hex::encode_upper(mac), "A1C72E74EA3FA9B6");
        let mac = compute(MacAlgorithm::Retail, &k, b"Now is the time for it").unwrap();
        assert_eq!(hex::encode_upper(mac), "2E2B1428CC78254F");
    }

    /// ISO/IEC 9797-1:2011 annex B.2: MAC algorithm 1, padding method 1,
    /// single DES with K = 0123456789ABCDEF.
    #[test]
    fn iso9797_alg1_vector() {
        let k = key(KeyAlgorithm::Des, "0123456789ABCDEF");
        let mac = compute(MacAlgorithm::CbcDes, &k, b"Now is the time for all ").unwrap();
        assert_eq!(hex::encode_upper(mac), "70A30640CC76DD8B");
    }

    /// RFC 4493 section 4, AES-128 key 2b7e1516 28aed2a6 abf71588 09cf4f3c:
    /// examples 1–4 (empty, 16, 40 and 64 bytes), leftmost 8 bytes.
    #[test]
    fn rfc4493_aes_cmac_vectors() {
        let k = key(KeyAlgorithm::Aes128, "2b7e151628aed2a6abf7158809cf4f3c");
        let message = hex::decode(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        )
        .unwrap();
        let cases = [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ];
        for (len, full) in cases {
            assert_eq!(hex::encode(aes_cmac_full(&k, &message[..len])), full);
            let mac = compute(MacAlgorithm::AesCmac, &k, &message[..len]).unwrap();
            assert_eq!(hex::encode(mac), full[..16]);
        }
    }

    #[test]
    fn wrong_key_type_is_refused() {
        let k = key(KeyAlgorithm::Des, "0123456789ABCDEF");
        assert!(matches!(
            compute(MacAlgorithm::Retail, &k, b"x"),
            Err(MacError::WrongKey { .. })
        ));
    }

    #[test]
    fn signed_message_verifies_and_tampering_fails() {
        let k = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        for (dialect, mti) in [
            ("iso87ascii", "0200"),
            ("iso87binary", "0200"),
            ("iso93binary", "1200"),
        ] {
            let d = Dialect::resolve(dialect).unwrap();
            let mut m = Message::new(iso8583::Mti::parse(mti).unwrap());
            m.set(3, "000000").set(4, "000000001000").set(11, "000123");
            let frame = sign(&d, &mut m, MacAlgorithm::Retail, &k).unwrap();
            let decoded = Message::decode(&d, frame.clone()).unwrap();
            verify_message(&d, &frame, &decoded, MacAlgorithm::Retail, &k).unwrap();
            // The amount changes from 1000 to 9000 under the same MAC field:
            // still a valid message, no longer the one the MAC was made for.
            let mut tampered = decoded.clone();
            tampered.set(4, "000000009000");
            let bad = tampered.to_bytes(&d).unwrap();
            let decoded = Message::decode(&d, bad.clone()).unwrap();
            assert_eq!(
                verify_message(&d, &bad, &decoded, MacAlgorithm::Retail, &k),
                Err(MacError::Mismatch),
                "{dialect}"
            );
        }
    }

    #[test]
    fn fields_after_the_mac_field_are_refused() {
        let k = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let d = Dialect::resolve("iso87ascii").unwrap();
        let mut m = Message::new(iso8583::Mti::parse("0200").unwrap());
        m.set(11, "000123")
            .set(64, Bytes::from_static(&[0; 8]))
            .set(70, "301");
        let frame = m.to_bytes(&d).unwrap();
        // With field 70 the MAC belongs in 128; a 64 in front is not last.
        assert_eq!(
            verify_message(&d, &frame, &m, MacAlgorithm::Retail, &k),
            Err(MacError::Missing)
        );
        m.set(128, Bytes::from_static(&[0; 8]));
        m.set(100, "12");
        let frame = m.to_bytes(&d).unwrap();
        assert_eq!(
            verify_message(&d, &frame, &m, MacAlgorithm::Retail, &k),
            Err(MacError::Mismatch)
        );
    }

    #[test]
    fn message_without_mac_is_reported() {
        let k = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let d = Dialect::resolve("iso87ascii").unwrap();
        let mut m = Message::new(iso8583::Mti::parse("0200").unwrap());
        m.set(11, "000123");
        let frame = m.to_bytes(&d).unwrap();
        assert_eq!(
            verify_message(&d, &frame, &m, MacAlgorithm::Retail, &k),
            Err(MacError::Missing)
        );
    }
}
