//! How one terminal or one destination protects its messages: which MAC
//! algorithm and key, which PIN key (static or DUKPT) and PIN block format.
//!
//! Written in config as an inline table on a `[[terminal]]` or
//! `[[destination]]`:
//!
//! ```toml
//! security = { mac = "retail", mac_key = "tak-term1", require_mac = true,
//!              pin_key = "tpk-term1", pin_format = "iso0" }
//! security = { dukpt = "aes", dukpt_bdk = "bdk-1", ksn_field = 62, pin_format = "iso4" }
//! ```
//!
//! Key names refer to the key store ([`crate::keys`]). A terminal
//! uses TAK and TPK (or a BDK), a destination ZAK and ZPK; a key of another
//! type is a configuration error.

use serde::Deserialize;

use crate::block::{KeyAlgorithm, SecretKey};
use crate::dukpt::{self, AesKeyType, AesKeyUsage, TdesVariant};
use crate::keys::{KeyStore, KeyType};
use crate::mac::MacAlgorithm;
use crate::pin::PinFormat;
use iso8583::{Dialect, Message};

/// Why keys named in a profile cannot be had without a key store.
pub const NO_KEY_STORE: &str = "keys need a key store: set [security] key_store";

/// The `security = { … }` table of a terminal or destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionEntry {
    /// MAC algorithm for fields 64/128.
    #[serde(default)]
    pub mac: Option<MacAlgorithm>,
    /// MAC key id (TAK for a terminal, ZAK for a destination).
    #[serde(default)]
    pub mac_key: Option<String>,
    /// Refuse a terminal's financial message that carries no MAC (default:
    /// yes when the terminal has a MAC key).
    #[serde(default)]
    pub require_mac: Option<bool>,
    /// PIN key id (TPK for a terminal, ZPK for a destination).
    #[serde(default)]
    pub pin_key: Option<String>,
    /// PIN block format of field 52 (default: iso0, or iso4 for AES keys).
    #[serde(default)]
    pub pin_format: Option<PinFormat>,
    /// DUKPT terminals: `tdes` (ANSI X9.24-1) or `aes` (X9.24-3).
    #[serde(default)]
    pub dukpt: Option<DukptScheme>,
    /// DUKPT base derivation key id (BDK).
    #[serde(default)]
    pub dukpt_bdk: Option<String>,
    /// Field carrying the KSN (default 53).
    #[serde(default)]
    pub ksn_field: Option<u8>,
}

/// A DUKPT scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DukptScheme {
    /// ANSI X9.24-1 TDES DUKPT, 10-byte KSN, PIN variant key (TDES).
    Tdes,
    /// ANSI X9.24-3 AES DUKPT, 12-byte KSN, AES-128 PIN encryption key.
    Aes,
}

/// Which side a profile is for: it decides the key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A terminal: TAK, TPK, BDK.
    Terminal,
    /// A destination (bank or channel): ZAK, ZPK.
    Destination,
}

/// A MAC algorithm with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacProfile {
    /// The algorithm.
    pub algorithm: MacAlgorithm,
    /// The key.
    pub key: SecretKey,
}

/// Where the PIN key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinKey {
    /// One key for every message (TPK or ZPK).
    Static(SecretKey),
    /// A key derived per message from a BDK and the message's KSN.
    Dukpt {
        /// The scheme.
        scheme: DukptScheme,
        /// The base derivation key.
        bdk: SecretKey,
        /// Field holding the KSN.
        ksn_field: u8,
    },
}

/// A PIN key with the block format used under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinProfile {
    /// The key.
    pub key: PinKey,
    /// The block format.
    pub format: PinFormat,
}

/// A PIN key could not be found for a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinKeyError {
    /// The KSN field is missing or not 10/12 bytes (or 20/24 hex digits).
    #[error("field {0} carries no usable KSN")]
    Ksn(u8),
    /// DUKPT derivation failed (counter exhausted, …).
    #[error("DUKPT: {0}")]
    Dukpt(#[from] dukpt::DukptError),
}

/// The resolved protection of a terminal or destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// MAC, if messages are MAC'd.
    pub mac: Option<MacProfile>,
    /// Whether a terminal's financial messages must carry a MAC.
    pub require_mac: bool,
    /// PIN key, if PIN blocks are translated to or from this party.
    pub pin: Option<PinProfile>,
}

impl PinProfile {
    /// The key that enciphered (or is to encipher) `message`'s PIN block.
    pub fn key_for(&self, message: &Message) -> Result<SecretKey, PinKeyError> {
        match &self.key {
            PinKey::Static(key) => Ok(key.clone()),
            PinKey::Dukpt {
                scheme,
                bdk,
                ksn_field,
            } => {
                let ksn = ksn_of(message, *ksn_field).ok_or(PinKeyError::Ksn(*ksn_field))?;
                let (algorithm, bytes) = match scheme {
                    DukptScheme::Tdes => (
                        KeyAlgorithm::Tdes2,
                        dukpt::tdes_working_key(bdk.expose(), &ksn, TdesVariant::Pin)?.to_vec(),
                    ),
                    DukptScheme::Aes => (
                        KeyAlgorithm::Aes128,
                        dukpt::aes_working_key(
                            bdk.expose(),
                            &ksn,
                            AesKeyUsage::PinEncryption,
                            AesKeyType::Aes128,
                        )?
                        .to_vec(),
                    ),
                };
                let key = SecretKey::new(algorithm, &bytes);
                drop(zeroize::Zeroizing::new(bytes));
                key.map_err(|_| PinKeyError::Ksn(*ksn_field))
            }
        }
    }
}

/// The KSN in `field`: 10 or 12 raw bytes, or 20 or 24 hex digits.
fn ksn_of(message: &Message, field: u8) -> Option<Vec<u8>> {
    let raw = message.get(field)?;
    match raw.len() {
        10 | 12 => Some(raw.to_vec()),
        20 | 24 => hex::decode(raw).ok(),
        _ => None,
    }
}

/// The key `id` of type `key_type` in `store`.
fn lookup(store: Option<&KeyStore>, id: &str, key_type: KeyType) -> Result<SecretKey, LookupError> {
    Ok(store.ok_or(LookupError::NoKeyStore)?.get(id, key_type)?)
}

/// Why a key named in a protection entry cannot be had.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    /// No key store is configured.
    #[error("{}", NO_KEY_STORE)]
    NoKeyStore,
    /// The key store does not hold it as asked.
    #[error(transparent)]
    Store(#[from] crate::keys::KeyStoreError),
}

impl ProtectionEntry {
    /// Whether the entry asks for anything.
    pub fn is_empty(&self) -> bool {
        *self == ProtectionEntry::default()
    }

    /// Resolves key names against `store`. Problems are returned as
    /// `(key, reason)` pairs for the caller to prefix with where the entry
    /// was written. `dialect` (the party's) is checked for room for the PIN
    /// block.
    pub fn resolve(
        &self,
        side: Side,
        dialect: Option<&Dialect>,
        store: Option<&KeyStore>,
    ) -> Result<Protection, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut problem = |key: &str, reason: String| problems.push((key.to_string(), reason));
        let lookup = |id: &str, key_type: KeyType| lookup(store, id, key_type);
        let mac_type = match side {
            Side::Terminal => KeyType::Tak,
            Side::Destination => KeyType::Zak,
        };

        let mac = match (self.mac, &self.mac_key) {
            (Some(algorithm), Some(id)) => match lookup(id, mac_type) {
                Ok(key) => match algorithm.check_key(key.algorithm()) {
                    Ok(()) => Some(MacProfile { algorithm, key }),
                    Err(e) => {
                        problem("mac_key", e.to_string());
                        None
                    }
                },
                Err(e) => {
                    problem("mac_key", e.to_string());
                    None
                }
            },
            (None, None) => None,
            _ => {
                problem("mac", "`mac` and `mac_key` go together".into());
                None
            }
        };
        let require_mac = self
            .require_mac
            .unwrap_or(side == Side::Terminal && self.mac.is_some());
        if self.require_mac.is_some() && side == Side::Destination {
            problem("require_mac", "applies to terminals only".into());
        } else if require_mac && self.mac.is_none() {
            problem("require_mac", "needs `mac` and `mac_key`".into());
        }

        let key = self.pin_key(side, store, &mut problem);
        let pin = key.map(|key| self.pin_profile(key, side, &mut problem));
        if let (Some(pin), Some(dialect)) = (&pin, dialect) {
            let needs = iso8583::spec::Length::Fixed(pin.format.block_len());
            if dialect.field(52).map(|f| f.length) != Some(needs) {
                problem(
                    "pin_format",
                    format!(
                        "{:?} blocks are {} bytes, and the dialect's field 52 is not",
                        pin.format,
                        pin.format.block_len()
                    ),
                );
            }
        }
        if self.pin_format.is_some()
            && pin.is_none()
            && self.pin_key.is_none()
            && self.dukpt.is_none()
        {
            problem("pin_format", "needs `pin_key` or `dukpt`".into());
        }
        if problems.is_empty() {
            Ok(Protection {
                mac,
                require_mac,
                pin,
            })
        } else {
            Err(problems)
        }
    }

    /// The PIN key of the entry: a static key, or a DUKPT BDK.
    fn pin_key(
        &self,
        side: Side,
        store: Option<&KeyStore>,
        problem: &mut dyn FnMut(&str, String),
    ) -> Option<PinKey> {
        let pin_type = match side {
            Side::Terminal => KeyType::Tpk,
            Side::Destination => KeyType::Zpk,
        };
        let lookup = |id: &str, key_type: KeyType| lookup(store, id, key_type);
        match (&self.pin_key, self.dukpt, &self.dukpt_bdk) {
            (None, None, None) => None,
            (Some(id), None, None) => match lookup(id, pin_type) {
                Ok(key) if key.algorithm() == KeyAlgorithm::Des => {
                    problem(
                        "pin_key",
                        "single DES is not allowed for PIN keys (ISO 9564-2)".into(),
                    );
                    None
                }
                Ok(key) => Some(PinKey::Static(key)),
                Err(e) => {
                    problem("pin_key", e.to_string());
                    None
                }
            },
            (None, Some(_), Some(_)) if side == Side::Destination => {
                problem("dukpt", "applies to terminals only".into());
                None
            }
            (None, Some(scheme), Some(bdk)) => {
                let ksn_field = self.ksn_field.unwrap_or(53);
                if !(2..=192).contains(&ksn_field) || [52, 64, 128].contains(&ksn_field) {
                    problem(
                        "ksn_field",
                        "must be a data field other than 52, 64 and 128".into(),
                    );
                }
                match lookup(bdk, KeyType::Bdk) {
                    Ok(bdk) => {
                        let fits = match scheme {
                            DukptScheme::Tdes => bdk.algorithm() == KeyAlgorithm::Tdes2,
                            DukptScheme::Aes => bdk.algorithm().is_aes(),
                        };
                        if !fits {
                            let (name, needs) = match scheme {
                                DukptScheme::Tdes => ("tdes", "a tdes2"),
                                DukptScheme::Aes => ("aes", "an aes128, aes192 or aes256"),
                            };
                            problem(
                                "dukpt_bdk",
                                format!(
                                    "dukpt = \"{name}\" needs {needs} BDK, not {}",
                                    bdk.algorithm()
                                ),
                            );
                        }
                        Some(PinKey::Dukpt {
                            scheme,
                            bdk,
                            ksn_field,
                        })
                    }
                    Err(e) => {
                        problem("dukpt_bdk", e.to_string());
                        None
                    }
                }
            }
            _ => {
                problem(
                    "pin_key",
                    "give either `pin_key`, or `dukpt` with `dukpt_bdk`".into(),
                );
                None
            }
        }
    }

    /// The PIN block format for `key`, checked against the key and the side.
    fn pin_profile(
        &self,
        key: PinKey,
        side: Side,
        problem: &mut dyn FnMut(&str, String),
    ) -> PinProfile {
        let wide = match &key {
            PinKey::Static(k) => k.algorithm().block_len() == 16,
            PinKey::Dukpt { scheme, .. } => *scheme == DukptScheme::Aes,
        };
        let default = if wide {
            PinFormat::Iso4
        } else {
            PinFormat::Iso0
        };
        let format = self.pin_format.unwrap_or(default);
        if wide != (format == PinFormat::Iso4) {
            problem(
                "pin_format",
                "iso4 needs an AES or SM4 key; iso0, iso1 and iso3 a TDES key".into(),
            );
        }
        if side == Side::Destination && format == PinFormat::Iso1 {
            problem(
                "pin_format",
                "iso1 is not bound to the PAN; PIN blocks are never translated into it (ISO 9564-1)".into(),
            );
        }
        PinProfile { key, format }
    }
}
