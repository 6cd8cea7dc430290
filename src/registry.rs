//! Terminal registry: terminal id → merchant, location, MCC, currency, what
//! the terminal may do, and whether it is enabled.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::security::keys::KeyStore;
use crate::security::profile::{Protection, ProtectionEntry, Side};
use crate::txn::TxnKind;

/// One `[[terminal]]` entry as written in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalEntry {
    /// Terminal id (field 41), 1 to 8 characters; padded with spaces to 8.
    pub id: String,
    /// Merchant id (field 42), 1 to 15 characters; padded with spaces.
    pub merchant_id: String,
    /// Name and location (field 43), up to 40 characters; padded with spaces.
    pub name_location: String,
    /// Merchant category code (field 18), 4 digits.
    pub mcc: String,
    /// ISO 4217 numeric currency (field 49), 3 digits.
    pub currency: String,
    /// Kinds of transaction allowed (default: all).
    #[serde(default = "all_kinds")]
    pub allowed: Vec<TxnKind>,
    /// A disabled terminal is declined locally.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// MAC and PIN keys (`security = { mac = …, mac_key = …, … }`).
    #[serde(default)]
    pub security: ProtectionEntry,
}

fn all_kinds() -> Vec<TxnKind> {
    TxnKind::ALL.to_vec()
}

fn enabled() -> bool {
    true
}

/// A registered terminal, with fields padded to their wire lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// Field 41, 8 characters.
    pub id: String,
    /// Field 42, 15 characters.
    pub merchant_id: String,
    /// Field 43, 40 characters.
    pub name_location: String,
    /// Field 18.
    pub mcc: String,
    /// Field 49.
    pub currency: String,
    /// Allowed kinds.
    pub allowed: BTreeSet<TxnKind>,
    /// Enabled flag.
    pub enabled: bool,
    /// MAC and PIN keys.
    pub protection: Arc<Protection>,
}

/// All registered terminals. Immutable; a reload builds a new one.
#[derive(Debug, Clone, Default)]
pub struct Terminals {
    by_id: HashMap<String, Arc<Terminal>>,
}

fn pad(value: &str, width: usize) -> String {
    format!("{value:<width$}")
}

fn printable(value: &str) -> bool {
    value.bytes().all(|b| (0x20..=0x7E).contains(&b))
}

impl Terminals {
    /// Validates entries; each comes with the location to name in errors
    /// (`file: terminal[3]`).
    /// Keys named in a terminal's `security` table are taken from `store`.
    pub fn build(
        entries: Vec<(String, TerminalEntry)>,
        store: Option<&KeyStore>,
    ) -> Result<Terminals, Vec<String>> {
        let mut problems = Vec::new();
        let mut by_id = HashMap::new();
        for (at, t) in entries {
            let mut bad = |key: &str, reason: &str| problems.push(format!("{at}.{key}: {reason}"));
            if t.id.is_empty() || t.id.len() > 8 || !printable(&t.id) || t.id.trim().is_empty() {
                bad("id", "must be 1 to 8 printable characters");
                continue;
            }
            if t.merchant_id.is_empty() || t.merchant_id.len() > 15 || !printable(&t.merchant_id) {
                bad("merchant_id", "must be 1 to 15 printable characters");
            }
            if t.name_location.len() > 40 || !printable(&t.name_location) {
                bad("name_location", "must be at most 40 printable characters");
            }
            if t.mcc.len() != 4 || !t.mcc.bytes().all(|b| b.is_ascii_digit()) {
                bad("mcc", "must be 4 digits");
            }
            if t.currency.len() != 3 || !t.currency.bytes().all(|b| b.is_ascii_digit()) {
                bad("currency", "must be a 3-digit ISO 4217 numeric code");
            }
            let protection = t
                .security
                .resolve(Side::Terminal, None, store)
                .unwrap_or_else(|errors| {
                    for (key, reason) in errors {
                        bad(&format!("security.{key}"), &reason);
                    }
                    Protection::default()
                });
            let id = pad(&t.id, 8);
            let terminal = Terminal {
                id: id.clone(),
                merchant_id: pad(&t.merchant_id, 15),
                name_location: pad(&t.name_location, 40),
                mcc: t.mcc.clone(),
                currency: t.currency.clone(),
                allowed: t.allowed.iter().copied().collect(),
                enabled: t.enabled,
                protection: Arc::new(protection),
            };
            if by_id.insert(id, Arc::new(terminal)).is_some() {
                bad("id", &format!("`{}` is registered twice", t.id));
            }
        }
        if problems.is_empty() {
            Ok(Terminals { by_id })
        } else {
            Err(problems)
        }
    }

    /// The terminal with this field-41 value.
    pub fn get(&self, id: &str) -> Option<&Arc<Terminal>> {
        self.by_id.get(id)
    }

    /// Every terminal, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Terminal>> {
        self.by_id.values()
    }

    /// Number of terminals.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> TerminalEntry {
        TerminalEntry {
            id: id.into(),
            merchant_id: "M1".into(),
            name_location: "SHOP".into(),
            mcc: "5411".into(),
            currency: "978".into(),
            allowed: vec![TxnKind::Purchase],
            enabled: true,
            security: ProtectionEntry::default(),
        }
    }

    #[test]
    fn pads_to_wire_lengths_and_finds_by_field_41() {
        let t = Terminals::build(vec![("t".into(), entry("T1"))], None).unwrap();
        let found = t.get("T1      ").unwrap();
        assert_eq!(found.merchant_id.len(), 15);
        assert_eq!(found.name_location.len(), 40);
        assert!(found.allowed.contains(&TxnKind::Purchase));
    }

    #[test]
    fn errors_name_entry_and_key() {
        let mut bad = entry("T1");
        bad.mcc = "54".into();
        let errors = Terminals::build(
            vec![
                ("f.toml: terminal[0]".into(), bad),
                ("f.toml: terminal[1]".into(), entry("T1")),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(errors[0], "f.toml: terminal[0].mcc: must be 4 digits");
        assert!(errors[1].contains("terminal[1].id: `T1` is registered twice"));
    }
}
