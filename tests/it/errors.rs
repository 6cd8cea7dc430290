//! Every way a message can be malformed gets its own precise, typed error
//! naming the part of the message, and maps to response code 30.

use bytes::Bytes;
use cardswitch::iso8583::error::{Direction, ResponseCode};
use cardswitch::iso8583::{CodecError, Dialect, ErrorKind, Location, Message, Mti};

fn decode(dialect: &str, hex_text: &str) -> CodecError {
    let d = Dialect::builtin(dialect).unwrap().unwrap();
    let bytes = hex::decode(hex_text.replace(' ', "")).unwrap();
    let e = Message::decode(&d, Bytes::from(bytes)).unwrap_err();
    assert_eq!(e.direction, Direction::Decode);
    assert_eq!(e.response_code(), ResponseCode::FORMAT_ERROR);
    e
}

fn ascii(text: &str) -> String {
    hex::encode(text)
}

#[test]
fn ascii_dialect_errors() {
    // 0200, bitmap with field 2 only, LL prefix "1x".
    let e = decode("iso87ascii", &ascii("020040000000000000001x4111"));
    assert_eq!(e.location, Location::Field(2));
    assert_eq!(e.kind, ErrorKind::BadLengthPrefix { byte: b'x' });
    assert_eq!(e.offset, 20);

    // PAN of 20 digits: over the maximum 19.
    let e = decode(
        "iso87ascii",
        &ascii(&format!("0200400000000000000020{}", "4".repeat(20))),
    );
    assert_eq!(e.kind, ErrorKind::TooLong { len: 20, max: 19 });

    // Field 3 with a letter.
    let e = decode("iso87ascii", &ascii("0200200000000000000000A000"));
    assert_eq!(e.location, Location::Field(3));
    assert!(
        matches!(
            e.kind,
            ErrorKind::BadContent {
                index: 2,
                byte: b'A',
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "field 3: byte 0x41 at position 2 is not allowed in a n field (byte offset 20)"
    );

    // Field 4 truncated.
    let e = decode("iso87ascii", &ascii("020010000000000000000000"));
    assert_eq!(e.location, Location::Field(4));
    assert_eq!(
        e.kind,
        ErrorKind::Truncated {
            needed: 12,
            available: 4
        }
    );

    // Trailing bytes after field 3.
    let e = decode("iso87ascii", &ascii("0200200000000000000000000099"));
    assert_eq!(e.location, Location::End);
    assert_eq!(e.kind, ErrorKind::TrailingBytes { count: 2 });

    // Bitmap with a non-hex character.
    let e = decode("iso87ascii", &ascii("0200G000000000000000"));
    assert_eq!(e.location, Location::Bitmap);
    assert_eq!(e.kind, ErrorKind::BadBitmap { byte: b'G' });

    // MTI with a letter, and a frame shorter than an MTI.
    assert_eq!(decode("iso87ascii", &ascii("02X0")).kind, ErrorKind::BadMti);
    assert_eq!(decode("iso87ascii", "3032").location, Location::Mti);

    // Four digits that are not a 1987 message type: another version, a
    // reserved class, function or origin.
    for mti in ["6666", "1200", "0000", "0900", "0260", "0206"] {
        let e = decode("iso87ascii", &ascii(&format!("{mti}0000000000000000")));
        assert_eq!(
            (e.location, e.kind),
            (
                Location::Mti,
                ErrorKind::MtiNotAllowed(Mti::parse(mti).unwrap())
            ),
            "{mti}"
        );
    }
    // And a 1993 dialect takes version 1 only.
    assert_eq!(
        decode("iso93binary", "0200 0000000000000000").kind,
        ErrorKind::MtiNotAllowed(Mti::parse("0200").unwrap())
    );
}

#[test]
fn binary_dialect_errors() {
    // 0200, bitmap with field 2 only, BCD LL prefix 0x1A.
    let e = decode("iso87binary", "0200 4000000000000000 1A 4111");
    assert_eq!(e.kind, ErrorKind::BadLengthPrefix { byte: 0x1A });

    // Odd-length PAN with a pad nibble that is neither 0 nor F.
    let e = decode("iso87binary", "0200 4000000000000000 15 3714496353984317");
    assert_eq!(e.location, Location::Field(2));
    assert_eq!(e.kind, ErrorKind::BadPad { nibble: 7 });

    // Field 22 (n 3, left padded) with a non-zero pad nibble.
    let e = decode("iso87binary", "0200 0000040000000000 1051");
    assert_eq!(e.location, Location::Field(22));
    assert_eq!(e.kind, ErrorKind::BadPad { nibble: 1 });

    // A non-decimal nibble in field 3.
    let e = decode("iso87binary", "0200 2000000000000000 00A000");
    assert!(
        matches!(
            e.kind,
            ErrorKind::BadContent {
                index: 2,
                byte: 0xA,
                ..
            }
        ),
        "{e}"
    );

    // MTI nibble above 9.
    assert_eq!(
        decode("iso87binary", "0A00 0000000000000000").kind,
        ErrorKind::BadMti
    );
}

#[test]
fn undefined_fields_are_refused() {
    let toml = r#"
name = "tiny"
mti = "ascii"
bitmap = "binary"
[fields]
3 = { name = "Processing code", class = "n", fixed = 6, data = "ascii" }
"#;
    let d = Dialect::from_toml(toml, "tiny.toml").unwrap();
    // Bit 4 set, but the dialect defines only field 3.
    let mut frame = b"0200".to_vec();
    frame.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0]);
    let e = Message::decode(&d, Bytes::from(frame)).unwrap_err();
    assert_eq!(e.location, Location::Field(4));
    assert_eq!(e.kind, ErrorKind::UndefinedField);
}

#[test]
fn encode_errors_are_ours_and_map_to_96() {
    let d = Dialect::builtin("iso87ascii").unwrap().unwrap();
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(3, "12345");
    let e = m.to_bytes(&d).unwrap_err();
    assert_eq!(e.direction, Direction::Encode);
    assert_eq!(
        e.kind,
        ErrorKind::WrongLength {
            len: 5,
            expected: 6
        }
    );
    assert_eq!(e.response_code(), ResponseCode::SYSTEM_MALFUNCTION);
    m.set(3, "000000").set(1, "x");
    assert_eq!(
        m.to_bytes(&d).unwrap_err().kind,
        ErrorKind::InvalidFieldNumber
    );
}

#[test]
fn empty_variable_fields_round_trip() {
    let d = Dialect::builtin("iso87binary").unwrap().unwrap();
    let mut m = Message::new(Mti::parse("0100").unwrap());
    m.set(2, "").set(48, "");
    let wire = m.to_bytes(&d).unwrap();
    assert_eq!(hex::encode_upper(&wire), "01004000000000010000000000");
    assert_eq!(Message::decode(&d, wire).unwrap(), m);
}
