//! Framing: partial reads, several frames in one read, one frame across many
//! reads — fed directly and over real TCP on 127.0.0.1.

use bytes::{Bytes, BytesMut};
use cardswitch::iso8583::framing::{Frame, FrameCodec, FramingError, LengthPrefix};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

const PREFIXES: [LengthPrefix; 3] = [
    LengthPrefix::Binary2,
    LengthPrefix::Ascii4,
    LengthPrefix::Bcd2,
];

fn frames(header: usize) -> Vec<Frame> {
    (0..5u8)
        .map(|i| Frame {
            header: Bytes::from(vec![0x60, 0x00, i, 0x00, 0x00]).slice(..header),
            message: Bytes::from(vec![b'0' + i; 20 + usize::from(i) * 37]),
        })
        .collect()
}

fn wire(codec: &mut FrameCodec, frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut out).unwrap();
    }
    out.to_vec()
}

#[test]
fn one_byte_at_a_time_and_all_at_once() {
    for prefix in PREFIXES {
        for header in [0, 5] {
            let mut codec = FrameCodec::new(prefix).with_header(header);
            let expected = frames(header);
            let bytes = wire(&mut codec, &expected);

            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for b in &bytes {
                buf.extend_from_slice(&[*b]);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, expected, "{prefix} header {header}, byte by byte");

            let mut buf = BytesMut::from(&bytes[..]);
            let mut got = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, expected, "{prefix} header {header}, one read");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn frames_larger_than_the_maximum_are_refused_both_ways() {
    let mut codec = FrameCodec::new(LengthPrefix::Ascii4).with_max_frame(100);
    let err = codec.decode(&mut BytesMut::from(&b"0101"[..])).unwrap_err();
    assert!(
        matches!(err, FramingError::TooLarge { len: 101, max: 100 }),
        "{err}"
    );
    let big = Frame {
        header: Bytes::new(),
        message: Bytes::from(vec![0u8; 101]),
    };
    assert!(codec.encode(big, &mut BytesMut::new()).is_err());
}

#[tokio::test]
async fn over_tcp_coalesced_and_split_writes() {
    for prefix in PREFIXES {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let codec = FrameCodec::new(prefix).with_header(5);
        let expected = frames(5);
        let bytes = wire(&mut codec.clone(), &expected);

        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut reader = FramedRead::new(socket, codec);
            let mut got = Vec::new();
            while let Some(frame) = reader.next().await {
                got.push(frame.unwrap());
            }
            got
        });

        let mut client = TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        // Three frames and a half in one write, the rest one byte per write.
        let split = bytes.len() - (bytes.len() - 3) / 2;
        client.write_all(&bytes[..split]).await.unwrap();
        for b in &bytes[split..] {
            client.write_all(&[*b]).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        client.shutdown().await.unwrap();
        assert_eq!(server.await.unwrap(), expected, "{prefix}");
    }
}

#[tokio::test]
async fn over_tcp_an_oversized_prefix_ends_the_stream_with_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut reader = FramedRead::new(socket, FrameCodec::default());
        let first = reader.next().await.unwrap().unwrap();
        let second = reader.next().await.unwrap();
        (first, second.is_err())
    });
    let client = TcpStream::connect(addr).await.unwrap();
    let mut writer = FramedWrite::new(client, FrameCodec::default());
    writer
        .send(Frame {
            header: Bytes::new(),
            message: Bytes::from_static(b"0800"),
        })
        .await
        .unwrap();
    // Declares 65535 bytes: more than the 8 KiB maximum.
    writer
        .get_mut()
        .write_all(&[0xFF, 0xFF, 1, 2, 3])
        .await
        .unwrap();
    let (first, refused) = server.await.unwrap();
    assert_eq!(&first.message[..], b"0800");
    assert!(
        refused,
        "an oversized frame must be an error, not an allocation"
    );
}
