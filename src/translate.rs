//! Dialect translation at the destination edge: a [`crate::txn::Txn`] becomes the request
//! a destination understands, and the destination's answer becomes a 1987
//! response code and authorisation id.
//!
//! 1987 destinations get the terminal's fields in the same positions. 1993
//! destinations get:
//!
//! | 1987 | 1993 |
//! |---|---|
//! | MTI 0100 / 0200 / 0400 / 0420 | 1100 / 1200 / 1400 / 1420 |
//! | 12 `hhmmss` + 13 `MMDD` | 12 `YYMMDDhhmmss` (year from the switch clock) |
//! | 18 MCC | 26 card acceptor business code |
//! | — | 24 function code: 100 authorisation, 200 financial, 400 reversal |
//! | 43 name/location (40) | 43 (LL ..99), same text |
//! | 90 original data (n42) | 56 original data: MTI, STAN, `YYMMDDhhmmss`, LL + acquirer id |
//! | 39 two-digit response code | 39 three-digit action code ([`crate::codes`]) |
//! | 22 POS entry mode | not sent (1993 field 22 is a 12-character POS data code) |
//!
//! Network management: 0800 with 70 = 001 (sign-on) / 301 (echo), answered
//! 0810 with 39 = 00; in 1993, 1804 with 24 = 801 / 831, answered 1814 with
//! 39 = 800.

use std::sync::Arc;

use crate::clock::DateTime;
use crate::codes;
use crate::iso8583::spec::IsoVersion;
use crate::iso8583::{Dialect, Message, Mti};
use crate::registry::Terminal;
use crate::txn::TxnKind;

/// What the switch remembers of a forwarded request, to build the original
/// data elements of a later reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRef {
    /// Destination that received it.
    pub destination: Arc<str>,
    /// Its 1987 MTI.
    pub mti: Mti,
    /// The STAN the switch gave it on that destination.
    pub switch_stan: u32,
    /// Field 7 as sent (`MMDDhhmmss`).
    pub transmission: String,
    /// For a 1993 destination, field 12 as sent (`YYMMDDhhmmss`), which its
    /// reversal names in field 56.
    pub local_93: Option<String>,
}

/// The switch's own institution ids, put in field 32 (acquiring) and 33
/// (forwarding, when set) of what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Institution {
    /// Acquiring institution id (field 32).
    pub acquirer_id: String,
    /// Forwarding institution id (field 33), when set.
    pub forwarding_id: Option<String>,
}

/// Everything needed to build one outgoing request.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// What the terminal asks.
    pub kind: TxnKind,
    /// The terminal's request (1987 semantics).
    pub request: &'a Message,
    /// The terminal's registry entry.
    pub terminal: &'a Terminal,
    /// The switch's institution ids.
    pub institution: &'a Institution,
    /// The original, for reversals.
    pub original: Option<&'a OriginalRef>,
    /// The RRN to send when the terminal sent none (unique across the switch).
    pub rrn: Option<String>,
    /// Now.
    pub now: DateTime,
}

/// Fields the switch sets itself (or drops) rather than copying from the
/// terminal: 7 transmission time, 11 STAN (the MUX), 18 MCC, 32/33
/// institutions, 42/43 merchant, 53 security control information (it
/// belongs to the terminal's key zone), 64/128 MAC (the terminal's MAC does
/// not cover the new message), 90 original data (rebuilt). Field 52 is
/// copied here and replaced by the switch's PIN translation.
const NOT_COPIED: [u8; 11] = [7, 11, 18, 32, 33, 42, 43, 53, 64, 90, 128];

/// Fields a 1993 destination gets from a 1987 request in the same position
/// (same meaning and compatible layout); the rest is mapped in `to_1993`.
const SAME_IN_1993: [u8; 11] = [2, 3, 4, 12, 13, 14, 35, 37, 41, 49, 52];

/// Builds the request for `destination`'s dialect. Field 11 is left to the
/// link MUX, which assigns the switch's own STAN.
pub fn request_for(destination: &Dialect, out: &Outgoing<'_>) -> Message {
    let req = out.request;
    let mut m = Message::new(req.mti());
    let version = destination.version();
    for (field, _) in req.fields() {
        let wanted = match version {
            IsoVersion::Iso1987 => !NOT_COPIED.contains(&field),
            IsoVersion::Iso1993 => SAME_IN_1993.contains(&field),
        };
        if wanted
            && destination.field(field).is_some()
            && let Some(value) = req.get_bytes(field)
        {
            m.set(field, value);
        }
    }
    if let Some(rrn) = &out.rrn {
        m.set(37, rrn.clone());
    }
    if !req.contains(49) {
        m.set(49, out.terminal.currency.clone());
    }
    m.set(7, out.now.mmddhhmmss())
        .set(18, out.terminal.mcc.clone())
        .set(32, out.institution.acquirer_id.clone())
        .set(42, out.terminal.merchant_id.clone())
        .set(43, out.terminal.name_location.clone());
    if let Some(forwarding) = &out.institution.forwarding_id {
        m.set(33, forwarding.clone());
    }
    if let Some(original) = out.original {
        m.set(
            90,
            format!(
                "{}{:06}{}{:0>11}{:0>11}",
                original.mti,
                original.switch_stan,
                original.transmission,
                out.institution.acquirer_id,
                out.institution.forwarding_id.as_deref().unwrap_or("0"),
            ),
        );
    }
    match version {
        IsoVersion::Iso1987 => m,
        IsoVersion::Iso1993 => to_1993(m, out),
    }
}

fn to_1993(mut m: Message, out: &Outgoing<'_>) -> Message {
    m.set_mti(m.mti().with_version(1));
    let local_date = m.remove(13);
    let local_time = m.remove(12);
    let mmdd = local_date
        .as_deref()
        .and_then(|d| std::str::from_utf8(d).ok())
        .map(String::from)
        .unwrap_or_else(|| out.now.mmdd());
    let hhmmss = local_time
        .as_deref()
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(String::from)
        .unwrap_or_else(|| out.now.hhmmss());
    m.set(12, format!("{}{mmdd}{hhmmss}", out.now.yy()));
    if let Some(mcc) = m.remove(18) {
        m.set(26, mcc);
    }
    m.remove(22);
    m.remove(25);
    let function = match out.kind {
        TxnKind::Authorization => "100",
        TxnKind::Purchase | TxnKind::Refund => "200",
        TxnKind::Reversal => "400",
        TxnKind::Completion => "202",
    };
    m.set(24, function);
    m.remove(90);
    if let Some(original) = out.original {
        let acquirer = &out.institution.acquirer_id;
        m.set(
            56,
            format!(
                "{}{:06}{}{:02}{acquirer}",
                original.mti.with_version(1),
                original.switch_stan,
                original.local_93.clone().unwrap_or_else(|| format!(
                    "{}{}",
                    out.now.yy(),
                    original.transmission
                )),
                acquirer.len(),
            ),
        );
    }
    m
}

/// A destination's answer in 1987 terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Two-digit response code.
    pub code: String,
    /// Authorisation id (field 38), if given and well-formed.
    pub auth_id: Option<String>,
}

/// A destination's response without a readable outcome: field 39 missing,
/// or not a code of the destination's version (two alphanumeric characters
/// in 1987, three digits in 1993). The request may have been approved, so
/// its outcome is unknown, as after a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the answer has no readable response code (field 39)")]
pub struct UnreadableAnswer;

/// Reads a destination's response.
pub fn answer_from(version: IsoVersion, response: &Message) -> Result<Answer, UnreadableAnswer> {
    let raw = response.response_code().ok_or(UnreadableAnswer)?;
    let code = match version {
        IsoVersion::Iso1987 if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            raw.to_string()
        }
        IsoVersion::Iso1993 if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_digit()) => {
            codes::from_action_code(raw).to_string()
        }
        _ => return Err(UnreadableAnswer),
    };
    let auth_id = response
        .auth_id()
        .filter(|a| a.len() == 6)
        .map(String::from);
    Ok(Answer { code, auth_id })
}

/// Network management request kinds sent on bank links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Sign-on (70 = 001; 1993 function code 801).
    SignOn,
    /// Echo test (70 = 301; 1993 function code 831).
    Echo,
}

/// A network management request. Field 11 is left to the MUX.
pub fn network_request(version: IsoVersion, kind: Network, now: DateTime) -> Message {
    match version {
        IsoVersion::Iso1987 => {
            let mut m = Message::new(Mti::from_static("0800"));
            let code = if kind == Network::SignOn {
                "001"
            } else {
                "301"
            };
            m.set(7, now.mmddhhmmss()).set(70, code);
            m
        }
        IsoVersion::Iso1993 => {
            let mut m = Message::new(Mti::from_static("1804"));
            let code = if kind == Network::SignOn {
                "801"
            } else {
                "831"
            };
            m.set(7, now.mmddhhmmss()).set(24, code);
            m
        }
    }
}

/// Whether a network management response accepts the request.
pub fn network_accepted(version: IsoVersion, response: &Message) -> bool {
    match version {
        IsoVersion::Iso1987 => response.response_code() == Some("00"),
        IsoVersion::Iso1993 => response
            .response_code()
            .is_some_and(|c| c.starts_with('8') || c.starts_with('0')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_requests_encode_in_their_dialects() {
        let now = DateTime::from_unix(1_795_624_000);
        for (name, version) in [
            ("iso87binary", IsoVersion::Iso1987),
            ("iso93binary", IsoVersion::Iso1993),
        ] {
            let d = Dialect::builtin(name).unwrap().unwrap();
            let mut m = network_request(version, Network::Echo, now);
            m.set(11, "000001");
            m.to_bytes(&d).unwrap();
        }
    }

    #[test]
    fn answers_map_action_codes() {
        let mut r = Message::new(Mti::from_static("1210"));
        r.set(39, "116").set(38, "AB12CD");
        let a = answer_from(IsoVersion::Iso1993, &r);
        assert_eq!(
            a,
            Ok(Answer {
                code: "51".into(),
                auth_id: Some("AB12CD".into())
            })
        );
    }

    /// An answer whose outcome cannot be read (no 39, or a 39 outside the
    /// version's code set) is not an answer, whatever else it carries.
    #[test]
    fn answers_without_a_readable_code_are_unreadable() {
        let with_39 = |mti: &'static str, code: Option<&str>| {
            let mut r = Message::new(Mti::from_static(mti));
            r.set(38, "AB12CD");
            if let Some(code) = code {
                r.set(39, code.to_string());
            }
            r
        };
        for (version, mti, code) in [
            (IsoVersion::Iso1987, "0210", None),
            (IsoVersion::Iso1987, "0210", Some("0")),
            (IsoVersion::Iso1987, "0210", Some("000")),
            (IsoVersion::Iso1987, "0210", Some("0 ")),
            (IsoVersion::Iso1987, "0210", Some("-1")),
            (IsoVersion::Iso1993, "1210", None),
            (IsoVersion::Iso1993, "1210", Some("00")),
            (IsoVersion::Iso1993, "1210", Some("0A0")),
        ] {
            assert_eq!(
                answer_from(version, &with_39(mti, code)),
                Err(UnreadableAnswer),
                "{code:?}"
            );
        }
        assert_eq!(
            answer_from(IsoVersion::Iso1987, &with_39("0210", Some("N7"))).map(|a| a.code),
            Ok("N7".to_string())
        );
    }
}
