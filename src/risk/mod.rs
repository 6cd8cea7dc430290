//! The risk stage: block lists, amount limits, velocity and merchant daily
//! limits, checked before a request goes to its destination.
//!
//! Pure logic: no I/O, no async. A [`RiskConfig`] (the `[risk]` section) is
//! validated and compiled into a [`RuleSet`]; a [`RiskEngine`], shared by
//! every task behind an `Arc`, evaluates requests against it and holds the
//! state of the stateful rules. A reload swaps the rule set with
//! [`RiskEngine::replace`].
//!
//! # Evaluation
//!
//! Reversals are never risk-checked. For any other request the rules run in
//! this order, and the first hit declines the request with its response
//! code:
//!
//! 1. block lists: a listed terminal → `58`; then a listed BIN prefix, BIN
//!    range or card digest → `62`;
//! 2. currency rules: a currency the merchant may not take → `57`;
//! 3. amount limits: an amount over the limit → `61`;
//! 4. velocity rules: the card's count in the window → `65`, its total in
//!    the window → `61`;
//! 5. merchant daily rules: the merchant's total for the business date →
//!    `61`.
//!
//! A rule applies only to the kinds of transaction it lists. Terminal and
//! merchant ids are compared without their trailing padding spaces; the
//! terminal, merchant and MCC lists of the rules hold names of 1 to 15
//! characters (field 41 has 8, field 42 has 15).
//!
//! # State
//!
//! The stateless rules run first, so a request they decline never consumes
//! state. A stateful rule checks and records under one lock: it records the
//! transaction when the transaction passes that rule. So velocity and daily
//! totals count the *attempts that were let through* by the rule, not only
//! approvals: a decline by a later rule, or by the issuer, does not un-count
//! them. This is deliberate and conservative — a card being tried many times
//! is what velocity limits are for.
//!
//! Velocity state is kept per rule in 64 shards (chosen by the digest's last
//! byte), each a map from the first 16 bytes of the card digest to the
//! card's events (time, amount) inside the window — at most `max_count` of
//! them. Up to four events are stored in the map's own 64-byte slot, so a
//! card seen a few times per window costs one cache line and no allocation;
//! a busier card's events move to the heap. Memory is bounded by
//! `max_cards` per rule: each shard holds its share, drops the cards whose
//! newest event has left the window once per window (and, when full, at
//! most once a second). When a shard is still full, a new card is **not
//! tracked**: it is checked as a card with no history (so a single
//! transaction over `max_amount` is still declined) and
//! [`RiskEngine::untracked`] counts it. Failing open here is the choice: a
//! full table means unusual traffic, which must not decline every new card;
//! the counter is there to alert on.
//!
//! Merchant daily state is one entry (merchant, business date, total) per
//! merchant that trades under the rule; a new business date restarts the
//! total. It is bounded by the merchants of the terminal registry, and
//! allocates only when a merchant first trades. Merchant ids of up to 15
//! bytes (every registry id) are keyed exactly, longer ones by a 120-bit
//! hash.
//!
//! On [`RiskEngine::replace`] the state of a velocity rule is kept when its
//! id, window and currency are unchanged, and that of a merchant daily rule
//! when its id and currency are unchanged (limits may change); the state of
//! removed or changed rules is dropped.

mod config;
mod key;
mod rules;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub use config::{
    AmountLimitRule, BlockRule, CurrencyRule, DEFAULT_MAX_CARDS, MerchantDailyRule, RiskConfig,
    RiskError, VelocityRule,
};
pub use rules::RuleSet;

use crate::card::Pan;
use crate::txn::TxnKind;
use key::short_key;
use state::{CODE_AMOUNT, DailyTable, VelocityTable};

/// Response code: transaction not permitted to terminal.
const CODE_TERMINAL: &str = "58";
/// Response code: restricted card.
const CODE_CARD: &str = "62";
/// Response code: transaction not permitted to cardholder.
const CODE_CURRENCY: &str = "57";

/// What a request looks like to the risk stage (borrowed from the journal's
/// `Received` record). `Debug` masks the PAN.
#[derive(Clone, Copy)]
pub struct RiskInput<'a> {
    /// Kind of transaction.
    pub kind: TxnKind,
    /// Amount in minor units.
    pub amount: u64,
    /// ISO 4217 numeric currency.
    pub currency: &'a str,
    /// Clear PAN digits: used only for BIN prefixes and ranges, never kept.
    pub pan: &'a str,
    /// Keyed digest of the PAN.
    pub card: &'a [u8; 32],
    /// Terminal id (trailing spaces ignored).
    pub terminal: &'a str,
    /// Merchant id (trailing spaces ignored).
    pub merchant: &'a str,
    /// Merchant category code.
    pub mcc: &'a str,
    /// Business date, `YYYYMMDD`.
    pub date: &'a str,
    /// Milliseconds on any clock: only differences matter.
    pub now_ms: u64,
}

impl fmt::Debug for RiskInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiskInput")
            .field("kind", &self.kind)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("pan", &Pan::new(self.pan))
            .field("card", &hex::encode(self.card))
            .field("terminal", &self.terminal)
            .field("merchant", &self.merchant)
            .field("mcc", &self.mcc)
            .field("date", &self.date)
            .field("now_ms", &self.now_ms)
            .finish()
    }
}

/// A rule that declined the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskHit {
    /// The rule's id.
    pub rule: Arc<str>,
    /// The ISO 8583:1987 response code to answer with.
    pub code: &'static str,
}

impl fmt::Display for RiskHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "risk rule {} → {}", self.rule, self.code)
    }
}

/// A rule set with the state of its stateful rules.
#[derive(Debug)]
struct Active {
    rules: RuleSet,
    /// One table per `rules.velocity`, same order.
    velocity: Vec<Arc<VelocityTable>>,
    /// One table per `rules.merchant_daily`, same order.
    daily: Vec<Arc<DailyTable>>,
}

fn hit(rule: &Arc<str>, code: &'static str) -> Result<(), RiskHit> {
    Err(RiskHit {
        rule: Arc::clone(rule),
        code,
    })
}

impl Active {
    fn evaluate(&self, input: &RiskInput<'_>, untracked: &AtomicU64) -> Result<(), RiskHit> {
        let rules = &self.rules;
        let kind = input.kind;
        let merchant = input.merchant.trim_end_matches(' ');
        let terminal_key = short_key(input.terminal.trim_end_matches(' '));
        let merchant_key = short_key(merchant);
        let mcc_key = short_key(input.mcc);
        let currency = input.currency.as_bytes();
        let card = rules::digest(input.card);

        if let Some(r) = rules.block.iter().find(|r| r.blocks_terminal(terminal_key)) {
            return hit(&r.id, CODE_TERMINAL);
        }
        if let Some(r) = rules.block.iter().find(|r| r.blocks_card(input.pan, &card)) {
            return hit(&r.id, CODE_CARD);
        }
        if let Some(r) = rules.currencies.iter().find(|r| {
            r.kinds.contains(kind)
                && r.merchants.admits(merchant_key)
                && !r.allowed.iter().any(|c| c == currency)
        }) {
            return hit(&r.id, CODE_CURRENCY);
        }
        if let Some(r) = rules.amount_limit.iter().find(|r| {
            r.kinds.contains(kind)
                && input.amount > r.max_amount
                && r.currency == currency
                && r.mcc.admits(mcc_key)
                && r.terminals.admits(terminal_key)
        }) {
            return hit(&r.id, CODE_AMOUNT);
        }
        for (r, table) in rules.velocity.iter().zip(&self.velocity) {
            if !r.kinds.contains(kind) || r.currency.is_some_and(|c| c != currency) {
                continue;
            }
            if let Some(code) =
                table.check_and_record(r, input.card, input.amount, input.now_ms, untracked)
            {
                return hit(&r.id, code);
            }
        }
        for (r, table) in rules.merchant_daily.iter().zip(&self.daily) {
            if r.kinds.contains(kind)
                && r.currency == currency
                && r.merchants.admits(merchant_key)
                && table.check_and_record(
                    r.max_amount,
                    merchant_key.unwrap_or_else(|| key::key(merchant)),
                    key::key(input.date),
                    input.amount,
                )
            {
                return hit(&r.id, CODE_AMOUNT);
            }
        }
        Ok(())
    }
}

/// Evaluates requests against the current rule set; `Send + Sync`, shared
/// behind an `Arc`.
#[derive(Debug)]
pub struct RiskEngine {
    active: RwLock<Arc<Active>>,
    untracked: AtomicU64,
}

impl RiskEngine {
    /// An engine with empty state; velocity tables are bounded by the rule
    /// set's `max_cards`.
    pub fn new(rules: RuleSet) -> RiskEngine {
        let velocity = rules
            .velocity
            .iter()
            .map(|_| Arc::new(VelocityTable::new(rules.max_cards)))
            .collect();
        let daily = rules
            .merchant_daily
            .iter()
            .map(|_| Arc::new(DailyTable::default()))
            .collect();
        RiskEngine {
            active: RwLock::new(Arc::new(Active {
                rules,
                velocity,
                daily,
            })),
            untracked: AtomicU64::new(0),
        }
    }

    fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Swaps in a new rule set atomically. The state of a velocity rule
    /// whose id, window and currency are unchanged, and of a merchant daily
    /// rule whose id and currency are unchanged, is kept (under the new
    /// `max_cards`); the state of every other rule is dropped.
    pub fn replace(&self, rules: RuleSet) {
        let old = self.active();
        let velocity = rules
            .velocity
            .iter()
            .map(|r| {
                let kept = old.rules.velocity.iter().zip(&old.velocity).find(|(o, _)| {
                    o.id == r.id && o.window_ms == r.window_ms && o.currency == r.currency
                });
                match kept {
                    Some((_, table)) => {
                        table.set_max_cards(rules.max_cards);
                        Arc::clone(table)
                    }
                    None => Arc::new(VelocityTable::new(rules.max_cards)),
                }
            })
            .collect();
        let daily = rules
            .merchant_daily
            .iter()
            .map(|r| {
                old.rules
                    .merchant_daily
                    .iter()
                    .zip(&old.daily)
                    .find(|(o, _)| o.id == r.id && o.currency == r.currency)
                    .map_or_else(|| Arc::new(DailyTable::default()), |(_, t)| Arc::clone(t))
            })
            .collect();
        let new = Arc::new(Active {
            rules,
            velocity,
            daily,
        });
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Checks a request; records it in the stateful rules it passes.
    /// Reversals always pass.
    pub fn evaluate(&self, input: &RiskInput<'_>) -> Result<(), RiskHit> {
        if input.kind == TxnKind::Reversal {
            return Ok(());
        }
        let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
        active.evaluate(input, &self.untracked)
    }

    /// Every rule id of the current rule set, in evaluation order (for
    /// metrics labels).
    pub fn rule_ids(&self) -> Vec<Arc<str>> {
        self.active().rules.rule_ids()
    }

    /// Cards tracked, summed over the velocity rules (for a metrics gauge).
    pub fn tracked_cards(&self) -> usize {
        self.active().velocity.iter().map(|t| t.len()).sum()
    }

    /// New cards that were not tracked because their shard was full, since
    /// the engine was created.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }
}
