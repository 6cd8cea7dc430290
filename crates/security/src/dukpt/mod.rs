//! DUKPT (Derived Unique Key Per Transaction) key derivation, host side.
//!
//! Two schemes are supported:
//!
//! * **TDES DUKPT**, ANSI X9.24-1:2009 Annex A (also X9.24-3:2017 Annex C):
//!   a 16-byte (double-length TDES) Base Derivation Key (BDK) and a 10-byte
//!   Key Serial Number (KSN) whose right-most 21 bits are the transaction
//!   counter. [`tdes_ipek`] derives the Initial PIN Encryption Key (IPEK),
//!   [`tdes_transaction_key`] the current transaction key, and
//!   [`tdes_working_key`] its variants ([`TdesVariant`]).
//! * **AES DUKPT**, ANSI X9.24-3:2017: an AES-128/192/256 BDK and a 12-byte
//!   KSN (8-byte initial key ID followed by a 32-bit transaction counter).
//!   [`aes_initial_key`] derives the initial key and [`aes_working_key`] a
//!   working key for a [`AesKeyUsage`] and [`AesKeyType`].
//!
//! Every input is a byte slice that may come from an untrusted message or
//! configuration: lengths and counters are validated and reported as
//! [`DukptError`], never as a panic. Clear keys are returned in
//! [`Zeroizing`] buffers and intermediate key registers are zeroized when
//! dropped. Errors carry only lengths and counters (the counter travels in
//! clear in the KSN), never key bytes.
//!
//! The block cipher crates are built with their `zeroize` feature, so their
//! expanded round keys are wiped on drop too.

use aes::{Aes128, Aes192, Aes256};
use cipher::{BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2};
use zeroize::Zeroizing;

/// Length in bytes of a TDES DUKPT key serial number.
pub const TDES_KSN_LEN: usize = 10;
/// Length in bytes of a TDES DUKPT BDK, IPEK and transaction key.
pub const TDES_KEY_LEN: usize = 16;
/// Length in bytes of an AES DUKPT key serial number.
pub const AES_KSN_LEN: usize = 12;
/// Length in bytes of an AES DUKPT initial key ID (the KSN without counter).
pub const AES_INITIAL_KEY_ID_LEN: usize = 8;

/// Right-most 21 bits of the TDES KSN: the transaction counter.
const TDES_COUNTER_MASK: u64 = 0x1F_FFFF;
/// X9.24-1:2009 A.3: a transaction counter has at most ten "one" bits.
const TDES_MAX_COUNTER_BITS: u32 = 10;
/// X9.24-3:2017 6.1: a transaction counter has at most sixteen "one" bits.
const AES_MAX_COUNTER_BITS: u32 = 16;
/// The key-register variant `C0C0 C0C0 0000 0000` applied to each half
/// (X9.24-1:2009 A.2 step 4 and A.6).
const KEY_REGISTER_MASK: u64 = 0xC0C0_C0C0_0000_0000;

/// Key usage indicator for intermediate derivation keys (X9.24-3:2017 6.3.2).
const AES_USAGE_KEY_DERIVATION: u16 = 0x8000;
/// Key usage indicator for the initial key (X9.24-3:2017 6.3.2).
const AES_USAGE_INITIAL_KEY: u16 = 0x8001;

/// Why a DUKPT derivation was refused. Carries lengths and counters only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DukptError {
    /// The BDK has the wrong length for the scheme.
    #[error("BDK must be {expected} bytes, got {actual}")]
    BdkLength {
        /// Accepted lengths, e.g. `"16"` or `"16, 24 or 32"`.
        expected: &'static str,
        /// Length received.
        actual: usize,
    },
    /// The key serial number has the wrong length for the scheme.
    #[error("KSN must be {expected} bytes, got {actual}")]
    KsnLength {
        /// Required length.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// The AES initial key ID is not 8 bytes.
    #[error("initial key ID must be {AES_INITIAL_KEY_ID_LEN} bytes, got {actual}")]
    InitialKeyIdLength {
        /// Length received.
        actual: usize,
    },
    /// The transaction counter is zero: no transaction key uses it (the
    /// counter-zero key is the initial key itself).
    #[error("transaction counter is zero")]
    ZeroCounter,
    /// The transaction counter has more "one" bits than the standard allows;
    /// an originating device never uses such a counter.
    #[error("transaction counter {counter:#x} has {bits} bits set, at most {max} allowed")]
    CounterBits {
        /// The transaction counter.
        counter: u32,
        /// Number of bits set in it.
        bits: u32,
        /// Maximum allowed by the scheme (10 for TDES, 16 for AES).
        max: u32,
    },
    /// The requested AES working key is longer than the BDK (X9.24-3 does not
    /// derive a stronger key from a weaker one).
    #[error("a {working_bits}-bit working key cannot be derived from a {bdk_bits}-bit BDK")]
    WorkingKeyTooStrong {
        /// Length of the requested working key in bits.
        working_bits: u16,
        /// Length of the BDK in bits.
        bdk_bits: u16,
    },
}

// ---------------------------------------------------------------------------
// TDES DUKPT (ANSI X9.24-1:2009 Annex A)
// ---------------------------------------------------------------------------

/// A variant of the TDES DUKPT current transaction key
/// (X9.24-1:2009 A.4.1, table A-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TdesVariant {
    /// PIN encryption: key XOR `0000 0000 0000 00FF` on each half.
    Pin,
    /// MAC, request (or both ways): key XOR `0000 0000 0000 FF00` on each half.
    MacRequest,
    /// MAC, response: key XOR `0000 0000 FF00 0000` on each half.
    MacResponse,
    /// Data encryption, request (or both ways): key XOR `0000 0000 00FF 0000`
    /// on each half, then each half TDES-encrypted under that variant
    /// (X9.24-1:2009 A.4.1 figure A-2).
    DataRequest,
    /// Data encryption, response: key XOR `0000 00FF 0000 0000` on each
    /// half, then each half TDES-encrypted under that variant.
    DataResponse,
}

impl TdesVariant {
    /// The mask XORed onto each 8-byte half of the current key.
    const fn mask(self) -> u64 {
        match self {
            Self::Pin => 0x0000_0000_0000_00FF,
            Self::MacRequest => 0x0000_0000_0000_FF00,
            Self::MacResponse => 0x0000_0000_FF00_0000,
            Self::DataRequest => 0x0000_0000_00FF_0000,
            Self::DataResponse => 0x0000_00FF_0000_0000,
        }
    }

    /// Whether the variant is further encrypted under itself.
    const fn one_way(self) -> bool {
        matches!(self, Self::DataRequest | Self::DataResponse)
    }
}

/// Derives the TDES DUKPT Initial PIN Encryption Key (IPEK, "initial key")
/// from a 16-byte BDK and a 10-byte KSN (X9.24-1:2009 A.6). The counter bits
/// of the KSN are ignored.
///
/// # Errors
///
/// [`DukptError::BdkLength`] or [`DukptError::KsnLength`].
pub fn tdes_ipek(bdk: &[u8], ksn: &[u8]) -> Result<Zeroizing<[u8; 16]>, DukptError> {
    let bdk = tdes_bdk(bdk)?;
    let ksn = tdes_ksn(ksn)?;
    Ok(ipek_from(bdk, ksn))
}

/// Derives the TDES DUKPT current transaction key (no variant applied) for
/// the KSN's 21-bit transaction counter: the non-reversible key generation
/// process applied from the IPEK once per set counter bit, most significant
/// first (X9.24-1:2009 A.2, A.3).
///
/// # Errors
///
/// [`DukptError::BdkLength`], [`DukptError::KsnLength`],
/// [`DukptError::ZeroCounter`], or [`DukptError::CounterBits`] when more
/// than ten counter bits are set.
pub fn tdes_transaction_key(bdk: &[u8], ksn: &[u8]) -> Result<Zeroizing<[u8; 16]>, DukptError> {
    let bdk = tdes_bdk(bdk)?;
    let ksn = tdes_ksn(ksn)?;
    let [_, _, right @ ..] = *ksn;
    let register = u64::from_be_bytes(right);
    let counter = register & TDES_COUNTER_MASK;
    check_counter(counter, TDES_MAX_COUNTER_BITS)?;

    let ipek = ipek_from(bdk, ksn);
    let mut key = Halves::from_bytes(&ipek);
    let mut ksn_register = register & !TDES_COUNTER_MASK;
    for bit in (0..21).rev() {
        let shift = 1u64 << bit;
        if counter & shift != 0 {
            ksn_register |= shift;
            key = non_reversible_key(&key, ksn_register);
        }
    }
    Ok(key.to_bytes())
}

/// Derives a variant of the TDES DUKPT current transaction key: the key a
/// host uses to decrypt a PIN block, check a MAC or decrypt data from the
/// terminal that sent `ksn`.
///
/// # Errors
///
/// As [`tdes_transaction_key`].
pub fn tdes_working_key(
    bdk: &[u8],
    ksn: &[u8],
    variant: TdesVariant,
) -> Result<Zeroizing<[u8; 16]>, DukptError> {
    let current = tdes_transaction_key(bdk, ksn)?;
    let mask = variant.mask();
    let key = Halves::from_bytes(&current);
    let variant_key = Halves {
        left: Zeroizing::new(*key.left ^ mask),
        right: Zeroizing::new(*key.right ^ mask),
    };
    if !variant.one_way() {
        return Ok(variant_key.to_bytes());
    }
    let bytes = variant_key.to_bytes();
    let left = Zeroizing::new(tdes2_encrypt(&bytes, *variant_key.left));
    let right = Zeroizing::new(tdes2_encrypt(&bytes, *variant_key.right));
    Ok(Halves { left, right }.to_bytes())
}

/// The two 8-byte halves of a TDES key register, zeroized on drop.
struct Halves {
    left: Zeroizing<u64>,
    right: Zeroizing<u64>,
}

impl Halves {
    fn from_bytes(key: &[u8; 16]) -> Self {
        let whole = Zeroizing::new(u128::from_be_bytes(*key));
        Self {
            left: Zeroizing::new((*whole >> 64) as u64),
            right: Zeroizing::new(*whole as u64),
        }
    }

    fn to_bytes(&self) -> Zeroizing<[u8; 16]> {
        let whole = Zeroizing::new((u128::from(*self.left) << 64) | u128::from(*self.right));
        Zeroizing::new(whole.to_be_bytes())
    }
}

fn tdes_bdk(bdk: &[u8]) -> Result<&[u8; 16], DukptError> {
    bdk.try_into().map_err(|_| DukptError::BdkLength {
        expected: "16",
        actual: bdk.len(),
    })
}

fn tdes_ksn(ksn: &[u8]) -> Result<&[u8; TDES_KSN_LEN], DukptError> {
    ksn.try_into().map_err(|_| DukptError::KsnLength {
        expected: TDES_KSN_LEN,
        actual: ksn.len(),
    })
}

/// Rejects counter zero and counters with more than `max_bits` bits set.
fn check_counter(counter: u64, max_bits: u32) -> Result<(), DukptError> {
    if counter == 0 {
        return Err(DukptError::ZeroCounter);
    }
    let bits = counter.count_ones();
    if bits > max_bits {
        return Err(DukptError::CounterBits {
            counter: u32::try_from(counter).unwrap_or(u32::MAX),
            bits,
            max: max_bits,
        });
    }
    Ok(())
}

/// X9.24-1:2009 A.6: the left 8 bytes of the KSN with the counter cleared,
/// TDES-encrypted under the BDK (left half) and under the BDK XOR
/// `C0C0C0C000000000C0C0C0C000000000` (right half).
fn ipek_from(bdk: &[u8; 16], ksn: &[u8; TDES_KSN_LEN]) -> Zeroizing<[u8; 16]> {
    let [mut iksn @ .., _, _] = *ksn;
    iksn[7] &= 0xE0;
    let iksn = u64::from_be_bytes(iksn);

    let base = Halves::from_bytes(bdk);
    let variant = Halves {
        left: Zeroizing::new(*base.left ^ KEY_REGISTER_MASK),
        right: Zeroizing::new(*base.right ^ KEY_REGISTER_MASK),
    };
    Halves {
        left: Zeroizing::new(tdes2_encrypt(bdk, iksn)),
        right: Zeroizing::new(tdes2_encrypt(&variant.to_bytes(), iksn)),
    }
    .to_bytes()
}

/// X9.24-1:2009 A.2 "Non-reversible Key Generation Process": derives the key
/// for `ksn_register` (the right-most 64 bits of the KSN register) from the
/// key register `key`.
fn non_reversible_key(key: &Halves, ksn_register: u64) -> Halves {
    // Steps 1-3: Crypto Register-2.
    let right_half = Zeroizing::new(des_encrypt(*key.left, ksn_register ^ *key.right) ^ *key.right);
    // Step 4: the key register XOR C0C0 C0C0 0000 0000 C0C0 C0C0 0000 0000.
    let left_variant = Zeroizing::new(*key.left ^ KEY_REGISTER_MASK);
    let right_variant = Zeroizing::new(*key.right ^ KEY_REGISTER_MASK);
    // Steps 5-7: Crypto Register-1.
    let left_half =
        Zeroizing::new(des_encrypt(*left_variant, ksn_register ^ *right_variant) ^ *right_variant);
    Halves {
        left: left_half,
        right: right_half,
    }
}

/// Single-DES ECB encryption of one block.
fn des_encrypt(key: u64, data: u64) -> u64 {
    let key = Zeroizing::new(key.to_be_bytes());
    let mut block = Zeroizing::new(data.to_be_bytes());
    Des::new((&*key).into()).encrypt_block((&mut *block).into());
    u64::from_be_bytes(*block)
}

/// Double-length TDES (EDE2) ECB encryption of one block.
fn tdes2_encrypt(key: &[u8; 16], data: u64) -> u64 {
    let mut block = Zeroizing::new(data.to_be_bytes());
    TdesEde2::new(key.into()).encrypt_block((&mut *block).into());
    u64::from_be_bytes(*block)
}

// ---------------------------------------------------------------------------
// AES DUKPT (ANSI X9.24-3:2017)
// ---------------------------------------------------------------------------

/// The use a working key is derived for: the key usage indicator of the
/// derivation data (X9.24-3:2017 6.3.2, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AesKeyUsage {
    /// Key encryption key (`0x0002`).
    KeyEncryption,
    /// PIN encryption (`0x1000`).
    PinEncryption,
    /// MAC generation (`0x2000`).
    MacGeneration,
    /// MAC verification (`0x2001`).
    MacVerification,
    /// MAC generation and verification (`0x2002`).
    MacBoth,
    /// Data encryption, encrypt (`0x3000`).
    DataEncrypt,
    /// Data encryption, decrypt (`0x3001`).
    DataDecrypt,
    /// Data encryption, both ways (`0x3002`).
    DataBoth,
    /// Key derivation (`0x8000`).
    KeyDerivation,
}

impl AesKeyUsage {
    /// The 16-bit key usage indicator placed in the derivation data.
    #[must_use]
    pub const fn indicator(self) -> u16 {
        match self {
            Self::KeyEncryption => 0x0002,
            Self::PinEncryption => 0x1000,
            Self::MacGeneration => 0x2000,
            Self::MacVerification => 0x2001,
            Self::MacBoth => 0x2002,
            Self::DataEncrypt => 0x3000,
            Self::DataDecrypt => 0x3001,
            Self::DataBoth => 0x3002,
            Self::KeyDerivation => AES_USAGE_KEY_DERIVATION,
        }
    }
}

/// The algorithm and length of an AES DUKPT derived key: the algorithm
/// indicator and length of the derivation data (X9.24-3:2017 6.3.2, table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AesKeyType {
    /// Double-length TDES, 128 bits (`0x0000`).
    Tdes2,
    /// Triple-length TDES, 192 bits (`0x0001`).
    Tdes3,
    /// AES-128 (`0x0002`).
    Aes128,
    /// AES-192 (`0x0003`).
    Aes192,
    /// AES-256 (`0x0004`).
    Aes256,
}

impl AesKeyType {
    /// The 16-bit algorithm indicator placed in the derivation data.
    #[must_use]
    pub const fn indicator(self) -> u16 {
        match self {
            Self::Tdes2 => 0x0000,
            Self::Tdes3 => 0x0001,
            Self::Aes128 => 0x0002,
            Self::Aes192 => 0x0003,
            Self::Aes256 => 0x0004,
        }
    }

    /// Length of the key in bits (also placed in the derivation data).
    #[must_use]
    pub const fn bits(self) -> u16 {
        match self {
            Self::Tdes2 | Self::Aes128 => 128,
            Self::Tdes3 | Self::Aes192 => 192,
            Self::Aes256 => 256,
        }
    }

    /// Length of the key in bytes.
    #[must_use]
    pub const fn byte_len(self) -> usize {
        self.bits() as usize / 8
    }

    /// The AES type of a BDK (or initial or derivation key) of this length.
    fn of_aes_key(key: &[u8]) -> Result<Self, DukptError> {
        match key.len() {
            16 => Ok(Self::Aes128),
            24 => Ok(Self::Aes192),
            32 => Ok(Self::Aes256),
            actual => Err(DukptError::BdkLength {
                expected: "16, 24 or 32",
                actual,
            }),
        }
    }
}

/// Derives the AES DUKPT initial key from an AES-128, AES-192 or AES-256 BDK
/// and an 8-byte initial key ID (X9.24-3:2017 6.3.3, key usage `0x8001`).
/// The initial key has the BDK's type and length.
///
/// # Errors
///
/// [`DukptError::BdkLength`] or [`DukptError::InitialKeyIdLength`].
pub fn aes_initial_key(
    bdk: &[u8],
    initial_key_id: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DukptError> {
    let bdk_type = AesKeyType::of_aes_key(bdk)?;
    let initial_key_id: &[u8; AES_INITIAL_KEY_ID_LEN] =
        initial_key_id
            .try_into()
            .map_err(|_| DukptError::InitialKeyIdLength {
                actual: initial_key_id.len(),
            })?;
    aes_derive(bdk, AES_USAGE_INITIAL_KEY, bdk_type, *initial_key_id)
}

/// Derives an AES DUKPT working key for the 12-byte KSN (8-byte initial key
/// ID, 32-bit big-endian transaction counter): the initial key, then one
/// intermediate derivation key per set counter bit (most significant first),
/// then the working key of `usage` and `key_type` (X9.24-3:2017 6.3, 6.5).
///
/// # Errors
///
/// [`DukptError::BdkLength`], [`DukptError::KsnLength`],
/// [`DukptError::ZeroCounter`], [`DukptError::CounterBits`] when more than
/// sixteen counter bits are set, or [`DukptError::WorkingKeyTooStrong`] for
/// an AES working key longer than the BDK.
pub fn aes_working_key(
    bdk: &[u8],
    ksn: &[u8],
    usage: AesKeyUsage,
    key_type: AesKeyType,
) -> Result<Zeroizing<Vec<u8>>, DukptError> {
    let bdk_type = AesKeyType::of_aes_key(bdk)?;
    let (initial_key_id, counter) = aes_ksn(ksn)?;
    check_counter(u64::from(counter), AES_MAX_COUNTER_BITS)?;
    let aes_working = matches!(
        key_type,
        AesKeyType::Aes128 | AesKeyType::Aes192 | AesKeyType::Aes256
    );
    if aes_working && key_type.bits() > bdk_type.bits() {
        return Err(DukptError::WorkingKeyTooStrong {
            working_bits: key_type.bits(),
            bdk_bits: bdk_type.bits(),
        });
    }
    let initial_key = aes_derive(bdk, AES_USAGE_INITIAL_KEY, bdk_type, initial_key_id)?;
    let derivation_key = aes_derivation_key(&initial_key, bdk_type, &initial_key_id, counter)?;
    aes_derive(
        &derivation_key,
        usage.indicator(),
        key_type,
        counter_data(&initial_key_id, counter),
    )
}

/// Splits a 12-byte AES KSN into the initial key ID and the counter.
fn aes_ksn(ksn: &[u8]) -> Result<([u8; AES_INITIAL_KEY_ID_LEN], u32), DukptError> {
    let ksn: &[u8; AES_KSN_LEN] = ksn.try_into().map_err(|_| DukptError::KsnLength {
        expected: AES_KSN_LEN,
        actual: ksn.len(),
    })?;
    let [initial_key_id @ .., c0, c1, c2, c3] = *ksn;
    Ok((initial_key_id, u32::from_be_bytes([c0, c1, c2, c3])))
}

/// The intermediate derivation key for `counter`: starting from the initial
/// key, one derivation (usage `0x8000`, the BDK's type) per set counter bit,
/// the data naming the counter bits walked so far. No counter validation.
fn aes_derivation_key(
    initial_key: &[u8],
    bdk_type: AesKeyType,
    initial_key_id: &[u8; AES_INITIAL_KEY_ID_LEN],
    counter: u32,
) -> Result<Zeroizing<Vec<u8>>, DukptError> {
    let mut derivation_key = Zeroizing::new(initial_key.to_vec());
    let mut walked = 0u32;
    for bit in (0..32).rev() {
        let mask = 1u32 << bit;
        if counter & mask != 0 {
            walked |= mask;
            derivation_key = aes_derive(
                &derivation_key,
                AES_USAGE_KEY_DERIVATION,
                bdk_type,
                counter_data(initial_key_id, walked),
            )?;
        }
    }
    Ok(derivation_key)
}

/// The last 8 bytes of the derivation data for intermediate and working
/// keys: the right-most 4 bytes of the initial key ID and the counter.
fn counter_data(initial_key_id: &[u8; AES_INITIAL_KEY_ID_LEN], counter: u32) -> [u8; 8] {
    let [_, _, _, _, i4, i5, i6, i7] = *initial_key_id;
    let [c0, c1, c2, c3] = counter.to_be_bytes();
    [i4, i5, i6, i7, c0, c1, c2, c3]
}

/// X9.24-3:2017 6.3.1 "DeriveKey": AES-ECB encryption under
/// `derivation_key` of one 16-byte derivation data block per 128 bits of
/// output (version `01`, block counter, usage, algorithm, length in bits,
/// `data`), truncated to the key length.
fn aes_derive(
    derivation_key: &[u8],
    usage: u16,
    key_type: AesKeyType,
    data: [u8; 8],
) -> Result<Zeroizing<Vec<u8>>, DukptError> {
    let cipher = AesCipher::new(derivation_key)?;
    let [u0, u1] = usage.to_be_bytes();
    let [a0, a1] = key_type.indicator().to_be_bytes();
    let [l0, l1] = key_type.bits().to_be_bytes();
    let [d0, d1, d2, d3, d4, d5, d6, d7] = data;
    let blocks = key_type.byte_len().div_ceil(16);
    let mut out = Zeroizing::new(Vec::with_capacity(blocks * 16));
    for block_counter in 1..=blocks {
        let counter = u8::try_from(block_counter).unwrap_or(u8::MAX);
        let mut block = Zeroizing::new([
            0x01, counter, u0, u1, a0, a1, l0, l1, d0, d1, d2, d3, d4, d5, d6, d7,
        ]);
        cipher.encrypt(&mut block);
        out.extend_from_slice(&*block);
    }
    out.truncate(key_type.byte_len());
    Ok(out)
}

/// An AES block cipher keyed with a 128, 192 or 256-bit derivation key.
enum AesCipher {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

impl AesCipher {
    fn new(key: &[u8]) -> Result<Self, DukptError> {
        let bad = |_| DukptError::BdkLength {
            expected: "16, 24 or 32",
            actual: key.len(),
        };
        match AesKeyType::of_aes_key(key)? {
            AesKeyType::Aes192 => Aes192::new_from_slice(key).map(Self::Aes192).map_err(bad),
            AesKeyType::Aes256 => Aes256::new_from_slice(key).map(Self::Aes256).map_err(bad),
            _ => Aes128::new_from_slice(key).map(Self::Aes128).map_err(bad),
        }
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        match self {
            Self::Aes128(c) => c.encrypt_block(block.into()),
            Self::Aes192(c) => c.encrypt_block(block.into()),
            Self::Aes256(c) => c.encrypt_block(block.into()),
        }
    }
}

#[cfg(test)]
mod tests;
