//! ISO 8583 codec: dialects as data, no I/O, no async.
//!
//! * [`spec`] — dialects as data: a [`Dialect`] is loaded from a TOML file and
//!   validated once, then shared read-only behind an `Arc`. The switch's
//!   dialects (`iso87ascii`, `iso87binary`, `iso93binary`) and Mastercard IPM
//!   (`ipm`) are built in.
//! * [`message`] — [`Message`]: an MTI and the fields present, decoded from and
//!   encoded to wire bytes under a dialect.
//! * [`field`] — one field under its [`FieldSpec`].
//! * [`framing`] (feature `codec`) — tokio-util codecs that cut a TCP byte
//!   stream into frames.
//! * [`error`] — [`CodecError`]: which part of the message was wrong and how.
//! * [`card`] — card data that masks itself in `Debug` and `Display`.
//! * [`json`] — messages as JSON objects, for tools.
//!
//! The decoder never panics and never allocates more than a small multiple of
//! the frame it was handed: every length it reads is checked against both the
//! dialect's maximum and the bytes actually left in the frame.
//!
//! ```
//! use iso8583::{Dialect, Message, Mti};
//!
//! let dialect = Dialect::builtin("iso87ascii").unwrap().unwrap();
//! let mut echo = Message::new(Mti::parse("0800").unwrap());
//! echo.set(11, "000001").set(70, "301");
//! let bytes = echo.to_bytes(&dialect).unwrap();
//! let back = Message::decode(&dialect, bytes).unwrap();
//! assert_eq!(back.text(70), Some("301"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bitmap;
pub mod card;
pub mod codes;
pub mod ebcdic;
pub mod error;
pub mod field;
#[cfg(feature = "codec")]
pub mod framing;
pub mod json;
pub mod kind;
pub mod message;
pub mod spec;

pub use error::{CodecError, ErrorKind, Location};
pub use message::{Message, Mti};
pub use spec::{Dialect, FieldSpec, SpecError};
