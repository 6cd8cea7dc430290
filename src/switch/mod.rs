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

mod recent;
mod security;
pub mod settings;

pub use security::encode_for_terminal;
pub use settings::SwitchSettings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::adapter::{Destination, LinkError};
use crate::card::luhn_valid;
use crate::clock::DateTime;
use crate::codes;
use crate::iso8583::{Message, Mti};
use crate::journal::record::{Forwarded, Merchant, Received, Record, ReversalReason, Source};
use crate::journal::saf::Saf;
use crate::journal::{Journal, TxnState, wal};
use crate::metrics::{DestinationLabels, Metrics, RuleLabels, Tag};
use crate::registry::{Terminal, Terminals};
use crate::risk::{RiskEngine, RiskInput, RuleSet};
use crate::route::RouteTable;
use crate::translate::{self, OriginalRef, Outgoing};
use crate::txn::{Refusal, Txn, TxnKind};
use recent::{Live, Outcome, Recent};

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

/// At start, the newest transactions of the journal index (at most this
/// many, and no more than the cache keeps) are loaded into memory, so that
/// reversals and retransmissions of requests from just before a restart
/// are matched without a trip to the index.
const PRELOADED: usize = 20_000;

/// Counters of the switch.
#[derive(Debug, Default)]
pub struct SwitchStats {
    /// Requests handled (all outcomes).
    pub requests: AtomicU64,
    /// Requests refused by the switch itself.
    pub refused: AtomicU64,
    /// Requests forwarded to a destination.
    pub forwarded: AtomicU64,
    /// Retransmissions answered with the original's response.
    pub duplicates: AtomicU64,
    /// Reversals queued for store-and-forward.
    pub reversals_queued: AtomicU64,
    /// Terminal requests refused for a missing or wrong MAC.
    pub mac_failures: AtomicU64,
    /// PIN blocks that could not be translated.
    pub pin_failures: AtomicU64,
}

/// Stripes of the duplicate check's lock: requests with different keys
/// rarely wait for each other.
const CHECK_STRIPES: usize = 64;

/// The stripe of a (terminal, STAN) key.
fn key_stripe(key: &recent::Key) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % CHECK_STRIPES as u64) as usize
}

/// A completion's claim on its pre-authorisation: given back when dropped
/// unless the completion was approved.
struct CompletionClaim {
    original: Arc<Live>,
    keep: bool,
}

impl Drop for CompletionClaim {
    fn drop(&mut self) {
        if !self.keep {
            self.original.release_completion();
        }
    }
}

/// The pre-authorisation a completion completes.
struct Completed {
    /// The claim on it.
    claim: CompletionClaim,
    /// Where it went, named in the completion's original data.
    reference: OriginalRef,
    /// Its approval code.
    auth_id: Option<String>,
}

/// A terminal request handled: the response and how long the switch waited
/// for a destination's answer meanwhile (what the switch itself added to the
/// terminal's wait is the rest).
#[derive(Debug)]
pub struct Handled {
    /// The response, in 1987 semantics.
    pub response: Message,
    /// Time spent waiting for the destination (zero when none was asked).
    pub waited: Duration,
}

/// What the switch answers a transaction.
struct Answer {
    code: String,
    auth_id: Option<String>,
    destination: Option<String>,
    /// The transaction's RRN (given to a terminal that sent none).
    rrn: Option<String>,
    /// Time spent waiting for the destination's answer.
    waited: Duration,
}

impl Answer {
    /// An answer with `code` and nothing else.
    fn with_code(code: String) -> Answer {
        Answer {
            code,
            auth_id: None,
            destination: None,
            rrn: None,
            waited: Duration::ZERO,
        }
    }

    fn refused(refusal: Refusal) -> Answer {
        Answer::with_code(refusal.response_code().to_string())
    }
}

/// The switch: shared by every terminal session.
#[derive(Debug)]
pub struct Switch {
    settings: SwitchSettings,
    tables: RwLock<Arc<Tables>>,
    destinations: HashMap<String, Arc<Destination>>,
    /// The same, in config order (for listings).
    order: Vec<Arc<Destination>>,
    journal: Arc<Journal>,
    risk: RiskEngine,
    metrics: Metrics,
    saf: Saf,
    recent: Recent,
    /// Held from a request's duplicate check until it is in `recent`, per
    /// stripe of (terminal, STAN) keys.
    checking: Box<[tokio::sync::Mutex<()>; CHECK_STRIPES]>,
    rrn_counter: AtomicU64,
    stats: SwitchStats,
}

impl Switch {
    /// A switch with `settings`, `tables` and the risk `rules`, over
    /// started (or to-be-started) destinations, journaling in `journal` and
    /// queueing reversals in `saf`.
    pub fn new(
        settings: SwitchSettings,
        tables: Tables,
        rules: RuleSet,
        destinations: Vec<Arc<Destination>>,
        journal: Arc<Journal>,
        saf: Saf,
    ) -> Switch {
        let recent = Recent::new(settings.recent_cache);
        let switch = Switch {
            settings,
            tables: RwLock::new(Arc::new(tables)),
            destinations: destinations
                .iter()
                .map(|d| (d.name().to_string(), Arc::clone(d)))
                .collect(),
            order: destinations,
            journal,
            risk: RiskEngine::new(rules),
            metrics: Metrics::default(),
            saf,
            recent,
            checking: Box::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))),
            rrn_counter: AtomicU64::new(u64::from(fastrand::u32(..))),
            stats: SwitchStats::default(),
        };
        switch.preload();
        switch
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

    /// The store-and-forward queues.
    pub fn saf(&self) -> &Saf {
        &self.saf
    }

    /// A destination by name.
    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(name)
    }

    /// Every destination, in config order.
    pub fn destinations(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.order.iter()
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The risk rules and their state.
    pub fn risk(&self) -> &RiskEngine {
        &self.risk
    }

    /// Event counters and latencies.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Handles one decoded terminal request: the response to send back (in
    /// 1987 semantics, to be encoded in the terminal's dialect) and the time
    /// spent waiting for a destination's answer.
    pub async fn handle(&self, request: Message) -> Handled {
        let started = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if request.mti().as_str() == "0800" {
            return Handled {
                response: network_answer(&request),
                waited: Duration::ZERO,
            };
        }
        // The request moves into the transaction and back out, not copied.
        let (request, answer) = match Txn::classify(&request) {
            Ok(kind) => {
                let txn = Txn { kind, request };
                let answer = self.process(&txn).await;
                (txn.request, answer)
            }
            Err(refusal) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                (request, Answer::refused(refusal))
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
            merchant = request
                .terminal_id()
                .and_then(|id| self.tables().terminals.get(id).map(|t| t.merchant_id.trim_end().to_string()))
                .unwrap_or_default(),
            destination = answer.destination.as_deref().unwrap_or("-"),
            code = answer.code,
            latency_us = started.elapsed().as_micros() as u64,
            "transaction"
        );
        let mut response = respond(&request, &answer.code, answer.auth_id.as_deref());
        if !request.contains(37)
            && let Some(rrn) = answer.rrn
        {
            response.set(37, rrn);
        }
        Handled {
            response,
            waited: answer.waited,
        }
    }

    async fn process(&self, txn: &Txn) -> Answer {
        let Some(pan) = txn.pan() else {
            return Answer::refused(Refusal::Format);
        };
        let Some(key) = recent::key(txn.terminal_id(), txn.stan()) else {
            return Answer::refused(Refusal::Format);
        };
        let class = txn.mti().class_key();
        let transmission = txn.request.text(7).unwrap_or_default();
        let amount: u64 = txn
            .request
            .text(4)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        // The original of a reversal or completion first: finding it may
        // wait for the index, which must not happen while the key is held.
        let original = match txn.kind {
            TxnKind::Reversal | TxnKind::Completion => self.original_of(txn).await,
            _ => None,
        };
        // From the duplicate check until the request is in memory, no other
        // request with its terminal and STAN is looked at: two copies sent
        // at once are one transaction and a retransmission.
        let _held = self.checking[key_stripe(&key)].lock().await;
        match self
            .retransmitted(txn, key, class, transmission, amount)
            .await
        {
            Ok(Some(original)) => {
                drop(_held);
                return self.replay(&original).await;
            }
            Ok(None) => {}
            Err(refusal) => return Answer::refused(refusal),
        }
        if self.recent.is_full() {
            // The index is far behind: memory holds what it does not, and
            // forgetting any of it would let a retransmission through.
            error!("journal index far behind: refusing new requests until it catches up");
            return Answer::refused(Refusal::System);
        }
        let tables = self.tables();
        let terminal = tables.terminals.get(txn.terminal_id());
        let now = DateTime::now();
        let rrn = match txn.request.rrn() {
            Some(rrn) => rrn.to_string(),
            None => self.next_rrn(now),
        };
        let replacement = (txn.kind == TxnKind::Reversal)
            .then(|| txn.request.text(95).and_then(|r| r.get(..12)?.parse().ok()))
            .flatten();
        let record = Record::Received(Box::new(self.received(
            txn,
            pan.expose(),
            terminal,
            amount,
            rrn,
            &original,
            replacement,
        )));
        let id = match self.journal.append(&record) {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "journal unavailable: refusing the request");
                return Answer::refused(Refusal::System);
            }
        };
        let Record::Received(received) = record else {
            return Answer::refused(Refusal::System);
        };
        let received: Arc<Received> = Arc::from(received);
        let live = Arc::new(Live::new(id, class, received));
        self.remember(key, Arc::clone(&live));
        drop(_held);
        let answer = match self
            .decide(txn, &tables, &live, original, replacement, now)
            .await
        {
            Ok(answer) => answer,
            Err(refusal) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                let mut answer = Answer::refused(refusal);
                answer.code = self.local_answer(&live, &answer.code).await;
                answer
            }
        };
        answer.with_rrn(&live)
    }

    #[allow(clippy::too_many_arguments)]
    fn received(
        &self,
        txn: &Txn,
        pan: &str,
        terminal: Option<&Arc<Terminal>>,
        amount: u64,
        rrn: String,
        original: &Option<Arc<Live>>,
        replacement: Option<u64>,
    ) -> Received {
        let text = |field: u8| txn.request.text(field).map(String::from);
        Received {
            kind: txn.kind,
            mti: txn.mti().as_str().to_string(),
            processing_code: text(3).unwrap_or_default(),
            amount,
            currency: text(49)
                .or_else(|| terminal.map(|t| t.currency.clone()))
                .unwrap_or_default(),
            pan: self.journal.vault().seal(pan),
            terminal: txn.terminal_id().to_string(),
            merchant: terminal.map(|t| Merchant {
                id: t.merchant_id.clone(),
                mcc: t.mcc.clone(),
                name_location: t.name_location.clone(),
            }),
            stan: txn.stan().to_string(),
            transmission: text(7).unwrap_or_default(),
            local_time: text(12),
            local_date: text(13),
            entry_mode: text(22),
            condition: text(25),
            rrn,
            original: original.as_ref().map(|o| o.id),
            replacement,
        }
    }

    /// Checks, routes and forwards a journaled transaction.
    async fn decide(
        &self,
        txn: &Txn,
        tables: &Tables,
        live: &Arc<Live>,
        original: Option<Arc<Live>>,
        replacement: Option<u64>,
        now: DateTime,
    ) -> Result<Answer, Refusal> {
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
        if txn.kind == TxnKind::Reversal {
            return Ok(self.reverse(live, original, replacement).await);
        }
        // A completion goes where its pre-authorisation went; risk was
        // checked on the pre-authorisation.
        let completed = match txn.kind {
            TxnKind::Completion => Some(self.completed(original.as_ref(), live).await?),
            _ => None,
        };
        let destination = match &completed {
            Some(pre) => self
                .destinations
                .get(&*pre.reference.destination)
                .ok_or(Refusal::NoRoute)?,
            None => {
                self.check_risk(txn, live, pan.expose())?;
                self.available(tables.routes.lookup(pan.expose()).ok_or(Refusal::NoRoute)?)?
            }
        };
        let outgoing = Outgoing {
            txn,
            terminal,
            settings: &self.settings,
            original: completed.as_ref().map(|pre| &pre.reference),
            rrn: (!txn.request.contains(37)).then(|| live.request.rrn.clone()),
            now,
        };
        let dialect = &destination.config().dialect;
        let version = dialect.version();
        let mut message = translate::request_for(dialect, &outgoing);
        self.translate_pin(
            &txn.request,
            pan.expose(),
            terminal,
            destination,
            &mut message,
        )?;
        let transmission = message.text(7).unwrap_or_default().to_string();
        let local_93 = message.text(12).filter(|t| t.len() == 12).map(String::from);
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        // Durable before it leaves: the Forwarded record names the switch
        // STAN a reversal will need even if no answer ever comes.
        let journal_first = |stan: u32| async move {
            let to = Forwarded {
                destination: destination.name().to_string(),
                switch_stan: stan,
                transmission,
                local_93,
            };
            live.set_forwarded(to.clone());
            let record = Record::Forwarded { txn: live.id, to };
            match self.journal.commit(&record).await {
                Ok(_) => true,
                Err(e) => {
                    error!(error = %e, "journal unavailable: request not forwarded");
                    false
                }
            }
        };
        let result = destination.request(message, journal_first).await;
        let name = Some(destination.name().to_string());
        match result {
            Ok(exchange) => {
                let Ok(answer) = translate::answer_from(version, &exchange.response) else {
                    return Ok(self.unreadable(live, name, exchange.waited).await);
                };
                // A completion keeps its pre-authorisation's approval code
                // when the destination gives none, and its claim on the
                // pre-authorisation only when approved.
                let auth_id = match completed {
                    Some(mut pre) => {
                        pre.claim.keep = codes::approves(&answer.code);
                        answer.auth_id.or(pre.auth_id.take())
                    }
                    None => answer.auth_id,
                };
                let outcome = Outcome {
                    code: answer.code,
                    auth_id,
                    source: Source::Destination,
                };
                let record = Record::Responded {
                    txn: live.id,
                    code: outcome.code.clone(),
                    auth_id: outcome.auth_id.clone(),
                    source: Source::Destination,
                };
                self.metrics
                    .destination_responses
                    .get_or_create(&DestinationLabels {
                        destination: Arc::clone(destination.label()),
                        code: Tag::code(&outcome.code),
                    })
                    .inc();
                // The terminal hears an approval only once the journal holds it.
                if let Err(e) = self.journal.commit(&record).await {
                    error!(error = %e, "journal unavailable: the answer cannot be recorded; the transaction will be reversed at restart");
                    return Err(Refusal::System);
                }
                live.finish(outcome.clone());
                Ok(Answer {
                    code: outcome.code,
                    auth_id: outcome.auth_id,
                    destination: name,
                    rrn: None,
                    waited: exchange.waited,
                })
            }
            Err(LinkError::Timeout(waited)) => {
                self.timed_out(live).await;
                Ok(Answer {
                    destination: name,
                    waited,
                    ..Answer::refused(Refusal::IssuerUnavailable)
                })
            }
            Err(LinkError::Lost) => {
                self.timed_out(live).await;
                Ok(Answer {
                    destination: name,
                    ..Answer::refused(Refusal::IssuerUnavailable)
                })
            }
            Err(LinkError::Unavailable) => Err(Refusal::IssuerUnavailable),
            Err(LinkError::NotJournaled | LinkError::Encode(_)) => Err(Refusal::System),
        }
    }

    /// The approved pre-authorisation a completion completes: found,
    /// approved by its destination, not completed before (in this run of the
    /// switch) and for at least the completion's amount.
    async fn completed(
        &self,
        original: Option<&Arc<Live>>,
        completion: &Live,
    ) -> Result<Completed, Refusal> {
        let original = original.ok_or(Refusal::OriginalNotFound)?;
        // The same card, in the same currency.
        if original.request.kind != TxnKind::Authorization
            || original.request.pan.digest != completion.request.pan.digest
            || original.request.currency != completion.request.currency
        {
            return Err(Refusal::OriginalNotFound);
        }
        let outcome = original
            .outcome(self.settings.timeout + Duration::from_secs(1))
            .await
            .filter(|o| codes::approves(&o.code) && o.source == Source::Destination)
            .ok_or(Refusal::OriginalNotFound)?;
        let forwarded = original.forwarded().ok_or(Refusal::OriginalNotFound)?;
        if completion.request.amount > original.request.amount {
            return Err(Refusal::InvalidAmount);
        }
        if !original.claim_completion() {
            warn!(
                txn = completion.id,
                original = original.id,
                "second completion of a pre-authorisation refused"
            );
            return Err(Refusal::OriginalNotFound);
        }
        Ok(Completed {
            claim: CompletionClaim {
                original: Arc::clone(original),
                keep: false,
            },
            reference: OriginalRef {
                destination: Arc::from(forwarded.destination.as_str()),
                mti: Mti::parse(&original.request.mti).map_err(|_| Refusal::System)?,
                switch_stan: forwarded.switch_stan,
                transmission: forwarded.transmission.clone(),
                local_93: forwarded.local_93.clone(),
            },
            auth_id: outcome.auth_id,
        })
    }

    /// The risk stage: a hit is journaled with its rule (the answer's
    /// `Responded` record follows and makes it durable), counted and
    /// logged, and refused with the rule's code.
    fn check_risk(&self, txn: &Txn, live: &Live, pan: &str) -> Result<(), Refusal> {
        let request = &live.request;
        let (merchant, mcc) = request
            .merchant
            .as_ref()
            .map_or(("", ""), |m| (m.id.as_str(), m.mcc.as_str()));
        let now = wal::now_micros();
        let date = wal::business_date(now, &self.journal.config().cutover);
        let input = RiskInput {
            kind: txn.kind,
            amount: request.amount,
            currency: &request.currency,
            pan,
            card: &request.pan.digest,
            terminal: &request.terminal,
            merchant,
            mcc,
            date: &date,
            now_ms: now / 1000,
        };
        let Err(hit) = self.risk.evaluate(&input) else {
            return Ok(());
        };
        self.metrics
            .risk_declines
            .get_or_create(&RuleLabels {
                rule: hit.rule.to_string(),
                code: hit.code.to_string(),
            })
            .inc();
        info!(txn = live.id, rule = %hit.rule, code = hit.code, terminal = %request.terminal, pan = %request.pan.masked, "declined by a risk rule");
        let record = Record::RiskDeclined {
            txn: live.id,
            rule: hit.rule.to_string(),
        };
        if let Err(e) = self.journal.append(&record) {
            error!(error = %e, "journal unavailable: risk decline not recorded");
        }
        Err(Refusal::Risk(hit.code))
    }

    /// The request may have reached the bank and no answer came: the
    /// terminal gets 91 and a reversal is queued.
    async fn timed_out(&self, live: &Arc<Live>) {
        // The reversal first: a crash between the two records must not leave
        // a transaction that looks ended with no reversal owed.
        // Its failure is logged; the terminal gets 91 either way and
        // recovery queues the reversal at the next start.
        let _ = self
            .queue_reversal(live, ReversalReason::Timeout, None)
            .await;
        if let Err(e) = self.journal.append(&Record::TimedOut { txn: live.id }) {
            error!(error = %e, "journal unavailable: timeout not recorded");
        }
        live.finish(Outcome {
            code: Refusal::IssuerUnavailable.response_code().to_string(),
            auth_id: None,
            source: Source::Switch,
        });
    }

    /// The destination answered without a readable outcome: it may have
    /// approved, so, as after a timeout, a reversal is queued (first, for
    /// the same reason) and the terminal gets 96.
    async fn unreadable(
        &self,
        live: &Arc<Live>,
        destination: Option<String>,
        waited: Duration,
    ) -> Answer {
        warn!(
            txn = live.id,
            destination = destination.as_deref().unwrap_or("-"),
            "answer without a readable response code: 96 and a reversal"
        );
        let _ = self
            .queue_reversal(live, ReversalReason::UnreadableAnswer, None)
            .await;
        let code = self
            .local_answer(live, Refusal::System.response_code())
            .await;
        Answer {
            destination,
            waited,
            ..Answer::with_code(code)
        }
    }

    /// Queues the one reversal of `original` (durable, then handed to the
    /// store-and-forward worker). Nothing happens if it already has one.
    /// Returns whether the reversal is owed durably (now or before); `false`
    /// when the journal could not take it (recovery queues it at restart).
    async fn queue_reversal(
        &self,
        original: &Live,
        reason: ReversalReason,
        replacement: Option<u64>,
    ) -> bool {
        if !self.recent.claim_reversal(original) {
            return true;
        }
        let record = Record::ReversalQueued {
            txn: original.id,
            reason,
            replacement,
        };
        match self.journal.commit(&record).await {
            Ok(_) => {
                self.stats.reversals_queued.fetch_add(1, Ordering::Relaxed);
                if let Some(item) = original.saf_item(replacement) {
                    self.saf.push(item);
                }
                true
            }
            Err(e) => {
                error!(txn = original.id, error = %e, "journal unavailable: reversal not queued now; recovery queues it at restart");
                false
            }
        }
    }

    /// A terminal's reversal: accepted (00) once the reversal owed to the
    /// original's destination is durable in the store-and-forward queue.
    /// Nothing is sent for an original that was declined, never forwarded or
    /// is unknown (see docs/architecture.md → Reversals); those are answered 00 locally.
    async fn reverse(
        &self,
        live: &Live,
        original: Option<Arc<Live>>,
        replacement: Option<u64>,
    ) -> Answer {
        let answer = |code: String, destination: Option<String>| Answer {
            destination,
            ..Answer::with_code(code)
        };
        let Some(original) = original else {
            warn!(txn = live.id, terminal = %live.request.terminal, stan = %live.request.stan, "reversal of an unknown original: accepted, nothing to reverse");
            return answer(self.local_answer(live, "00").await, None);
        };
        // An original still in flight is reversed once its fate is known.
        let outcome = original
            .outcome(self.settings.timeout + Duration::from_secs(1))
            .await;
        let approved_or_unknown = outcome.as_ref().is_none_or(|o| {
            o.source == Source::Switch && o.code == Refusal::IssuerUnavailable.response_code()
                || codes::approves(&o.code)
        });
        let destination = original.forwarded().map(|f| f.destination.clone());
        let owed = destination.is_some() && approved_or_unknown;
        let code = if owed
            && !self
                .queue_reversal(&original, ReversalReason::Terminal, replacement)
                .await
        {
            self.local_answer(live, Refusal::System.response_code())
                .await
        } else {
            self.local_answer(live, "00").await
        };
        answer(code, destination)
    }

    /// Records the switch's own answer; durable before the terminal hears
    /// it, like the destination's answers. Returns the code to send: `code`,
    /// or the system-error code when the journal could not take it.
    async fn local_answer(&self, live: &Live, code: &str) -> String {
        let record = Record::Responded {
            txn: live.id,
            code: code.to_string(),
            auth_id: None,
            source: Source::Switch,
        };
        let code = match self.journal.commit(&record).await {
            Ok(_) => code.to_string(),
            Err(e) => {
                error!(error = %e, "journal unavailable: answer not recorded, system error sent");
                Refusal::System.response_code().to_string()
            }
        };
        live.finish(Outcome {
            code: code.clone(),
            auth_id: None,
            source: Source::Switch,
        });
        code
    }

    /// Remembers a transaction in the cache in front of the index.
    fn remember(&self, key: recent::Key, live: Arc<Live>) {
        self.recent
            .insert(key, live, self.journal.indexed_through());
    }

    /// A request identical to one already handled (terminal, STAN, field 7,
    /// amount and message class) on the current or the previous business
    /// date: found in memory, or else in the journal index, so that a
    /// retransmission is recognised after a restart and at any volume.
    async fn retransmitted(
        &self,
        txn: &Txn,
        key: recent::Key,
        class: [u8; 2],
        transmission: &str,
        amount: u64,
    ) -> Result<Option<Arc<Live>>, Refusal> {
        let same = |class_of: [u8; 2], request: &Received| {
            class_of == class && request.transmission == transmission && request.amount == amount
        };
        if let Some(live) = self.recent.get(&key)
            && same(live.class, &live.request)
        {
            return Ok(Some(live));
        }
        // Not in memory: anything older than the cache is in the index (the
        // cache keeps what the index does not hold yet). A check that cannot
        // be made refuses the request: it may be a retransmission.
        let lookup = || {
            self.journal
                .index()
                .by_request(txn.terminal_id(), txn.stan(), Some(transmission))
                .map_err(|e| {
                    error!(error = %e, "journal index: retransmission check failed");
                    Refusal::System
                })
        };
        // Counted back from the scheduled date, which an operator's early
        // cutover never moves: the window keeps the date that early one cut
        // short.
        let today = self.journal.config().cutover.scheduled(wal::now_micros());
        let pick = |found: Vec<TxnState>| {
            found.into_iter().rev().find(|state| {
                same(Live::class_of(&state.request), &state.request)
                    && recent::retransmittable(&state.date, &today)
            })
        };
        let Some(mut state) = pick(lookup()?) else {
            return Ok(None);
        };
        if !state.phase.ended() {
            // Its answer may be in the log and not yet in the index.
            self.journal.index_current().await;
            let Some(again) = pick(lookup()?) else {
                return Ok(None);
            };
            state = again;
        }
        let live = Arc::new(Live::from_state(&state));
        self.remember(key, Arc::clone(&live));
        Ok(Some(live))
    }

    /// Loads the newest transactions of the journal into memory (after a
    /// restart: retransmissions and reversals of them are matched at once).
    fn preload(&self) {
        let count = PRELOADED.min(self.settings.recent_cache);
        match self.journal.index().newest(count) {
            Ok(states) => {
                for state in states.iter().rev() {
                    if let Some(key) = recent::key(&state.request.terminal, &state.request.stan) {
                        self.remember(key, Arc::new(Live::from_state(state)));
                    }
                }
            }
            Err(e) => warn!(error = %e, "journal index: recent transactions not loaded"),
        }
    }

    /// The original's answer, again, without a second forward.
    async fn replay(&self, original: &Live) -> Answer {
        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        let outcome = original
            .outcome(self.settings.timeout + Duration::from_secs(1))
            .await;
        info!(
            txn = original.id,
            "retransmission: the original's answer replayed"
        );
        let answer = match outcome {
            Some(o) => Answer {
                auth_id: o.auth_id,
                destination: original.forwarded().map(|f| f.destination.clone()),
                ..Answer::with_code(o.code)
            },
            None => Answer::refused(Refusal::IssuerUnavailable),
        };
        answer.with_rrn(original)
    }

    /// The original of a terminal reversal: by field 90 (its STAN and
    /// transmission time) or, without 90, by the reversal's own STAN.
    async fn original_of(&self, txn: &Txn) -> Option<Arc<Live>> {
        let data = txn.request.text(90);
        let stan = data.and_then(|d| d.get(4..10)).unwrap_or(txn.stan());
        let transmission = data
            .and_then(|d| d.get(10..20))
            .filter(|t| *t != "0000000000");
        let key = recent::key(txn.terminal_id(), stan)?;
        if let Some(live) = self.recent.get(&key)
            && live.class != txn.mti().class_key()
            && transmission.is_none_or(|t| t == live.request.transmission)
        {
            return Some(live);
        }
        // The index lags the log a little: let it hold everything durable
        // before saying the original is unknown.
        self.journal.index_current().await;
        let found = self
            .journal
            .index()
            .by_request(txn.terminal_id(), stan, transmission)
            .ok()?;
        let state: &TxnState = found
            .iter()
            .rev()
            .find(|s| s.request.kind != TxnKind::Reversal)?;
        let live = Arc::new(Live::from_state(state));
        self.remember(key, Arc::clone(&live));
        Some(live)
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

impl Answer {
    /// Keeps the RRN the switch gave (when the terminal sent none) so the
    /// terminal learns it.
    fn with_rrn(self, live: &Live) -> Answer {
        Answer {
            rrn: Some(live.request.rrn.clone()),
            ..self
        }
    }
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
