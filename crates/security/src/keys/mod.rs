//! The key store: every working key of the switch in one file, encrypted
//! under a master key.
//!
//! # File layout
//!
//! ```text
//! "CSKEYS01" (8 bytes, also the AES-GCM associated data)
//! nonce      (12 random bytes, fresh at every save)
//! ciphertext (AES-256-GCM of the JSON key list, with its 16-byte tag)
//! ```
//!
//! The master key (256 bits, 64 hex characters) never sits in the config
//! file. [`MasterKey::locate`] takes it, in this order, from an explicit
//! file, from systemd's credential directory
//! (`$CREDENTIALS_DIRECTORY/cardswitch-master-key`, see `LoadCredential=`),
//! or from the environment variable `CARDSWITCH_MASTER_KEY`. Files must not
//! be readable by group or others.
//!
//! Each key has an id, a type, an algorithm, a version, a state and its key
//! check value. Rotating a key adds a new active version and retires the
//! old one, which stays in the store (to read what was protected under it)
//! but is no longer handed out. Listings show ids, types and check values,
//! never material.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::block::{KeyAlgorithm, KeyError, SecretKey};

/// Environment variable that may hold the master key (64 hex characters).
pub const MASTER_KEY_ENV: &str = "CARDSWITCH_MASTER_KEY";
/// Name of the master key in systemd's credential directory.
pub const MASTER_KEY_CREDENTIAL: &str = "cardswitch-master-key";

const MAGIC: &[u8; 8] = b"CSKEYS01";
const NONCE_LEN: usize = 12;

/// The key store could not be used. No variant carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// No master key was found in any of the places it may come from.
    #[error(
        "no master key: give a master key file, or set ${MASTER_KEY_ENV}, or run under systemd with LoadCredential={MASTER_KEY_CREDENTIAL}:…"
    )]
    NoMasterKey,
    /// The master key source is unusable.
    #[error("master key from {source_name}: {reason}")]
    MasterKey {
        /// Where it came from (file path or variable name).
        source_name: String,
        /// Why it cannot be used.
        #[source]
        reason: MasterKeyProblem,
    },
    /// A master key file to create exists already: it is never replaced,
    /// since a store may be sealed under it.
    #[error(
        "{0}: exists already; a master key file is never overwritten (a key store may be sealed under it)"
    )]
    MasterKeyExists(String),
    /// The store file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The store file.
        path: String,
        /// Why.
        #[source]
        reason: StoreFileProblem,
    },
    /// The store does not open under this master key, or was altered.
    #[error("{0}: does not decrypt under this master key (wrong key or altered file)")]
    Decrypt(String),
    /// No key with this id.
    #[error("no key `{0}` in the store")]
    UnknownKey(String),
    /// A key with this id exists already.
    #[error("key `{0}` exists already (use `keys rotate` to replace it)")]
    Exists(String),
    /// A key id must be 1 to 32 characters of letters, digits, `-`, `_`, `.`.
    #[error("key id `{0}` must be 1 to 32 letters, digits, `-`, `_` or `.`")]
    BadId(String),
    /// A key is of another type than the use needs.
    #[error("key `{id}` is a {actual} key, not a {expected} key")]
    WrongType {
        /// The key.
        id: String,
        /// Type needed.
        expected: KeyType,
        /// Its type.
        actual: KeyType,
    },
    /// A key component is not valid hex of the right length.
    #[error("component {0}: must be {1} hex characters")]
    BadComponent(usize, usize),
    /// A key component's check value does not match the one given.
    #[error("component {index}: check value is {actual}, not {expected}")]
    ComponentKcv {
        /// Component number, from 1.
        index: usize,
        /// Given check value.
        expected: String,
        /// Computed check value.
        actual: String,
    },
    /// Key material does not fit its algorithm.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The journal's data key cannot be rotated in place: the journal seals
    /// every PAN under one data key, and reversals owed must still open them.
    #[error(
        "key `{0}` is a data key: the journal's PANs are sealed under it, so it is not rotated in place"
    )]
    DataKeyRotation(String),
    /// Imported components that combine to an all-zero key.
    #[error("the components combine to an all-zero key")]
    ZeroKey,
}

/// Why a master key source cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyProblem {
    /// The text is not a 256-bit key in hex.
    #[error("must be 64 hexadecimal characters (256 bits)")]
    NotHex,
    /// The file could not be read, or others may read it.
    #[error(transparent)]
    File(#[from] base::files::PrivateFileError),
    /// A new master key file could not be created.
    #[error("cannot create: {0}")]
    Create(#[source] std::io::Error),
    /// A new master key file could not be written.
    #[error("cannot write: {0}")]
    Write(#[source] std::io::Error),
}

/// Why the store file cannot be created, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreFileProblem {
    /// A new store would replace a file.
    #[error("exists already; a store is never overwritten")]
    Exists,
    /// A new store's directory is missing.
    #[error("its directory does not exist")]
    NoDirectory,
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// The file does not start as a key store does.
    #[error("not a cardswitch key store")]
    NotAStore,
    /// The file ends before its nonce.
    #[error("truncated")]
    Truncated,
    /// The file decrypts, but not to a key store document.
    #[error("decrypted but unreadable: {0}")]
    Unreadable(#[source] serde_json::Error),
    /// The keys could not be serialised.
    #[error(transparent)]
    Serialize(serde_json::Error),
    /// The master key does not fit the cipher.
    #[error("unusable master key")]
    UnusableMasterKey,
    /// Encryption failed.
    #[error("cannot encrypt")]
    Encrypt,
    /// The file could not be written.
    #[error("cannot write: {0}")]
    Write(#[source] std::io::Error),
}

/// A clear key component as typed by a key custodian (hex) with the check
/// value printed on its form, if any.
pub type Component = (Zeroizing<String>, Option<String>);

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Terminal PIN key: PIN blocks from a terminal.
    Tpk,
    /// Zone PIN key: PIN blocks to a bank.
    Zpk,
    /// Terminal authentication key: MACs with a terminal.
    Tak,
    /// Zone authentication key: MACs with a bank.
    Zak,
    /// Base derivation key for DUKPT terminals.
    Bdk,
    /// Data key: encrypts card numbers at rest (AES-256).
    Data,
}

impl KeyType {
    /// Every type.
    pub const ALL: [KeyType; 6] = [
        KeyType::Tpk,
        KeyType::Zpk,
        KeyType::Tak,
        KeyType::Zak,
        KeyType::Bdk,
        KeyType::Data,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Tpk => "tpk",
            KeyType::Zpk => "zpk",
            KeyType::Tak => "tak",
            KeyType::Zak => "zak",
            KeyType::Bdk => "bdk",
            KeyType::Data => "data",
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the key types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type `{0}` (tpk, zpk, tak, zak, bdk or data)")]
pub struct UnknownKeyType(pub String);

impl std::str::FromStr for KeyType {
    type Err = UnknownKeyType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        KeyType::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| UnknownKeyType(s.to_string()))
    }
}

/// Whether a key version is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// The version handed out for new work.
    Active,
    /// Replaced by a newer version; kept to read older data.
    Retired,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        })
    }
}

/// The 256-bit master key the store is encrypted under.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 64 hex characters (surrounding white space ignored).
    fn from_hex(text: &str, source_name: &str) -> Result<MasterKey, KeyStoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| KeyStoreError::MasterKey {
            source_name: source_name.to_string(),
            reason: MasterKeyProblem::NotHex,
        })?;
        Ok(MasterKey(key))
    }

    /// Reads a master key file, refusing one that group or others can read.
    pub fn from_file(path: &Path) -> Result<MasterKey, KeyStoreError> {
        let text = base::files::read_private_file(path).map_err(|e| KeyStoreError::MasterKey {
            source_name: path.display().to_string(),
            reason: e.into(),
        })?;
        MasterKey::from_hex(&text, &path.display().to_string())
    }

    /// Finds the master key: `file` if given, else the systemd credential,
    /// else the environment variable.
    pub fn locate(file: Option<&Path>) -> Result<MasterKey, KeyStoreError> {
        if let Some(file) = file {
            return MasterKey::from_file(file);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(MASTER_KEY_CREDENTIAL);
            if path.exists() {
                return MasterKey::from_file(&path);
            }
        }
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) => MasterKey::from_hex(&Zeroizing::new(text), MASTER_KEY_ENV),
            Err(_) => Err(KeyStoreError::NoMasterKey),
        }
    }

    /// Creates a new random master key file at `path` (mode 0600 from the
    /// moment it exists, synced) and returns the key. Refuses a path that
    /// exists, atomically (`O_CREAT|O_EXCL`): a master key is never
    /// replaced.
    pub fn create_file(path: &Path) -> Result<MasterKey, KeyStoreError> {
        let hex = MasterKey::generate_hex();
        let key = MasterKey::from_hex(&hex, &path.display().to_string())?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyStoreError::MasterKeyExists(path.display().to_string())
            } else {
                KeyStoreError::MasterKey {
                    source_name: path.display().to_string(),
                    reason: MasterKeyProblem::Create(e),
                }
            }
        })?;
        let written = std::io::Write::write_all(&mut file, hex.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::File::open(parent_dir(path))?.sync_all());
        if let Err(e) = written {
            drop(file);
            // The file is ours and holds no key anything depends on yet.
            let _ = std::fs::remove_file(path);
            return Err(KeyStoreError::MasterKey {
                source_name: path.display().to_string(),
                reason: MasterKeyProblem::Write(e),
            });
        }
        Ok(key)
    }

    /// A new random master key, as the hex text to put in its file.
    pub fn generate_hex() -> Zeroizing<String> {
        let key = aes_gcm::Key::<Aes256Gcm>::generate();
        Zeroizing::new(format!("{}\n", hex::encode(key.as_slice())))
    }
}

mod material {
    //! Key material as hex inside the (encrypted) store document.
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(bytes: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(hex::encode(bytes.as_slice())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        hex::decode(text.as_str())
            .map(Zeroizing::new)
            .map_err(serde::de::Error::custom)
    }
}

/// One version of one key, as stored.
#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    id: String,
    #[serde(rename = "type")]
    key_type: KeyType,
    algorithm: KeyAlgorithm,
    version: u32,
    state: KeyState,
    kcv: String,
    created: String,
    #[serde(with = "material")]
    material: Zeroizing<Vec<u8>>,
}

/// What may be shown about a key: never its material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// Type.
    pub key_type: KeyType,
    /// Algorithm.
    pub algorithm: KeyAlgorithm,
    /// Version, from 1.
    pub version: u32,
    /// State.
    pub state: KeyState,
    /// Key check value.
    pub kcv: String,
    /// When the version was made (UTC, RFC 3339).
    pub created: String,
}

#[derive(Default, Serialize, Deserialize)]
struct Document {
    keys: Vec<Entry>,
}

/// The decrypted key store.
pub struct KeyStore {
    path: PathBuf,
    master: MasterKey,
    doc: Document,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyStore({}, {} keys)",
            self.path.display(),
            self.doc.keys.len()
        )
    }
}

fn check_id(id: &str) -> Result<(), KeyStoreError> {
    let ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KeyStoreError::BadId(id.to_string()))
    }
}

fn random_key(algorithm: KeyAlgorithm) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; algorithm.key_len()]);
    // getrandom only fails on a system without an entropy source at all.
    let _ = getrandom::fill(&mut bytes);
    if matches!(
        algorithm,
        KeyAlgorithm::Des | KeyAlgorithm::Tdes2 | KeyAlgorithm::Tdes3
    ) {
        set_odd_parity(&mut bytes);
    }
    bytes
}

/// DES keys carry odd parity in the low bit of each byte, as HSMs expect.
fn set_odd_parity(bytes: &mut [u8]) {
    for b in bytes {
        let high = *b & 0xFE;
        *b = high | u8::from(high.count_ones() % 2 == 0);
    }
}

/// The directory a file is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn now_rfc3339() -> String {
    base::clock::DateTime::now().rfc3339()
}

impl KeyStore {
    /// Checks that a new store can be created at `path`: nothing there
    /// yet, and its directory exists. [`KeyStore::create`] checks the same;
    /// call this first when something else is written before the store
    /// (`keys init --new-master-key`).
    pub fn check_new(path: &Path) -> Result<(), KeyStoreError> {
        let refuse = |reason| {
            Err(KeyStoreError::File {
                path: path.display().to_string(),
                reason,
            })
        };
        if path.symlink_metadata().is_ok() {
            return refuse(StoreFileProblem::Exists);
        }
        if !parent_dir(path).is_dir() {
            return refuse(StoreFileProblem::NoDirectory);
        }
        Ok(())
    }

    /// Creates an empty store at `path`; refuses to overwrite one.
    pub fn create(path: &Path, master: MasterKey) -> Result<KeyStore, KeyStoreError> {
        KeyStore::check_new(path)?;
        let store = KeyStore {
            path: path.to_path_buf(),
            master,
            doc: Document::default(),
        };
        store.save()?;
        Ok(store)
    }

    /// Opens and decrypts the store at `path`.
    pub fn open(path: &Path, master: MasterKey) -> Result<KeyStore, KeyStoreError> {
        let file_error = |reason: StoreFileProblem| KeyStoreError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| file_error(StoreFileProblem::Read(e)))?;
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| file_error(StoreFileProblem::NotAStore))?;
        let (nonce, sealed) = body
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| file_error(StoreFileProblem::Truncated))?;
        let nonce = Nonce::try_from(nonce).map_err(|_| file_error(StoreFileProblem::Truncated))?;
        let cipher = Aes256Gcm::new_from_slice(&master.0[..])
            .map_err(|_| KeyStoreError::Decrypt(path.display().to_string()))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: MAGIC,
                    },
                )
                .map_err(|_| KeyStoreError::Decrypt(path.display().to_string()))?,
        );
        let doc: Document = serde_json::from_slice(&plain)
            .map_err(|e| file_error(StoreFileProblem::Unreadable(e)))?;
        for entry in &doc.keys {
            SecretKey::new(entry.algorithm, &entry.material)?;
        }
        Ok(KeyStore {
            path: path.to_path_buf(),
            master,
            doc,
        })
    }

    /// Encrypts and writes the store atomically.
    pub fn save(&self) -> Result<(), KeyStoreError> {
        let file_error = |reason: StoreFileProblem| KeyStoreError::File {
            path: self.path.display().to_string(),
            reason,
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&self.doc)
                .map_err(|e| file_error(StoreFileProblem::Serialize(e)))?,
        );
        let cipher = Aes256Gcm::new_from_slice(&self.master.0[..])
            .map_err(|_| file_error(StoreFileProblem::UnusableMasterKey))?;
        let nonce = Nonce::generate();
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: MAGIC,
                },
            )
            .map_err(|_| file_error(StoreFileProblem::Encrypt))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        base::files::write_private_atomically(&self.path, &out)
            .map_err(|e| file_error(StoreFileProblem::Write(e)))
    }

    fn add(&mut self, id: &str, key_type: KeyType, key: &SecretKey, version: u32) -> KeyInfo {
        let entry = Entry {
            id: id.to_string(),
            key_type,
            algorithm: key.algorithm(),
            version,
            state: KeyState::Active,
            kcv: key.kcv(),
            created: now_rfc3339(),
            material: Zeroizing::new(key.expose().to_vec()),
        };
        let info = info(&entry);
        self.doc.keys.push(entry);
        info
    }

    fn fresh_id(&self, id: &str) -> Result<(), KeyStoreError> {
        check_id(id)?;
        if self.doc.keys.iter().any(|e| e.id == id) {
            return Err(KeyStoreError::Exists(id.to_string()));
        }
        Ok(())
    }

    /// Generates a random key. DES-family keys get odd parity.
    pub fn generate(
        &mut self,
        id: &str,
        key_type: KeyType,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyInfo, KeyStoreError> {
        self.fresh_id(id)?;
        let key = SecretKey::new(algorithm, &random_key(algorithm))?;
        Ok(self.add(id, key_type, &key, 1))
    }

    /// Imports a key from clear components (hex), combined by XOR; each
    /// component's check value is verified when given.
    pub fn import(
        &mut self,
        id: &str,
        key_type: KeyType,
        algorithm: KeyAlgorithm,
        components: &[Component],
    ) -> Result<KeyInfo, KeyStoreError> {
        self.fresh_id(id)?;
        let len = algorithm.key_len();
        let mut combined = Zeroizing::new(vec![0u8; len]);
        for (i, (text, kcv)) in components.iter().enumerate() {
            let mut part = Zeroizing::new(vec![0u8; len]);
            hex::decode_to_slice(text.trim(), &mut part[..])
                .map_err(|_| KeyStoreError::BadComponent(i + 1, len * 2))?;
            if let Some(expected) = kcv {
                let actual = SecretKey::new(algorithm, &part)?.kcv();
                if !actual.eq_ignore_ascii_case(expected.trim()) {
                    return Err(KeyStoreError::ComponentKcv {
                        index: i + 1,
                        expected: expected.trim().to_string(),
                        actual,
                    });
                }
            }
            for (c, p) in combined.iter_mut().zip(part.iter()) {
                *c ^= p;
            }
        }
        if combined.iter().all(|&b| b == 0) {
            return Err(KeyStoreError::ZeroKey);
        }
        let key = SecretKey::new(algorithm, &combined)?;
        Ok(self.add(id, key_type, &key, 1))
    }

    /// Replaces a key with a new random version; the old one is retired.
    pub fn rotate(&mut self, id: &str) -> Result<KeyInfo, KeyStoreError> {
        let current = self
            .doc
            .keys
            .iter_mut()
            .filter(|e| e.id == id)
            .max_by_key(|e| e.version)
            .ok_or_else(|| KeyStoreError::UnknownKey(id.to_string()))?;
        if current.key_type == KeyType::Data {
            return Err(KeyStoreError::DataKeyRotation(id.to_string()));
        }
        let version = current
            .version
            .checked_add(1)
            .ok_or_else(|| KeyStoreError::Exists(id.to_string()))?;
        let (key_type, algorithm) = (current.key_type, current.algorithm);
        let key = SecretKey::new(algorithm, &random_key(algorithm))?;
        current.state = KeyState::Retired;
        Ok(self.add(id, key_type, &key, version))
    }

    /// Every key version, in the order they were added.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.doc.keys.iter().map(info).collect()
    }

    /// The active version of key `id`, which must be of `key_type`.
    pub fn get(&self, id: &str, key_type: KeyType) -> Result<SecretKey, KeyStoreError> {
        let entry = self
            .doc
            .keys
            .iter()
            .find(|e| e.id == id && e.state == KeyState::Active)
            .ok_or_else(|| KeyStoreError::UnknownKey(id.to_string()))?;
        if entry.key_type != key_type {
            return Err(KeyStoreError::WrongType {
                id: id.to_string(),
                expected: key_type,
                actual: entry.key_type,
            });
        }
        Ok(SecretKey::new(entry.algorithm, &entry.material)?)
    }
}

fn info(e: &Entry) -> KeyInfo {
    KeyInfo {
        id: e.id.clone(),
        key_type: e.key_type,
        algorithm: e.algorithm,
        version: e.version,
        state: e.state,
        kcv: e.kcv.clone(),
        created: e.created.clone(),
    }
}

#[cfg(test)]
mod tests;
