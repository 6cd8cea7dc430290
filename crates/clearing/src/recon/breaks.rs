//! Matching the switch's items with the bank's, and the breaks found.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write};

use super::{BankItem, Direction, SwitchItem};
use crate::journal::TxnId;

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakKind {
    /// Cleared by the switch, not in the bank's file.
    MissingAtBank,
    /// In the bank's file, not cleared by the switch.
    UnknownToSwitch,
    /// Matched, but the amounts differ.
    AmountMismatch,
    /// Matched, but the currencies differ.
    CurrencyMismatch,
    /// Matched, but the masked PANs differ.
    PanMismatch,
    /// Matched, but one side debits the card and the other credits it.
    DirectionMismatch,
}

impl BreakKind {
    /// Every kind, in report order.
    pub const ALL: [BreakKind; 6] = [
        BreakKind::MissingAtBank,
        BreakKind::UnknownToSwitch,
        BreakKind::AmountMismatch,
        BreakKind::CurrencyMismatch,
        BreakKind::PanMismatch,
        BreakKind::DirectionMismatch,
    ];

    /// Name in the breaks file and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::MissingAtBank => "missing_at_bank",
            BreakKind::UnknownToSwitch => "unknown_to_switch",
            BreakKind::AmountMismatch => "amount_mismatch",
            BreakKind::CurrencyMismatch => "currency_mismatch",
            BreakKind::PanMismatch => "pan_mismatch",
            BreakKind::DirectionMismatch => "type_mismatch",
        }
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One break: a switch item, a bank item or a pair that disagree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Break {
    /// What kind.
    pub kind: BreakKind,
    /// The matching key: the ARD when the bank line (or, for a missing
    /// item, the switch item) has one, else the RRN.
    pub key: String,
    /// RRN (the switch's when there is a switch item).
    pub rrn: String,
    /// ARD (the switch's when there is a switch item); may be empty.
    pub ard: String,
    /// Line of the bank item (message number for IPM), if any.
    pub bank_line: Option<usize>,
    /// The switch's transaction id, if any.
    pub switch_txn: Option<TxnId>,
    /// The switch's amount, if any.
    pub switch_amount: Option<u64>,
    /// The bank's amount, if any.
    pub bank_amount: Option<u64>,
    /// The switch's currency, if any.
    pub switch_currency: Option<String>,
    /// The bank's currency, if any.
    pub bank_currency: Option<String>,
    /// The switch's masked PAN, if any.
    pub switch_pan: Option<String>,
    /// The bank's masked PAN, if any.
    pub bank_pan: Option<String>,
    /// The switch's debit or credit, if any.
    pub switch_direction: Option<Direction>,
    /// The bank's debit or credit, if any.
    pub bank_direction: Option<Direction>,
}

impl Break {
    fn new(kind: BreakKind, switch: Option<&SwitchItem>, bank: Option<&BankItem>) -> Break {
        let key = match (bank, switch) {
            (Some(b), _) if !b.ard.is_empty() => b.ard.clone(),
            (Some(b), _) => b.rrn.clone(),
            (None, Some(s)) if !s.ard.is_empty() => s.ard.clone(),
            (None, Some(s)) => s.rrn.clone(),
            (None, None) => String::new(),
        };
        let rrn = switch
            .map(|s| s.rrn.clone())
            .or_else(|| bank.map(|b| b.rrn.clone()))
            .unwrap_or_default();
        let ard = switch
            .map(|s| s.ard.clone())
            .filter(|a| !a.is_empty())
            .or_else(|| bank.map(|b| b.ard.clone()))
            .unwrap_or_default();
        Break {
            kind,
            key,
            rrn,
            ard,
            bank_line: bank.map(|b| b.line),
            switch_txn: switch.map(|s| s.txn),
            switch_amount: switch.map(|s| s.amount),
            bank_amount: bank.map(|b| b.amount),
            switch_currency: switch.map(|s| s.currency.clone()),
            bank_currency: bank.map(|b| b.currency.clone()),
            switch_pan: switch.map(|s| s.masked_pan.clone()),
            bank_pan: bank.map(|b| b.masked_pan.clone()),
            switch_direction: switch.map(|s| s.direction),
            bank_direction: bank.map(|b| b.direction),
        }
    }

    /// The masked PAN for the breaks file: the switch's, else the bank's;
    /// `switch/bank` for a PAN mismatch.
    pub fn masked_pan(&self) -> String {
        match (&self.switch_pan, &self.bank_pan) {
            (Some(s), Some(b)) if s != b => format!("{s}/{b}"),
            (Some(s), _) => s.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Matched totals of one currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Matched items.
    pub count: u64,
    /// Sum of matched debits, minor units.
    pub debits: u128,
    /// Sum of matched credits, minor units.
    pub credits: u128,
}

/// The result of a reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recon {
    switch_items: usize,
    bank_items: usize,
    matched: u64,
    totals: BTreeMap<String, Totals>,
    breaks: Vec<Break>,
}

/// How closely a switch item must agree with a bank item to be taken in a
/// matching pass.
#[derive(Debug, Clone, Copy)]
enum Closeness {
    /// Amount, currency, type and PAN.
    Exact,
    /// Amount and currency.
    AmountCurrency,
    /// Same key only.
    Key,
}

impl Closeness {
    fn accepts(self, s: &SwitchItem, b: &BankItem) -> bool {
        let amount_currency = s.amount == b.amount && s.currency == b.currency;
        match self {
            Closeness::Exact => {
                amount_currency && s.direction == b.direction && s.masked_pan == b.masked_pan
            }
            Closeness::AmountCurrency => amount_currency,
            Closeness::Key => true,
        }
    }
}

/// Reconciles what the switch cleared with what the bank settled (see the
/// [module documentation](self) for the matching rules).
pub fn reconcile(switch: Vec<SwitchItem>, bank: Vec<BankItem>) -> Recon {
    let mut by_ard: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_rrn: HashMap<&str, Vec<usize>> = HashMap::new();
    for (at, item) in switch.iter().enumerate() {
        if !item.ard.is_empty() {
            by_ard.entry(item.ard.as_str()).or_default().push(at);
        }
        if !item.rrn.is_empty() {
            by_rrn.entry(item.rrn.as_str()).or_default().push(at);
        }
    }
    let mut taken = vec![false; switch.len()];
    let mut pair: Vec<Option<usize>> = vec![None; bank.len()];
    for closeness in [Closeness::Exact, Closeness::AmountCurrency, Closeness::Key] {
        for (b, slot) in bank.iter().zip(pair.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let candidates = if b.ard.is_empty() {
                by_rrn.get(b.rrn.as_str())
            } else {
                by_ard.get(b.ard.as_str())
            };
            let chosen = candidates.into_iter().flatten().copied().find(|&at| {
                taken.get(at) == Some(&false)
                    && switch.get(at).is_some_and(|s| closeness.accepts(s, b))
            });
            if let Some(at) = chosen {
                if let Some(t) = taken.get_mut(at) {
                    *t = true;
                }
                *slot = Some(at);
            }
        }
    }

    let mut recon = Recon {
        switch_items: switch.len(),
        bank_items: bank.len(),
        ..Recon::default()
    };
    for (b, slot) in bank.iter().zip(&pair) {
        let Some(s) = slot.and_then(|at| switch.get(at)) else {
            recon
                .breaks
                .push(Break::new(BreakKind::UnknownToSwitch, None, Some(b)));
            continue;
        };
        let differences = [
            (s.amount != b.amount, BreakKind::AmountMismatch),
            (s.currency != b.currency, BreakKind::CurrencyMismatch),
            (s.masked_pan != b.masked_pan, BreakKind::PanMismatch),
            (s.direction != b.direction, BreakKind::DirectionMismatch),
        ];
        let mut clean = true;
        for (differs, kind) in differences {
            if differs {
                clean = false;
                recon.breaks.push(Break::new(kind, Some(s), Some(b)));
            }
        }
        if clean {
            recon.matched += 1;
            let totals = recon.totals.entry(s.currency.clone()).or_default();
            totals.count += 1;
            let amount = u128::from(s.amount);
            match s.direction {
                Direction::Debit => totals.debits = totals.debits.saturating_add(amount),
                Direction::Credit => totals.credits = totals.credits.saturating_add(amount),
            }
        }
    }
    for (s, was_taken) in switch.iter().zip(&taken) {
        if !was_taken {
            recon
                .breaks
                .push(Break::new(BreakKind::MissingAtBank, Some(s), None));
        }
    }
    recon.breaks.sort();
    recon
}

/// Quotes a CSV value if it needs it.
fn csv_value(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Header of the breaks file written by [`Recon::write_breaks`].
pub const BREAKS_HEADER: &str = "break,key,rrn,ard,switch_amount,bank_amount,switch_currency,\
bank_currency,masked_pan,bank_line,switch_txn,switch_type,bank_type";

impl Recon {
    /// The breaks, in their deterministic order.
    pub fn breaks(&self) -> &[Break] {
        &self.breaks
    }

    /// Pairs that agree in everything.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// Matched totals per currency.
    pub fn totals(&self) -> &BTreeMap<String, Totals> {
        &self.totals
    }

    /// Breaks of one kind.
    pub fn count(&self, kind: BreakKind) -> usize {
        self.breaks.iter().filter(|b| b.kind == kind).count()
    }

    /// Whether there is no break at all.
    pub fn is_clean(&self) -> bool {
        self.breaks.is_empty()
    }

    /// Writes the breaks as CSV: the [`BREAKS_HEADER`] line, then one line
    /// per break (`break,key,rrn,ard,switch_amount,bank_amount,
    /// switch_currency,bank_currency,masked_pan,bank_line,switch_txn,
    /// switch_type,bank_type`); a side that has no item leaves its columns
    /// empty.
    pub fn write_breaks(&self, mut out: impl Write) -> io::Result<()> {
        writeln!(out, "{BREAKS_HEADER}")?;
        for b in &self.breaks {
            let columns = [
                b.kind.as_str().to_string(),
                csv_value(&b.key),
                csv_value(&b.rrn),
                csv_value(&b.ard),
                opt(b.switch_amount),
                opt(b.bank_amount),
                csv_value(&opt(b.switch_currency.as_deref())),
                csv_value(&opt(b.bank_currency.as_deref())),
                csv_value(&b.masked_pan()),
                opt(b.bank_line),
                opt(b.switch_txn),
                opt(b.switch_direction),
                opt(b.bank_direction),
            ];
            writeln!(out, "{}", columns.join(","))?;
        }
        out.flush()
    }

    /// A human summary: items on each side, count per outcome, matched
    /// amounts per currency.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "switch items: {}\nbank items: {}\nmatched: {}\n",
            self.switch_items, self.bank_items, self.matched
        );
        for kind in BreakKind::ALL {
            text.push_str(&format!("{kind}: {}\n", self.count(kind)));
        }
        for (currency, t) in &self.totals {
            text.push_str(&format!(
                "matched {currency}: {} item(s), debits {}, credits {}\n",
                t.count, t.debits, t.credits
            ));
        }
        text.push_str(if self.is_clean() {
            "clean\n"
        } else {
            "breaks found\n"
        });
        text
    }
}
