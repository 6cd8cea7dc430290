//! The switch's decisions, apart from their effects: each step takes the
//! typed request, the tables and a snapshot of the state it needs, and says
//! what to do. The driver (`super::Switch`) gathers the snapshots (journal
//! index look-ups, an original's answer, the risk engine's verdict, the
//! links' state) and performs the effects in the order of the durability
//! contract.
//!
//! ```text
//! admit ─▶ [journal: Received] ─▶ screen ─┬─ Reverse   ─▶ reversal      ─▶ Decision
//!                                          ├─ Complete  ─▶ completion    ─▶ Decision
//!                                          └─ Authorise ─▶ authorisation ─▶ Decision
//! Decision::Forward ─▶ [journal: Forwarded] ─▶ destination ─▶ reply ─▶ [journal: Responded]
//! ```
//!
//! The steps are separate because the state a later step needs may only be
//! gathered once the earlier one said so: an original's answer is waited
//! for only for a request that passed the screen, and the risk engine (whose
//! velocity rules count what they see) sees only requests that reach it.

use std::sync::Arc;

use crate::adapter::{Exchange, LinkError};
use crate::card::luhn_valid;
use crate::codes;
use crate::iso8583::Mti;
use crate::iso8583::spec::IsoVersion;
use crate::journal::record::{Forwarded, Received, Source};
use crate::registry::Terminal;
use crate::route::RouteTable;
use crate::translate::{self, OriginalRef};
use crate::txn::{Refusal, Txn, TxnKind};

use super::recent::Outcome;

/// What becomes of a request before anything is journaled, given whether
/// it repeats one already handled and whether memory has room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<D> {
    /// A retransmission: the original's answer is replayed, nothing is
    /// journaled.
    Replay(D),
    /// Refused without a journal record (the duplicate check could not be
    /// made).
    Refuse(Refusal),
    /// The cache in front of the index is full (the index is far behind):
    /// refused with "system malfunction", nothing journaled.
    MemoryFull,
    /// A new request: journal it (`Received`) and go on.
    Journal,
}

/// Admits a request: `duplicate` is the result of the retransmission check
/// (the original found, none, or a check that failed), `memory_full`
/// whether the recent cache may take no more.
pub fn admit<D>(duplicate: Result<Option<D>, Refusal>, memory_full: bool) -> Admission<D> {
    match duplicate {
        Err(refusal) => Admission::Refuse(refusal),
        Ok(Some(original)) => Admission::Replay(original),
        Ok(None) if memory_full => Admission::MemoryFull,
        Ok(None) => Admission::Journal,
    }
}

/// Whether a journaled request (of MTI class `class`) is the one `txn`
/// retransmits: same message class, field 7 and amount (the terminal and
/// STAN matched already, as the key it was found by).
pub fn same_request(txn: &Txn, class: [u8; 2], request: &Received) -> bool {
    class == txn.class()
        && request.transmission == txn.transmission()
        && request.amount == txn.amount()
}

/// Whether a journaled request (of MTI class `class`, found by the terminal
/// and the STAN `txn` names as its original) is that original: of another
/// message class, with the transmission time named, if one is.
pub fn names_original(txn: &Txn, class: [u8; 2], request: &Received) -> bool {
    class != txn.class()
        && txn
            .original()
            .transmission
            .is_none_or(|t| t == request.transmission)
}

/// What a screened request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// A terminal reversal: see [`reversal`].
    Reverse,
    /// A completion of a pre-authorisation: see [`completion_matches`] and
    /// [`completion`].
    Complete,
    /// An authorisation, purchase or refund: risk, then [`authorisation`].
    Authorise,
}

/// The first checks, on the terminal's registry entry (`terminal`, `None`
/// when field 41 names none) and the card: the terminal is known, enabled
/// and allowed this kind, and the PAN passes Luhn.
pub fn screen<'t>(
    txn: &Txn,
    terminal: Option<&'t Arc<Terminal>>,
) -> Result<(&'t Arc<Terminal>, Plan), Refusal> {
    let terminal = terminal.ok_or(Refusal::UnknownTerminal)?;
    if !terminal.enabled || !terminal.allowed.contains(&txn.kind()) {
        return Err(Refusal::NotPermitted);
    }
    if !luhn_valid(txn.pan().expose()) {
        return Err(Refusal::InvalidCard);
    }
    let plan = match txn.kind() {
        TxnKind::Reversal => Plan::Reverse,
        TxnKind::Completion => Plan::Complete,
        _ => Plan::Authorise,
    };
    Ok((terminal, plan))
}

/// What the switch does with a journaled request that passed the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Answered by the switch with the refusal's code: `Responded`
    /// (source: switch) durable, then the answer.
    Refuse(Refusal),
    /// A terminal reversal accepted (00): when `owed`, the reversal of the
    /// original at `destination` first (`ReversalQueued` durable, then
    /// handed to store-and-forward), then `Responded` durable, then the
    /// answer.
    Accept {
        /// Where the original went, if it was forwarded.
        destination: Option<&'a str>,
        /// Whether a reversal is owed to that destination.
        owed: bool,
    },
    /// Forwarded to `destination`: `Forwarded` durable before the request
    /// leaves, `Responded` durable before the terminal hears.
    Forward {
        /// The destination's name.
        destination: &'a str,
        /// For a completion, the pre-authorisation it completes.
        original: Option<OriginalRef>,
    },
}

/// The reversal's original as known when it is reversed: its answer (if it
/// has one yet) and where it went.
#[derive(Debug, Clone, Copy)]
pub struct Reversed<'o, 'a> {
    /// Its answer; `None` if it still has none.
    pub outcome: Option<&'o Outcome>,
    /// Where it was forwarded, if it was.
    pub destination: Option<&'a str>,
}

/// A terminal's reversal is always accepted; a reversal is owed to the
/// original's destination when the original was forwarded and approved, or
/// its outcome is unknown (no answer, or the switch's own 91 after a
/// timeout). Nothing is owed for an unknown, declined or never forwarded
/// original.
pub fn reversal<'a>(original: Option<Reversed<'_, 'a>>) -> Decision<'a> {
    let Some(original) = original else {
        return Decision::Accept {
            destination: None,
            owed: false,
        };
    };
    let approved_or_unknown = original.outcome.is_none_or(|o| {
        o.source == Source::Switch && o.code == Refusal::IssuerUnavailable.response_code()
            || codes::approves(&o.code)
    });
    Decision::Accept {
        destination: original.destination,
        owed: original.destination.is_some() && approved_or_unknown,
    }
}

/// Whether a completion's original (found by field 90; none found is
/// [`Refusal::OriginalNotFound`] too) may be the
/// pre-authorisation it completes: an authorisation, of the same card, in
/// the same currency. Checked before the original's answer is waited for.
pub fn completion_matches(completion: &Received, original: &Received) -> Result<(), Refusal> {
    if original.kind != TxnKind::Authorization
        || original.pan.digest != completion.pan.digest
        || original.currency != completion.currency
    {
        return Err(Refusal::OriginalNotFound);
    }
    Ok(())
}

/// A completion whose original matched ([`completion_matches`]), given the
/// original's answer and where it went: forwarded where the
/// pre-authorisation went if its destination approved it, and for no more
/// than it approved. The driver then claims the pre-authorisation (a
/// second completion is refused).
pub fn completion<'a>(
    completion: &Received,
    original: &Received,
    outcome: Option<&Outcome>,
    forwarded: Option<&'a Forwarded>,
) -> Decision<'a> {
    let approved =
        outcome.is_some_and(|o| codes::approves(&o.code) && o.source == Source::Destination);
    let Some(forwarded) = forwarded.filter(|_| approved) else {
        return Decision::Refuse(Refusal::OriginalNotFound);
    };
    if completion.amount > original.amount {
        return Decision::Refuse(Refusal::InvalidAmount);
    }
    let Ok(mti) = Mti::parse(&original.mti) else {
        return Decision::Refuse(Refusal::System);
    };
    Decision::Forward {
        destination: &forwarded.destination,
        original: Some(OriginalRef {
            destination: Arc::from(forwarded.destination.as_str()),
            mti,
            switch_stan: forwarded.switch_stan,
            transmission: forwarded.transmission.clone(),
            local_93: forwarded.local_93.clone(),
        }),
    }
}

/// A destination's state as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link<'a> {
    /// Whether it has a link up.
    pub up: bool,
    /// Its fallback destination, if it has one.
    pub fallback: Option<&'a str>,
}

/// An authorisation, purchase or refund: declined with the code of the
/// risk rule that hit (`risk`), else routed by BIN to its destination if
/// that has a link up, else to its fallback if that has one, else "issuer
/// unavailable" at once. `links` tells a destination's state (`None`: no
/// such destination).
pub fn authorisation<'a>(
    txn: &Txn,
    routes: &'a RouteTable,
    risk: Result<(), &'static str>,
    links: impl Fn(&str) -> Option<Link<'a>>,
) -> Decision<'a> {
    if let Err(code) = risk {
        return Decision::Refuse(Refusal::Risk(code));
    }
    let Some(name) = routes.lookup(txn.pan().expose()) else {
        return Decision::Refuse(Refusal::NoRoute);
    };
    let Some(primary) = links(name) else {
        return Decision::Refuse(Refusal::NoRoute);
    };
    if primary.up {
        return Decision::Forward {
            destination: name,
            original: None,
        };
    }
    match primary.fallback.filter(|f| links(f).is_some_and(|l| l.up)) {
        Some(fallback) => Decision::Forward {
            destination: fallback,
            original: None,
        },
        None => Decision::Refuse(Refusal::IssuerUnavailable),
    }
}

/// What a forwarded request's exchange with its destination comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The destination answered: `Responded` (source: destination) durable,
    /// then the answer.
    Answered(translate::Answer),
    /// An answer without a readable outcome: it may have approved, so a
    /// reversal is queued first, then the terminal gets 96.
    Unreadable,
    /// Sent and not answered (timeout, or the link lost): a reversal is
    /// queued first, then `TimedOut`, and the terminal gets 91.
    Unanswered,
    /// Never sent: refused by the switch with this code.
    Refuse(Refusal),
}

/// Reads the outcome of a forward to a destination of `version`.
pub fn reply(version: IsoVersion, result: &Result<Exchange, LinkError>) -> Reply {
    match result {
        Ok(exchange) => match translate::answer_from(version, &exchange.response) {
            Ok(answer) => Reply::Answered(answer),
            Err(_) => Reply::Unreadable,
        },
        Err(LinkError::Timeout(_) | LinkError::Lost) => Reply::Unanswered,
        Err(LinkError::Unavailable) => Reply::Refuse(Refusal::IssuerUnavailable),
        Err(LinkError::NotJournaled | LinkError::Encode(_)) => Reply::Refuse(Refusal::System),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
