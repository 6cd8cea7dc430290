//! Wire framing: cutting a TCP byte stream into ISO 8583 messages.
//!
//! Every message on a terminal or bank link is preceded by a length prefix,
//! optionally followed by a fixed-size header that is passed through untouched
//! (a 5-byte TPDU for NAC-style terminals). The length counts everything after
//! the prefix: header and message.
//!
//! # `binary2` (the default): 2-byte big-endian length
//!
//! ```text
//! +---- len: u16 ----+-------- message (len bytes) --------+
//! | 0x00 0x1C        | 30 32 30 30 ...                      |
//! +------------------+--------------------------------------+
//! ```
//!
//! # `ascii4`: four ASCII digits
//!
//! ```text
//! +---- "0028" ------+-------- message (28 bytes) ---------+
//! | 30 30 32 38      | 30 32 30 30 ...                      |
//! +------------------+--------------------------------------+
//! ```
//!
//! # `bcd2`: two bytes of packed BCD (at most 9999)
//!
//! ```text
//! +---- 0x00 0x28 ---+-------- message (28 bytes) ---------+
//! ```
//!
//! # With a 5-byte TPDU header (`header = 5`)
//!
//! ```text
//! +- len: 0x00 0x2D -+-- TPDU (5) ----------+-- message (40 bytes) --+
//! | 0x00 0x2D        | 60 00 03 00 00       | 02 00 30 20 ...        |
//! +------------------+----------------------+------------------------+
//! ```
//!
//! A declared length above the configured maximum (default 8 KiB) is an
//! error and the connection is to be closed: the decoder never reserves more
//! than `max_frame` bytes, whatever the prefix says.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default largest frame: 8 KiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024;

/// How the length of a frame is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthPrefix {
    /// Two bytes, big-endian binary (up to 65535).
    #[default]
    Binary2,
    /// Four ASCII digits (up to 9999).
    Ascii4,
    /// Two bytes of packed BCD (up to 9999).
    Bcd2,
}

impl LengthPrefix {
    /// Bytes the prefix occupies.
    pub fn size(self) -> usize {
        match self {
            LengthPrefix::Binary2 | LengthPrefix::Bcd2 => 2,
            LengthPrefix::Ascii4 => 4,
        }
    }

    /// Largest length the prefix can express.
    pub fn limit(self) -> usize {
        match self {
            LengthPrefix::Binary2 => 65535,
            LengthPrefix::Ascii4 | LengthPrefix::Bcd2 => 9999,
        }
    }

    /// Reads a length from exactly [`size`](Self::size) bytes.
    fn read(self, raw: &[u8]) -> Result<usize, FramingError> {
        let bad = || FramingError::BadPrefix {
            prefix: self,
            bytes: hex::encode_upper(raw),
        };
        let mut len = 0usize;
        match self {
            LengthPrefix::Binary2 => {
                for &b in raw {
                    len = len << 8 | usize::from(b);
                }
            }
            LengthPrefix::Ascii4 => {
                for &b in raw {
                    if !b.is_ascii_digit() {
                        return Err(bad());
                    }
                    len = len * 10 + usize::from(b - b'0');
                }
            }
            LengthPrefix::Bcd2 => {
                for nibble in raw.iter().flat_map(|b| [b >> 4, b & 0x0F]) {
                    if nibble > 9 {
                        return Err(bad());
                    }
                    len = len * 10 + usize::from(nibble);
                }
            }
        }
        Ok(len)
    }

    /// Writes `len`, which the caller has checked against [`limit`](Self::limit).
    fn write(self, len: usize, out: &mut BytesMut) {
        match self {
            LengthPrefix::Binary2 => out.put_u16(len as u16),
            LengthPrefix::Ascii4 => {
                for power in [1000, 100, 10, 1] {
                    out.put_u8(b'0' + (len / power % 10) as u8);
                }
            }
            LengthPrefix::Bcd2 => {
                let digit = |power: usize| (len / power % 10) as u8;
                out.put_u8(digit(1000) << 4 | digit(100));
                out.put_u8(digit(10) << 4 | digit(1));
            }
        }
    }
}

/// A name that is not one of the length prefixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown framing `{0}` (binary2, ascii4, bcd2)")]
pub struct UnknownFraming(pub String);

impl FromStr for LengthPrefix {
    type Err = UnknownFraming;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "binary2" => Ok(LengthPrefix::Binary2),
            "ascii4" => Ok(LengthPrefix::Ascii4),
            "bcd2" => Ok(LengthPrefix::Bcd2),
            other => Err(UnknownFraming(other.to_string())),
        }
    }
}

impl fmt::Display for LengthPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthPrefix::Binary2 => "binary2",
            LengthPrefix::Ascii4 => "ascii4",
            LengthPrefix::Bcd2 => "bcd2",
        })
    }
}

/// A framing error. Any of them means the stream can no longer be trusted
/// to be aligned on frame boundaries: close the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// Reading or writing the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix is not a valid number in its encoding.
    #[error("{prefix} length prefix {bytes} is not valid")]
    BadPrefix {
        /// The framing in use.
        prefix: LengthPrefix,
        /// The prefix bytes, hex.
        bytes: String,
    },
    /// The declared (or, when sending, actual) length exceeds the maximum.
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLarge {
        /// Length declared or to be sent.
        len: usize,
        /// The configured (or prefix's) maximum.
        max: usize,
    },
    /// The declared length is shorter than the fixed header.
    #[error("frame length {len} is shorter than the {header}-byte header")]
    ShorterThanHeader {
        /// Length declared.
        len: usize,
        /// Configured header size.
        header: usize,
    },
    /// A frame to send carries a header of the wrong size.
    #[error("header of {len} bytes, the framing expects {expected}")]
    WrongHeader {
        /// Header size given.
        len: usize,
        /// Configured header size.
        expected: usize,
    },
}

/// One frame: the pass-through header (empty when none is configured) and
/// the ISO 8583 message bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Fixed-size header such as a TPDU, untouched.
    pub header: Bytes,
    /// The message.
    pub message: Bytes,
}

/// Decoder and encoder for length-prefixed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    prefix: LengthPrefix,
    header: usize,
    max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(LengthPrefix::Binary2)
    }
}

impl FrameCodec {
    /// A codec with no header and the default maximum frame size.
    pub fn new(prefix: LengthPrefix) -> FrameCodec {
        FrameCodec {
            prefix,
            header: 0,
            max_frame: DEFAULT_MAX_FRAME.min(prefix.limit()),
        }
    }

    /// Expects a fixed-size header of `bytes` after each length prefix.
    pub fn with_header(mut self, bytes: usize) -> FrameCodec {
        self.header = bytes;
        self
    }

    /// Sets the largest frame accepted or sent (capped by what the prefix
    /// can express).
    pub fn with_max_frame(mut self, bytes: usize) -> FrameCodec {
        self.max_frame = bytes.min(self.prefix.limit());
        self
    }

    /// The length prefix in use.
    pub fn prefix(&self) -> LengthPrefix {
        self.prefix
    }

    /// Size of the pass-through header.
    pub fn header_len(&self) -> usize {
        self.header
    }

    /// Largest frame accepted or sent.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        let size = self.prefix.size();
        let Some(raw) = src.get(..size) else {
            return Ok(None);
        };
        let len = self.prefix.read(raw)?;
        if len > self.max_frame {
            return Err(FramingError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if len < self.header {
            return Err(FramingError::ShorterThanHeader {
                len,
                header: self.header,
            });
        }
        if src.len() < size + len {
            // Bounded by max_frame, checked above.
            src.reserve(size + len - src.len());
            return Ok(None);
        }
        src.advance(size);
        let mut message = src.split_to(len).freeze();
        let header = message.split_to(self.header);
        Ok(Some(Frame { header, message }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FramingError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FramingError> {
        if frame.header.len() != self.header {
            return Err(FramingError::WrongHeader {
                len: frame.header.len(),
                expected: self.header,
            });
        }
        let len = frame.header.len() + frame.message.len();
        if len > self.max_frame {
            return Err(FramingError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        dst.reserve(self.prefix.size() + len);
        self.prefix.write(len, dst);
        dst.extend_from_slice(&frame.header);
        dst.extend_from_slice(&frame.message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(codec: &mut FrameCodec, message: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        let frame = Frame {
            header: Bytes::from(vec![0x60, 0, 3, 0, 0]).slice(..codec.header_len()),
            message: Bytes::copy_from_slice(message),
        };
        codec.encode(frame, &mut out).unwrap();
        out
    }

    #[test]
    fn prefixes_are_written_as_documented() {
        let msg = [0xAB; 28];
        assert_eq!(
            &encoded(&mut FrameCodec::new(LengthPrefix::Binary2), &msg)[..2],
            [0x00, 0x1C]
        );
        assert_eq!(
            &encoded(&mut FrameCodec::new(LengthPrefix::Ascii4), &msg)[..4],
            b"0028"
        );
        assert_eq!(
            &encoded(&mut FrameCodec::new(LengthPrefix::Bcd2), &msg)[..2],
            [0x00, 0x28]
        );
        let mut tpdu = FrameCodec::new(LengthPrefix::Binary2).with_header(5);
        assert_eq!(
            &encoded(&mut tpdu, &[0xAB; 40])[..7],
            [0x00, 0x2D, 0x60, 0, 3, 0, 0]
        );
    }

    #[test]
    fn oversized_declared_length_is_refused_without_reserving() {
        let mut codec = FrameCodec::new(LengthPrefix::Binary2);
        let mut src = BytesMut::from(&[0xFF, 0xFF, 0x00][..]);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(
            matches!(
                err,
                FramingError::TooLarge {
                    len: 65535,
                    max: 8192
                }
            ),
            "{err}"
        );
        assert!(src.capacity() < 1024);
    }

    #[test]
    fn bad_prefixes_are_errors() {
        let mut ascii = FrameCodec::new(LengthPrefix::Ascii4);
        let err = ascii
            .decode(&mut BytesMut::from(&b"00x1abc"[..]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ascii4 length prefix 30307831 is not valid"
        );
        let mut bcd = FrameCodec::new(LengthPrefix::Bcd2);
        assert!(bcd.decode(&mut BytesMut::from(&[0x0A, 0x00][..])).is_err());
        let mut tpdu = FrameCodec::new(LengthPrefix::Binary2).with_header(5);
        assert!(matches!(
            tpdu.decode(&mut BytesMut::from(&[0x00, 0x03, 1, 2, 3][..])),
            Err(FramingError::ShorterThanHeader { len: 3, header: 5 })
        ));
    }
}
