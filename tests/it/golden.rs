//! Golden vectors produced by an independent implementation (pyiso8583, see
//! `fixtures/golden/README.md`): every message decodes to its expected field
//! values and re-encodes byte for byte, in both 1987 dialects.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use cardswitch::iso8583::json::{JsonMessage, Reveal};
use cardswitch::iso8583::{Dialect, Message};

const MESSAGES: [&str; 8] = [
    "0100", "0110", "0200", "0200_mac", "0210", "0400", "0420", "0800",
];

fn golden(dialect: &str, name: &str) -> (Vec<u8>, JsonMessage) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/golden")
        .join(dialect);
    let read = |ext: &str| {
        let path: PathBuf = dir.join(format!("{name}.{ext}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let wire = hex::decode(read("hex").trim()).unwrap();
    let json = JsonMessage::parse(&read("json")).unwrap();
    (wire, json)
}

#[test]
fn golden_vectors_decode_and_reencode_byte_for_byte() {
    for dialect_name in ["iso87ascii", "iso87binary"] {
        let dialect = Dialect::builtin(dialect_name).unwrap().unwrap();
        for name in MESSAGES {
            let (wire, expected) = golden(dialect_name, name);
            let message = Message::decode(&dialect, Bytes::from(wire.clone()))
                .unwrap_or_else(|e| panic!("{dialect_name}/{name}: {e}"));
            assert_eq!(
                JsonMessage::from_message(&dialect, &message, Reveal::Clear),
                expected,
                "{dialect_name}/{name}: decoded fields"
            );
            let built = expected.to_message(&dialect).unwrap();
            assert_eq!(
                hex::encode_upper(built.to_bytes(&dialect).unwrap()),
                hex::encode_upper(&wire),
                "{dialect_name}/{name}: encoded bytes"
            );
        }
    }
}

#[test]
fn both_dialects_carry_the_same_values() {
    for name in MESSAGES {
        let (_, ascii) = golden("iso87ascii", name);
        let (_, binary) = golden("iso87binary", name);
        assert_eq!(ascii, binary, "{name}");
    }
}

#[test]
fn typed_accessors_read_the_golden_0200() {
    let dialect = Dialect::builtin("iso87binary").unwrap().unwrap();
    let (wire, _) = golden("iso87binary", "0200");
    let m = Message::decode(&dialect, Bytes::from(wire)).unwrap();
    assert_eq!(m.mti().as_str(), "0200");
    assert_eq!(m.processing_code(), Some("000000"));
    assert_eq!(m.amount(), Some(4599));
    assert_eq!(m.stan(), Some(125));
    assert_eq!(m.terminal_id(), Some("TERM0001"));
    assert_eq!(m.currency(), Some("826"));
    assert_eq!(
        m.pin_block()
            .map(|b| hex::encode_upper(b.expose()))
            .as_deref(),
        Some("9F3A1C77B2E4D058")
    );
    let track = m.track2().unwrap();
    assert_eq!(
        track.to_string(),
        format!("476173******0119={}", "*".repeat(20))
    );
    assert_eq!(track.pan().expose(), "4761739001010119");
    assert!(
        !format!("{m:?}").contains("4761739001010119"),
        "Debug masks card data"
    );
}

#[test]
fn the_0800_is_a_sign_on_with_a_secondary_bitmap() {
    let dialect = Dialect::builtin("iso87ascii").unwrap().unwrap();
    let (wire, _) = golden("iso87ascii", "0800");
    assert_eq!(&wire[4..5], b"8", "bit 1 set: secondary bitmap follows");
    let m = Message::decode(&dialect, Bytes::from(wire)).unwrap();
    assert_eq!(m.network_code(), Some("301"));
}
