//! Cut arbitrary bytes into frames with every length prefix: never panic,
//! never yield a frame over the maximum.
#![no_main]

use bytes::BytesMut;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    for prefix in [
        LengthPrefix::Binary2,
        LengthPrefix::Ascii4,
        LengthPrefix::Bcd2,
    ] {
        for header in [0, 5] {
            let mut codec = FrameCodec::new(prefix)
                .with_header(header)
                .with_max_frame(512);
            let mut buf = BytesMut::from(data);
            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                assert_eq!(frame.header.len(), header);
                assert!(frame.header.len() + frame.message.len() <= 512);
            }
        }
    }
});
