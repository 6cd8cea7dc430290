//! The indexer's held transactions: written once when they end, in flight
//! after [`HOLD`], never passed by the `applied` mark, and a replay from
//! that mark gives the index a rebuild from the whole log gives.

use super::super::Index;
use super::{Flush, HOLD, Held};
use crate::journal::Phase;
use crate::journal::cutover::Cutover;
use crate::journal::record::{Forwarded, Received, Record, Source};
use crate::journal::vault::Vault;
use crate::txn::TxnKind;

fn received(stan: &str) -> Record {
    let vault = Vault::new(&[7; 32]);
    Record::Received(Box::new(Received {
        kind: TxnKind::Purchase,
        mti: "0200".into(),
        processing_code: "000000".into(),
        amount: 1000,
        currency: "978".into(),
        pan: vault.seal("4111111111111111"),
        terminal: "TERM0001".into(),
        merchant: None,
        stan: stan.into(),
        transmission: "1208120000".into(),
        local_time: None,
        local_date: None,
        entry_mode: None,
        condition: None,
        rrn: format!("RRN{stan:0>9}"),
        original: None,
        replacement: None,
    }))
}

fn forwarded(txn: u64) -> Record {
    Record::Forwarded {
        txn,
        to: Forwarded {
            destination: "bank".into(),
            switch_stan: 1,
            transmission: "1208120000".into(),
            local_93: None,
        },
    }
}

fn responded(txn: u64) -> Record {
    Record::Responded {
        txn,
        code: "00".into(),
        auth_id: Some("A1".into()),
        source: Source::Destination,
    }
}

fn open() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), Cutover::default()).unwrap();
    (dir, index)
}

/// Records at log sequences from `seq`, all at time `ts`.
fn at(seq: u64, ts: u64, records: Vec<Record>) -> Vec<(u64, u64, Record)> {
    (seq..).zip(records).map(|(s, r)| (s, ts, r)).collect()
}

#[test]
fn a_transaction_is_held_until_it_ends_and_the_mark_stays_before_it() {
    let (_dir, index) = open();
    let mut held = Held::load(&index).unwrap();
    let t0 = 1_000_000_000;
    // Txn 1 ends in the first batch; txn 3 is forwarded, not answered.
    let first = at(
        1,
        t0,
        vec![received("1"), responded(1), received("2"), forwarded(3)],
    );
    let mark = index
        .apply_held(&mut held, first, 4, Flush::Expired(t0))
        .unwrap();
    assert_eq!(mark, 2, "the mark stops before the held transaction");
    assert_eq!(index.applied().unwrap(), 2);
    assert_eq!(held.len(), 1);
    assert_eq!(index.txn(1).unwrap().unwrap().phase, Phase::Answered);
    assert!(index.txn(3).unwrap().is_none(), "held, not written");
    assert!(index.in_flight().unwrap().is_empty());
    // Its answer in the next batch: written once, ended, never in flight.
    let mark = index
        .apply_held(
            &mut held,
            at(5, t0, vec![responded(3)]),
            5,
            Flush::Expired(t0),
        )
        .unwrap();
    assert_eq!(mark, 5);
    assert!(held.is_empty());
    let state = index.txn(3).unwrap().unwrap();
    assert_eq!(
        (state.phase, state.code.as_deref()),
        (Phase::Answered, Some("00"))
    );
    assert!(index.in_flight().unwrap().is_empty());
    assert_eq!(
        index
            .by_request("TERM0001", "2", Some("1208120000"))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_transaction_held_too_long_is_written_in_flight_and_leaves_it_when_it_ends() {
    let (_dir, index) = open();
    let mut held = Held::load(&index).unwrap();
    let t0 = 1_000_000_000;
    index
        .apply_held(
            &mut held,
            at(1, t0, vec![received("1"), forwarded(1)]),
            2,
            Flush::Expired(t0),
        )
        .unwrap();
    assert_eq!(held.len(), 1);
    // No record for longer than HOLD: written in flight, the mark moves on.
    let mark = index
        .apply_held(&mut held, Vec::new(), 2, Flush::Expired(t0 + HOLD + 1))
        .unwrap();
    assert_eq!(mark, 2);
    assert!(held.is_empty());
    assert_eq!(index.in_flight().unwrap().len(), 1);
    // A restart (held loaded again) and its answer: out of flight.
    let mut held = Held::load(&index).unwrap();
    index
        .apply_held(
            &mut held,
            at(3, t0, vec![responded(1)]),
            3,
            Flush::Expired(t0),
        )
        .unwrap();
    assert!(index.in_flight().unwrap().is_empty());
    assert_eq!(index.txn(1).unwrap().unwrap().phase, Phase::Answered);
}

#[test]
fn replaying_from_the_mark_after_a_crash_gives_the_rebuilt_index() {
    let t0 = 1_000_000_000;
    // Txn 1 in flight too long (written in flight), txn 3 ends at once,
    // txn 5 held when the indexer "crashes"; then txn 1 and 5 end.
    let log = vec![
        received("1"),
        forwarded(1),
        received("2"),
        responded(3),
        received("3"),
        forwarded(5),
        responded(1),
        responded(5),
    ];
    let entries = |from: u64, to: u64| {
        at(1, t0, log.clone())
            .into_iter()
            .filter(|(s, _, _)| (from..=to).contains(s))
            .collect::<Vec<_>>()
    };
    let (_a, live) = open();
    let mut held = Held::load(&live).unwrap();
    live.apply_held(&mut held, entries(1, 2), 2, Flush::Expired(t0))
        .unwrap();
    live.apply_held(&mut held, Vec::new(), 2, Flush::Expired(t0 + HOLD + 1))
        .unwrap();
    let mark = live
        .apply_held(&mut held, entries(3, 6), 6, Flush::Expired(t0))
        .unwrap();
    assert_eq!(mark, 4, "txn 5 is held");
    // The crash: held is lost; the restart replays from the mark.
    let mut held = Held::load(&live).unwrap();
    let from = live.applied().unwrap() + 1;
    live.apply_held(&mut held, entries(from, 8), 8, Flush::All)
        .unwrap();

    let (_b, rebuilt) = open();
    rebuilt.apply(entries(1, 8)).unwrap();
    assert_eq!(live.dump().unwrap(), rebuilt.dump().unwrap());
    assert!(live.in_flight().unwrap().is_empty());
}
