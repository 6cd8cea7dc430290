//! The path of one request: checks, routing, forwarding, answer.
//!
//! ```text
//! request ─▶ Txn ─▶ terminal known and allowed? ─▶ Luhn ─▶ route by BIN
//!        ─▶ [journal: request durable] ─▶ destination (MUX) ─▶ answer ─▶ response
//! ```
//!
//! Every refusal is a [`Refusal`], which maps to one response code. The
//! terminal's own fields (11, 37, 41 …) are echoed from its request, so the
//! switch's STAN on the destination never reaches the terminal.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tracing::info;

use crate::adapter::{Destination, LinkError};
use crate::card::luhn_valid;
use crate::clock::DateTime;
use crate::config::{Config, SwitchSettings};
use crate::iso8583::{Message, Mti};
use crate::registry::Terminals;
use crate::route::RouteTable;
use crate::translate::{self, OriginalRef, Outgoing};
use crate::txn::{Refusal, Txn, TxnKind};

/// Terminal registry and BIN routes: replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Tables {
    /// Terminal registry.
    pub terminals: Terminals,
    /// BIN routes.
    pub routes: RouteTable,
}

/// Fields of a terminal's request echoed in the switch's response.
const ECHOED: [u8; 13] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90];

/// How many forwarded requests are remembered for matching reversals.
const ORIGINALS_KEPT: usize = 200_000;

/// Counters of the switch.
#[derive(Debug, Default)]
pub struct SwitchStats {
    /// Requests handled (all outcomes).
    pub requests: AtomicU64,
    /// Requests refused by the switch itself.
    pub refused: AtomicU64,
    /// Requests forwarded to a destination.
    pub forwarded: AtomicU64,
}

/// Terminal id (field 41, space-padded) and the terminal's STAN.
type OriginalKey = ([u8; 8], u32);

fn original_key(terminal: &str, stan: &str) -> Option<OriginalKey> {
    let mut id = [b' '; 8];
    for (slot, byte) in id.iter_mut().zip(terminal.bytes()) {
        *slot = byte;
    }
    Some((id, stan.parse().ok()?))
}

/// Recently forwarded requests by (terminal, terminal STAN), for reversals.
#[derive(Debug, Default)]
struct Originals {
    by_key: HashMap<OriginalKey, OriginalRef>,
    order: VecDeque<OriginalKey>,
}

impl Originals {
    fn remember(&mut self, key: OriginalKey, original: OriginalRef) {
        if self.by_key.insert(key, original).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > ORIGINALS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
    }
}

/// The switch: shared by every terminal session.
#[derive(Debug)]
pub struct Switch {
    settings: SwitchSettings,
    tables: RwLock<Arc<Tables>>,
    destinations: HashMap<String, Arc<Destination>>,
    originals: Mutex<Originals>,
    rrn_counter: AtomicU64,
    stats: SwitchStats,
}

impl Switch {
    /// A switch over started (or to-be-started) destinations.
    pub fn new(config: &Config, destinations: Vec<Arc<Destination>>) -> Switch {
        Switch {
            settings: config.switch.clone(),
            tables: RwLock::new(Arc::new(Tables {
                terminals: config.terminals.clone(),
                routes: config.routes.clone(),
            })),
            destinations: destinations
                .into_iter()
                .map(|d| (d.name().to_string(), d))
                .collect(),
            originals: Mutex::new(Originals::default()),
            rrn_counter: AtomicU64::new(0),
            stats: SwitchStats::default(),
        }
    }

    /// Replaces terminals and routes atomically; requests in flight keep the
    /// tables they started with.
    pub fn replace_tables(&self, tables: Tables) {
        let tables = Arc::new(tables);
        match self.tables.write() {
            Ok(mut t) => *t = tables,
            Err(poisoned) => *poisoned.into_inner() = tables,
        }
    }

    fn tables(&self) -> Arc<Tables> {
        match self.tables.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &SwitchStats {
        &self.stats
    }

    /// A destination by name.
    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(name)
    }

    /// Handles one decoded terminal request and returns the response to send
    /// back (in 1987 semantics, to be encoded in the terminal's dialect).
    pub async fn handle(&self, request: Message) -> Message {
        let started = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if request.mti().as_str() == "0800" {
            return network_answer(&request);
        }
        // The request moves into the transaction and back out, not copied.
        let (request, outcome) = match Txn::classify(&request) {
            Ok(kind) => {
                let txn = Txn { kind, request };
                let outcome = self.process(&txn).await;
                (txn.request, outcome)
            }
            Err(refusal) => (request, Err(refusal)),
        };
        let (code, auth_id, destination) = match &outcome {
            Ok((answer, dest)) => (
                answer.code.as_str(),
                answer.auth_id.as_deref(),
                Some(dest.as_str()),
            ),
            Err(refusal) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                (refusal.response_code(), None, None)
            }
        };
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
            destination = destination.unwrap_or("-"),
            code,
            latency_us = started.elapsed().as_micros() as u64,
            "transaction"
        );
        respond(&request, code, auth_id)
    }

    async fn process(&self, txn: &Txn) -> Result<(translate::Answer, String), Refusal> {
        let tables = self.tables();
        let terminal = tables
            .terminals
            .get(txn.terminal_id())
            .ok_or(Refusal::UnknownTerminal)?;
        if !terminal.enabled || !terminal.allowed.contains(&txn.kind) {
            return Err(Refusal::NotPermitted);
        }
        let pan = txn.pan().ok_or(Refusal::Format)?;
        if !luhn_valid(pan.expose()) {
            return Err(Refusal::InvalidCard);
        }
        let original = if txn.kind == TxnKind::Reversal {
            let stan = original_stan(&txn.request).unwrap_or(txn.stan());
            let found = self.originals.lock().ok().and_then(|o| {
                o.by_key
                    .get(&original_key(txn.terminal_id(), stan)?)
                    .cloned()
            });
            Some(found.ok_or(Refusal::OriginalNotFound)?)
        } else {
            None
        };
        // A reversal goes where its original went, never to a fallback that
        // did not see the original.
        let destination = match &original {
            Some(o) => self
                .destinations
                .get(&*o.destination)
                .filter(|d| d.links_up() > 0)
                .ok_or(Refusal::IssuerUnavailable)?,
            None => self.available(tables.routes.lookup(pan.expose()).ok_or(Refusal::NoRoute)?)?,
        };
        let now = DateTime::now();
        let rrn = (!txn.request.contains(37)).then(|| self.next_rrn(now));
        let outgoing = Outgoing {
            txn,
            terminal,
            settings: &self.settings,
            original: original.as_ref(),
            rrn,
            now,
        };
        let dialect = &destination.config().dialect;
        let version = dialect.version();
        let message = translate::request_for(dialect, &outgoing);
        let remembered = OriginalRef {
            destination: Arc::from(destination.name()),
            mti: txn.mti(),
            switch_stan: 0,
            transmission: message.text(7).unwrap_or_default().to_string(),
            local_93: message.text(12).filter(|t| t.len() == 12).map(String::from),
        };
        // The write-ahead journal records the request here, before it leaves.
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let record = |stan: u32| {
            // Remembered before the request leaves, so that a reversal can
            // name it even when no answer ever comes (timeout, crash of the
            // link): that is when reversals matter most.
            if txn.kind != TxnKind::Reversal
                && let Some(key) = original_key(txn.terminal_id(), txn.stan())
                && let Ok(mut originals) = self.originals.lock()
            {
                originals.remember(
                    key,
                    OriginalRef {
                        switch_stan: stan,
                        ..remembered
                    },
                );
            }
        };
        let exchange = destination
            .request(message, record)
            .await
            .map_err(|e| match e {
                LinkError::Unavailable | LinkError::Timeout(_) => Refusal::IssuerUnavailable,
                LinkError::Encode(_) => Refusal::System,
            })?;
        let answer = translate::answer_from(version, &exchange.response);
        Ok((answer, destination.name().to_string()))
    }

    /// A retrieval reference number for a terminal that sent none: `MMDDhh`
    /// and a six-digit counter unique across the switch.
    fn next_rrn(&self, now: DateTime) -> String {
        let n = self.rrn_counter.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        format!("{}{:02}{n:06}", now.mmdd(), now.hour)
    }

    /// The routed destination if it has a link up, else its fallback if
    /// that has one; otherwise "issuer unavailable" at once.
    fn available(&self, name: &str) -> Result<&Arc<Destination>, Refusal> {
        let primary = self.destinations.get(name).ok_or(Refusal::NoRoute)?;
        if primary.links_up() > 0 {
            return Ok(primary);
        }
        primary
            .config()
            .fallback
            .as_deref()
            .and_then(|f| self.destinations.get(f))
            .filter(|f| f.links_up() > 0)
            .ok_or(Refusal::IssuerUnavailable)
    }
}

/// The original STAN in field 90 (positions 5..10: after the MTI).
fn original_stan(request: &Message) -> Option<&str> {
    request.text(90).and_then(|d| d.get(4..10))
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
fn network_answer(request: &Message) -> Message {
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
