//! The bank simulator's ledger: what it approved and what was reversed, so
//! tests can check a switch's promises from the bank's side ("every approval
//! the terminal did not get was reversed exactly once").
//!
//! Approved authorisations and financial requests are keyed by the STAN and
//! transmission time (field 7) the switch sent. A reversal names its
//! original in field 90 (1987: MTI, STAN, field 7 …) or 56 (1993: MTI, STAN,
//! `YYMMDDhhmmss` …). A repeat (`0421`/`1421`) of a reversal already applied
//! is acknowledged and counted as a repeat, not applied again — like an
//! issuer host. So is a repeat advice (`0221`/`1221`) of an advice already
//! recorded.
//!
//! The ledger also knows what the bank settles, and writes it as the bank's
//! settlement file ([`Ledger::settlement_csv`], the CSV format of
//! [`clearing::recon`]): every approved financial request with
//! processing code `00…` (a debit) or `20…` (a credit) and every approved
//! completion advice (`0220`/`1220`, a debit of its field 4); approved
//! authorisations (`0100`) by themselves do not settle. A full reversal takes
//! an item out of settlement; a partial one (field 95, its first 12 digits
//! the amount that stands) settles the amount that stands. Message classes
//! are told apart by the second MTI digit, so the 1987 and 1993 dialects
//! (`0200`/`1200`, `0220`/`1220`, `0420`/`1420`) are handled alike.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::Mutex;

use serde::Serialize;
use thiserror::Error;

use clearing::recon::{BankItem, BreakKind, Direction, write_bank_csv};
use iso8583::Message;
use iso8583::card::mask_pan;

/// One approved request and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Field 11 as the switch sent it.
    pub stan: String,
    /// Field 7 as the switch sent it.
    pub transmission: String,
    /// Field 37.
    pub rrn: String,
    /// Field 4.
    pub amount: u64,
    /// Distinct reversals applied (a correct switch sends at most one).
    pub reversals: u32,
    /// Repeats acknowledged only: of an applied reversal (`0421`), or of
    /// an advice already recorded (`0221`).
    pub repeats: u32,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    approvals: Vec<Approval>,
    /// What settles of each approval, same index as `approvals`.
    booked: Vec<Booked>,
    by_key: HashMap<(String, String), usize>,
    unmatched_reversals: u64,
}

/// The settlement side of one approval.
#[derive(Debug, Clone)]
struct Booked {
    /// Debit or credit when it settles; `None` for what does not settle
    /// (authorisations, other processing codes).
    settles: Option<Direction>,
    /// RRN for the settlement file.
    rrn: String,
    /// PAN masked to first 6 / last 4 (empty if the request had none).
    masked_pan: String,
    /// Field 49.
    currency: String,
    /// The approval code: the bank's answer, or for a completion the one
    /// it gave its pre-authorisation.
    auth_id: String,
    /// The amount that stands; `None` once fully reversed.
    standing: Option<u64>,
}

/// Breaks to put into a settlement file on purpose, so a test can check
/// that reconciliation finds exactly them. Items dropped, changed in amount
/// and changed in currency are distinct items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaks {
    /// Items left out of the file.
    pub drop: usize,
    /// Invented items added (RRNs the bank never approved).
    pub unknown: usize,
    /// Items whose amount is changed by one minor unit.
    pub amount: usize,
    /// Items whose currency is changed.
    pub currency: usize,
    /// Seed of the choice of items: the same seed and ledger give the same
    /// file.
    pub seed: u64,
}

/// The RRNs a settlement file was broken at, per kind of break (each list
/// sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Broken {
    /// Items left out.
    pub dropped: Vec<String>,
    /// Invented items.
    pub unknown: Vec<String>,
    /// Items with a changed amount.
    pub amount: Vec<String>,
    /// Items with a changed currency.
    pub currency: Vec<String>,
}

impl Broken {
    /// Every break put in, as the reconciliation should report it: kind
    /// and RRN, kinds in report order.
    pub fn all(&self) -> Vec<(BreakKind, String)> {
        [
            (BreakKind::MissingAtBank, &self.dropped),
            (BreakKind::UnknownToSwitch, &self.unknown),
            (BreakKind::AmountMismatch, &self.amount),
            (BreakKind::CurrencyMismatch, &self.currency),
        ]
        .into_iter()
        .flat_map(|(kind, rrns)| rrns.iter().map(move |rrn| (kind, rrn.clone())))
        .collect()
    }
}

/// Why a settlement file could not be written.
#[derive(Debug, Error)]
pub enum SettlementError {
    /// More items to drop or change than the ledger settles.
    #[error("{asked} item(s) to drop or change, but only {available} settle")]
    TooFewItems {
        /// `drop + amount + currency`.
        asked: usize,
        /// Items that settle.
        available: usize,
    },
    /// Writing failed.
    #[error("cannot write the settlement file: {0}")]
    Io(#[from] io::Error),
}

/// The PAN of a request, masked: field 2, or track 2 (field 35) up to its
/// separator. Empty when there is neither.
fn masked_pan_of(request: &Message) -> String {
    request
        .pan()
        .or_else(|| request.track2().map(|t| t.pan()))
        .map(|p| mask_pan(p.expose()))
        .unwrap_or_default()
}

/// The amount that stands after a reversal: field 95's first 12 digits for
/// a partial reversal, `None` for a full one.
fn standing_after(reversal: &Message) -> Option<u64> {
    let standing: u64 = reversal.text(95)?.get(..12)?.parse().ok()?;
    (standing > 0).then_some(standing)
}

/// The STAN and field 7 a reversal (or a completion advice) names as its
/// original.
fn original_of(reversal: &Message) -> Option<(String, String)> {
    if let Some(data) = reversal.text(90) {
        return Some((data.get(4..10)?.to_string(), data.get(10..20)?.to_string()));
    }
    let data = reversal.text(56)?;
    Some((data.get(4..10)?.to_string(), data.get(12..22)?.to_string()))
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records an approved request or reversal; `auth_id` is the approval
    /// code (field 38) the bank answers it with (ignored for reversals).
    pub fn record(&self, request: &Message, auth_id: &str) {
        let mti = request.mti();
        let mti = mti.as_str().as_bytes();
        let class = mti.get(1).copied();
        let function = mti.get(2).copied();
        let repeat = mti.get(3) == Some(&b'1');
        let mut guard = self.lock();
        let inner = &mut *guard;
        match class {
            Some(b'1' | b'2') => {
                let stan = request.text(11).unwrap_or_default().to_string();
                let transmission = request.text(7).unwrap_or_default().to_string();
                let key = (stan, transmission);
                if repeat
                    && let Some(a) = inner
                        .by_key
                        .get(&key)
                        .copied()
                        .and_then(|at| inner.approvals.get_mut(at))
                {
                    a.repeats += 1;
                    return;
                }
                let amount = request.text(4).and_then(|a| a.parse().ok()).unwrap_or(0);
                let approval = Approval {
                    stan: key.0.clone(),
                    transmission: key.1.clone(),
                    rrn: request.text(37).unwrap_or_default().to_string(),
                    amount,
                    reversals: 0,
                    repeats: 0,
                };
                let mut booked = Booked {
                    settles: None,
                    rrn: approval.rrn.clone(),
                    masked_pan: masked_pan_of(request),
                    currency: request.text(49).unwrap_or_default().to_string(),
                    auth_id: auth_id.to_string(),
                    standing: Some(amount),
                };
                if class == Some(b'2') && function == Some(b'0') {
                    let code = request.processing_code().unwrap_or_default();
                    booked.settles = if code.starts_with("00") {
                        Some(Direction::Debit)
                    } else if code.starts_with("20") {
                        Some(Direction::Credit)
                    } else {
                        None
                    };
                } else if class == Some(b'2') && function == Some(b'2') {
                    booked.settles = Some(Direction::Debit);
                    let preauth = original_of(request)
                        .and_then(|k| inner.by_key.get(&k).copied())
                        .and_then(|at| inner.booked.get(at));
                    if let Some(preauth) = preauth {
                        booked.auth_id.clone_from(&preauth.auth_id);
                        for (mine, theirs) in [
                            (&mut booked.rrn, &preauth.rrn),
                            (&mut booked.masked_pan, &preauth.masked_pan),
                            (&mut booked.currency, &preauth.currency),
                        ] {
                            if mine.is_empty() {
                                mine.clone_from(theirs);
                            }
                        }
                    }
                }
                let at = inner.approvals.len();
                inner.approvals.push(approval);
                inner.booked.push(booked);
                inner.by_key.insert(key, at);
            }
            Some(b'4') => {
                let found = original_of(request).and_then(|k| inner.by_key.get(&k).copied());
                let Some(at) = found else {
                    inner.unmatched_reversals += 1;
                    return;
                };
                let applied = match inner.approvals.get_mut(at) {
                    Some(a) if repeat && a.reversals > 0 => {
                        a.repeats += 1;
                        false
                    }
                    Some(a) => {
                        a.reversals += 1;
                        true
                    }
                    None => false,
                };
                if applied && let Some(booked) = inner.booked.get_mut(at) {
                    booked.standing = booked.standing.and(standing_after(request));
                }
            }
            _ => {}
        }
    }

    /// What the bank settles, in arrival order: one item per approved
    /// purchase, refund and completion, at the amount that stands after
    /// reversals; fully reversed ones left out. Items carry no ARD (the
    /// bank simulator does not see clearing) and line 0.
    pub fn settlement(&self) -> Vec<BankItem> {
        self.lock()
            .booked
            .iter()
            .filter_map(|b| {
                Some(BankItem {
                    line: 0,
                    rrn: b.rrn.clone(),
                    ard: String::new(),
                    masked_pan: b.masked_pan.clone(),
                    amount: b.standing?,
                    currency: b.currency.clone(),
                    auth_code: b.auth_id.clone(),
                    direction: b.settles?,
                })
            })
            .collect()
    }

    /// Writes the bank's settlement file (CSV, see
    /// [`clearing::recon`]) of [`Ledger::settlement`], with `breaks`
    /// put in on purpose; returns the RRNs broken. Which items are broken
    /// and where invented items go depend only on the ledger and
    /// `breaks.seed`. Amounts change by +1 minor unit (−1 at `u64::MAX`),
    /// currencies to `840`, or `978` for items in `840`; invented items are
    /// debits with RRNs the ledger does not hold.
    pub fn settlement_csv(
        &self,
        breaks: &Breaks,
        out: impl Write,
    ) -> Result<Broken, SettlementError> {
        let mut items = self.settlement();
        let asked = breaks
            .drop
            .saturating_add(breaks.amount)
            .saturating_add(breaks.currency);
        if asked > items.len() {
            return Err(SettlementError::TooFewItems {
                asked,
                available: items.len(),
            });
        }
        let mut rng = fastrand::Rng::with_seed(breaks.seed);
        let mut order: Vec<usize> = (0..items.len()).collect();
        rng.shuffle(&mut order);
        let (dropped, rest) = order.split_at(breaks.drop);
        let (amount, rest) = rest.split_at(breaks.amount);
        let currency = rest.get(..breaks.currency).unwrap_or_default();
        let mut broken = Broken::default();
        for &at in amount {
            if let Some(item) = items.get_mut(at) {
                item.amount = item.amount.checked_add(1).unwrap_or(u64::MAX - 1);
                broken.amount.push(item.rrn.clone());
            }
        }
        for &at in currency {
            if let Some(item) = items.get_mut(at) {
                item.currency = if item.currency == "840" { "978" } else { "840" }.into();
                broken.currency.push(item.rrn.clone());
            }
        }
        let dropped: HashSet<usize> = dropped.iter().copied().collect();
        let mut kept = Vec::with_capacity(items.len());
        for (at, item) in items.into_iter().enumerate() {
            if dropped.contains(&at) {
                broken.dropped.push(item.rrn);
            } else {
                kept.push(item);
            }
        }
        let mut rrns: HashSet<String> = self
            .lock()
            .approvals
            .iter()
            .map(|a| a.rrn.clone())
            .collect();
        let currency = kept
            .first()
            .map_or_else(|| "978".to_string(), |i| i.currency.clone());
        for _ in 0..breaks.unknown {
            let rrn = loop {
                let candidate = format!("9{:011}", rng.u64(..100_000_000_000));
                if rrns.insert(candidate.clone()) {
                    break candidate;
                }
            };
            let item = BankItem {
                line: 0,
                rrn: rrn.clone(),
                ard: String::new(),
                masked_pan: format!("999999******{:04}", rng.u16(..10_000)),
                amount: rng.u64(1..100_000),
                currency: currency.clone(),
                auth_code: format!("X{:05}", rng.u32(..100_000)),
                direction: Direction::Debit,
            };
            let at = rng.usize(..=kept.len());
            kept.insert(at, item);
            broken.unknown.push(rrn);
        }
        write_bank_csv(&kept, out)?;
        for list in [
            &mut broken.dropped,
            &mut broken.unknown,
            &mut broken.amount,
            &mut broken.currency,
        ] {
            list.sort();
        }
        Ok(broken)
    }

    /// Every approval, in arrival order.
    pub fn approvals(&self) -> Vec<Approval> {
        self.lock().approvals.clone()
    }

    /// Reversals naming no approved request.
    pub fn unmatched_reversals(&self) -> u64 {
        self.lock().unmatched_reversals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearing::recon::{SwitchItem, read_bank_csv, reconcile};
    use iso8583::Mti;

    const PAN: &str = "4761739001010119";

    fn msg(mti: &str, fields: &[(u8, &str)]) -> Message {
        let mut m = Message::new(Mti::parse(mti).unwrap());
        for (field, value) in fields {
            m.set(*field, value.to_string());
        }
        m
    }

    /// An approved financial request with field 2, STAN `stan`, field 7
    /// `1126101500`.
    fn financial(mti: &str, code: &str, stan: &str, amount: u64, rrn: &str) -> Message {
        msg(
            mti,
            &[
                (2, PAN),
                (3, code),
                (4, &format!("{amount:012}")),
                (7, "1126101500"),
                (11, stan),
                (37, rrn),
                (49, "978"),
            ],
        )
    }

    /// Field 90 naming `mti`/`stan` sent at `1126101500`.
    fn field90(mti: &str, stan: &str) -> String {
        format!("{mti}{stan}1126101500{:022}", 0)
    }

    fn record(ledger: &Ledger, m: &Message) {
        let code = format!("A{:05}", m.stan().unwrap_or(0) % 100_000);
        ledger.record(m, &code);
    }

    fn csv(ledger: &Ledger, breaks: &Breaks) -> (String, Broken) {
        let mut out = Vec::new();
        let broken = ledger.settlement_csv(breaks, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), broken)
    }

    #[test]
    fn settlement_of_approved_requests_1987() {
        let ledger = Ledger::default();
        record(
            &ledger,
            &financial("0200", "000000", "000001", 1250, "612300000001"),
        );
        // A refund with track 2 only.
        let mut refund = financial("0200", "200000", "000002", 990, "612300000002");
        refund.remove(2);
        refund.set(35, "4761739001010127=29122011234567890");
        record(&ledger, &refund);
        // A balance enquiry is approved but does not settle.
        record(
            &ledger,
            &financial("0200", "310000", "000003", 0, "612300000003"),
        );
        // A pre-authorisation alone does not settle; its completion does,
        // with the pre-authorisation's approval code.
        record(
            &ledger,
            &financial("0100", "000000", "000004", 5000, "612300000004"),
        );
        let mut completion = financial("0220", "000000", "000005", 4200, "612300000004");
        completion.set(90, field90("0100", "000004"));
        record(&ledger, &completion);
        // The switch's repeat of the same advice settles once.
        completion.set_mti(Mti::parse("0221").unwrap());
        record(&ledger, &completion);
        // Fully reversed: out of settlement.
        record(
            &ledger,
            &financial("0200", "000000", "000006", 700, "612300000006"),
        );
        record(
            &ledger,
            &msg("0420", &[(11, "000007"), (90, &field90("0200", "000006"))]),
        );

        let (text, broken) = csv(&ledger, &Breaks::default());
        assert_eq!(broken, Broken::default());
        assert_eq!(
            text,
            "rrn,ard,pan,amount,currency,auth_code,type\n\
             612300000001,,476173******0119,1250,978,A00001,debit\n\
             612300000002,,476173******0127,990,978,A00002,credit\n\
             612300000004,,476173******0119,4200,978,A00004,debit\n\
             TRAILER,3,5450,990\n"
        );
        assert_eq!(read_bank_csv(text.as_bytes()).unwrap().len(), 3);
        // The existing view is unchanged: every approval, reversals counted.
        let approvals = ledger.approvals();
        assert_eq!(approvals.len(), 6);
        assert_eq!(approvals[4].repeats, 1, "the 0221");
        assert_eq!(approvals[5].reversals, 1);
        assert_eq!(ledger.unmatched_reversals(), 0);
    }

    #[test]
    fn partial_reversal_settles_what_stands() {
        let ledger = Ledger::default();
        record(
            &ledger,
            &financial("0200", "000000", "000001", 10_000, "R1"),
        );
        let partial = msg(
            "0400",
            &[
                (11, "000002"),
                (90, &field90("0200", "000001")),
                (95, "000000006000000000006000C00000000C00000000"),
            ],
        );
        record(&ledger, &partial);
        // A repeat of the same reversal changes nothing.
        let mut repeat = partial.clone();
        repeat.set_mti(Mti::parse("0421").unwrap());
        record(&ledger, &repeat);
        let items = ledger.settlement();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].amount, 6000);
        assert_eq!(ledger.approvals()[0].reversals, 1);
        assert_eq!(ledger.approvals()[0].repeats, 1);
        // A full reversal afterwards takes the rest back.
        record(
            &ledger,
            &msg("0420", &[(11, "000003"), (90, &field90("0200", "000001"))]),
        );
        assert_eq!(ledger.settlement(), []);
        let (text, _) = csv(&ledger, &Breaks::default());
        assert_eq!(
            text,
            "rrn,ard,pan,amount,currency,auth_code,type\nTRAILER,0,0,0\n"
        );
    }

    #[test]
    fn dialect_1993() {
        // 1993: the reversal and the completion name their original in
        // field 56 (MTI, STAN, YYMMDDhhmmss).
        let ledger = Ledger::default();
        record(&ledger, &financial("1200", "000000", "000001", 3000, "R1"));
        record(&ledger, &financial("1200", "200000", "000002", 100, "R2"));
        record(&ledger, &financial("1100", "000000", "000003", 900, "R3"));
        let mut completion = financial("1220", "000000", "000004", 800, "R3");
        completion.set(56, "11000000032611261015000000000000");
        record(&ledger, &completion);
        let mut partial = msg("1420", &[(11, "000005"), (56, "12000000012611261015000")]);
        partial.set(95, "000000002500000000002500");
        record(&ledger, &partial);
        record(
            &ledger,
            &msg("1420", &[(11, "000006"), (56, "120000000226112610150000")]),
        );
        let items = ledger.settlement();
        let summary: Vec<(&str, u64, Direction, &str)> = items
            .iter()
            .map(|i| (i.rrn.as_str(), i.amount, i.direction, i.auth_code.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("R1", 2500, Direction::Debit, "A00001"),
                ("R3", 800, Direction::Debit, "A00003"),
            ]
        );
        assert_eq!(ledger.unmatched_reversals(), 0);
    }

    /// A ledger of `n` purchases, RRNs `6123000000NN`, amounts 100 × i.
    fn purchases(n: u32) -> Ledger {
        let ledger = Ledger::default();
        for i in 1..=n {
            let m = financial(
                "0200",
                "000000",
                &format!("{i:06}"),
                u64::from(i) * 100,
                &format!("6123{i:08}"),
            );
            record(&ledger, &m);
        }
        ledger
    }

    fn rrns(recon: &clearing::recon::Recon, kind: BreakKind) -> Vec<String> {
        let mut rrns: Vec<String> = recon
            .breaks()
            .iter()
            .filter(|b| b.kind == kind)
            .map(|b| b.rrn.clone())
            .collect();
        rrns.sort();
        rrns
    }

    #[test]
    fn breaks_injected_exactly_as_asked() {
        let ledger = purchases(30);
        let switch: Vec<SwitchItem> = ledger
            .settlement()
            .iter()
            .enumerate()
            .map(|(txn, b)| SwitchItem {
                txn: txn as u64,
                ard: String::new(),
                rrn: b.rrn.clone(),
                amount: b.amount,
                currency: b.currency.clone(),
                masked_pan: b.masked_pan.clone(),
                direction: b.direction,
                destination: "bank".into(),
            })
            .collect();
        let breaks = Breaks {
            drop: 3,
            unknown: 2,
            amount: 4,
            currency: 1,
            seed: 11,
        };
        let (text, broken) = csv(&ledger, &breaks);
        assert_eq!(
            (
                broken.dropped.len(),
                broken.unknown.len(),
                broken.amount.len(),
                broken.currency.len()
            ),
            (3, 2, 4, 1)
        );
        let bank = read_bank_csv(text.as_bytes()).unwrap();
        assert_eq!(bank.len(), 30 - 3 + 2);
        let recon = reconcile(switch.clone(), bank);
        assert_eq!(rrns(&recon, BreakKind::MissingAtBank), broken.dropped);
        assert_eq!(rrns(&recon, BreakKind::UnknownToSwitch), broken.unknown);
        assert_eq!(rrns(&recon, BreakKind::AmountMismatch), broken.amount);
        assert_eq!(rrns(&recon, BreakKind::CurrencyMismatch), broken.currency);
        assert_eq!(recon.breaks().len(), 10);
        let mut found: Vec<(BreakKind, String)> = recon
            .breaks()
            .iter()
            .map(|b| (b.kind, b.rrn.clone()))
            .collect();
        found.sort();
        assert_eq!(found, broken.all(), "all() in report order");
        assert_eq!(recon.matched(), 30 - 3 - 4 - 1);

        // Deterministic: the same seed gives the same file; another seed
        // another choice.
        assert_eq!(csv(&ledger, &breaks), (text.clone(), broken.clone()));
        let other = csv(&ledger, &Breaks { seed: 12, ..breaks });
        assert_ne!(other.1, broken);

        // No breaks: a clean recon.
        let (clean, _) = csv(&ledger, &Breaks::default());
        assert!(reconcile(switch, read_bank_csv(clean.as_bytes()).unwrap()).is_clean());

        // More than there is.
        let e = ledger
            .settlement_csv(
                &Breaks {
                    drop: 20,
                    amount: 11,
                    ..Breaks::default()
                },
                io::sink(),
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "31 item(s) to drop or change, but only 30 settle"
        );
        // Invented items alone need nothing to break.
        let empty = Ledger::default();
        let (text, broken) = csv(
            &empty,
            &Breaks {
                unknown: 2,
                ..Breaks::default()
            },
        );
        assert_eq!(broken.unknown.len(), 2);
        assert_eq!(read_bank_csv(text.as_bytes()).unwrap().len(), 2);
    }
}
