//! Card numbers at rest: sealed with AES-256-GCM, found again by a keyed
//! digest.
//!
//! The journal never holds a clear PAN. Each record carries the masked PAN
//! (first 6 / last 4, for people), an HMAC-SHA256 of the PAN (to find a
//! card's transactions without decrypting anything) and the PAN sealed under
//! the data key with a fresh random 96-bit nonce (for clearing, which must
//! send the PAN to the bank). Both keys are derived from one 256-bit data key
//! with HMAC-SHA256 under distinct labels, so the lookup digest reveals
//! nothing about the encryption key.

use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use crate::card::mask_pan;

/// Length of a data key in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// The data key could not be used, or a sealed PAN could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The data key text is not 64 hexadecimal characters.
    #[error("the data key must be 64 hexadecimal characters (256 bits)")]
    BadKey,
    /// A sealed PAN failed authentication (wrong key or altered record).
    #[error("a sealed PAN does not open under this data key")]
    Unseal,
}

/// A PAN as the journal stores it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPan {
    /// First 6 and last 4 digits, the rest `*`.
    pub masked: String,
    /// HMAC-SHA256 of the PAN under the lookup key.
    pub digest: [u8; 32],
    /// Nonce followed by the AES-256-GCM ciphertext and tag.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedPan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

/// Seals and looks up PANs. Holds derived keys only; `Debug` shows none.
pub struct Vault {
    cipher: Aes256Gcm,
    lookup: Zeroizing<[u8; 32]>,
    /// Nonces are this random 32-bit prefix (drawn once per vault) and a
    /// 64-bit counter: unique under the key without a system call per PAN
    /// (NIST SP 800-38D §8.2.1, deterministic construction).
    nonce_prefix: [u8; 4],
    nonce_counter: AtomicU64,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

fn derive(key: &[u8; KEY_LEN], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

impl Vault {
    /// A vault under a 256-bit data key given as 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Vault, VaultError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), key.as_mut_slice()).map_err(|_| VaultError::BadKey)?;
        Ok(Vault::new(&key))
    }

    /// A vault under a 256-bit data key.
    pub fn new(key: &[u8; KEY_LEN]) -> Vault {
        let encryption = derive(key, b"cardswitch journal pan encryption v1");
        let random = aes_gcm::Key::<Aes256Gcm>::generate();
        let mut nonce_prefix = [0u8; 4];
        nonce_prefix.copy_from_slice(&random.as_slice()[..4]);
        Vault {
            cipher: Aes256Gcm::new(&aes_gcm::Key::<Aes256Gcm>::from(*encryption)),
            lookup: derive(key, b"cardswitch journal pan lookup v1"),
            nonce_prefix,
            nonce_counter: AtomicU64::new(0),
        }
    }

    /// The keyed digest used to find a card's records.
    pub fn digest(&self, pan: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256>>::new_from_slice(self.lookup.as_slice())
            .unwrap_or_else(|_| unreachable!());
        mac.update(pan.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Seals a PAN: masked form, digest and ciphertext.
    pub fn seal(&self, pan: &str) -> SealedPan {
        let mut nonce = Nonce::default();
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(
            &self
                .nonce_counter
                .fetch_add(1, Ordering::Relaxed)
                .to_be_bytes(),
        );
        // Encryption of a short in-memory buffer cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, pan.as_bytes())
            .unwrap_or_default();
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(nonce.as_slice());
        sealed.extend_from_slice(&ciphertext);
        SealedPan {
            masked: mask_pan(pan),
            digest: self.digest(pan),
            sealed,
        }
    }

    /// Opens a sealed PAN (for clearing and for reversals sent to a bank).
    pub fn open(&self, pan: &SealedPan) -> Result<Zeroizing<String>, VaultError> {
        self.open_bytes(&pan.sealed)
    }

    /// Opens the nonce and ciphertext of a sealed PAN
    /// ([`SealedPan::sealed`]).
    pub fn open_bytes(&self, sealed: &[u8]) -> Result<Zeroizing<String>, VaultError> {
        let (nonce, ciphertext) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(VaultError::Unseal)?;
        let nonce = Nonce::try_from(nonce).map_err(|_| VaultError::Unseal)?;
        let clear = self
            .cipher
            .decrypt(&nonce, ciphertext)
            .map_err(|_| VaultError::Unseal)?;
        String::from_utf8(clear)
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seals_and_opens() {
        let vault = Vault::from_hex(KEY).unwrap();
        let sealed = vault.seal("4761739001010010");
        assert_eq!(sealed.masked, "476173******0010");
        assert_eq!(sealed.digest, vault.digest("4761739001010010"));
        assert!(!sealed.sealed.windows(16).any(|w| w == b"4761739001010010"));
        assert_eq!(vault.open(&sealed).unwrap().as_str(), "4761739001010010");
        // A fresh nonce each time.
        assert_ne!(vault.seal("4761739001010010").sealed, sealed.sealed);
    }

    #[test]
    fn refuses_other_keys_and_altered_records() {
        let vault = Vault::from_hex(KEY).unwrap();
        let other = Vault::new(&[7; 32]);
        let mut sealed = vault.seal("4761739001010010");
        assert_eq!(other.open(&sealed), Err(VaultError::Unseal));
        sealed.sealed[14] ^= 1;
        assert_eq!(vault.open(&sealed), Err(VaultError::Unseal));
        assert!(Vault::from_hex("abc").is_err());
        assert_eq!(format!("{:?}", vault), "Vault(..)");
    }
}
