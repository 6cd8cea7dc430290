//! Codec errors: where in the message, what was wrong, and which ISO response
//! code that means.

use std::fmt;

use super::spec::Class;

/// The part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The message type indicator.
    Mti,
    /// The primary, secondary or tertiary bitmap.
    Bitmap,
    /// A data field, by number.
    Field(u8),
    /// Whatever follows the last field.
    End,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Mti => f.write_str("MTI"),
            Location::Bitmap => f.write_str("bitmap"),
            Location::Field(n) => write!(f, "field {n}"),
            Location::End => f.write_str("end of message"),
        }
    }
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The frame ended before this part was complete.
    #[error("truncated: needs {needed} more bytes, {available} left")]
    Truncated {
        /// Bytes this part needs.
        needed: usize,
        /// Bytes the frame still had.
        available: usize,
    },
    /// The MTI is not four digits (or its BCD is not decimal).
    #[error("MTI is not four digits")]
    BadMti,
    /// The MTI is four digits but not a message type of the dialect's
    /// edition: another version digit, or a class (0, 9), function or
    /// origin (6 to 9) that ISO 8583 reserves.
    #[error("MTI {0} is not a message type of this dialect's edition of ISO 8583")]
    MtiNotAllowed(super::Mti),
    /// A hex bitmap holds a character that is not a hex digit.
    #[error("bitmap character {byte:#04x} is not a hex digit")]
    BadBitmap {
        /// The offending byte.
        byte: u8,
    },
    /// Bit 1 is not set in a dialect that always carries the secondary
    /// bitmap (`secondary_bitmap = "always"`, as Mastercard IPM).
    #[error("bit 1 (secondary bitmap, always present in this dialect) is not set")]
    NoSecondaryBitmap,
    /// A bitmap bit is set for a field the dialect does not define.
    #[error("bit set for a field this dialect does not define")]
    UndefinedField,
    /// A length prefix holds something other than decimal digits.
    #[error("length prefix byte {byte:#04x} is not a decimal digit")]
    BadLengthPrefix {
        /// The offending byte.
        byte: u8,
    },
    /// A value is longer than the field allows.
    #[error("length {len} exceeds the maximum {max}")]
    TooLong {
        /// Length found or given.
        len: usize,
        /// The dialect's maximum.
        max: usize,
    },
    /// A fixed-length value has the wrong length (encoding only).
    #[error("length {len} but the field is fixed at {expected}")]
    WrongLength {
        /// Length given.
        len: usize,
        /// The dialect's fixed length.
        expected: usize,
    },
    /// A character is not allowed by the field's content class.
    #[error("byte {byte:#04x} at position {index} is not allowed in a {} field", class.label())]
    BadContent {
        /// The field's class.
        class: Class,
        /// Position in the value, from 0.
        index: usize,
        /// The offending byte (after EBCDIC or BCD decoding where possible).
        byte: u8,
    },
    /// A BCD pad nibble is not the one the dialect writes.
    #[error("BCD pad nibble {nibble:#x} should be 0 or F")]
    BadPad {
        /// The offending nibble.
        nibble: u8,
    },
    /// An ASCII-hex binary field holds a non-hex character.
    #[error("byte {byte:#04x} at position {index} is not a hex digit")]
    BadHex {
        /// Position in the wire text, from 0.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A field number outside 2..=192, or a field the message cannot carry.
    #[error("field number is not valid in this dialect")]
    InvalidFieldNumber,
    /// Bytes remain after the last field in the bitmap.
    #[error("{count} bytes after the last field")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
}

/// An ISO 8583 response code (field 39), two characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode([u8; 2]);

impl ResponseCode {
    /// `30` — format error.
    pub const FORMAT_ERROR: ResponseCode = ResponseCode(*b"30");
    /// `96` — system malfunction.
    pub const SYSTEM_MALFUNCTION: ResponseCode = ResponseCode(*b"96");

    /// The two characters as a string.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("96")
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the codec was reading or writing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Decoding bytes that arrived.
    Decode,
    /// Encoding a message we built.
    Encode,
}

/// A message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind} (byte offset {offset})")]
pub struct CodecError {
    /// Reading or writing.
    pub direction: Direction,
    /// The part of the message.
    pub location: Location,
    /// Byte offset in the frame (decode) or output (encode) where the part starts.
    pub offset: usize,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl CodecError {
    /// The response code this error answers with. Anything wrong with bytes
    /// that arrived is a format error (30); failing to encode a message we
    /// built ourselves is a system malfunction (96). This is the one place
    /// where codec errors become response codes.
    pub fn response_code(&self) -> ResponseCode {
        match self.direction {
            Direction::Decode => ResponseCode::FORMAT_ERROR,
            Direction::Encode => ResponseCode::SYSTEM_MALFUNCTION,
        }
    }
}
