//! The bank simulator's ledger: what it approved and what was reversed, so
//! tests can check a switch's promises from the bank's side ("every approval
//! the terminal did not get was reversed exactly once").
//!
//! Approved authorisations and financial requests are keyed by the STAN and
//! transmission time (field 7) the switch sent. A reversal names its
//! original in field 90 (1987: MTI, STAN, field 7 …) or 56 (1993: MTI, STAN,
//! `YYMMDDhhmmss` …). A repeat (`0421`/`1421`) of a reversal already applied
//! is acknowledged and counted as a repeat, not applied again — like an
//! issuer host.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::iso8583::Message;

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
    /// Repeats of an applied reversal (`0421`), acknowledged only.
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
    by_key: HashMap<(String, String), usize>,
    unmatched_reversals: u64,
}

/// The STAN and field 7 a reversal names as its original.
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

    /// Records an approved request or reversal.
    pub fn record(&self, request: &Message) {
        let mti = request.mti();
        let mti = mti.as_str().as_bytes();
        let class = mti.get(1).copied();
        let mut inner = self.lock();
        match class {
            Some(b'1' | b'2') => {
                let stan = request.text(11).unwrap_or_default().to_string();
                let transmission = request.text(7).unwrap_or_default().to_string();
                let approval = Approval {
                    stan: stan.clone(),
                    transmission: transmission.clone(),
                    rrn: request.text(37).unwrap_or_default().to_string(),
                    amount: request.text(4).and_then(|a| a.parse().ok()).unwrap_or(0),
                    reversals: 0,
                    repeats: 0,
                };
                let at = inner.approvals.len();
                inner.approvals.push(approval);
                inner.by_key.insert((stan, transmission), at);
            }
            Some(b'4') => {
                let repeat = mti.get(3) == Some(&b'1');
                let found = original_of(request).and_then(|k| inner.by_key.get(&k).copied());
                match found.and_then(|at| inner.approvals.get_mut(at)) {
                    Some(a) if repeat && a.reversals > 0 => a.repeats += 1,
                    Some(a) => a.reversals += 1,
                    None => inner.unmatched_reversals += 1,
                }
            }
            _ => {}
        }
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
