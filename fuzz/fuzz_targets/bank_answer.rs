//! What a bank sends the switch: a frame decoded under each bank dialect
//! (iso87binary, iso93binary, iso87ascii), then read the way the bank
//! adapter (`adapter/iso_host.rs`) and the switch read it: a host's own
//! request is answered (response MTI, fields 7/11/24/70 echoed, re-encoded);
//! a response is matched (MTI class, field 41, STAN), its MAC checked under
//! a fixed key, its outcome read (`translate::answer_from`,
//! `translate::network_accepted`, `codes::approves`) and labelled for the
//! metrics (`Tag::code`). Never panic; an answer that reads is well-formed.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cardswitch::iso8583::{Dialect, Message};
use cardswitch::metrics::Tag;
use cardswitch::security::mac::{self, MacAlgorithm};
use cardswitch::security::{KeyAlgorithm, SecretKey};
use cardswitch::translate;
use libfuzzer_sys::fuzz_target;

const BANK_DIALECTS: [&str; 3] = ["iso87binary", "iso93binary", "iso87ascii"];

fn dialects() -> &'static [Arc<Dialect>] {
    static D: OnceLock<Vec<Arc<Dialect>>> = OnceLock::new();
    D.get_or_init(|| {
        BANK_DIALECTS
            .iter()
            .map(|n| Dialect::builtin(n).expect("built-in").expect("valid"))
            .collect()
    })
}

fn keys() -> &'static [(MacAlgorithm, SecretKey)] {
    static K: OnceLock<Vec<(MacAlgorithm, SecretKey)>> = OnceLock::new();
    K.get_or_init(|| {
        let tdes = hex_key("0123456789ABCDEFFEDCBA9876543210");
        vec![
            (
                MacAlgorithm::Retail,
                SecretKey::new(KeyAlgorithm::Tdes2, &tdes).unwrap(),
            ),
            (
                MacAlgorithm::CbcDes,
                SecretKey::new(KeyAlgorithm::Des, &tdes[..8]).unwrap(),
            ),
            (
                MacAlgorithm::AesCmac,
                SecretKey::new(KeyAlgorithm::Aes128, &tdes).unwrap(),
            ),
            (
                MacAlgorithm::Sm4,
                SecretKey::new(KeyAlgorithm::Sm4, &tdes).unwrap(),
            ),
        ]
    })
}

fn hex_key(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // First byte picks the MAC algorithm; the rest is the frame.
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let (algorithm, key) = &keys()[usize::from(pick) % keys().len()];
    for dialect in dialects() {
        let frame = Bytes::copy_from_slice(frame);
        let Ok(m) = Message::decode(dialect, frame.clone()) else {
            let _ = Message::peek_mti(dialect, &frame);
            continue;
        };
        let version = dialect.version();
        if m.mti().is_request() {
            // The host's own network management: what the adapter answers.
            if let Some(mti) = m.mti().response() {
                let mut answer = Message::new(mti);
                for field in [7, 11, 24, 70] {
                    if let Some(v) = m.get_bytes(field) {
                        answer.set(field, v);
                    }
                }
                answer.set(39, if mti.version() == 1 { "800" } else { "00" });
                let _ = answer.to_bytes(dialect);
            }
            continue;
        }
        // Matching key: class, terminal, STAN.
        let _ = (m.mti().class_key(), m.get(41), m.stan().unwrap_or_default());
        let _ = m.mti().to_string();
        let _ = Tag::mti(m.mti().as_str());
        if !m.mti().is_network_management() {
            let _ = mac::verify_message(dialect, &frame, &m, *algorithm, key);
        }
        let _ = translate::network_accepted(version, &m);
        if let Ok(answer) = translate::answer_from(version, &m) {
            assert_eq!(answer.code.len(), 2, "an answer reads as a 1987 code");
            assert!(answer.auth_id.as_ref().is_none_or(|a| a.len() == 6));
            let _ = cardswitch::codes::approves(&answer.code);
            let _ = Tag::code(&answer.code);
        }
        // What the switch logs and journals of an answer.
        let _ = (m.rrn(), m.auth_id(), m.response_code(), m.terminal_id());
        let _ = m.pan().map(|p| p.to_string());
    }
});
