//! Secret keys and the block ciphers they key: DES, TDES (two and three
//! keys), AES-128/192/256 and SM4.
//!
//! A [`SecretKey`] holds its bytes in a zeroizing buffer and prints only its
//! algorithm and key check value, never its material. [`Cipher`] is the
//! keyed block cipher the MAC and PIN code work with.

use std::fmt;

use cipher::{Block, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use retail_mac::Mac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key's length does not fit its algorithm.
    #[error("a {algorithm} key must be {expected} bytes, not {actual}")]
    Length {
        /// The algorithm.
        algorithm: KeyAlgorithm,
        /// Bytes it needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// Data to encrypt is not a whole number of blocks.
    #[error("{len} bytes is not a whole number of {block}-byte blocks")]
    Blocks {
        /// Bytes given.
        len: usize,
        /// Block size of the cipher.
        block: usize,
    },
}

/// The algorithm a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// Single DES (8 bytes), for legacy terminals only.
    Des,
    /// Double-length TDES (16 bytes, K1 K2 K1).
    Tdes2,
    /// Triple-length TDES (24 bytes).
    Tdes3,
    /// AES-128.
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
    /// SM4 (GB/T 32907), 16 bytes.
    Sm4,
}

impl KeyAlgorithm {
    /// Every algorithm, for parsing and help text.
    pub const ALL: [KeyAlgorithm; 7] = [
        KeyAlgorithm::Des,
        KeyAlgorithm::Tdes2,
        KeyAlgorithm::Tdes3,
        KeyAlgorithm::Aes128,
        KeyAlgorithm::Aes192,
        KeyAlgorithm::Aes256,
        KeyAlgorithm::Sm4,
    ];

    /// Length of a key in bytes.
    pub fn key_len(self) -> usize {
        match self {
            KeyAlgorithm::Des => 8,
            KeyAlgorithm::Tdes2 | KeyAlgorithm::Aes128 | KeyAlgorithm::Sm4 => 16,
            KeyAlgorithm::Tdes3 | KeyAlgorithm::Aes192 => 24,
            KeyAlgorithm::Aes256 => 32,
        }
    }

    /// Block size of the cipher in bytes.
    pub fn block_len(self) -> usize {
        match self {
            KeyAlgorithm::Des | KeyAlgorithm::Tdes2 | KeyAlgorithm::Tdes3 => 8,
            _ => 16,
        }
    }

    /// The lower-case name used in config and the key store.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Des => "des",
            KeyAlgorithm::Tdes2 => "tdes2",
            KeyAlgorithm::Tdes3 => "tdes3",
            KeyAlgorithm::Aes128 => "aes128",
            KeyAlgorithm::Aes192 => "aes192",
            KeyAlgorithm::Aes256 => "aes256",
            KeyAlgorithm::Sm4 => "sm4",
        }
    }

    /// Whether this is an AES key.
    pub fn is_aes(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Aes128 | KeyAlgorithm::Aes192 | KeyAlgorithm::Aes256
        )
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the key algorithms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm `{0}` (one of {names})", names = algorithm_names())]
pub struct UnknownAlgorithm(pub String);

fn algorithm_names() -> String {
    let names: Vec<&str> = KeyAlgorithm::ALL.iter().map(|a| a.name()).collect();
    names.join(", ")
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// Clear key material with its algorithm. Zeroized on drop; `Debug` shows
/// the algorithm and check value only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    algorithm: KeyAlgorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretKey {
    /// Wraps key bytes, checking their length against the algorithm.
    pub fn new(algorithm: KeyAlgorithm, bytes: &[u8]) -> Result<SecretKey, KeyError> {
        if bytes.len() != algorithm.key_len() {
            return Err(KeyError::Length {
                algorithm,
                expected: algorithm.key_len(),
                actual: bytes.len(),
            });
        }
        Ok(SecretKey {
            algorithm,
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The clear key bytes. Call it only where the material is needed.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The keyed block cipher.
    pub fn cipher(&self) -> Cipher {
        Cipher::new(self)
    }

    /// The key check value, as upper-case hex: for DES, TDES and SM4 the
    /// first 3 bytes of a zero block encrypted under the key; for AES the
    /// first 5 bytes of the AES-CMAC of a zero block (ANSI X9.24-1:2017).
    pub fn kcv(&self) -> String {
        if self.algorithm.is_aes() {
            let mac = aes_cmac_full(self, &[0u8; 16]);
            hex::encode_upper(mac.get(..5).unwrap_or_default())
        } else {
            let mut block = vec![0u8; self.algorithm.block_len()];
            let _ = self.cipher().encrypt(&mut block);
            hex::encode_upper(block.get(..3).unwrap_or_default())
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, kcv {})", self.algorithm, self.kcv())
    }
}

/// The full AES-CMAC of `data` (16 bytes). `key` must be an AES key; any
/// other key gives an empty result.
pub(crate) fn aes_cmac_full(key: &SecretKey, data: &[u8]) -> Vec<u8> {
    let k = key.expose();
    match key.algorithm() {
        KeyAlgorithm::Aes128 => full_mac::<cmac::Cmac<aes::Aes128>>(k, data),
        KeyAlgorithm::Aes192 => full_mac::<cmac::Cmac<aes::Aes192>>(k, data),
        KeyAlgorithm::Aes256 => full_mac::<cmac::Cmac<aes::Aes256>>(k, data),
        _ => Vec::new(),
    }
}

/// The full MAC `M` of `data` under `key`; empty if the key does not fit.
pub(crate) fn full_mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A block cipher keyed with a [`SecretKey`].
pub enum Cipher {
    /// Single DES.
    Des(des::Des),
    /// Two-key TDES.
    Tdes2(des::TdesEde2),
    /// Three-key TDES.
    Tdes3(des::TdesEde3),
    /// AES-128.
    Aes128(aes::Aes128),
    /// AES-192.
    Aes192(aes::Aes192),
    /// AES-256.
    Aes256(aes::Aes256),
    /// SM4.
    Sm4(sm4::Sm4),
}

/// Keys a cipher from bytes whose length [`SecretKey::new`] has checked.
fn keyed<C: KeyInit>(bytes: &[u8]) -> C {
    // Unreachable fallback: lengths are checked when a SecretKey is made.
    C::new_from_slice(bytes).unwrap_or_else(|_| C::new(&Default::default()))
}

impl Cipher {
    /// Keys the cipher.
    pub fn new(key: &SecretKey) -> Cipher {
        let b = key.expose();
        match key.algorithm {
            KeyAlgorithm::Des => Cipher::Des(keyed(b)),
            KeyAlgorithm::Tdes2 => Cipher::Tdes2(keyed(b)),
            KeyAlgorithm::Tdes3 => Cipher::Tdes3(keyed(b)),
            KeyAlgorithm::Aes128 => Cipher::Aes128(keyed(b)),
            KeyAlgorithm::Aes192 => Cipher::Aes192(keyed(b)),
            KeyAlgorithm::Aes256 => Cipher::Aes256(keyed(b)),
            KeyAlgorithm::Sm4 => Cipher::Sm4(keyed(b)),
        }
    }

    /// Block size in bytes.
    pub fn block_len(&self) -> usize {
        match self {
            Cipher::Des(_) | Cipher::Tdes2(_) | Cipher::Tdes3(_) => 8,
            _ => 16,
        }
    }

    /// Encrypts whole blocks in place (ECB, one block at a time).
    pub fn encrypt(&self, data: &mut [u8]) -> Result<(), KeyError> {
        self.check(data)?;
        for chunk in data.chunks_exact_mut(self.block_len()) {
            self.apply(chunk, Direction::Encrypt);
        }
        Ok(())
    }

    /// Decrypts whole blocks in place (ECB, one block at a time).
    pub fn decrypt(&self, data: &mut [u8]) -> Result<(), KeyError> {
        self.check(data)?;
        for chunk in data.chunks_exact_mut(self.block_len()) {
            self.apply(chunk, Direction::Decrypt);
        }
        Ok(())
    }

    fn check(&self, data: &[u8]) -> Result<(), KeyError> {
        if !data.len().is_multiple_of(self.block_len()) {
            return Err(KeyError::Blocks {
                len: data.len(),
                block: self.block_len(),
            });
        }
        Ok(())
    }

    /// One block in place; `chunk` has the block length (checked by the
    /// callers).
    fn apply(&self, chunk: &mut [u8], direction: Direction) {
        fn run<C: BlockCipherEncrypt + BlockCipherDecrypt>(
            c: &C,
            chunk: &mut [u8],
            direction: Direction,
        ) {
            match Block::<C>::try_from(&*chunk) {
                Ok(mut block) => {
                    match direction {
                        Direction::Encrypt => c.encrypt_block(&mut block),
                        Direction::Decrypt => c.decrypt_block(&mut block),
                    }
                    chunk.copy_from_slice(&block);
                }
                // Unreachable (callers pass whole blocks); fail closed
                // rather than leave clear data in place.
                Err(_) => chunk.fill(0),
            }
        }
        match self {
            Cipher::Des(c) => run(c, chunk, direction),
            Cipher::Tdes2(c) => run(c, chunk, direction),
            Cipher::Tdes3(c) => run(c, chunk, direction),
            Cipher::Aes128(c) => run(c, chunk, direction),
            Cipher::Aes192(c) => run(c, chunk, direction),
            Cipher::Aes256(c) => run(c, chunk, direction),
            Cipher::Sm4(c) => run(c, chunk, direction),
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: KeyAlgorithm, hex: &str) -> SecretKey {
        SecretKey::new(alg, &hex::decode(hex).unwrap()).unwrap()
    }

    /// GB/T 32907-2016 Appendix A, example 1: key = plaintext =
    /// 0123456789ABCDEFFEDCBA9876543210 → 681EDF34D206965E86B3E94F536E4246.
    #[test]
    fn sm4_standard_example() {
        let k = key(KeyAlgorithm::Sm4, "0123456789ABCDEFFEDCBA9876543210");
        let mut block = hex::decode("0123456789ABCDEFFEDCBA9876543210").unwrap();
        k.cipher().encrypt(&mut block).unwrap();
        assert_eq!(
            hex::encode_upper(&block),
            "681EDF34D206965E86B3E94F536E4246"
        );
        k.cipher().decrypt(&mut block).unwrap();
        assert_eq!(
            hex::encode_upper(&block),
            "0123456789ABCDEFFEDCBA9876543210"
        );
    }

    /// FIPS 197 Appendix C.1: AES-128 key 000102…0F, plaintext 00112233…FF.
    #[test]
    fn aes_fips197_example() {
        let k = key(KeyAlgorithm::Aes128, "000102030405060708090a0b0c0d0e0f");
        let mut block = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        k.cipher().encrypt(&mut block).unwrap();
        assert_eq!(hex::encode(&block), "69c4e0d86a7b0430d8cdb78070b4c55a");
    }

    /// The classic TDES KCV: 0123456789ABCDEFFEDCBA9876543210 → 08D7B4.
    #[test]
    fn tdes_kcv() {
        let k = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(k.kcv(), "08D7B4");
    }

    #[test]
    fn lengths_and_blocks_are_checked() {
        assert!(matches!(
            SecretKey::new(KeyAlgorithm::Tdes2, &[0; 8]),
            Err(KeyError::Length { expected: 16, .. })
        ));
        let k = key(KeyAlgorithm::Des, "0123456789ABCDEF");
        assert!(k.cipher().encrypt(&mut [0u8; 7]).is_err());
    }

    #[test]
    fn debug_never_shows_material() {
        let k = key(KeyAlgorithm::Tdes2, "0123456789ABCDEFFEDCBA9876543210");
        let shown = format!("{k:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("08D7B4"));
    }
}
