//! Differential test against the customer's named crate `iso8583_rs`
//! (0.1.10): for messages of its sample spec (`fixtures/iso8583_rs/`), both
//! codecs must produce the same bytes, and each must read the other's bytes
//! back to the same field values.
//!
//! iso8583_rs panics on many malformed inputs and checks no field content,
//! so only valid messages are compared here; our own rejection of bad input is
//! covered by `codec_props.rs` and the fuzz target.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cardswitch::iso8583::spec::{Class, Length};
use cardswitch::iso8583::{Dialect, Message, Mti};
use iso8583_rs::iso8583::iso_spec::{self, Spec};
use proptest::prelude::*;

/// The spec iso8583_rs loads from `SPEC_FILE` (set in `.cargo/config.toml`).
fn theirs() -> &'static Spec {
    iso_spec::spec("SampleSpec")
}

fn ours() -> Arc<Dialect> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/iso8583_rs/sample_spec.toml"
    );
    Dialect::load(std::path::Path::new(path)).unwrap()
}

fn is_binary(d: &Dialect, n: u8) -> bool {
    d.field(n).is_some_and(|f| f.class == Class::B)
}

/// Assembles with iso8583_rs. Binary values are given to it as hex text.
fn assemble_theirs(d: &Dialect, m: &Message) -> Vec<u8> {
    let spec = theirs();
    let layout = spec.get_message_from_header(m.mti().as_str()).unwrap();
    let mut msg = iso_spec::new_msg(spec, layout);
    msg.set("message_type", m.mti().as_str()).unwrap();
    for (n, v) in m.fields() {
        let text = if is_binary(d, n) {
            hex::encode(v)
        } else {
            String::from_utf8(v.to_vec()).unwrap()
        };
        msg.set_on(u32::from(n), &text).unwrap();
    }
    msg.assemble().unwrap()
}

/// Parses with iso8583_rs: MTI and field number → value (raw bytes for
/// binary fields, decoded text otherwise).
fn parse_theirs(d: &Dialect, bytes: &[u8]) -> (String, BTreeMap<u8, Vec<u8>>) {
    let spec = theirs();
    let mut buf = bytes.to_vec();
    let msg = spec
        .parse(&mut buf)
        .unwrap_or_else(|e| panic!("iso8583_rs: {}", e.msg));
    let mti = msg.get_field_value(&"message_type".to_string()).unwrap();
    let bitmap = msg.msg.field_by_name(&"bitmap".to_string()).unwrap();
    let mut fields = BTreeMap::new();
    for child in bitmap.children() {
        let pos = child.position();
        if msg.bmp.is_on(pos) {
            let n = u8::try_from(pos).unwrap();
            let raw = msg.fd_map.get(child.name()).unwrap().clone();
            let value = if is_binary(d, n) {
                raw
            } else {
                child.to_string(&raw).into_bytes()
            };
            fields.insert(n, value);
        }
    }
    (mti, fields)
}

fn message() -> impl Strategy<Value = Message> {
    let d = ours();
    let specs: Vec<_> = d.fields().cloned().collect();
    (
        prop_oneof![Just("1100"), Just("1110")],
        proptest::sample::subsequence(specs, 1..=16),
    )
        .prop_flat_map(|(mti, chosen)| {
            let values: Vec<_> = chosen
                .into_iter()
                .map(|spec| {
                    let len = match spec.length {
                        Length::Fixed(n) => Just(n).boxed(),
                        Length::Variable { max, .. } => (0..=max.min(120)).boxed(),
                    };
                    let chars: BoxedStrategy<u8> = match spec.class {
                        Class::N => (b'0'..=b'9').boxed(),
                        Class::An => prop_oneof![b'A'..=b'Z', b'0'..=b'9', Just(b' ')].boxed(),
                        Class::B => any::<u8>().boxed(),
                        _ => (0x20u8..=0x7E).boxed(),
                    };
                    let n = spec.number;
                    len.prop_flat_map(move |l| proptest::collection::vec(chars.clone(), l))
                        .prop_map(move |v| (n, v))
                })
                .collect();
            (Just(mti), values)
        })
        .prop_map(|(mti, values)| {
            let mut m = Message::new(Mti::parse(mti).unwrap());
            for (n, v) in values {
                m.set(n, Bytes::from(v));
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn both_codecs_agree(m in message()) {
        let d = ours();
        let their_bytes = assemble_theirs(&d, &m);
        let our_bytes = m.to_bytes(&d).unwrap();
        prop_assert_eq!(hex::encode_upper(&our_bytes), hex::encode_upper(&their_bytes), "same wire bytes");

        let decoded = Message::decode(&d, Bytes::from(their_bytes)).unwrap();
        prop_assert_eq!(&decoded, &m, "ours reads theirs");

        let (mti, fields) = parse_theirs(&d, &our_bytes);
        prop_assert_eq!(mti, m.mti().to_string());
        let expected: BTreeMap<u8, Vec<u8>> = m.fields().map(|(n, v)| (n, v.to_vec())).collect();
        prop_assert_eq!(fields, expected, "theirs reads ours");
    }
}

#[test]
fn the_crates_own_1100_example() {
    let d = ours();
    let mut m = Message::new(Mti::parse("1100").unwrap());
    m.set(2, "4567909845671235")
        .set(3, "004000")
        .set(4, "000000000029")
        .set(11, "779581")
        .set(14, "2204")
        .set(19, "840")
        .set(52, vec![1u8, 2, 3, 4, 5, 6, 7, 8])
        .set(61, "reserved_1")
        .set(62, "reserved-2")
        .set(63, "87877622525")
        .set(160, "5678");
    let theirs = assemble_theirs(&d, &m);
    assert_eq!(m.to_bytes(&d).unwrap(), theirs);
    // Tertiary bitmap present: bits 1 and 65 set.
    assert_eq!(theirs[4] & 0x80, 0x80);
    assert_eq!(Message::decode(&d, Bytes::from(theirs)).unwrap(), m);
}
