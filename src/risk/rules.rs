//! The validated, compiled rule set and the stateless checks.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::config::{
    AmountLimitRule, BlockRule, CurrencyRule, DEFAULT_MAX_CARDS, MerchantDailyRule, RiskConfig,
    RiskError, VelocityRule,
};
use super::key::{BuildKeyHasher, SHORT, short_key};
use crate::txn::TxnKind;

/// Longest BIN prefix or range end, in digits.
const MAX_BIN_DIGITS: usize = 11;

/// An ISO 4217 numeric currency code.
pub(super) type Currency = [u8; 3];

/// A card digest as four words. Hashed by its first word alone: the digest
/// is an HMAC, uniform already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Digest([u64; 4]);

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0[0]);
    }
}

/// The words of a card digest.
pub(super) fn digest(card: &[u8; 32]) -> Digest {
    let mut words = [0u64; 4];
    for (word, bytes) in words.iter_mut().zip(card.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *word = u64::from_ne_bytes(b);
    }
    Digest(words)
}

/// A set of transaction kinds, one bit per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kinds(u8);

impl Kinds {
    /// Purchase and authorization: the default of the amount rules.
    const SPENDING: Kinds =
        Kinds(Kinds::bit(TxnKind::Authorization) | Kinds::bit(TxnKind::Purchase));
    /// Everything but reversal: the default of the currency rule.
    const NOT_REVERSAL: Kinds = Kinds(Kinds::SPENDING.0 | Kinds::bit(TxnKind::Refund));

    const fn bit(kind: TxnKind) -> u8 {
        match kind {
            TxnKind::Authorization => 1,
            TxnKind::Purchase => 2,
            TxnKind::Refund => 4,
            TxnKind::Reversal => 8,
            TxnKind::Completion => 16,
        }
    }

    pub(super) fn contains(self, kind: TxnKind) -> bool {
        self.0 & Kinds::bit(kind) != 0
    }

    fn parse(id: &str, kinds: Option<&[TxnKind]>, default: Kinds) -> Result<Kinds, RiskError> {
        let Some(kinds) = kinds else {
            return Ok(default);
        };
        if kinds.is_empty() {
            return Err(RiskError::rule(id, "kinds", "must list at least one kind"));
        }
        let mut set = Kinds(0);
        for (i, &kind) in kinds.iter().enumerate() {
            if kind == TxnKind::Reversal {
                return Err(RiskError::rule(
                    id,
                    format!("kinds[{i}]"),
                    "reversals are never risk-checked",
                ));
            }
            set.0 |= Kinds::bit(kind);
        }
        Ok(set)
    }
}

/// A set of names (terminals, merchants, MCCs) of at most 15 bytes, as
/// sorted [`short_key`]s; compared after trimming trailing spaces.
#[derive(Debug, Clone, Default)]
pub(super) struct Names(Vec<u128>);

impl Names {
    fn parse(id: &str, key: &str, names: &[String]) -> Result<Names, RiskError> {
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            match short_key(name.trim_end_matches(' ')) {
                Some(k) if k != 0 => out.push(k),
                _ => {
                    return Err(RiskError::rule(
                        id,
                        format!("{key}[{i}]"),
                        format!("must be 1 to {SHORT} characters"),
                    ));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(Names(out))
    }

    /// Whether the name with this [`short_key`] is listed (`None`: a name
    /// too long to be).
    fn contains(&self, name: Option<u128>) -> bool {
        name.is_some_and(|k| self.0.binary_search(&k).is_ok())
    }

    /// True when the list is empty (meaning "any") or holds the name.
    pub(super) fn admits(&self, name: Option<u128>) -> bool {
        self.0.is_empty() || self.contains(name)
    }
}

/// BIN prefixes and ranges, as numbers per prefix length.
#[derive(Debug, Clone, Default)]
struct Bins {
    /// Prefixes, as `value << 4 | length`.
    prefixes: HashSet<u64, BuildKeyHasher>,
    /// Bit *n* set: some prefix has length *n*.
    prefix_lengths: u16,
    /// Sorted, non-overlapping inclusive ranges; index = prefix length.
    ranges: [Vec<(u64, u64)>; MAX_BIN_DIGITS + 1],
    /// The longest length with any prefix or range (0: none).
    longest: usize,
}

fn bin_value(s: &str) -> Option<u64> {
    if !(1..=MAX_BIN_DIGITS).contains(&s.len()) {
        return None;
    }
    s.bytes().try_fold(0u64, |v, b| {
        b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0'))
    })
}

impl Bins {
    fn parse(id: &str, bins: &[String], ranges: &[[String; 2]]) -> Result<Bins, RiskError> {
        let mut out = Bins::default();
        for (i, bin) in bins.iter().enumerate() {
            let value = bin_value(bin).ok_or_else(|| {
                RiskError::rule(id, format!("bins[{i}]"), "must be 1 to 11 digits")
            })?;
            out.prefixes.insert(value << 4 | bin.len() as u64);
            out.prefix_lengths |= 1 << bin.len();
            out.longest = out.longest.max(bin.len());
        }
        for (i, [low, high]) in ranges.iter().enumerate() {
            let bad = || {
                RiskError::rule(
                    id,
                    format!("ranges[{i}]"),
                    "must be two prefixes of equal length (1 to 11 digits), low first",
                )
            };
            let (Some(lo), Some(hi)) = (bin_value(low), bin_value(high)) else {
                return Err(bad());
            };
            if low.len() != high.len() || lo > hi {
                return Err(bad());
            }
            if let Some(slot) = out.ranges.get_mut(low.len()) {
                slot.push((lo, hi));
            }
            out.longest = out.longest.max(low.len());
        }
        for ranges in &mut out.ranges {
            ranges.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
            for &(lo, hi) in ranges.iter() {
                match merged.last_mut() {
                    Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                    _ => merged.push((lo, hi)),
                }
            }
            *ranges = merged;
        }
        Ok(out)
    }

    /// Whether the PAN starts with a listed prefix or falls in a range
    /// (compared on its first *n* digits for a range of length *n*).
    fn matches(&self, pan: &str) -> bool {
        let mut value = 0u64;
        for (len, b) in (1..=self.longest).zip(pan.bytes()) {
            if !b.is_ascii_digit() {
                return false;
            }
            value = value * 10 + u64::from(b - b'0');
            if self.prefix_lengths & 1 << len != 0
                && self.prefixes.contains(&(value << 4 | len as u64))
            {
                return true;
            }
            if let Some(ranges) = self.ranges.get(len) {
                let at = ranges.partition_point(|&(_, hi)| hi < value);
                if ranges.get(at).is_some_and(|&(lo, _)| lo <= value) {
                    return true;
                }
            }
        }
        false
    }
}

/// A compiled `[[risk.block]]`.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) id: Arc<str>,
    bins: Bins,
    cards: HashSet<Digest, BuildKeyHasher>,
    terminals: Names,
}

impl Block {
    pub(super) fn blocks_terminal(&self, terminal: Option<u128>) -> bool {
        self.terminals.contains(terminal)
    }

    pub(super) fn blocks_card(&self, pan: &str, card: &Digest) -> bool {
        self.bins.matches(pan) || self.cards.contains(card)
    }
}

/// A compiled `[[risk.amount_limit]]`.
#[derive(Debug, Clone)]
pub(super) struct AmountLimit {
    pub(super) id: Arc<str>,
    pub(super) mcc: Names,
    pub(super) terminals: Names,
    pub(super) currency: Currency,
    pub(super) max_amount: u64,
    pub(super) kinds: Kinds,
}

/// A compiled `[[risk.velocity]]`.
#[derive(Debug, Clone)]
pub(super) struct Velocity {
    pub(super) id: Arc<str>,
    pub(super) window_ms: u64,
    pub(super) max_count: u32,
    pub(super) max_amount: Option<u64>,
    pub(super) currency: Option<Currency>,
    pub(super) kinds: Kinds,
}

/// A compiled `[[risk.merchant_daily]]`.
#[derive(Debug, Clone)]
pub(super) struct MerchantDaily {
    pub(super) id: Arc<str>,
    pub(super) merchants: Names,
    pub(super) currency: Currency,
    pub(super) max_amount: u64,
    pub(super) kinds: Kinds,
}

/// A compiled `[[risk.currencies]]`.
#[derive(Debug, Clone)]
pub(super) struct Currencies {
    pub(super) id: Arc<str>,
    pub(super) merchants: Names,
    pub(super) allowed: Vec<Currency>,
    pub(super) kinds: Kinds,
}

/// A validated `[risk]` section, compiled for fast evaluation. Immutable; a
/// reload builds a new one and hands it to
/// [`RiskEngine::replace`](super::RiskEngine::replace).
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(super) max_cards: usize,
    pub(super) block: Vec<Block>,
    pub(super) amount_limit: Vec<AmountLimit>,
    pub(super) velocity: Vec<Velocity>,
    pub(super) merchant_daily: Vec<MerchantDaily>,
    pub(super) currencies: Vec<Currencies>,
}

fn currency(id: &str, key: &str, s: &str) -> Result<Currency, RiskError> {
    match *s.as_bytes() {
        [a, b, c] if [a, b, c].iter().all(u8::is_ascii_digit) => Ok([a, b, c]),
        _ => Err(RiskError::rule(
            id,
            key,
            "must be 3 digits (ISO 4217 numeric)",
        )),
    }
}

/// Checks ids: non-empty and unique across every rule type.
struct Ids<'a>(HashSet<&'a str>);

impl<'a> Ids<'a> {
    fn add(&mut self, id: &'a str) -> Result<Arc<str>, RiskError> {
        if id.is_empty() {
            return Err(RiskError::rule(id, "id", "must not be empty"));
        }
        if !self.0.insert(id) {
            return Err(RiskError::rule(
                id,
                "id",
                "duplicate id (ids are unique across all risk rules)",
            ));
        }
        Ok(Arc::from(id))
    }
}

impl RuleSet {
    /// Validates and compiles a `[risk]` section. The first problem found
    /// is returned; it names the rule id and the key.
    pub fn build(config: &RiskConfig) -> Result<RuleSet, RiskError> {
        let max_cards = config.max_cards.unwrap_or(DEFAULT_MAX_CARDS);
        if max_cards == 0 {
            return Err(RiskError::MaxCards);
        }
        let mut ids = Ids(HashSet::new());
        let mut set = RuleSet {
            max_cards,
            block: Vec::with_capacity(config.block.len()),
            amount_limit: Vec::with_capacity(config.amount_limit.len()),
            velocity: Vec::with_capacity(config.velocity.len()),
            merchant_daily: Vec::with_capacity(config.merchant_daily.len()),
            currencies: Vec::with_capacity(config.currencies.len()),
        };
        for r in &config.block {
            let id = ids.add(&r.id)?;
            set.block.push(Block::compile(r, id)?);
        }
        for r in &config.amount_limit {
            let id = ids.add(&r.id)?;
            set.amount_limit.push(AmountLimit::compile(r, id)?);
        }
        for r in &config.velocity {
            let id = ids.add(&r.id)?;
            set.velocity.push(Velocity::compile(r, id)?);
        }
        for r in &config.merchant_daily {
            let id = ids.add(&r.id)?;
            set.merchant_daily.push(MerchantDaily::compile(r, id)?);
        }
        for r in &config.currencies {
            let id = ids.add(&r.id)?;
            set.currencies.push(Currencies::compile(r, id)?);
        }
        Ok(set)
    }

    /// The bound on cards tracked per velocity rule.
    pub fn max_cards(&self) -> usize {
        self.max_cards
    }

    /// Every rule id, in evaluation order.
    pub fn rule_ids(&self) -> Vec<Arc<str>> {
        let block = self.block.iter().map(|r| &r.id);
        let currencies = self.currencies.iter().map(|r| &r.id);
        let amount = self.amount_limit.iter().map(|r| &r.id);
        let velocity = self.velocity.iter().map(|r| &r.id);
        let daily = self.merchant_daily.iter().map(|r| &r.id);
        block
            .chain(currencies)
            .chain(amount)
            .chain(velocity)
            .chain(daily)
            .cloned()
            .collect()
    }
}

impl Block {
    /// Compiles one `[[risk.block]]` whose id `Ids` has accepted.
    fn compile(r: &BlockRule, id: Arc<str>) -> Result<Block, RiskError> {
        let mut cards = HashSet::with_capacity_and_hasher(r.cards.len(), BuildKeyHasher::default());
        for (i, card) in r.cards.iter().enumerate() {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(card, &mut digest).map_err(|_| {
                RiskError::rule(&r.id, format!("cards[{i}]"), "must be 64 hex characters")
            })?;
            cards.insert(self::digest(&digest));
        }
        Ok(Block {
            bins: Bins::parse(&r.id, &r.bins, &r.ranges)?,
            cards,
            terminals: Names::parse(&r.id, "terminals", &r.terminals)?,
            id,
        })
    }
}

impl AmountLimit {
    /// Compiles one `[[risk.amount_limit]]` whose id `Ids` has accepted.
    fn compile(r: &AmountLimitRule, id: Arc<str>) -> Result<AmountLimit, RiskError> {
        for (i, mcc) in r.mcc.iter().enumerate() {
            if mcc.len() != 4 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RiskError::rule(
                    &r.id,
                    format!("mcc[{i}]"),
                    "must be 4 digits",
                ));
            }
        }
        Ok(AmountLimit {
            mcc: Names::parse(&r.id, "mcc", &r.mcc)?,
            terminals: Names::parse(&r.id, "terminals", &r.terminals)?,
            currency: currency(&r.id, "currency", &r.currency)?,
            max_amount: r.max_amount,
            kinds: Kinds::parse(&r.id, r.kinds.as_deref(), Kinds::SPENDING)?,
            id,
        })
    }
}

impl Velocity {
    /// Compiles one `[[risk.velocity]]` whose id `Ids` has accepted.
    fn compile(r: &VelocityRule, id: Arc<str>) -> Result<Velocity, RiskError> {
        if r.window_secs == 0 {
            return Err(RiskError::rule(
                &r.id,
                "window_secs",
                "must be greater than 0",
            ));
        }
        let window_ms = r
            .window_secs
            .checked_mul(1000)
            .ok_or_else(|| RiskError::rule(&r.id, "window_secs", "is too large"))?;
        if r.max_count == 0 {
            return Err(RiskError::rule(
                &r.id,
                "max_count",
                "must be greater than 0",
            ));
        }
        let currency = match &r.currency {
            Some(c) => Some(currency(&r.id, "currency", c)?),
            None if r.max_amount.is_some() => {
                return Err(RiskError::rule(
                    &r.id,
                    "max_amount",
                    "needs `currency` (amounts of different currencies do not add up)",
                ));
            }
            None => None,
        };
        Ok(Velocity {
            window_ms,
            max_count: r.max_count,
            max_amount: r.max_amount,
            currency,
            kinds: Kinds::parse(&r.id, r.kinds.as_deref(), Kinds::SPENDING)?,
            id,
        })
    }
}

impl MerchantDaily {
    /// Compiles one `[[risk.merchant_daily]]` whose id `Ids` has accepted.
    fn compile(r: &MerchantDailyRule, id: Arc<str>) -> Result<MerchantDaily, RiskError> {
        Ok(MerchantDaily {
            merchants: Names::parse(&r.id, "merchants", &r.merchants)?,
            currency: currency(&r.id, "currency", &r.currency)?,
            max_amount: r.max_amount,
            kinds: Kinds::parse(&r.id, r.kinds.as_deref(), Kinds::SPENDING)?,
            id,
        })
    }
}

impl Currencies {
    /// Compiles one `[[risk.currencies]]` whose id `Ids` has accepted.
    fn compile(r: &CurrencyRule, id: Arc<str>) -> Result<Currencies, RiskError> {
        if r.allowed.is_empty() {
            return Err(RiskError::rule(
                &r.id,
                "allowed",
                "must list at least one currency",
            ));
        }
        let allowed = r
            .allowed
            .iter()
            .enumerate()
            .map(|(i, c)| currency(&r.id, &format!("allowed[{i}]"), c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Currencies {
            merchants: Names::parse(&r.id, "merchants", &r.merchants)?,
            allowed,
            kinds: Kinds::parse(&r.id, r.kinds.as_deref(), Kinds::NOT_REVERSAL)?,
            id,
        })
    }
}
