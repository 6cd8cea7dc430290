//! Merchant pricing and the settlement report.
//!
//! [`Settlement`] is a streaming aggregator: feed it every [`Presentment`]
//! and every [`Reversed`] of the business date, then ask for the
//! [`SettlementReport`]. It keeps one set of totals per merchant × currency,
//! per destination × currency and per currency — never the transactions —
//! so its memory grows with the number of merchants, destinations and
//! currencies, not with the day's volume.
//!
//! # What is counted where
//!
//! - **Purchases** and **completions** (a pre-authorisation completed by an
//!   advice) are debits of the card; each has its own column, and together
//!   they are the *gross debits*. Both carry the merchant's fee.
//! - **Refunds** are credits to the card. They carry no fee, and the fee of
//!   the original purchase is not given back.
//! - **Reversals** are shown (count and amount reversed) for the merchant
//!   and the currency, for information only: the amount of a presentment is
//!   already what clears after partial reversals, and a fully reversed
//!   approval is not presented at all, so reversed amounts are neither
//!   debited, nor credited, nor charged a fee.
//! - **Net payable** to the merchant = purchases + completions − refunds −
//!   fees (signed: a day of refunds gives a negative net payable).
//! - Per destination: gross debits (purchases + completions), credits
//!   (refunds), net position = debits − credits, and the count of
//!   presentments.
//!
//! Amounts are integers in minor units of their currency (`i128`, all sums
//! checked); the report also shows them as decimals with the currency's
//! ISO 4217 exponent ([`super::currency::format_minor`]). A currency code
//! that is not an assigned ISO 4217 numeric code is kept as given, shown
//! with exponent 2, and flagged ([`CurrencyInfo::known`] is false; the CSV
//! has `currency_known` = `no`, the summary marks it with `?`).
//!
//! Merchant ids and currency codes are trimmed of surrounding spaces (field
//! 42 is space-padded) before grouping and pricing; destination names are
//! kept as given.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use crate::currency::{self, Currency};
use crate::item::{ClearedKind, Presentment, Reversed};
use crate::journal::TxnId;

/// What can go wrong when pricing or aggregating.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// A pricing's percentage is negative or above 100.
    #[error("fee percentage {percent} is out of range (0 to 100)")]
    PercentOutOfRange {
        /// The percentage given.
        percent: Decimal,
    },
    /// A fee does not fit in `u64` minor units (or its computation
    /// overflowed).
    #[error("fee of {percent}% + {fixed} on {amount} minor units overflows")]
    FeeOverflow {
        /// The transaction amount, minor units.
        amount: u64,
        /// The percentage applied.
        percent: Decimal,
        /// The fixed fee, minor units.
        fixed: u64,
    },
    /// Pricing a transaction failed; nothing of it was added.
    #[error("transaction {txn}: {source}")]
    Pricing {
        /// The transaction.
        txn: TxnId,
        /// Why.
        #[source]
        source: Box<SettlementError>,
    },
    /// Adding a transaction would overflow a total; nothing of it was added.
    #[error("transaction {txn}: settlement totals overflow")]
    TotalsOverflow {
        /// The transaction.
        txn: TxnId,
    },
}

/// A merchant's price: a percentage of the amount plus a fixed fee per
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pricing {
    /// Percentage of the amount, e.g. `1.75` for 1.75 % (0 to 100).
    pub percent: Decimal,
    /// Fixed fee per transaction, in minor units of the transaction's
    /// currency (so `30` is 0.30 USD but 30 JPY and 0.030 BHD).
    pub fixed: u64,
}

impl Pricing {
    /// A pricing with `percent` % and `fixed` minor units per transaction;
    /// refuses a percentage below 0 or above 100.
    pub fn new(percent: Decimal, fixed: u64) -> Result<Pricing, SettlementError> {
        if percent < Decimal::ZERO || percent > Decimal::ONE_HUNDRED {
            return Err(SettlementError::PercentOutOfRange { percent });
        }
        Ok(Pricing { percent, fixed })
    }

    /// The fee on a debit of `amount` minor units.
    ///
    /// **Rounding rule, applied per transaction:** fee = amount × percent /
    /// 100 + fixed, where the percentage part is rounded to a whole minor
    /// unit *half away from zero* (the midpoint goes up: 0.5 → 1, 17.5175 →
    /// 18, 17.4999 → 17) — rust_decimal's
    /// `RoundingStrategy::MidpointAwayFromZero`, not its default banker's
    /// rounding — and the fixed fee is then added. The rounding is done on
    /// each transaction's fee, never on a merchant's total.
    ///
    /// The computation is exact integer arithmetic on the percentage's
    /// decimal mantissa and scale, with checked operations (a product of
    /// rust_decimal values may otherwise be rounded silently when it needs
    /// more than 28 digits); a property test checks it gives the same result
    /// as rust_decimal with `MidpointAwayFromZero`.
    pub fn fee(&self, amount: u64) -> Result<u64, SettlementError> {
        let overflow = || SettlementError::FeeOverflow {
            amount,
            percent: self.percent,
            fixed: self.fixed,
        };
        // Without trailing zeros, so that "1.50" costs no more digits than
        // "1.5".
        let percent = self.percent.normalize();
        let mantissa =
            u128::try_from(percent.mantissa()).map_err(|_| SettlementError::PercentOutOfRange {
                percent: self.percent,
            })?;
        // percent = mantissa / 10^scale, so the fee's percentage part is
        // amount × mantissa / 10^(scale + 2).
        let numerator = u128::from(amount)
            .checked_mul(mantissa)
            .ok_or_else(overflow)?;
        let denominator = percent
            .scale()
            .checked_add(2)
            .and_then(|exp| 10u128.checked_pow(exp))
            .ok_or_else(overflow)?;
        let quotient = numerator.checked_div(denominator).ok_or_else(overflow)?;
        let remainder = numerator.checked_rem(denominator).ok_or_else(overflow)?;
        // Half away from zero on a non-negative value: up when the
        // remainder is at least half the divisor (remainder ≥ divisor −
        // remainder, which cannot overflow).
        let rounded = if remainder >= denominator - remainder {
            quotient.checked_add(1).ok_or_else(overflow)?
        } else {
            quotient
        };
        let total = rounded
            .checked_add(u128::from(self.fixed))
            .ok_or_else(overflow)?;
        u64::try_from(total).map_err(|_| overflow())
    }

    /// The fee on a cleared transaction of `kind`: [`Pricing::fee`] for
    /// purchases and completions, 0 for refunds (a refund carries no fee
    /// and gives no fee back).
    pub fn fee_for(&self, kind: ClearedKind, amount: u64) -> Result<u64, SettlementError> {
        match kind {
            ClearedKind::Purchase | ClearedKind::Completion => self.fee(amount),
            ClearedKind::Refund => Ok(0),
        }
    }
}

/// The pricing of every merchant: a default, and overrides by merchant id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PricingTable {
    default: Pricing,
    merchants: HashMap<String, Pricing>,
}

impl PricingTable {
    /// A table where every merchant pays `default`.
    pub fn new(default: Pricing) -> PricingTable {
        PricingTable {
            default,
            merchants: HashMap::new(),
        }
    }

    /// Sets the pricing of `merchant_id` (trimmed of surrounding spaces);
    /// returns the one it replaces.
    pub fn insert(&mut self, merchant_id: &str, pricing: Pricing) -> Option<Pricing> {
        self.merchants
            .insert(merchant_id.trim().to_owned(), pricing)
    }

    /// The pricing of `merchant_id` (trimmed of surrounding spaces), or
    /// the default.
    pub fn get(&self, merchant_id: &str) -> &Pricing {
        self.merchants
            .get(merchant_id.trim())
            .unwrap_or(&self.default)
    }

    /// The default pricing.
    pub fn default_pricing(&self) -> &Pricing {
        &self.default
    }

    /// How many merchants have their own pricing.
    pub fn len(&self) -> usize {
        self.merchants.len()
    }

    /// Whether no merchant has its own pricing.
    pub fn is_empty(&self) -> bool {
        self.merchants.is_empty()
    }
}

/// A count and an amount in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Number of transactions.
    pub count: u64,
    /// Their amount, minor units.
    pub amount: i128,
}

impl Tally {
    fn plus(self, amount: u64) -> Option<Tally> {
        Some(Tally {
            count: self.count.checked_add(1)?,
            amount: self.amount.checked_add(i128::from(amount))?,
        })
    }
}

/// A merchant's (or a currency's) totals in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Purchases.
    pub purchases: Tally,
    /// Completions of pre-authorisations.
    pub completions: Tally,
    /// Refunds.
    pub refunds: Tally,
    /// Reversals of the day (amount reversed); information only.
    pub reversals: Tally,
    /// Fees on purchases and completions, minor units.
    pub fees: i128,
}

impl Totals {
    /// Purchases + completions, minor units.
    pub fn gross_debits(&self) -> i128 {
        self.checked_gross_debits().unwrap_or(i128::MAX)
    }

    /// Refunds, minor units.
    pub fn credits(&self) -> i128 {
        self.refunds.amount
    }

    /// Purchases + completions + refunds (reversals not included).
    pub fn count(&self) -> u64 {
        self.checked_count().unwrap_or(u64::MAX)
    }

    /// Purchases + completions − refunds − fees, minor units (signed).
    pub fn net_payable(&self) -> i128 {
        self.checked_net_payable().unwrap_or(i128::MIN)
    }

    /// Gross debits − credits, minor units (signed).
    pub fn net_position(&self) -> i128 {
        self.checked_net_position().unwrap_or(i128::MIN)
    }

    fn checked_gross_debits(&self) -> Option<i128> {
        self.purchases.amount.checked_add(self.completions.amount)
    }

    fn checked_count(&self) -> Option<u64> {
        self.purchases
            .count
            .checked_add(self.completions.count)?
            .checked_add(self.refunds.count)
    }

    fn checked_net_position(&self) -> Option<i128> {
        self.checked_gross_debits()?
            .checked_sub(self.refunds.amount)
    }

    fn checked_net_payable(&self) -> Option<i128> {
        self.checked_net_position()?.checked_sub(self.fees)
    }

    /// These totals with one presentment more, if every total and derived
    /// value still fits.
    fn with_presentment(&self, kind: ClearedKind, amount: u64, fee: u64) -> Option<Totals> {
        let mut next = *self;
        match kind {
            ClearedKind::Purchase => next.purchases = next.purchases.plus(amount)?,
            ClearedKind::Completion => next.completions = next.completions.plus(amount)?,
            ClearedKind::Refund => next.refunds = next.refunds.plus(amount)?,
        }
        next.fees = next.fees.checked_add(i128::from(fee))?;
        next.validated()
    }

    fn with_reversal(&self, amount: u64) -> Option<Totals> {
        let mut next = *self;
        next.reversals = next.reversals.plus(amount)?;
        next.validated()
    }

    fn validated(self) -> Option<Totals> {
        self.checked_count()?;
        self.checked_net_payable()?;
        Some(self)
    }
}

/// A destination's totals in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestinationTotals {
    /// Number of presentments (debits and credits).
    pub count: u64,
    /// Purchases + completions, minor units.
    pub gross_debits: i128,
    /// Refunds, minor units.
    pub credits: i128,
}

impl DestinationTotals {
    /// Gross debits − credits, minor units (signed).
    pub fn net_position(&self) -> i128 {
        self.gross_debits.saturating_sub(self.credits)
    }

    fn with_presentment(&self, kind: ClearedKind, amount: u64) -> Option<DestinationTotals> {
        let mut next = *self;
        next.count = next.count.checked_add(1)?;
        if kind.is_credit() {
            next.credits = next.credits.checked_add(i128::from(amount))?;
        } else {
            next.gross_debits = next.gross_debits.checked_add(i128::from(amount))?;
        }
        next.gross_debits.checked_sub(next.credits)?;
        Some(next)
    }
}

/// The currency of a report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyInfo {
    /// The code as the transactions carried it (trimmed), normally the three
    /// digits of ISO 4217 numeric.
    pub code: String,
    /// The ISO 4217 currency, `None` if `code` is not an assigned numeric
    /// code.
    pub currency: Option<Currency>,
}

impl CurrencyInfo {
    fn new(code: &str) -> CurrencyInfo {
        CurrencyInfo {
            code: code.to_owned(),
            currency: currency::by_numeric(code),
        }
    }

    /// Whether the code is a known ISO 4217 numeric code.
    pub fn known(&self) -> bool {
        self.currency.is_some()
    }

    /// The alphabetic code, `None` for an unknown code.
    pub fn alpha(&self) -> Option<&'static str> {
        self.currency.map(|c| c.alpha)
    }

    /// The minor-unit exponent the report uses: the currency's, or 2 for an
    /// unknown code.
    pub fn exponent(&self) -> u8 {
        self.currency.map_or(2, |c| c.exponent)
    }

    /// `amount` minor units as a decimal with [`CurrencyInfo::exponent`].
    pub fn format(&self, amount: i128) -> String {
        currency::format_minor(amount, self.exponent())
    }

    /// A short label: the alphabetic code, or the code as given followed by
    /// `?` when unknown.
    pub fn label(&self) -> String {
        match self.alpha() {
            Some(alpha) => alpha.to_owned(),
            None => format!("{}?", self.code),
        }
    }
}

/// One merchant's settlement in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantLine {
    /// Merchant id (field 42, trimmed).
    pub merchant: String,
    /// Currency.
    pub currency: CurrencyInfo,
    /// Totals.
    pub totals: Totals,
}

/// One destination's position in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationLine {
    /// Destination name.
    pub destination: String,
    /// Currency.
    pub currency: CurrencyInfo,
    /// Totals.
    pub totals: DestinationTotals,
}

/// All merchants' totals in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyLine {
    /// Currency.
    pub currency: CurrencyInfo,
    /// Totals (the sum of the merchant lines in this currency).
    pub totals: Totals,
}

/// Gross debits and credits, minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gross {
    /// Purchases + completions.
    pub debits: i128,
    /// Refunds.
    pub credits: i128,
}

/// The settlement report: per merchant and currency, per destination and
/// currency, per currency. Each list is sorted by its keys (merchant or
/// destination, then currency code; currencies by code), so the report is
/// the same for the same input in any order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettlementReport {
    /// Per merchant and currency.
    pub merchants: Vec<MerchantLine>,
    /// Per destination and currency.
    pub destinations: Vec<DestinationLine>,
    /// Per currency.
    pub currencies: Vec<CurrencyLine>,
}

/// The streaming aggregator behind the [`SettlementReport`].
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pricing: PricingTable,
    /// merchant → currency → totals.
    merchants: BTreeMap<String, BTreeMap<String, Totals>>,
    /// destination → currency → totals.
    destinations: BTreeMap<String, BTreeMap<String, DestinationTotals>>,
    /// currency → totals.
    currencies: BTreeMap<String, Totals>,
}

/// Sets `map[key]` to `value` (allocates the key only when it is new).
fn put<V>(map: &mut BTreeMap<String, V>, key: &str, value: V) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
    } else {
        map.insert(key.to_owned(), value);
    }
}

/// Sets `map[outer][inner]` to `value`.
fn put2<V>(map: &mut BTreeMap<String, BTreeMap<String, V>>, outer: &str, inner: &str, value: V) {
    if let Some(by_inner) = map.get_mut(outer) {
        put(by_inner, inner, value);
    } else {
        map.insert(
            outer.to_owned(),
            BTreeMap::from([(inner.to_owned(), value)]),
        );
    }
}

fn current<V: Default + Copy>(map: &BTreeMap<String, BTreeMap<String, V>>, a: &str, b: &str) -> V {
    map.get(a)
        .and_then(|inner| inner.get(b))
        .copied()
        .unwrap_or_default()
}

impl Settlement {
    /// An empty settlement priced with `pricing`.
    pub fn new(pricing: PricingTable) -> Settlement {
        Settlement {
            pricing,
            merchants: BTreeMap::new(),
            destinations: BTreeMap::new(),
            currencies: BTreeMap::new(),
        }
    }

    /// The pricing in use.
    pub fn pricing(&self) -> &PricingTable {
        &self.pricing
    }

    /// Adds a cleared transaction: its amount to its merchant's, its
    /// destination's and its currency's totals, and its fee (see
    /// [`Pricing::fee`]) to the merchant's and the currency's. On error
    /// nothing of it is added.
    pub fn add_presentment(&mut self, p: &Presentment) -> Result<(), SettlementError> {
        let merchant = p.merchant_id.trim();
        let code = p.currency.trim();
        let fee = self
            .pricing
            .get(merchant)
            .fee_for(p.kind, p.amount)
            .map_err(|e| SettlementError::Pricing {
                txn: p.txn,
                source: Box::new(e),
            })?;
        let overflow = || SettlementError::TotalsOverflow { txn: p.txn };
        let by_merchant = current(&self.merchants, merchant, code)
            .with_presentment(p.kind, p.amount, fee)
            .ok_or_else(overflow)?;
        let by_destination = current(&self.destinations, &p.destination, code)
            .with_presentment(p.kind, p.amount)
            .ok_or_else(overflow)?;
        let by_currency = self
            .currencies
            .get(code)
            .copied()
            .unwrap_or_default()
            .with_presentment(p.kind, p.amount, fee)
            .ok_or_else(overflow)?;
        put2(&mut self.merchants, merchant, code, by_merchant);
        put2(&mut self.destinations, &p.destination, code, by_destination);
        put(&mut self.currencies, code, by_currency);
        Ok(())
    }

    /// Adds a reversal of the day to its merchant's and its currency's
    /// reversal tally (information only: see the module documentation). On
    /// error nothing of it is added.
    pub fn add_reversal(&mut self, r: &Reversed) -> Result<(), SettlementError> {
        let merchant = r.merchant_id.trim();
        let code = r.currency.trim();
        let overflow = || SettlementError::TotalsOverflow { txn: r.txn };
        let by_merchant = current(&self.merchants, merchant, code)
            .with_reversal(r.amount)
            .ok_or_else(overflow)?;
        let by_currency = self
            .currencies
            .get(code)
            .copied()
            .unwrap_or_default()
            .with_reversal(r.amount)
            .ok_or_else(overflow)?;
        put2(&mut self.merchants, merchant, code, by_merchant);
        put(&mut self.currencies, code, by_currency);
        Ok(())
    }

    /// The report of everything added so far.
    pub fn report(&self) -> SettlementReport {
        let merchants = self
            .merchants
            .iter()
            .flat_map(|(merchant, by_currency)| {
                by_currency.iter().map(move |(code, totals)| MerchantLine {
                    merchant: merchant.clone(),
                    currency: CurrencyInfo::new(code),
                    totals: *totals,
                })
            })
            .collect();
        let destinations = self
            .destinations
            .iter()
            .flat_map(|(destination, by_currency)| {
                by_currency
                    .iter()
                    .map(move |(code, totals)| DestinationLine {
                        destination: destination.clone(),
                        currency: CurrencyInfo::new(code),
                        totals: *totals,
                    })
            })
            .collect();
        let currencies = self
            .currencies
            .iter()
            .map(|(code, totals)| CurrencyLine {
                currency: CurrencyInfo::new(code),
                totals: *totals,
            })
            .collect();
        SettlementReport {
            merchants,
            destinations,
            currencies,
        }
    }
}

mod render;

#[cfg(test)]
mod tests;
