//! The key store against its file format, its master key and its custodians' steps.

use super::*;

fn master() -> MasterKey {
    MasterKey::from_hex(&"11".repeat(32), "test").unwrap()
}

#[test]
fn keys_survive_save_and_open_and_the_file_holds_no_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.store");
    let mut store = KeyStore::create(&path, master()).unwrap();
    store
        .generate("zpk-bank-a", KeyType::Zpk, KeyAlgorithm::Tdes2)
        .unwrap();
    let tak = store
        .import(
            "tak-1",
            KeyType::Tak,
            KeyAlgorithm::Tdes2,
            &[
                (
                    Zeroizing::new("0123456789ABCDEFFEDCBA9876543210".into()),
                    Some("08D7B4".into()),
                ),
                (Zeroizing::new("00".repeat(16)), None),
            ],
        )
        .unwrap();
    assert_eq!(tak.kcv, "08D7B4");
    store.save().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !bytes
            .windows(8)
            .any(|w| w == hex::decode("0123456789ABCDEF").unwrap())
    );
    assert!(!String::from_utf8_lossy(&bytes).contains("0123456789"));
    let again = KeyStore::open(&path, master()).unwrap();
    assert_eq!(again.list(), store.list());
    let key = again.get("tak-1", KeyType::Tak).unwrap();
    assert_eq!(key.kcv(), "08D7B4");
    assert!(matches!(
        again.get("tak-1", KeyType::Zpk),
        Err(KeyStoreError::WrongType { .. })
    ));
    let wrong = MasterKey::from_hex(&"22".repeat(32), "test").unwrap();
    assert!(matches!(
        KeyStore::open(&path, wrong),
        Err(KeyStoreError::Decrypt(_))
    ));
}

#[test]
fn rotation_retires_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.store");
    let mut store = KeyStore::create(&path, master()).unwrap();
    let first = store
        .generate("bdk", KeyType::Bdk, KeyAlgorithm::Aes128)
        .unwrap();
    let second = store.rotate("bdk").unwrap();
    assert_eq!(second.version, 2);
    assert_ne!(first.kcv, second.kcv);
    let list = store.list();
    assert_eq!(list[0].state, KeyState::Retired);
    assert_eq!(list[1].state, KeyState::Active);
    assert_eq!(store.get("bdk", KeyType::Bdk).unwrap().kcv(), second.kcv);
    assert!(matches!(
        store.rotate("nope"),
        Err(KeyStoreError::UnknownKey(_))
    ));
}

#[test]
fn bad_components_ids_and_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.store");
    let mut store = KeyStore::create(&path, master()).unwrap();
    let bad_kcv = store.import(
        "k",
        KeyType::Zak,
        KeyAlgorithm::Tdes2,
        &[(
            Zeroizing::new("0123456789ABCDEFFEDCBA9876543210".into()),
            Some("000000".into()),
        )],
    );
    assert!(matches!(bad_kcv, Err(KeyStoreError::ComponentKcv { .. })));
    let short = store.import(
        "k",
        KeyType::Zak,
        KeyAlgorithm::Tdes2,
        &[(Zeroizing::new("0123".into()), None)],
    );
    assert!(matches!(short, Err(KeyStoreError::BadComponent(1, 32))));
    assert!(matches!(
        store.generate("bad id", KeyType::Zak, KeyAlgorithm::Tdes2),
        Err(KeyStoreError::BadId(_))
    ));
    assert!(KeyStore::create(&path, master()).is_err());
    std::fs::write(&path, b"CSKEYS01short").unwrap();
    assert!(KeyStore::open(&path, master()).is_err());
    std::fs::write(&path, b"garbage").unwrap();
    assert!(KeyStore::open(&path, master()).is_err());
}

#[test]
fn generated_des_keys_have_odd_parity() {
    let key = random_key(KeyAlgorithm::Tdes2);
    assert!(key.iter().all(|b| b.count_ones() % 2 == 1));
}

#[test]
fn debug_output_shows_no_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.store");
    let store = KeyStore::create(&path, master()).unwrap();
    let shown = format!("{store:?} {:?}", master());
    assert!(!shown.contains("1111"), "{shown}");
}

#[test]
fn a_master_key_file_is_created_once_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    MasterKey::create_file(&path).unwrap();
    let first = std::fs::read(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(MasterKey::from_file(&path).is_ok());
    assert!(matches!(
        MasterKey::create_file(&path),
        Err(KeyStoreError::MasterKeyExists(_))
    ));
    assert!(std::fs::read(&path).unwrap() == first, "unchanged");
    assert!(KeyStore::check_new(&dir.path().join("keys.store")).is_ok());
    KeyStore::create(&dir.path().join("keys.store"), master()).unwrap();
    assert!(KeyStore::check_new(&dir.path().join("keys.store")).is_err());
    assert!(KeyStore::check_new(&dir.path().join("no").join("keys.store")).is_err());
}
