//! The switch's security stages: the terminal's MAC checked before anything
//! else, the PIN block translated from the terminal's zone to the
//! destination's, and the terminal's responses MAC'd.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::warn;

use crate::adapter::Destination;
use crate::iso8583::{CodecError, Dialect, Message};
use crate::registry::Terminal;
use crate::security::mac::{self, MacError};
use crate::security::pin::{self, PinZone};
use crate::security::profile::{PinKey, Protection};
use crate::txn::Refusal;

use super::Switch;

/// Why a terminal's request failed its MAC check (logged; the terminal gets
/// 63 and the request is not handled).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacCheckError {
    /// The MAC it carries is wrong or cannot be checked.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// The terminal's profile requires a MAC and the request has none.
    #[error("the terminal must MAC its messages and this one has no MAC")]
    Required,
    /// The request carries a MAC and the terminal has no MAC key.
    #[error("the message carries a MAC but the terminal has no MAC key")]
    NoKey,
}

/// Why a response could not be encoded for its terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Its MAC could not be computed.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// It does not fit the terminal's dialect.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl Switch {
    /// Checks the MAC of a terminal's request as it arrived (`frame`, in the
    /// listener's `dialect`): a message carrying field 64/128 must verify
    /// under the terminal's TAK, and a terminal whose profile requires MACs
    /// must send one. A failure is counted and logged (terminal, STAN,
    /// masked PAN; never the key or the MAC input) and the request is not
    /// handled. On success, the terminal's protection is returned for
    /// [`encode_for_terminal`] to MAC the answer with.
    pub fn check_mac(
        &self,
        request: &Message,
        frame: &[u8],
        dialect: &Dialect,
    ) -> Result<Arc<Protection>, Refusal> {
        let carries = request.contains(64) || request.contains(128);
        let profile = self.protection_of(request);
        let result = match &profile.mac {
            Some(m) if carries => mac::verify_message(dialect, frame, request, m.algorithm, &m.key)
                .map_err(MacCheckError::from),
            Some(_) if profile.require_mac && !request.mti().is_network_management() => {
                Err(MacCheckError::Required)
            }
            Some(_) => Ok(()),
            None if carries => Err(MacCheckError::NoKey),
            None => Ok(()),
        };
        result.map(|()| profile).map_err(|reason| {
            self.stats.mac_failures.fetch_add(1, Ordering::Relaxed);
            warn!(
                terminal = request.terminal_id().unwrap_or_default(),
                stan = request.text(11).unwrap_or_default(),
                pan = %request.pan().map(|p| p.to_string()).unwrap_or_default(),
                mti = %request.mti(),
                %reason,
                "MAC verification failed: request refused with 63, not forwarded"
            );
            Refusal::SecurityViolation
        })
    }

    /// The protection of the terminal named in field 41 of `message`
    /// (none for an unknown terminal).
    fn protection_of(&self, message: &Message) -> Arc<Protection> {
        message
            .terminal_id()
            .and_then(|id| {
                self.tables()
                    .terminals
                    .get(id)
                    .map(|t| Arc::clone(&t.protection))
            })
            .unwrap_or_default()
    }
}

/// Encodes a response for the terminal in its listener's `dialect`, with a
/// MAC under the terminal's TAK when `protection` has one.
pub fn encode_for_terminal(
    mut response: Message,
    dialect: &Dialect,
    protection: &Protection,
) -> Result<Bytes, EncodeError> {
    match &protection.mac {
        Some(m) if !response.mti().is_network_management() => {
            Ok(mac::sign(dialect, &mut response, m.algorithm, &m.key)?)
        }
        _ => Ok(response.to_bytes(dialect)?),
    }
}

impl Switch {
    /// Puts the terminal's PIN block (field 52 of `request`, bound to `pan`
    /// from field 2 or track 2) into `out`
    /// re-enciphered for `destination`: deciphered under the terminal's TPK
    /// (or its DUKPT key for the KSN in the request) and enciphered under
    /// the destination's ZPK in the destination's format. The clear PIN
    /// lives only inside [`pin::translate`]. A request without field 52 is
    /// left alone.
    pub(super) fn translate_pin(
        &self,
        request: &Message,
        pan: &str,
        terminal: &Terminal,
        destination: &Destination,
        out: &mut Message,
    ) -> Result<(), Refusal> {
        out.remove(52);
        let Some(block) = request.pin_block() else {
            return Ok(());
        };
        let terminal_id = terminal.id.trim_end();
        let destination_protection = &destination.config().protection;
        let (Some(from), Some(to)) = (&terminal.protection.pin, &destination_protection.pin) else {
            warn!(
                terminal = terminal_id,
                destination = %destination.name(),
                "a PIN block arrived but the terminal or the destination has no PIN key: refused with 96"
            );
            return Err(Refusal::System);
        };
        let from_key = from.key_for(request).map_err(|e| {
            self.stats.pin_failures.fetch_add(1, Ordering::Relaxed);
            warn!(terminal = terminal_id, error = %e, "no PIN key for this request: refused with 55");
            Refusal::PinBlock
        })?;
        let to_key = to.key_for(request).map_err(|e| {
            warn!(destination = %destination.name(), error = %e, "no zone PIN key: refused with 96");
            Refusal::System
        })?;
        let translated = pin::translate(
            block.expose(),
            pan,
            PinZone {
                key: &from_key,
                format: from.format,
            },
            PinZone {
                key: &to_key,
                format: to.format,
            },
        )
        .map_err(|e| {
            self.stats.pin_failures.fetch_add(1, Ordering::Relaxed);
            warn!(terminal = terminal_id, error = %e, "PIN block cannot be translated: refused with 55");
            Refusal::PinBlock
        })?;
        out.set(52, translated);
        if let PinKey::Dukpt { ksn_field, .. } = &from.key {
            out.remove(*ksn_field);
        }
        Ok(())
    }
}
