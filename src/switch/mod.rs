//! The path of one request: admit, journal, decide, act, answer.
//!
//! ```text
//! request ─▶ Txn ─▶ duplicate? ─▶ [journal: Received] ─▶ terminal known and allowed? ─▶ Luhn
//!        ─▶ risk ─▶ route by BIN ─▶ [journal: Forwarded, durable] ─▶ destination (MUX)
//!        ─▶ [journal: Responded, durable] ─▶ response
//! ```
//!
//! The decisions are pure functions in [`decide`] (unit-tested without a
//! socket); this module is the driver that gathers what they need and
//! performs their effects in the order of the durability contract: a
//! request is journaled before it is decided on, its `Forwarded` record is
//! durable before it leaves, and the answer's `Responded` record (or a
//! queued reversal) is durable before the terminal hears.
//!
//! Every refusal is a [`Refusal`], which maps to one response code. The
//! terminal's own fields are echoed from its request (`answer.rs`), so the
//! switch's STAN on the destination never reaches the terminal.

mod answer;
pub mod decide;
mod memory;
mod recent;
mod reversal;
mod security;
mod seen;
pub mod settings;

pub use answer::{format_error, respond};
pub use security::{EncodeError, MacCheckError, encode_for_terminal};
pub use settings::SwitchSettings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::adapter::{Destination, LinkError};
use crate::clock::DateTime;
use crate::codes;
use crate::iso8583::Message;
use crate::journal::record::{Forwarded, Merchant, Received, Record, Source};
use crate::journal::{Journal, wal};
use crate::metrics::{DestinationLabels, Metrics, RuleLabels, Tag};
use crate::registry::{Terminal, Terminals};
use crate::reversal::saf::Saf;
use crate::risk::{RiskEngine, RiskInput, RuleSet};
use crate::route::RouteTable;
use crate::translate::{self, OriginalRef, Outgoing};
use crate::txn::{Malformed, Refusal, Txn, TxnKind};
use answer::Answer;
use decide::{Admission, Decision, Plan, Reply, Reversed};
use memory::CHECK_STRIPES;
use recent::{Live, Outcome, Recent};

/// Terminal registry and BIN routes: replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Tables {
    /// Terminal registry.
    pub terminals: Terminals,
    /// BIN routes.
    pub routes: RouteTable,
}

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
    /// The keys the journal holds for the last business dates.
    seen: Arc<seen::Seen>,
    /// Held from a request's duplicate check until it is in `recent`, per
    /// stripe of (terminal, STAN) keys.
    checking: Box<[tokio::sync::Mutex<()>; CHECK_STRIPES]>,
    rrn_counter: AtomicU64,
    stats: SwitchStats,
    /// Requests refused while the index is far behind, logged at most once
    /// a second (any client's load can cause them).
    index_behind: Throttled,
}

/// A count of events logged at most once a second.
#[derive(Debug, Default)]
struct Throttled {
    /// Events since the last line.
    count: AtomicU64,
    /// The second (since the epoch) of the last line.
    logged_at: AtomicU64,
}

impl Throttled {
    /// Counts an event; returns the count to log when a line is due.
    fn tick(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = wal::now_micros() / 1_000_000;
        let last = self.logged_at.load(Ordering::Relaxed);
        (now > last
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok())
        .then(|| self.count.swap(0, Ordering::Relaxed))
    }
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
            seen: Arc::new(seen::Seen::new()),
            checking: Box::new(std::array::from_fn(|_| tokio::sync::Mutex::new(()))),
            rrn_counter: AtomicU64::new(u64::from(fastrand::u32(..))),
            stats: SwitchStats::default(),
            index_behind: Throttled::default(),
        };
        switch.preload();
        switch.load_seen();
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
                response: answer::network_answer(&request),
                waited: Duration::ZERO,
            };
        }
        // The request moves into the transaction and back out, not copied.
        let (request, answer) = match Txn::classify(&request) {
            Ok(kind) => match Txn::new(kind, request) {
                Ok(txn) => {
                    let answer = self.process(&txn).await;
                    (txn.into_request(), answer)
                }
                Err(Malformed { request }) => (request, Answer::refused(Refusal::Format)),
            },
            Err(refusal) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                (request, Answer::refused(refusal))
            }
        };
        let tables = self.tables();
        let merchant = request
            .terminal_id()
            .and_then(|id| tables.terminals.get(id))
            .map_or("", |t| t.merchant_id.trim_end());
        answer::log_outcome(&request, merchant, &answer, started.elapsed());
        let waited = answer.waited;
        Handled {
            response: answer.response_to(&request),
            waited,
        }
    }

    /// Admits a transaction (a retransmission is replayed), journals it and
    /// has it decided and acted on.
    async fn process(&self, txn: &Txn) -> Answer {
        let key = recent::txn_key(txn);
        // The original of a reversal or completion first: finding it may
        // wait for the index, which must not happen while the key is held.
        let original = match txn.kind() {
            TxnKind::Reversal | TxnKind::Completion => self.original_of(txn).await,
            _ => None,
        };
        // From the duplicate check until the request is in memory, no other
        // request with its terminal and STAN is looked at: two copies sent
        // at once are one transaction and a retransmission.
        let held = self.checking[memory::key_stripe(&key)].lock().await;
        let seen = self
            .seen
            .key(txn.terminal_id(), txn.stan_text(), txn.transmission());
        let duplicate = self.retransmitted(txn, key, seen).await;
        match decide::admit(
            duplicate,
            self.recent.is_full(self.journal.indexed_through()),
        ) {
            Admission::Replay(original) => {
                drop(held);
                return self.replay(&original).await;
            }
            Admission::Refuse(refusal) => return Answer::refused(refusal),
            Admission::MemoryFull => {
                // The index is far behind: memory holds what it does not, and
                // forgetting any of it would let a retransmission through.
                if let Some(refused) = self.index_behind.tick() {
                    error!(
                        refused,
                        "journal index far behind: refusing new requests until it catches up"
                    );
                }
                return Answer::refused(Refusal::System);
            }
            Admission::Journal => {}
        }
        let tables = self.tables();
        let terminal = tables.terminals.get(txn.terminal_id());
        let now = DateTime::now();
        let rrn = match txn.rrn() {
            Some(rrn) => rrn.to_string(),
            None => self.next_rrn(now),
        };
        let record = Record::Received(Box::new(self.received(
            txn,
            terminal,
            rrn,
            original.as_deref(),
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
        self.seen.insert(
            &wal::business_date(wal::now_micros(), &self.journal.config().cutover),
            seen,
        );
        let live = Arc::new(Live::new(id, txn.class(), received));
        self.remember(key, Arc::clone(&live));
        drop(held);
        let answer = match self.act(txn, &tables, &live, original, now).await {
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

    /// The `Received` record of a transaction.
    fn received(
        &self,
        txn: &Txn,
        terminal: Option<&Arc<Terminal>>,
        rrn: String,
        original: Option<&Live>,
    ) -> Received {
        let owned = |text: Option<&str>| text.map(String::from);
        Received {
            kind: txn.kind(),
            mti: txn.mti().as_str().to_string(),
            processing_code: txn.processing_code().unwrap_or_default().to_string(),
            amount: txn.amount(),
            currency: owned(txn.currency())
                .or_else(|| terminal.map(|t| t.currency.clone()))
                .unwrap_or_default(),
            pan: self.journal.vault().seal(txn.pan().expose()),
            terminal: txn.terminal_id().to_string(),
            merchant: terminal.map(|t| Merchant {
                id: t.merchant_id.clone(),
                mcc: t.mcc.clone(),
                name_location: t.name_location.clone(),
            }),
            stan: txn.stan_text().to_string(),
            transmission: txn.transmission().to_string(),
            local_time: owned(txn.local_time()),
            local_date: owned(txn.local_date()),
            entry_mode: owned(txn.entry_mode()),
            condition: owned(txn.condition()),
            rrn,
            original: original.map(|o| o.id),
            replacement: txn.replacement(),
        }
    }

    /// Decides on a journaled transaction (gathering, step by step, what
    /// each decision needs) and acts on the decision.
    async fn act(
        &self,
        txn: &Txn,
        tables: &Tables,
        live: &Arc<Live>,
        original: Option<Arc<Live>>,
        now: DateTime,
    ) -> Result<Answer, Refusal> {
        let (terminal, plan) = decide::screen(txn, tables.terminals.get(txn.terminal_id()))?;
        let limit = self.settings.timeout + Duration::from_secs(1);
        let mut completed = None;
        let decision = match plan {
            Plan::Reverse => {
                // An original still in flight is reversed once its fate is known.
                let outcome = match &original {
                    Some(o) => o.outcome(limit).await,
                    None => None,
                };
                decide::reversal(original.as_deref().map(|o| Reversed {
                    outcome: outcome.as_ref(),
                    destination: o.forwarded().map(|f| f.destination.as_str()),
                }))
            }
            // A completion goes where its pre-authorisation went; risk was
            // checked on the pre-authorisation.
            Plan::Complete => {
                let original = original.as_ref().ok_or(Refusal::OriginalNotFound)?;
                decide::completion_matches(&live.request, &original.request)?;
                let outcome = original.outcome(limit).await;
                let decision = decide::completion(
                    &live.request,
                    &original.request,
                    outcome.as_ref(),
                    original.forwarded(),
                );
                if let Decision::Forward { .. } = decision {
                    completed = Some(self.claim(live, original, outcome)?);
                }
                decision
            }
            Plan::Authorise => {
                let risk = self.check_risk(txn, live);
                decide::authorisation(txn, &tables.routes, risk, |name| self.link(name))
            }
        };
        match decision {
            Decision::Refuse(refusal) => Err(refusal),
            Decision::Accept { destination, owed } => {
                let destination = destination.map(String::from);
                Ok(self
                    .accept_reversal(live, original.as_deref(), destination, owed)
                    .await)
            }
            Decision::Forward {
                destination,
                original,
            } => {
                let destination = self.destinations.get(destination).ok_or(Refusal::NoRoute)?;
                let to = To {
                    terminal,
                    destination,
                    original,
                    completed,
                };
                self.forward(txn, live, to, now).await
            }
        }
    }

    /// Claims a completion's pre-authorisation (not completed before in
    /// this run of the switch), as decided.
    fn claim(
        &self,
        completion: &Live,
        original: &Arc<Live>,
        outcome: Option<Outcome>,
    ) -> Result<Completed, Refusal> {
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
            auth_id: outcome.and_then(|o| o.auth_id),
        })
    }

    /// Translates and forwards a journaled transaction, durable first, and
    /// reads the destination's reply.
    async fn forward(
        &self,
        txn: &Txn,
        live: &Arc<Live>,
        to: To<'_>,
        now: DateTime,
    ) -> Result<Answer, Refusal> {
        let destination = to.destination;
        let outgoing = Outgoing {
            kind: txn.kind(),
            request: txn.request(),
            terminal: to.terminal,
            institution: &self.settings.institution,
            original: to.original.as_ref(),
            rrn: (!txn.has_rrn()).then(|| live.request.rrn.clone()),
            now,
        };
        let dialect = &destination.config().dialect;
        let version = dialect.version();
        let mut message = translate::request_for(dialect, &outgoing);
        self.translate_pin(
            txn.request(),
            txn.pan().expose(),
            to.terminal,
            destination,
            &mut message,
        )?;
        let transmission = message.transmission_time().unwrap_or_default().to_string();
        let local_93 = message
            .local_time()
            .filter(|t| t.len() == 12)
            .map(String::from);
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
        let waited = match &result {
            Ok(exchange) => exchange.waited,
            Err(LinkError::Timeout(waited)) => *waited,
            Err(_) => Duration::ZERO,
        };
        match decide::reply(version, &result) {
            Reply::Answered(answer) => {
                let answer = self
                    .answered(live, destination, answer, to.completed)
                    .await?;
                Ok(Answer {
                    destination: name,
                    waited,
                    ..answer
                })
            }
            Reply::Unreadable => Ok(self.unreadable(live, name, waited).await),
            Reply::Unanswered => {
                self.timed_out(live).await;
                Ok(Answer {
                    destination: name,
                    waited,
                    ..Answer::refused(Refusal::IssuerUnavailable)
                })
            }
            Reply::Refuse(refusal) => Err(refusal),
        }
    }

    /// A destination's answer: counted, durable (`Responded`), then given
    /// to whoever waits for the transaction and to the terminal.
    async fn answered(
        &self,
        live: &Live,
        destination: &Destination,
        answer: translate::Answer,
        completed: Option<Completed>,
    ) -> Result<Answer, Refusal> {
        // A completion keeps its pre-authorisation's approval code when the
        // destination gives none, and its claim on the pre-authorisation
        // only when approved.
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
            auth_id: outcome.auth_id,
            ..Answer::with_code(outcome.code)
        })
    }

    /// The risk stage: a hit is journaled with its rule (the answer's
    /// `Responded` record follows and makes it durable), counted and
    /// logged, and its code returned for the decision.
    fn check_risk(&self, txn: &Txn, live: &Live) -> Result<(), &'static str> {
        let request = &live.request;
        let (merchant, mcc) = request
            .merchant
            .as_ref()
            .map_or(("", ""), |m| (m.id.as_str(), m.mcc.as_str()));
        let now = wal::now_micros();
        let date = wal::business_date(now, &self.journal.config().cutover);
        let input = RiskInput {
            kind: txn.kind(),
            amount: request.amount,
            currency: &request.currency,
            pan: txn.pan().expose(),
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
        Err(hit.code)
    }

    /// A retrieval reference number for a terminal that sent none: `MMDDhh`
    /// and a six-digit counter unique across the switch.
    fn next_rrn(&self, now: DateTime) -> String {
        let n = self.rrn_counter.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        format!("{}{:02}{n:06}", now.mmdd(), now.hour)
    }

    /// A destination's state, for routing.
    fn link(&self, name: &str) -> Option<decide::Link<'_>> {
        self.destinations.get(name).map(|d| decide::Link {
            up: d.links_up() > 0,
            fallback: d.config().fallback.as_deref(),
        })
    }
}

/// Where a decided transaction goes.
struct To<'a> {
    /// The terminal's registry entry.
    terminal: &'a Terminal,
    /// The destination.
    destination: &'a Arc<Destination>,
    /// For a completion, the pre-authorisation's reference.
    original: Option<OriginalRef>,
    /// For a completion, its claim on the pre-authorisation.
    completed: Option<Completed>,
}

#[cfg(test)]
mod throttled_tests {
    use super::*;

    #[test]
    fn a_burst_makes_one_line_a_second_with_its_count() {
        let t = Throttled::default();
        let lines: Vec<u64> = (0..10_000).filter_map(|_| t.tick()).collect();
        // The first event logs at once; the rest of the same second wait.
        assert!(lines.len() <= 2, "{lines:?}");
        assert_eq!(lines.first(), Some(&1));
        t.logged_at.store(0, Ordering::Relaxed);
        let rest = t.tick().unwrap_or_default();
        assert_eq!(
            lines.iter().sum::<u64>() + rest,
            10_001,
            "every event counted once"
        );
    }
}
