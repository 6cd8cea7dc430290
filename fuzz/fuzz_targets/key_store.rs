//! The encrypted key-store file (`security/keys.rs`), opened with a fixed
//! master key. Random bytes never get past AES-GCM, so the first byte
//! chooses: even, the rest is the file as it lies on disk (magic, nonce,
//! sealed document: the framing checks); odd, the rest is the decrypted
//! document, sealed here under the master key the way `KeyStore::save`
//! seals it, so the JSON document and key checks behind the decryption are
//! reached. The active version of every key the store opens with must be
//! usable (`get` under its own type). Never panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use cardswitch::security::keys::{KeyState, KeyStore, MasterKey};
use libfuzzer_sys::fuzz_target;

const MASTER_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const MAGIC: &[u8; 8] = b"CSKEYS01";

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = PathBuf::from(base).join(format!("cardswitch-fuzz-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("master.key");
        let _ = std::fs::remove_file(&key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
        std::io::Write::write_all(&mut options.open(&key).unwrap(), MASTER_HEX.as_bytes()).unwrap();
        dir
    })
}

fn master() -> MasterKey {
    MasterKey::from_file(&dir().join("master.key")).expect("master key")
}

fn seal(plain: &[u8]) -> Vec<u8> {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&MASTER_HEX[2 * i..2 * i + 2], 16).unwrap();
    }
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    let nonce_bytes = [7u8; 12];
    let nonce = Nonce::from(nonce_bytes);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: MAGIC,
            },
        )
        .unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        seal(rest)
    };
    let path = dir().join("keys.store");
    std::fs::write(&path, &file).unwrap();
    if let Ok(store) = KeyStore::open(&path, master()) {
        let listed = store.list();
        for (at, info) in listed.iter().enumerate() {
            let _ = format!("{info:?}");
            let got = store.get(&info.id, info.key_type);
            // The first active version of an id is the one `get` serves:
            // its material passed the checks at open, so it is usable.
            let first_active = info.state == KeyState::Active
                && !listed[..at]
                    .iter()
                    .any(|e| e.id == info.id && e.state == KeyState::Active);
            if first_active {
                got.expect("the active version of a listed key is usable");
            }
        }
    }
});
