//! ISO 8583 codec: no I/O, no async.
//!
//! * [`spec`] — dialects as data: a [`Dialect`] is loaded from a TOML file and
//!   validated once, then shared read-only behind an `Arc`.
//! * [`message`] — [`Message`]: an MTI and the fields present, decoded from and
//!   encoded to wire bytes under a dialect.
//! * [`framing`] — tokio-util codecs that cut a TCP byte stream into frames.
//! * [`error`] — [`CodecError`]: which part of the message was wrong and how.
//!
//! The decoder never panics and never allocates more than a small multiple of
//! the frame it was handed: every length it reads is checked against both the
//! dialect's maximum and the bytes actually left in the frame.

mod bitmap;
pub mod ebcdic;
pub mod error;
pub(crate) mod field;
pub mod framing;
pub mod json;
pub mod message;
pub mod spec;

pub use error::{CodecError, ErrorKind, Location};
pub use message::{Message, Mti};
pub use spec::{Dialect, FieldSpec, SpecError};
