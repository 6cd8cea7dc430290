//! Decode arbitrary bytes under every built-in dialect: never panic, and
//! whatever decodes must re-encode and decode to the same message.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cardswitch::iso8583::{Dialect, Message};
use libfuzzer_sys::fuzz_target;

fn dialects() -> &'static [Arc<Dialect>] {
    static D: OnceLock<Vec<Arc<Dialect>>> = OnceLock::new();
    D.get_or_init(|| {
        Dialect::builtin_names()
            .map(|n| Dialect::builtin(n).expect("built-in").expect("valid"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for dialect in dialects() {
        if let Ok(message) = Message::decode(dialect, Bytes::copy_from_slice(data)) {
            let wire = message
                .to_bytes(dialect)
                .expect("a decoded message re-encodes");
            let again = Message::decode(dialect, wire).expect("re-encoded bytes decode");
            assert_eq!(again, message);
        }
    }
});
