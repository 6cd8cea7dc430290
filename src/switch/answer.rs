//! The terminal edge of the switch's answers: what a terminal is told, built
//! from its request's echoed fields, and the one log event per transaction.
//! Field numbers of the answer live here.

use std::time::Duration;

use tracing::info;

use crate::iso8583::{Message, Mti};
use crate::txn::Refusal;

use super::recent::Live;

/// Fields of a terminal's request echoed in the switch's response.
const ECHOED: [u8; 13] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90];

/// What the switch answers a transaction.
#[derive(Debug)]
pub(super) struct Answer {
    /// 1987 response code.
    pub code: String,
    /// Authorisation id (sent on approval).
    pub auth_id: Option<String>,
    /// The destination asked, for the log.
    pub destination: Option<String>,
    /// The transaction's RRN (given to a terminal that sent none).
    pub rrn: Option<String>,
    /// Time spent waiting for the destination's answer.
    pub waited: Duration,
}

impl Answer {
    /// An answer with `code` and nothing else.
    pub fn with_code(code: String) -> Answer {
        Answer {
            code,
            auth_id: None,
            destination: None,
            rrn: None,
            waited: Duration::ZERO,
        }
    }

    /// The answer to a refusal.
    pub fn refused(refusal: Refusal) -> Answer {
        Answer::with_code(refusal.response_code().to_string())
    }

    /// Keeps the RRN the switch gave (when the terminal sent none) so the
    /// terminal learns it.
    pub fn with_rrn(self, live: &Live) -> Answer {
        Answer {
            rrn: Some(live.request.rrn.clone()),
            ..self
        }
    }

    /// The response to `request`: its echoed fields, the code, the
    /// authorisation id on approval, and the switch's RRN when the terminal
    /// sent none.
    pub fn response_to(self, request: &Message) -> Message {
        let mut response = respond(request, &self.code, self.auth_id.as_deref());
        if !request.contains(37)
            && let Some(rrn) = self.rrn
        {
            response.set(37, rrn);
        }
        response
    }
}

/// The one log event of a transaction's outcome: masked PAN, STAN, RRN,
/// terminal, merchant, destination, response code and latency.
pub(super) fn log_outcome(request: &Message, merchant: &str, answer: &Answer, latency: Duration) {
    info!(
        mti = %request.mti(),
        pan = %request
            .pan()
            .or_else(|| request.track2().map(|t| t.pan()))
            .map(|p| p.to_string())
            .unwrap_or_default(),
        stan = request.text(11).unwrap_or_default(),
        rrn = request.rrn().unwrap_or_default(),
        terminal = request.terminal_id().unwrap_or_default(),
        merchant,
        destination = answer.destination.as_deref().unwrap_or("-"),
        code = answer.code,
        latency_us = latency.as_micros() as u64,
        "transaction"
    );
}

/// The response to a terminal request: the request's echoed fields, the
/// response code and, on approval, the authorisation id.
pub fn respond(request: &Message, code: &str, auth_id: Option<&str>) -> Message {
    let mti = request.mti().response().unwrap_or(request.mti());
    let mut response = Message::new(mti);
    for field in ECHOED {
        if let Some(value) = request.get_bytes(field) {
            response.set(field, value);
        }
    }
    if let Some(auth) = auth_id.filter(|_| code == "00") {
        response.set(38, auth.to_string());
    }
    response.set(39, code.to_string());
    response
}

/// Network management from a terminal, answered by the switch: echo (301),
/// sign-on (001) and sign-off (002) are accepted, anything else is invalid.
pub(super) fn network_answer(request: &Message) -> Message {
    let code = match request.network_code() {
        Some("001" | "002" | "301") => "00",
        _ => "12",
    };
    let mut response = Message::new(request.mti().response().unwrap_or(Mti::from_static("0810")));
    for field in [7, 11, 41, 70] {
        if let Some(value) = request.get_bytes(field) {
            response.set(field, value);
        }
    }
    response.set(39, code);
    response
}

/// The format-error answer to a frame that could not be decoded but whose
/// MTI could be read: whatever of 11, 37 and 41 was readable is echoed so the
/// terminal can match it. `None` for an MTI that has no response.
pub fn format_error(salvaged: &Message) -> Option<Message> {
    let mut response = Message::new(salvaged.mti().response()?);
    for field in [11, 37, 41] {
        if let Some(value) = salvaged.get_bytes(field) {
            response.set(field, value);
        }
    }
    response.set(39, Refusal::Format.response_code());
    Some(response)
}
