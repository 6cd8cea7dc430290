//! A simulator's message on the wire: encoded under its dialect, and signed
//! when the party's protection asks for a MAC.

use bytes::Bytes;
use iso8583::{CodecError, Dialect, Message};
use security::mac::{self, MacError};
use security::pin::PinError;
use security::profile::{MacProfile, PinKeyError};

/// Why a simulator could not put a message on the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message does not fit its dialect.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The MAC could not be computed.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// The PIN key could not be had for the message.
    #[error(transparent)]
    PinKey(#[from] PinKeyError),
    /// The PIN block could not be built.
    #[error(transparent)]
    Pin(#[from] PinError),
}

/// `message` encoded under `dialect`, signed under `mac` when given.
pub(crate) fn encode(
    dialect: &Dialect,
    message: &mut Message,
    mac: Option<&MacProfile>,
) -> Result<Bytes, EncodeError> {
    Ok(match mac {
        Some(k) => mac::sign(dialect, message, k.algorithm, &k.key)?,
        None => message.to_bytes(dialect)?,
    })
}
