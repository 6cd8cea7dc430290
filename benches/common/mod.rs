//! Shared by the benches.

use cardswitch::iso8583::{Message, Mti};

/// A typical 0200: 18 fields including track 2 (35) and a PIN block (52).
pub fn typical_0200() -> Message {
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(2, "4761739001010119")
        .set(3, "000000")
        .set(4, "000000012345")
        .set(7, "1125143015")
        .set(11, "004711")
        .set(12, "143015")
        .set(13, "1125")
        .set(14, "2812")
        .set(18, "5411")
        .set(22, "051")
        .set(25, "00")
        .set(32, "4761739")
        .set(35, "4761739001010119=28122011143804400000")
        .set(37, "433014004711")
        .set(41, "TERM0001")
        .set(42, "MERCHANT0000001")
        .set(49, "978")
        .set(52, vec![0x12u8, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]);
    m
}
