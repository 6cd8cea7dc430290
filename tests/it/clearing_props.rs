//! Clearing over generated days of traffic written straight into a journal:
//!
//! - the money invariant, as a property over random days: for every
//!   currency, the sum over merchants of the settlement report equals the
//!   sum of the clearing files as read back (IPM and CSV) equals the sum of
//!   the journal's cleared transactions (the journal replayed with
//!   `journal::view` and the clearing rules applied to it), to the minor
//!   unit;
//! - atomicity: a run that fails half-way leaves no manifest, no batch
//!   record and no temporary file, and the next run clears the day.
//!
//! The days are written with a cutover one second before midnight UTC, so
//! they are yesterday's business date, which clearing (cutover 00:00) finds
//! ended.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use cardswitch::clearing::ipm::IpmReader;
use cardswitch::clearing::run::{self, Outcome, Run};
use cardswitch::clearing::settings::{ClearingConfig, FileSpec, Format};
use cardswitch::clearing::settlement::{Pricing, PricingTable};
use cardswitch::journal::record::{Forwarded, Merchant, Received, Record, ReversalReason, Source};
use cardswitch::journal::wal::{Wal, WalConfig};
use cardswitch::journal::{Cutover, DataKey, Durability, JournalConfig, Vault, view};
use cardswitch::txn::TxnKind;
use proptest::prelude::*;
use rust_decimal::Decimal;

const KEY: [u8; 32] = [9; 32];
const CURRENCIES: [&str; 3] = ["978", "392", "048"];
const DESTINATIONS: [&str; 2] = ["bank_a", "bank_b"];

/// One generated transaction and what became of it.
#[derive(Debug, Clone)]
struct Gen {
    kind: TxnKind,
    amount: u64,
    currency: usize,
    merchant: usize,
    destination: usize,
    approved: bool,
    /// `None`: not reversed; `Some(None)`: in full; `Some(Some(a))`: `a`
    /// stands.
    reversal: Option<Option<u64>>,
    /// For a completion: which earlier pre-authorisation (by position).
    completes: usize,
}

fn gen_txn() -> impl Strategy<Value = Gen> {
    (
        prop_oneof![
            5 => Just(TxnKind::Purchase),
            2 => Just(TxnKind::Refund),
            1 => Just(TxnKind::Authorization),
            2 => Just(TxnKind::Completion),
        ],
        1u64..2_000_000,
        0..CURRENCIES.len(),
        0usize..5,
        0..DESTINATIONS.len(),
        prop::bool::weighted(0.85),
        prop_oneof![
            8 => Just(None),
            1 => Just(Some(None)),
            1 => (0u64..1_000_000).prop_map(|a| Some(Some(a))),
        ],
        0usize..64,
    )
        .prop_map(
            |(kind, amount, currency, merchant, destination, approved, reversal, completes)| Gen {
                kind,
                amount,
                currency,
                merchant,
                destination,
                approved,
                reversal,
                completes,
            },
        )
}

fn journal_config(dir: &Path) -> JournalConfig {
    JournalConfig {
        dir: dir.join("journal"),
        durability: Durability::None,
        segment_bytes: 1 << 20,
        cutover: Cutover::utc(0),
        data_key: DataKey::File(dir.join("unused")),
        saf_retry_min: std::time::Duration::from_millis(500),
        saf_retry_max: std::time::Duration::from_secs(30),
    }
}

/// Writes the day as the switch would journal it; returns the business
/// date (`YYYY-MM-DD`).
fn write_day(dir: &Path, day: &[Gen]) -> String {
    let vault = Vault::new(&KEY);
    let cutover = Cutover::utc(86_399);
    let (wal, _) = Wal::open(WalConfig {
        dir: dir.join("journal"),
        segment_bytes: 1 << 20,
        durability: Durability::None,
        cutover: cutover.clone(),
    })
    .unwrap();
    let mut pre_auths: Vec<u64> = Vec::new();
    for (n, g) in day.iter().enumerate() {
        let pan = cardswitch::card::luhn_complete(&format!("476173{:09}", n % 50)).unwrap();
        let original = match g.kind {
            TxnKind::Completion if !pre_auths.is_empty() => {
                Some(pre_auths[g.completes % pre_auths.len()])
            }
            TxnKind::Completion => None,
            _ => None,
        };
        let id = wal
            .append(&Record::Received(Box::new(Received {
                kind: g.kind,
                mti: match g.kind {
                    TxnKind::Authorization => "0100",
                    TxnKind::Completion => "0220",
                    _ => "0200",
                }
                .into(),
                processing_code: if g.kind == TxnKind::Refund {
                    "200000"
                } else {
                    "000000"
                }
                .into(),
                amount: g.amount,
                currency: CURRENCIES[g.currency].into(),
                pan: vault.seal(&pan),
                terminal: "TERM0001".into(),
                merchant: Some(Merchant {
                    id: format!("M{}", g.merchant),
                    mcc: "5411".into(),
                    name_location: format!("{:<22} {:<13} GBR", "SHOP", "LONDON"),
                }),
                stan: format!("{:06}", n),
                transmission: "1125101500".into(),
                local_time: Some("101500".into()),
                local_date: Some("1125".into()),
                entry_mode: Some("051".into()),
                condition: Some("00".into()),
                rrn: format!("{n:012}"),
                original,
                replacement: None,
            })))
            .unwrap();
        if g.kind == TxnKind::Authorization && g.approved {
            pre_auths.push(id);
        }
        wal.append(&Record::Forwarded {
            txn: id,
            to: Forwarded {
                destination: DESTINATIONS[g.destination].into(),
                switch_stan: n as u32 + 1,
                transmission: "1125101500".into(),
                local_93: None,
            },
        })
        .unwrap();
        wal.append(&Record::Responded {
            txn: id,
            // Every approval code: 00, 08 (honour with identification), 11.
            code: if g.approved {
                ["00", "08", "11"][n % 3]
            } else {
                "05"
            }
            .into(),
            auth_id: g.approved.then(|| format!("A{n:05}")),
            source: Source::Destination,
        })
        .unwrap();
        if let Some(replacement) = g.reversal {
            wal.append(&Record::ReversalQueued {
                txn: id,
                reason: ReversalReason::Terminal,
                replacement,
            })
            .unwrap();
        }
    }
    wal.close();
    let date = cutover.date(cardswitch::journal::wal::now_micros());
    format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..])
}

fn clearing_config(out: &Path) -> ClearingConfig {
    let mut pricing = PricingTable::new(Pricing::new(Decimal::new(15, 1), 3).unwrap());
    pricing.insert("M1", Pricing::new(Decimal::new(175, 2), 10).unwrap());
    ClearingConfig {
        out_dir: out.to_path_buf(),
        acquirer_bin: "412345".into(),
        processor_id: "00000012345".into(),
        format: FileSpec::default(),
        destinations: BTreeMap::from([(
            "bank_a".to_string(),
            FileSpec {
                format: Format::Ipm,
                blocked: true,
            },
        )]),
        pricing,
    }
}

/// Debits and credits per currency.
type Sums = BTreeMap<String, (i128, i128)>;

fn add(sums: &mut Sums, currency: &str, credit: bool, amount: u64) {
    let entry = sums.entry(currency.to_string()).or_default();
    if credit {
        entry.1 += i128::from(amount);
    } else {
        entry.0 += i128::from(amount);
    }
}

/// What the journal says clears, from its replay and the clearing rules.
fn from_journal(journal: &Path) -> Sums {
    let states = view::replay(journal, &Cutover::utc(86_399)).unwrap();
    let mut completed = HashSet::new();
    let mut sums = Sums::new();
    for state in states.values() {
        let approved = state
            .code
            .as_deref()
            .is_some_and(|c| matches!(c, "00" | "08" | "11"));
        let full = state
            .reversal
            .as_ref()
            .is_some_and(|r| r.replacement.is_none());
        let kind = state.request.kind;
        let clears = approved
            && match kind {
                TxnKind::Purchase | TxnKind::Refund => true,
                TxnKind::Completion => {
                    !full && state.request.original.is_some_and(|o| completed.insert(o))
                }
                _ => false,
            };
        if !clears {
            continue;
        }
        let amount = match &state.reversal {
            Some(r) => r.replacement.map_or(0, |a| a.min(state.request.amount)),
            None => state.request.amount,
        };
        if amount > 0 {
            add(
                &mut sums,
                &state.request.currency,
                kind == TxnKind::Refund,
                amount,
            );
        }
    }
    sums
}

/// What the clearing files hold, read back.
fn from_files(out: &Path) -> Sums {
    let mut sums = Sums::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".ipm") {
            let bytes = std::fs::read(&path).unwrap();
            for m in IpmReader::new(&bytes[..], true) {
                let m = m.unwrap();
                if m.mti == "1240" {
                    let amount: u64 = m.field(4).unwrap().parse().unwrap();
                    let credit = m.field(3).unwrap().starts_with("20");
                    add(&mut sums, m.field(49).unwrap(), credit, amount);
                }
            }
        } else if name.starts_with("bank_") && name.ends_with(".csv") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().skip(1).filter(|l| !l.starts_with("TRAILER")) {
                let cols: Vec<&str> = line.split(',').collect();
                add(
                    &mut sums,
                    cols[7],
                    cols[5] == "credit",
                    cols[6].parse().unwrap(),
                );
            }
        }
    }
    sums
}

fn clear(dir: &Path, date: &str) -> Result<Outcome, run::ClearingError> {
    let journal = journal_config(dir);
    let out = dir.join("out");
    let clearing = clearing_config(&out);
    let vault = Vault::new(&KEY);
    run::run(
        &Run {
            date,
            out_dir: &out,
            reissue: false,
            journal: &journal,
            vault: &vault,
            clearing: &clearing,
            acquiring_institution: "4123456",
            forwarding_institution: "4123456",
        },
        &mut |_| {},
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn merchants_files_and_journal_agree_to_the_minor_unit(
        day in prop::collection::vec(gen_txn(), 1..120)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let date = write_day(dir.path(), &day);
        let Outcome::Cleared(_, report) = clear(dir.path(), &date).unwrap() else {
            panic!("a first run clears");
        };
        let journal = from_journal(&dir.path().join("journal"));
        let files = from_files(&dir.path().join("out"));
        let merchants: Sums = report
            .gross_by_currency()
            .into_iter()
            .map(|(c, g)| (c, (g.debits, g.credits)))
            .filter(|(_, (d, c))| *d != 0 || *c != 0)
            .collect();
        let destinations: Sums = report
            .destination_gross_by_currency()
            .into_iter()
            .map(|(c, g)| (c, (g.debits, g.credits)))
            .filter(|(_, (d, c))| *d != 0 || *c != 0)
            .collect();
        prop_assert_eq!(&files, &journal);
        prop_assert_eq!(&merchants, &journal);
        prop_assert_eq!(&destinations, &journal);
    }
}

#[test]
fn a_run_that_fails_half_way_leaves_nothing_and_the_next_one_clears() {
    let dir = tempfile::tempdir().unwrap();
    let day: Vec<Gen> = (0..40)
        .map(|n| Gen {
            kind: TxnKind::Purchase,
            amount: 100 + n,
            currency: (n % 3) as usize,
            merchant: (n % 5) as usize,
            destination: (n % 2) as usize,
            approved: true,
            reversal: None,
            completes: 0,
        })
        .collect();
    let date = write_day(dir.path(), &day);
    let out = dir.path().join("out");
    let compact = date.replace('-', "");
    // The settlement report cannot be written: a directory holds its name.
    let blocker = out.join(format!("settlement-{compact}.csv"));
    std::fs::create_dir_all(&blocker).unwrap();
    let failed = clear(dir.path(), &date);
    assert!(failed.is_err(), "{failed:?}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("bank_")),
        "no clearing file is put in place when the run fails: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("manifest")),
        "{names:?}"
    );
    let record = run::batch_path(&journal_config(dir.path()), &compact);
    assert!(!record.exists(), "no batch recorded");

    std::fs::remove_dir(&blocker).unwrap();
    let Outcome::Cleared(batch, _) = clear(dir.path(), &date).unwrap() else {
        panic!("the day clears");
    };
    assert_eq!(batch.files.iter().map(|f| f.records).sum::<u64>(), 80);
    assert!(record.exists());
    assert!(out.join(format!("manifest-{compact}.json")).exists());
    // And once only.
    assert!(matches!(
        clear(dir.path(), &date).unwrap(),
        Outcome::AlreadyCleared(_)
    ));
}
