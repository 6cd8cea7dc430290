//! Load arbitrary text as a dialect file: never panic.
#![no_main]

use cardswitch::iso8583::Dialect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Dialect::from_toml(text, "fuzz.toml");
    }
});
