//! Property tests of the codec under every built-in dialect:
//! random and mutated bytes never panic; every valid message generated from a
//! dialect round-trips byte for byte.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::iso8583::spec::{Class, FieldSpec, Length};
use cardswitch::iso8583::{Dialect, Message, Mti};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn dialects() -> Vec<Arc<Dialect>> {
    Dialect::builtin_names()
        .map(|n| Dialect::builtin(n).unwrap().unwrap())
        .collect()
}

/// Largest variable length generated, to keep the suite fast; maxima are
/// exercised separately below.
const VAR_CAP: usize = 160;

fn class_char(class: Class) -> BoxedStrategy<u8> {
    match class {
        Class::N => (b'0'..=b'9').boxed(),
        Class::A => prop_oneof![b'A'..=b'Z', b'a'..=b'z', Just(b' ')].boxed(),
        Class::An => prop_oneof![b'A'..=b'Z', b'a'..=b'z', b'0'..=b'9', Just(b' ')].boxed(),
        Class::Ans => (0x20u8..=0x7E).boxed(),
        Class::Z => prop_oneof![4 => b'0'..=b'9', 1 => Just(b'=')].boxed(),
        Class::Xn => (b'0'..=b'9').boxed(),
        Class::B => any::<u8>().boxed(),
    }
}

fn value(spec: &FieldSpec, at_max: bool) -> BoxedStrategy<(u8, Vec<u8>)> {
    let number = spec.number;
    let len: BoxedStrategy<usize> = match spec.length {
        Length::Fixed(n) => Just(n).boxed(),
        Length::Variable { max, .. } if at_max => Just(max).boxed(),
        Length::Variable { max, .. } => (0..=max.min(VAR_CAP)).boxed(),
    };
    let class = spec.class;
    len.prop_flat_map(move |len| {
        let chars = proptest::collection::vec(class_char(class), len);
        let sign = prop_oneof![Just(b'C'), Just(b'D')];
        (sign, chars).prop_map(move |(sign, mut chars)| {
            if class == Class::Xn
                && let Some(first) = chars.first_mut()
            {
                *first = sign;
            }
            (number, chars)
        })
    })
    .boxed()
}

fn message(dialect: &Dialect, at_max: bool) -> impl Strategy<Value = Message> + use<> {
    let specs: Vec<FieldSpec> = dialect.fields().cloned().collect();
    let version = if dialect.name().contains("93") {
        b'1'
    } else {
        b'0'
    };
    (
        proptest::sample::subsequence(specs, 0..=24),
        // Class, function and origin as ISO 8583 defines them.
        (b'1'..=b'8', b'0'..=b'5', b'0'..=b'5').prop_map(|(c, f, o)| vec![c, f, o]),
    )
        .prop_flat_map(move |(chosen, mti_digits)| {
            let values: Vec<_> = chosen.iter().map(|s| value(s, at_max)).collect();
            (values, Just(mti_digits))
        })
        .prop_map(move |(values, digits)| {
            let mti_text: String = [version, digits[0], digits[1], digits[2]]
                .iter()
                .map(|&b| b as char)
                .collect();
            let mut m = Message::new(Mti::parse(&mti_text).unwrap());
            for (n, v) in values {
                m.set(n, v);
            }
            m
        })
}

fn round_trip(dialect: &Dialect, m: &Message) -> Result<(), TestCaseError> {
    let wire = m
        .to_bytes(dialect)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back =
        Message::decode(dialect, wire.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, m, "decode(encode(m)) == m");
    let again = back
        .to_bytes(dialect)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(again, wire, "encode(decode(x)) == x");
    Ok(())
}

/// Decoding arbitrary bytes returns, never panics; whatever decodes
/// re-encodes and decodes to the same message.
fn never_panics(dialect: &Dialect, bytes: Vec<u8>) -> Result<(), TestCaseError> {
    if let Ok(m) = Message::decode(dialect, Bytes::from(bytes)) {
        let wire = m
            .to_bytes(dialect)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back =
            Message::decode(dialect, wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, m);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_messages_round_trip(
        m in message(&dialects()[0], false),
        m2 in message(&dialects()[1], false),
        m3 in message(&dialects()[2], false),
    ) {
        let d = dialects();
        prop_assume!(m.fields().count() + m2.fields().count() + m3.fields().count() > 0);
        round_trip(&d[0], &m)?;
        round_trip(&d[1], &m2)?;
        round_trip(&d[2], &m3)?;
    }

    #[test]
    fn maximum_lengths_round_trip(m in message(&dialects()[1], true), m2 in message(&dialects()[0], true)) {
        round_trip(&dialects()[1], &m)?;
        round_trip(&dialects()[0], &m2)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for d in dialects() {
            never_panics(&d, bytes.clone())?;
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..3,
        m in message(&dialects()[1], false),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let d = &dialects()[which];
        // Encode under the binary dialect and decode under each: the same
        // bytes read through a different layout are a rich source of bad input.
        if let Ok(wire) = m.to_bytes(&dialects()[1]) {
            let mut bytes = wire.to_vec();
            for (index, byte) in flips {
                if !bytes.is_empty() {
                    let i = index.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            never_panics(d, bytes.clone())?;
            let keep = cut.index(bytes.len() + 1);
            never_panics(d, bytes[..keep].to_vec())?;
        }
    }

    #[test]
    fn framing_never_panics_or_overreserves(
        prefix in prop_oneof![Just(LengthPrefix::Binary2), Just(LengthPrefix::Ascii4), Just(LengthPrefix::Bcd2)],
        header in 0usize..6,
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut codec = FrameCodec::new(prefix).with_header(header).with_max_frame(256);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            prop_assert_eq!(frame.header.len(), header);
            prop_assert!(frame.header.len() + frame.message.len() <= 256);
        }
        prop_assert!(buf.capacity() <= 300 + 256 + 4);
    }
}
