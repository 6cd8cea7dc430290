//! The `[risk]` configuration section as written in TOML, and its errors.

use serde::Deserialize;

use crate::txn::TxnKind;

/// Default bound on the cards tracked per velocity rule.
pub const DEFAULT_MAX_CARDS: usize = 1_000_000;

/// The `[risk]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Bound on the cards tracked per velocity rule (default
    /// [`DEFAULT_MAX_CARDS`]).
    #[serde(default)]
    pub max_cards: Option<usize>,
    /// `[[risk.block]]`: block lists.
    #[serde(default)]
    pub block: Vec<BlockRule>,
    /// `[[risk.amount_limit]]`: per-transaction amount limits.
    #[serde(default)]
    pub amount_limit: Vec<AmountLimitRule>,
    /// `[[risk.velocity]]`: per-card rolling-window limits.
    #[serde(default)]
    pub velocity: Vec<VelocityRule>,
    /// `[[risk.merchant_daily]]`: per-merchant totals per business date.
    #[serde(default)]
    pub merchant_daily: Vec<MerchantDailyRule>,
    /// `[[risk.currencies]]`: currencies each merchant may take.
    #[serde(default)]
    pub currencies: Vec<CurrencyRule>,
}

/// `[[risk.block]]`: cards, BINs and terminals that are always declined.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRule {
    /// Rule id, unique across all risk rules.
    pub id: String,
    /// PAN prefixes, 1 to 11 digits (response code `62`).
    #[serde(default)]
    pub bins: Vec<String>,
    /// Inclusive prefix ranges, both ends of the same length, 1 to 11
    /// digits, low first (response code `62`).
    #[serde(default)]
    pub ranges: Vec<[String; 2]>,
    /// Keyed card digests (HMAC-SHA256 of the PAN), 64 hex characters
    /// (response code `62`).
    #[serde(default)]
    pub cards: Vec<String>,
    /// Terminal ids (response code `58`).
    #[serde(default)]
    pub terminals: Vec<String>,
}

/// `[[risk.amount_limit]]`: a per-transaction amount limit (response code
/// `61`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountLimitRule {
    /// Rule id, unique across all risk rules.
    pub id: String,
    /// Merchant category codes the limit applies to; empty means any.
    #[serde(default)]
    pub mcc: Vec<String>,
    /// Terminals the limit applies to; empty means any.
    #[serde(default)]
    pub terminals: Vec<String>,
    /// ISO 4217 numeric currency, 3 digits; the limit applies only to it.
    pub currency: String,
    /// Largest allowed amount in minor units; more is a hit.
    pub max_amount: u64,
    /// Kinds checked (default purchase and authorization; never reversal).
    #[serde(default)]
    pub kinds: Option<Vec<TxnKind>>,
}

/// `[[risk.velocity]]`: per-card limits over a rolling window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityRule {
    /// Rule id, unique across all risk rules.
    pub id: String,
    /// Window length in seconds, greater than 0.
    pub window_secs: u64,
    /// Transactions allowed in the window, greater than 0; the next one is
    /// declined with `65`.
    pub max_count: u32,
    /// Largest total in minor units in the window, this transaction
    /// included (response code `61`); needs `currency`.
    #[serde(default)]
    pub max_amount: Option<u64>,
    /// When set, only transactions in this currency count.
    #[serde(default)]
    pub currency: Option<String>,
    /// Kinds counted (default purchase and authorization; never reversal).
    #[serde(default)]
    pub kinds: Option<Vec<TxnKind>>,
}

/// `[[risk.merchant_daily]]`: a merchant's total per business date
/// (response code `61`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantDailyRule {
    /// Rule id, unique across all risk rules.
    pub id: String,
    /// Merchants the rule applies to, each with its own total; empty means
    /// every merchant.
    #[serde(default)]
    pub merchants: Vec<String>,
    /// ISO 4217 numeric currency, 3 digits; only it counts.
    pub currency: String,
    /// Largest total per merchant and business date, in minor units.
    pub max_amount: u64,
    /// Kinds counted (default purchase and authorization; never reversal).
    #[serde(default)]
    pub kinds: Option<Vec<TxnKind>>,
}

/// `[[risk.currencies]]`: the currencies merchants may take (response code
/// `57`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyRule {
    /// Rule id, unique across all risk rules.
    pub id: String,
    /// Merchants the rule applies to; empty means every merchant.
    #[serde(default)]
    pub merchants: Vec<String>,
    /// Allowed ISO 4217 numeric currencies, at least one.
    pub allowed: Vec<String>,
    /// Kinds checked (default authorization, purchase and refund; never
    /// reversal).
    #[serde(default)]
    pub kinds: Option<Vec<TxnKind>>,
}

/// Why a `[risk]` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskError {
    /// A rule is invalid: names the rule id, the key and the reason.
    #[error("risk rule {rule:?}: {key}: {reason}")]
    Rule {
        /// The rule's id as written.
        rule: String,
        /// The offending key, with the list index where there is one
        /// (`bins[3]`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `max_cards` is 0.
    #[error("risk: max_cards: must be greater than 0")]
    MaxCards,
}

impl RiskError {
    pub(super) fn rule(rule: &str, key: impl Into<String>, reason: impl Into<String>) -> Self {
        RiskError::Rule {
            rule: rule.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}
