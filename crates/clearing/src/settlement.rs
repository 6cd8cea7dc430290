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
use std::fmt::Write as _;
use std::io::{self, Write};

use rust_decimal::Decimal;

use super::currency::{self, Currency};
use super::item::{ClearedKind, Presentment, Reversed};
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

/// The CSV columns, in order.
const CSV_HEADER: &[&str] = &[
    "record",
    "merchant",
    "destination",
    "currency",
    "currency_alpha",
    "currency_exponent",
    "currency_known",
    "count",
    "purchase_count",
    "purchase_minor",
    "purchase",
    "completion_count",
    "completion_minor",
    "completion",
    "refund_count",
    "refund_minor",
    "refund",
    "reversal_count",
    "reversal_minor",
    "reversal",
    "gross_debits_minor",
    "gross_debits",
    "credits_minor",
    "credits",
    "fees_minor",
    "fees",
    "net_payable_minor",
    "net_payable",
    "net_position_minor",
    "net_position",
];

/// One CSV field: as is, or in double quotes with quotes doubled when it
/// holds a comma, a quote, a line break or surrounding spaces (RFC 4180).
fn csv_field(value: &str) -> String {
    let needs_quotes =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Count, minor units and formatted amount of a tally.
fn tally_fields(currency: &CurrencyInfo, tally: &Tally) -> [String; 3] {
    [
        tally.count.to_string(),
        tally.amount.to_string(),
        currency.format(tally.amount),
    ]
}

/// Minor units and formatted amount.
fn amount_fields(currency: &CurrencyInfo, amount: i128) -> [String; 2] {
    [amount.to_string(), currency.format(amount)]
}

fn currency_fields(currency: &CurrencyInfo) -> [String; 4] {
    [
        currency.code.clone(),
        currency.alpha().unwrap_or("").to_owned(),
        currency.exponent().to_string(),
        if currency.known() { "yes" } else { "no" }.to_owned(),
    ]
}

/// The CSV row of merchant or currency totals (without the first three
/// columns).
fn totals_fields(currency: &CurrencyInfo, totals: &Totals) -> Vec<String> {
    let mut row = Vec::with_capacity(CSV_HEADER.len());
    row.extend(currency_fields(currency));
    row.push(totals.count().to_string());
    for tally in [
        &totals.purchases,
        &totals.completions,
        &totals.refunds,
        &totals.reversals,
    ] {
        row.extend(tally_fields(currency, tally));
    }
    row.extend(amount_fields(currency, totals.gross_debits()));
    row.extend(amount_fields(currency, totals.credits()));
    row.extend(amount_fields(currency, totals.fees));
    row.extend(amount_fields(currency, totals.net_payable()));
    row.extend(amount_fields(currency, totals.net_position()));
    row
}

/// Replaces control characters so that a text field cannot break the
/// terminal table.
fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// One line of an aligned table: the first `left` cells left-aligned, the
/// others right-aligned, two spaces apart, no trailing spaces.
fn table_line<'a>(
    out: &mut String,
    widths: &[usize],
    left: usize,
    cells: impl Iterator<Item = &'a str>,
) {
    let mut text = String::new();
    for (i, (cell, width)) in cells.zip(widths).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        if i < left {
            let _ = write!(text, "{cell:<width$}");
        } else {
            let _ = write!(text, "{cell:>width$}");
        }
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// An aligned text table with a header and a rule: the first `left`
/// columns left-aligned, the others (numbers) right-aligned.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], left: usize) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    table_line(out, &widths, left, headers.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    table_line(out, &widths, left, rule.iter().map(String::as_str));
    for row in rows {
        table_line(out, &widths, left, row.iter().map(String::as_str));
    }
}

impl SettlementReport {
    /// Per currency, the gross debits and credits summed over the merchant
    /// lines: for checking that the sum over merchants equals the sum over
    /// the clearing files (see [`SettlementReport::destination_gross_by_currency`])
    /// and the journal.
    pub fn gross_by_currency(&self) -> BTreeMap<String, Gross> {
        let mut sums: BTreeMap<String, Gross> = BTreeMap::new();
        for line in &self.merchants {
            let sum = sums.entry(line.currency.code.clone()).or_default();
            // Partial sums of non-negative values never exceed the currency
            // totals, which were checked when added.
            sum.debits = sum.debits.saturating_add(line.totals.gross_debits());
            sum.credits = sum.credits.saturating_add(line.totals.credits());
        }
        sums
    }

    /// Per currency, the gross debits and credits summed over the
    /// destination lines (what the clearing files carry).
    pub fn destination_gross_by_currency(&self) -> BTreeMap<String, Gross> {
        let mut sums: BTreeMap<String, Gross> = BTreeMap::new();
        for line in &self.destinations {
            let sum = sums.entry(line.currency.code.clone()).or_default();
            sum.debits = sum.debits.saturating_add(line.totals.gross_debits);
            sum.credits = sum.credits.saturating_add(line.totals.credits);
        }
        sums
    }

    /// Whether some line has a currency code that is not ISO 4217 (its
    /// amounts are shown with exponent 2).
    pub fn has_unknown_currency(&self) -> bool {
        self.currencies.iter().any(|line| !line.currency.known())
            || self.destinations.iter().any(|line| !line.currency.known())
    }

    /// Writes the report as CSV: a header line, then one line per record,
    /// `\n`-terminated. The first column, `record`, is `currency`,
    /// `destination` or `merchant` (in that order); columns that do not apply
    /// to a record are empty. Every amount appears twice: as an integer in
    /// minor units (`…_minor`) and as a decimal with the currency's exponent.
    /// `currency` is the numeric code as the transactions carried it,
    /// `currency_alpha` the ISO 4217 alphabetic code (empty and
    /// `currency_known` = `no` for an unknown code, whose amounts use
    /// exponent 2). Text fields are quoted per RFC 4180 when they hold a
    /// comma, a quote, a line break or surrounding spaces; they are not
    /// otherwise altered (a spreadsheet opening the file should import text
    /// columns as text).
    pub fn write_csv(&self, mut out: impl Write) -> io::Result<()> {
        let mut write_row = |row: &[String]| -> io::Result<()> {
            let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.write_all(line.join(",").as_bytes())?;
            out.write_all(b"\n")
        };
        let header: Vec<String> = CSV_HEADER.iter().map(|h| (*h).to_owned()).collect();
        write_row(&header)?;
        for line in &self.currencies {
            let mut row = vec!["currency".to_owned(), String::new(), String::new()];
            row.extend(totals_fields(&line.currency, &line.totals));
            write_row(&row)?;
        }
        for line in &self.destinations {
            let c = &line.currency;
            let t = &line.totals;
            let mut row = vec![
                "destination".to_owned(),
                String::new(),
                line.destination.clone(),
            ];
            row.extend(currency_fields(c));
            row.push(t.count.to_string());
            // purchase, completion, refund, reversal: 4 × 3 empty columns.
            row.extend(std::iter::repeat_n(String::new(), 12));
            row.extend(amount_fields(c, t.gross_debits));
            row.extend(amount_fields(c, t.credits));
            // fees, net payable: not a destination's.
            row.extend(std::iter::repeat_n(String::new(), 4));
            row.extend(amount_fields(c, t.net_position()));
            write_row(&row)?;
        }
        for line in &self.merchants {
            let mut row = vec!["merchant".to_owned(), line.merchant.clone(), String::new()];
            row.extend(totals_fields(&line.currency, &line.totals));
            write_row(&row)?;
        }
        Ok(())
    }

    /// A readable table for the terminal: per currency, then per
    /// destination, then per merchant. Amounts are decimals with the
    /// currency's exponent; an unknown currency code is shown as the code
    /// followed by `?` (amounts with 2 decimals) and explained below the
    /// tables.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str("Per currency\n");
        let rows: Vec<Vec<String>> = self
            .currencies
            .iter()
            .map(|line| {
                let c = &line.currency;
                let t = &line.totals;
                vec![
                    c.label(),
                    printable(&c.code),
                    t.count().to_string(),
                    c.format(t.gross_debits()),
                    c.format(t.credits()),
                    c.format(t.fees),
                    c.format(t.net_payable()),
                    t.reversals.count.to_string(),
                    c.format(t.reversals.amount),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Currency",
                "Code",
                "Count",
                "Gross debits",
                "Credits",
                "Fees",
                "Net payable",
                "Reversals",
                "Reversed",
            ],
            &rows,
            2,
        );

        out.push_str("\nPer destination\n");
        let rows: Vec<Vec<String>> = self
            .destinations
            .iter()
            .map(|line| {
                let c = &line.currency;
                let t = &line.totals;
                vec![
                    printable(&line.destination),
                    printable(&c.label()),
                    t.count.to_string(),
                    c.format(t.gross_debits),
                    c.format(t.credits),
                    c.format(t.net_position()),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Destination",
                "Currency",
                "Count",
                "Gross debits",
                "Credits",
                "Net position",
            ],
            &rows,
            2,
        );

        out.push_str("\nPer merchant\n");
        let rows: Vec<Vec<String>> = self
            .merchants
            .iter()
            .map(|line| {
                let c = &line.currency;
                let t = &line.totals;
                vec![
                    printable(&line.merchant),
                    printable(&c.label()),
                    t.purchases.count.to_string(),
                    c.format(t.purchases.amount),
                    t.completions.count.to_string(),
                    c.format(t.completions.amount),
                    t.refunds.count.to_string(),
                    c.format(t.refunds.amount),
                    t.reversals.count.to_string(),
                    c.format(t.reversals.amount),
                    c.format(t.fees),
                    c.format(t.net_payable()),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Merchant",
                "Currency",
                "Purch.",
                "Purchases",
                "Compl.",
                "Completions",
                "Refs.",
                "Refunds",
                "Revs.",
                "Reversed",
                "Fees",
                "Net payable",
            ],
            &rows,
            2,
        );
        if self.has_unknown_currency() {
            out.push_str(
                "\n? unknown ISO 4217 numeric currency code: amounts shown with 2 decimals\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;
    use rust_decimal::RoundingStrategy;
    use zeroize::Zeroizing;

    use super::*;

    fn pct(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    fn presentment(
        txn: TxnId,
        kind: ClearedKind,
        merchant: &str,
        destination: &str,
        currency: &str,
        amount: u64,
    ) -> Presentment {
        Presentment {
            txn,
            kind,
            pan: Zeroizing::new("4111111111111111".to_owned()),
            masked_pan: "411111******1111".to_owned(),
            processing_code: if kind.is_credit() { "200000" } else { "000000" }.to_owned(),
            amount,
            approved_amount: amount,
            currency: currency.to_owned(),
            local_time: "250101120000".to_owned(),
            entry_mode: "051".to_owned(),
            condition: "00".to_owned(),
            merchant_id: merchant.to_owned(),
            mcc: "5411".to_owned(),
            name_location: "SHOP".to_owned(),
            terminal: "T1".to_owned(),
            stan: "000001".to_owned(),
            rrn: "000000000001".to_owned(),
            auth_id: "123456".to_owned(),
            destination: destination.to_owned(),
            ard: String::new(),
            date: "20250101".to_owned(),
        }
    }

    fn reversed(
        txn: TxnId,
        merchant: &str,
        destination: &str,
        currency: &str,
        amount: u64,
    ) -> Reversed {
        Reversed {
            txn,
            kind: ClearedKind::Purchase,
            merchant_id: merchant.to_owned(),
            destination: destination.to_owned(),
            currency: currency.to_owned(),
            amount,
        }
    }

    fn priced(percent: &str, fixed: u64) -> Pricing {
        Pricing::new(pct(percent), fixed).expect("valid pricing")
    }

    #[test]
    fn fee_rounds_half_away_from_zero_per_transaction() {
        // 1.75 % of 1001 = 17.5175 → 18.
        assert_eq!(priced("1.75", 0).fee(1001), Ok(18));
        // 1 % of 50 = 0.5 exactly → 1 (banker's rounding would give 0).
        assert_eq!(priced("1", 0).fee(50), Ok(1));
        // 1 % of 150 = 1.5 → 2; 1 % of 250 = 2.5 → 3 (not 2).
        assert_eq!(priced("1", 0).fee(250), Ok(3));
        // 1 % of 149 = 1.49 → 1.
        assert_eq!(priced("1", 0).fee(149), Ok(1));
        // Fixed fee added after rounding: 1.75 % of 1001 + 30 = 48.
        assert_eq!(priced("1.75", 30).fee(1001), Ok(48));
        assert_eq!(priced("0", 25).fee(0), Ok(25));
        assert_eq!(priced("2.9", 30).fee(0), Ok(30));
        // Scale beyond two decimals: 0.125 % of 400 = 0.5 → 1.
        assert_eq!(priced("0.125", 0).fee(400), Ok(1));
        assert_eq!(priced("100", 0).fee(u64::MAX), Ok(u64::MAX));
    }

    #[test]
    fn fee_overflow_and_bad_percent_are_errors() {
        assert!(matches!(
            priced("100", 1).fee(u64::MAX),
            Err(SettlementError::FeeOverflow { .. })
        ));
        assert!(matches!(
            Pricing::new(pct("-0.5"), 0),
            Err(SettlementError::PercentOutOfRange { .. })
        ));
        assert!(matches!(
            Pricing::new(pct("100.01"), 0),
            Err(SettlementError::PercentOutOfRange { .. })
        ));
        // Fields are public: a negative percentage set directly is refused
        // when pricing.
        let negative = Pricing {
            percent: pct("-1"),
            fixed: 0,
        };
        assert!(matches!(
            negative.fee(100),
            Err(SettlementError::PercentOutOfRange { .. })
        ));
        // Trailing zeros cost nothing: 50 % of u64::MAX = …807.5 → …808.
        assert_eq!(
            priced("50.000000000000000000000000", 0).fee(u64::MAX),
            Ok(9_223_372_036_854_775_808)
        );
        // Many significant digits on a huge amount: an error, never a
        // silently rounded intermediate.
        assert!(matches!(
            priced("12.3456789012345678901234567", 0).fee(u64::MAX),
            Err(SettlementError::FeeOverflow { .. })
        ));
        assert_eq!(
            priced("12.3456789012345678901234567", 0).fee(1_000_000),
            Ok(123_457)
        );
    }

    #[test]
    fn refunds_carry_no_fee() {
        let p = priced("2", 10);
        assert_eq!(p.fee_for(ClearedKind::Refund, 10_000), Ok(0));
        assert_eq!(p.fee_for(ClearedKind::Purchase, 10_000), Ok(210));
        assert_eq!(p.fee_for(ClearedKind::Completion, 10_000), Ok(210));
    }

    #[test]
    fn pricing_table_lookup_is_trimmed() {
        let mut table = PricingTable::new(priced("1", 0));
        table.insert(" M1 ", priced("2", 5));
        assert_eq!(table.get("M1             ").fixed, 5);
        assert_eq!(table.get("M1").percent, pct("2"));
        assert_eq!(table.get("M2").percent, pct("1"));
        assert_eq!(table.len(), 1);
    }

    fn sample() -> SettlementReport {
        let mut pricing = PricingTable::new(priced("1.75", 0));
        pricing.insert("SHOP-JP", priced("1", 10));
        let mut s = Settlement::new(pricing);
        let items = [
            presentment(
                1,
                ClearedKind::Purchase,
                "SHOP-US        ",
                "visa",
                "840",
                1001,
            ),
            presentment(2, ClearedKind::Completion, "SHOP-US", "visa", "840", 2000),
            presentment(3, ClearedKind::Refund, "SHOP-US", "mc", "840", 500),
            presentment(4, ClearedKind::Purchase, "SHOP-JP", "jcb", "392", 1500),
            presentment(5, ClearedKind::Purchase, "SHOP-BH", "visa", "048", 12_345),
            presentment(
                6,
                ClearedKind::Refund,
                "REFUNDS, \"ONLY\"",
                "mc",
                "840",
                700,
            ),
        ];
        for p in &items {
            s.add_presentment(p).expect("add");
        }
        s.add_reversal(&reversed(7, "SHOP-US", "visa", "840", 300))
            .expect("reversal");
        s.report()
    }

    #[test]
    fn report_totals() {
        let report = sample();
        let us = report
            .merchants
            .iter()
            .find(|l| l.merchant == "SHOP-US")
            .expect("SHOP-US line");
        assert_eq!(
            us.totals.purchases,
            Tally {
                count: 1,
                amount: 1001
            }
        );
        assert_eq!(
            us.totals.completions,
            Tally {
                count: 1,
                amount: 2000
            }
        );
        assert_eq!(
            us.totals.refunds,
            Tally {
                count: 1,
                amount: 500
            }
        );
        assert_eq!(
            us.totals.reversals,
            Tally {
                count: 1,
                amount: 300
            }
        );
        // 18 (1.75 % of 1001) + 35 (1.75 % of 2000).
        assert_eq!(us.totals.fees, 53);
        assert_eq!(us.totals.net_payable(), 1001 + 2000 - 500 - 53);
        assert_eq!(us.totals.count(), 3);

        let refunds_only = report
            .merchants
            .iter()
            .find(|l| l.merchant == "REFUNDS, \"ONLY\"")
            .expect("refund merchant");
        assert_eq!(refunds_only.totals.net_payable(), -700);
        assert_eq!(
            refunds_only
                .currency
                .format(refunds_only.totals.net_payable()),
            "-7.00"
        );

        let usd = report
            .currencies
            .iter()
            .find(|l| l.currency.code == "840")
            .expect("USD line");
        assert_eq!(usd.totals.gross_debits(), 3001);
        assert_eq!(usd.totals.credits(), 1200);
        assert_eq!(usd.totals.fees, 53);
        assert_eq!(usd.totals.net_payable(), 3001 - 1200 - 53);

        let visa_usd = report
            .destinations
            .iter()
            .find(|l| l.destination == "visa" && l.currency.code == "840")
            .expect("visa USD");
        assert_eq!(
            visa_usd.totals,
            DestinationTotals {
                count: 2,
                gross_debits: 3001,
                credits: 0
            }
        );
        let mc = report
            .destinations
            .iter()
            .find(|l| l.destination == "mc")
            .expect("mc");
        assert_eq!(mc.totals.net_position(), -1200);

        // Deterministic order: merchants sorted by id.
        let ids: Vec<&str> = report
            .merchants
            .iter()
            .map(|l| l.merchant.as_str())
            .collect();
        assert_eq!(ids, ["REFUNDS, \"ONLY\"", "SHOP-BH", "SHOP-JP", "SHOP-US"]);
    }

    #[test]
    fn csv_formats_with_currency_exponent_and_quotes_text() {
        let report = sample();
        let mut buf = Vec::new();
        report.write_csv(&mut buf).expect("csv");
        let csv = String::from_utf8(buf).expect("utf-8");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.first().copied(), Some(CSV_HEADER.join(",").as_str()));
        // Every line has the header's number of columns (outside quotes).
        for line in &lines {
            let mut in_quotes = false;
            let mut columns = 1;
            for c in line.chars() {
                match c {
                    '"' => in_quotes = !in_quotes,
                    ',' if !in_quotes => columns += 1,
                    _ => {}
                }
            }
            assert_eq!(columns, CSV_HEADER.len(), "{line}");
        }
        // JPY, exponent 0: 1500 yen, fee 1 % + 10 = 25.
        assert!(csv.contains(
            "merchant,SHOP-JP,,392,JPY,0,yes,1,1,1500,1500,0,0,0,0,0,0,0,0,0,1500,1500,0,0,25,25,1475,1475,1500,1500\n"
        ));
        // BHD, exponent 3: 12.345 dinars, fee 1.75 % = 216.0375 → 216 fils.
        assert!(csv.contains(
            "merchant,SHOP-BH,,048,BHD,3,yes,1,1,12345,12.345,0,0,0.000,0,0,0.000,0,0,0.000,12345,12.345,0,0.000,216,0.216,12129,12.129,12345,12.345\n"
        ));
        // Refund-only merchant: quoted id, negative net.
        assert!(csv.contains("merchant,\"REFUNDS, \"\"ONLY\"\"\",,840,USD,2,yes,1,"));
        assert!(csv.contains(",-700,-7.00,-700,-7.00\n"));
        let mut jcb = vec!["destination", "", "jcb", "392", "JPY", "0", "yes", "1"];
        jcb.extend([""; 12]);
        jcb.extend(["1500", "1500", "0", "0", "", "", "", "", "1500", "1500"]);
        assert!(csv.contains(&format!("\n{}\n", jcb.join(","))), "{csv}");
        assert!(csv.contains("\ncurrency,,,048,BHD,3,yes,1,"));
        // Sections in order: currency, destination, merchant.
        let kinds: Vec<&str> = lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split(',').next())
            .collect();
        let mut sorted = kinds.clone();
        sorted.sort_by_key(|k| match *k {
            "currency" => 0,
            "destination" => 1,
            _ => 2,
        });
        assert_eq!(kinds, sorted);
    }

    #[test]
    fn summary_is_aligned_and_formatted() {
        let summary = sample().summary();
        let currency = summary.find("Per currency").expect("currency section");
        let destination = summary
            .find("Per destination")
            .expect("destination section");
        let merchant = summary.find("Per merchant").expect("merchant section");
        assert!(currency < destination && destination < merchant);
        assert!(summary.contains("12.345"));
        assert!(summary.contains("1475"));
        assert!(summary.contains("-7.00"));
        assert!(!summary.contains('?'));
        // Within a table every row has the same width as its rule (numbers
        // are right-aligned, so no row is trimmed shorter).
        let section: Vec<&str> = summary[currency..destination].lines().collect();
        let rule = section.get(2).expect("rule line");
        for row in section.iter().skip(3).filter(|l| !l.is_empty()) {
            assert_eq!(row.chars().count(), rule.chars().count(), "{row}");
        }
    }

    #[test]
    fn unknown_currency_is_flagged_with_exponent_two() {
        let mut s = Settlement::new(PricingTable::default());
        s.add_presentment(&presentment(
            1,
            ClearedKind::Purchase,
            "M",
            "d",
            "123",
            12_345,
        ))
        .expect("add");
        let report = s.report();
        let line = report.merchants.first().expect("line");
        assert!(!line.currency.known());
        assert_eq!(line.currency.exponent(), 2);
        assert_eq!(line.currency.label(), "123?");
        assert!(report.has_unknown_currency());
        let mut buf = Vec::new();
        report.write_csv(&mut buf).expect("csv");
        let csv = String::from_utf8(buf).expect("utf-8");
        assert!(csv.contains("merchant,M,,123,,2,no,1,1,12345,123.45,"));
        let summary = report.summary();
        assert!(summary.contains("123?"));
        assert!(summary.contains("unknown ISO 4217"));
    }

    #[test]
    fn a_failed_add_changes_nothing() {
        let mut s = Settlement::new(PricingTable::new(priced("100", 1)));
        let p = presentment(9, ClearedKind::Purchase, "M", "d", "840", u64::MAX);
        assert!(matches!(
            s.add_presentment(&p),
            Err(SettlementError::Pricing { txn: 9, .. })
        ));
        assert_eq!(s.report(), SettlementReport::default());
    }

    #[test]
    fn text_fields_cannot_break_the_csv() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(printable("a\u{1b}[2Jb"), "a?[2Jb");
    }

    proptest! {
        #[test]
        fn fee_matches_rust_decimal_midpoint_away_from_zero(
            amount in 0u64..1_000_000_000_000,
            mantissa in 0i64..=10_000_000,
            scale in 0u32..=6,
            fixed in 0u64..1_000,
        ) {
            let percent = Decimal::new(mantissa, scale);
            prop_assume!(percent <= Decimal::ONE_HUNDRED);
            let pricing = Pricing { percent, fixed };
            let expected = (Decimal::from(amount) * percent / Decimal::ONE_HUNDRED)
                .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                + Decimal::from(fixed);
            prop_assert_eq!(pricing.fee(amount).map(Decimal::from), Ok(expected));
        }

        #[test]
        fn gross_over_merchants_equals_destinations_equals_inputs(
            items in proptest::collection::vec(
                (0u8..3, 0usize..4, 0usize..3, 0usize..4, proptest::num::u64::ANY, any::<bool>()),
                0..60,
            ),
            percent_hundredths in 0i64..=500,
            fixed in 0u64..100,
        ) {
            let merchants = ["A", "B ", "C,\"x\"", " D"];
            let destinations = ["visa", "mc", "jcb"];
            let currencies = ["840", "392", "048", "ZZ9"];
            let mut settlement =
                Settlement::new(PricingTable::new(Pricing { percent: Decimal::new(percent_hundredths, 2), fixed }));
            let mut expected: BTreeMap<String, Gross> = BTreeMap::new();
            let mut expected_fees: BTreeMap<String, i128> = BTreeMap::new();
            for (txn, (kind, m, d, c, amount, is_reversal)) in (0u64..).zip(&items) {
                let kind = match kind {
                    0 => ClearedKind::Purchase,
                    1 => ClearedKind::Refund,
                    _ => ClearedKind::Completion,
                };
                let merchant = merchants[*m % merchants.len()];
                let destination = destinations[*d % destinations.len()];
                let currency = currencies[*c % currencies.len()];
                if *is_reversal {
                    settlement
                        .add_reversal(&reversed(txn, merchant, destination, currency, *amount))
                        .expect("reversal");
                    continue;
                }
                let p = presentment(txn, kind, merchant, destination, currency, *amount);
                match settlement.add_presentment(&p) {
                    Ok(()) => {}
                    // Huge amounts with a fixed fee may overflow u64: skipped.
                    Err(SettlementError::Pricing { .. }) => continue,
                    Err(e) => panic!("{e}"),
                }
                let sum = expected.entry(currency.to_owned()).or_default();
                if kind.is_credit() {
                    sum.credits += i128::from(*amount);
                } else {
                    sum.debits += i128::from(*amount);
                    *expected_fees.entry(currency.to_owned()).or_default() += i128::from(
                        Pricing { percent: Decimal::new(percent_hundredths, 2), fixed }
                            .fee(*amount)
                            .expect("fee"),
                    );
                }
            }
            let report = settlement.report();
            let over_merchants = report.gross_by_currency();
            let over_destinations = report.destination_gross_by_currency();
            // Reversal-only currencies have merchant lines but no
            // destination lines: compare on the presented currencies, and
            // check the others are zero.
            for (code, gross) in &over_merchants {
                let want = expected.get(code).copied().unwrap_or_default();
                prop_assert_eq!(*gross, want);
            }
            for (code, want) in &expected {
                prop_assert_eq!(over_merchants.get(code), Some(want));
            }
            prop_assert_eq!(&over_destinations, &expected);
            for line in &report.currencies {
                let want = expected.get(&line.currency.code).copied().unwrap_or_default();
                prop_assert_eq!(line.totals.gross_debits(), want.debits);
                prop_assert_eq!(line.totals.credits(), want.credits);
                let fees = expected_fees.get(&line.currency.code).copied().unwrap_or_default();
                prop_assert_eq!(line.totals.fees, fees);
                prop_assert_eq!(
                    line.totals.net_payable(),
                    want.debits - want.credits - fees
                );
                let merchant_net: i128 = report
                    .merchants
                    .iter()
                    .filter(|m| m.currency.code == line.currency.code)
                    .map(|m| m.totals.net_payable())
                    .sum();
                prop_assert_eq!(merchant_net, line.totals.net_payable());
            }
        }
    }
}
