//! proptest: the security code never panics on what arrives from outside —
//! PIN blocks and PANs from messages, frames with MACs, key store files,
//! KSNs — and what it builds, it reads back.

use bytes::Bytes;
use cardswitch::iso8583::{Dialect, Message};
use cardswitch::security::mac::{self, MacAlgorithm};
use cardswitch::security::pin::{self, PinFormat};
use cardswitch::security::{KeyAlgorithm, SecretKey, dukpt};
use proptest::prelude::*;

fn tdes() -> SecretKey {
    SecretKey::new(KeyAlgorithm::Tdes2, &[0x5A; 16]).unwrap()
}

fn aes() -> SecretKey {
    SecretKey::new(KeyAlgorithm::Aes128, &[0xA5; 16]).unwrap()
}

proptest! {
    #[test]
    fn pin_blocks_of_any_shape_never_panic(block in prop::collection::vec(any::<u8>(), 0..40), pan in "[0-9a-z=]{0,25}") {
        for format in [PinFormat::Iso0, PinFormat::Iso1, PinFormat::Iso3] {
            let _ = pin::decipher(format, &tdes(), &block, &pan);
        }
        let _ = pin::decipher(PinFormat::Iso4, &aes(), &block, &pan);
    }

    #[test]
    fn every_pin_and_pan_round_trips(pin in "[0-9]{4,12}", pan in "[0-9]{13,19}") {
        for (format, key) in [
            (PinFormat::Iso0, tdes()),
            (PinFormat::Iso1, tdes()),
            (PinFormat::Iso3, tdes()),
            (PinFormat::Iso4, aes()),
        ] {
            let block = pin::encipher(format, &key, pin.as_bytes(), &pan).unwrap();
            let clear = pin::decipher(format, &key, &block, &pan).unwrap();
            prop_assert_eq!(&clear[..], pin.as_bytes());
        }
    }

    #[test]
    fn mac_checks_on_arbitrary_frames_never_panic(frame in prop::collection::vec(any::<u8>(), 0..300)) {
        for name in ["iso87ascii", "iso87binary", "iso93binary"] {
            let dialect = Dialect::resolve(name).unwrap();
            let frame = Bytes::from(frame.clone());
            if let Some(m) = Message::salvage(&dialect, frame.clone()) {
                let _ = mac::verify_message(&dialect, &frame, &m, MacAlgorithm::Retail, &tdes());
            }
            if let Ok(m) = Message::decode(&dialect, frame.clone()) {
                let result = mac::verify_message(&dialect, &frame, &m, MacAlgorithm::Retail, &tdes());
                prop_assert!(result.is_err(), "a random frame does not carry a valid MAC");
            }
        }
    }

    #[test]
    fn key_store_files_of_any_content_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
        use cardswitch::security::keys::{KeyStore, MasterKey};
        let dir = tempfile::tempdir().unwrap();
        let master = dir.path().join("m");
        cardswitch::files::write_private_atomically(&master, "11".repeat(32).as_bytes()).unwrap();
        let path = dir.path().join("s");
        let mut content = if magic { b"CSKEYS01".to_vec() } else { Vec::new() };
        content.extend(&bytes);
        std::fs::write(&path, &content).unwrap();
        prop_assert!(KeyStore::open(&path, MasterKey::from_file(&master).unwrap()).is_err());
    }

    #[test]
    fn dukpt_inputs_of_any_length_never_panic(bdk in prop::collection::vec(any::<u8>(), 0..40), ksn in prop::collection::vec(any::<u8>(), 0..16)) {
        let _ = dukpt::tdes_working_key(&bdk, &ksn, dukpt::TdesVariant::Pin);
        let _ = dukpt::aes_working_key(&bdk, &ksn, dukpt::AesKeyUsage::PinEncryption, dukpt::AesKeyType::Aes128);
    }
}
