use super::*;
use crate::journal::record::Source;

fn config(dir: &Path) -> WalConfig {
    WalConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 64 << 20,
        durability: Durability::Fsync,
        cutover: Cutover::default(),
    }
}

fn responded(txn: u64) -> Record {
    Record::Responded {
        txn,
        code: "00".into(),
        auth_id: Some("A1B2C3".into()),
        source: Source::Destination,
    }
}

/// A log in a new directory whose segments roll after `bytes`.
fn small_segments(bytes: u64) -> (tempfile::TempDir, WalConfig, Wal) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_bytes = bytes;
    let (wal, _) = Wal::open(c.clone()).unwrap();
    (dir, c, wal)
}

/// Appends `responded(txn)` and waits until it is durable.
fn durable(wal: &Wal, txn: u64) {
    wal.append_durable(&responded(txn))
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
}

fn read_all(dir: &Path) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    scan(dir, 0, |_, e| {
        out.push((e.seq, e.record().unwrap()));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn appends_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, opened) = Wal::open(config(dir.path())).unwrap();
    assert_eq!(opened.next_seq, 1);
    for i in 0..100 {
        let (seq, durable) = wal.append_durable(&responded(i)).unwrap();
        assert_eq!(seq, i + 1);
        durable.wait_blocking().unwrap();
    }
    wal.close();
    let (wal, opened) = Wal::open(config(dir.path())).unwrap();
    assert_eq!(
        opened,
        Opened {
            next_seq: 101,
            torn: None
        }
    );
    assert_eq!(wal.append(&responded(100)).unwrap(), 101);
    wal.close();
    let records = read_all(dir.path());
    assert_eq!(records.len(), 101);
    assert_eq!(records[7], (8, responded(7)));
}

#[test]
fn segments_roll_by_size() {
    let (dir, c, wal) = small_segments(200);
    for i in 0..20 {
        durable(&wal, i);
    }
    wal.close();
    assert!(segments(dir.path()).unwrap().len() > 3);
    assert_eq!(read_all(dir.path()).len(), 20);
    let (_, opened) = Wal::open(c).unwrap();
    assert_eq!(opened.next_seq, 21);
}

/// A log of five durable records in one segment, and that segment.
fn five_records() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(config(dir.path())).unwrap();
    for i in 0..5 {
        durable(&wal, i);
    }
    wal.close();
    let segment = segments(dir.path()).unwrap().remove(0).path;
    (dir, segment)
}

/// Truncating the last segment at every byte offset inside its last
/// record: the log opens, drops exactly that record, and says so.
#[test]
fn torn_last_record_is_dropped_at_every_offset() {
    let (dir, segment) = five_records();
    let whole = fs::read(&segment).unwrap();
    let mut ends = Vec::new();
    scan_bytes(&whole, "s", false, |e| {
        ends.push(e.offset);
        Ok(())
    })
    .unwrap();
    let last_start = *ends.last().unwrap() as usize;
    for cut in last_start + 1..whole.len() {
        fs::write(&segment, &whole[..cut]).unwrap();
        let (wal, opened) = Wal::open(config(dir.path())).unwrap();
        wal.close();
        assert_eq!(opened.next_seq, 5, "cut at {cut}");
        let torn = opened.torn.expect("torn record reported");
        assert_eq!(
            (torn.1, torn.2),
            (last_start as u64, (cut - last_start) as u64)
        );
        assert_eq!(read_all(dir.path()).len(), 4);
    }
    // Zeros where the last record should be (data blocks never written).
    let mut zeroed = whole.clone();
    zeroed[last_start..].fill(0);
    fs::write(&segment, &zeroed).unwrap();
    let (_, opened) = Wal::open(config(dir.path())).unwrap();
    assert_eq!(opened.next_seq, 5);
}

#[test]
fn corruption_before_the_tail_is_an_error_naming_the_offset() {
    let (dir, segment) = five_records();
    let mut data = fs::read(&segment).unwrap();
    let second = MAGIC.len() + (data.len() - MAGIC.len()) / 5;
    data[second + 20] ^= 0x40;
    fs::write(&segment, &data).unwrap();
    match Wal::open(config(dir.path())) {
        Err(WalError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, second as u64);
            assert!(reason.to_string().contains("CRC"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// A bad length in the last-but-one record reaching past the end is
/// damage, not a torn write: a whole record still follows it.
#[test]
fn bad_frame_with_a_whole_record_after_it_is_corruption() {
    let (dir, segment) = five_records();
    let mut data = fs::read(&segment).unwrap();
    let size = (data.len() - MAGIC.len()) / 5;
    let fourth = MAGIC.len() + 3 * size;
    data[fourth..fourth + 4].copy_from_slice(&((2 * size) as u32).to_le_bytes());
    fs::write(&segment, &data).unwrap();
    assert!(matches!(
        Wal::open(config(dir.path())),
        Err(WalError::Corrupt { offset, .. }) if offset == fourth as u64
    ));
}

/// A segment created just before a stop, with no record, is removed at
/// open; the next segment takes its sequence number alone.
#[test]
fn record_less_last_segment_is_removed() {
    let (dir, _) = five_records();
    let empty = dir.path().join(format!("20991231-{:020}.wal", 6));
    fs::write(&empty, MAGIC).unwrap();
    let (wal, opened) = Wal::open(config(dir.path())).unwrap();
    assert_eq!(opened.next_seq, 6);
    assert!(!empty.exists());
    durable(&wal, 5);
    wal.close();
    let all = segments(dir.path()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].first_seq, 6);
    assert_eq!(read_all(dir.path()).len(), 6);
}

/// The follower reads across segments, never past the limit, and picks
/// up a record whose bytes were incomplete at the last poll.
#[test]
fn follower_reads_new_records_up_to_the_limit() {
    let (dir, _, wal) = small_segments(100);
    let mut follower = Follower::new(dir.path(), 1);
    let mut seen = Vec::new();
    assert_eq!(
        follower
            .poll(wal.durable_mark().get(), 100, |e| seen.push(e.seq))
            .unwrap(),
        0
    );
    for i in 0..12 {
        durable(&wal, i);
    }
    assert_eq!(wal.durable_mark().get(), 12);
    assert!(segments(dir.path()).unwrap().len() > 2);
    follower.poll(5, 100, |e| seen.push(e.seq)).unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    follower.poll(12, 3, |e| seen.push(e.seq)).unwrap();
    assert_eq!(seen.len(), 8);
    follower.poll(12, 100, |e| seen.push(e.seq)).unwrap();
    assert_eq!(seen, (1..=12).collect::<Vec<_>>());
    wal.close();
    // Half a record at the end (a write in progress), then the rest.
    let last = segments(dir.path()).unwrap().pop().unwrap().path;
    let whole = fs::read(&last).unwrap();
    let mut frame = Vec::new();
    put(
        &mut frame,
        13,
        now_micros(),
        RecordKind::Responded,
        &record::encode(&responded(12)),
    );
    let mut partial = whole.clone();
    partial.extend_from_slice(&frame[..frame.len() / 2]);
    fs::write(&last, &partial).unwrap();
    assert_eq!(follower.poll(13, 100, |e| seen.push(e.seq)).unwrap(), 0);
    partial.extend_from_slice(&frame[frame.len() / 2..]);
    fs::write(&last, &partial).unwrap();
    assert_eq!(follower.poll(13, 100, |e| seen.push(e.seq)).unwrap(), 1);
    assert_eq!(seen.last(), Some(&13));
}

#[test]
fn business_date_follows_the_cutover() {
    // 2026-11-25 22:30 UTC.
    let t = 1_795_646_000 * 1_000_000;
    assert_eq!(business_date(t, &Cutover::utc(0)), "20261125");
    assert_eq!(
        business_date(t + 2 * 3_600_000_000, &Cutover::utc(0)),
        "20261126"
    );
    assert_eq!(
        business_date(t + 2 * 3_600_000_000, &Cutover::utc(3 * 3600)),
        "20261125"
    );
}

#[test]
fn a_runtime_worker_wakes_the_writer_when_it_parks_and_groups_what_its_tasks_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.durability = Durability::None;
    let (wal, _) = Wal::open(c).unwrap();
    let wal = Arc::new(wal);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_park(on_thread_park)
        .build()
        .unwrap();
    runtime.block_on(async {
        // Park the worker once, so that it defers from then on.
        tokio::spawn(async {}).await.unwrap();
        for round in 0..20u64 {
            // Spawned by a task on the worker: all 50 run before it parks.
            let wal = Arc::clone(&wal);
            let round = tokio::spawn(async move {
                let tasks: Vec<_> = (0..50u64)
                    .map(|i| {
                        let wal = Arc::clone(&wal);
                        tokio::spawn(async move {
                            let record = responded(round * 50 + i);
                            let (_, durable) = wal.append_durable(&record).unwrap();
                            durable.wait().await.unwrap();
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
            round.await.unwrap();
        }
    });
    let stats = wal.stats();
    assert_eq!(stats.records, 1000, "every record committed");
    assert!(
        stats.groups <= 40,
        "50 appends between parks commit as few groups: {stats:?}"
    );
    // A thread that never parks wakes the writer at once.
    durable(&wal, 1000);
    assert_eq!(wal.stats().records, 1001);
}

/// Records that do not fit the follower's first read, and more records
/// than one read holds: every one is visited, in order.
#[test]
fn follower_reads_records_larger_than_its_chunk_and_logs_longer_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(config(dir.path())).unwrap();
    let big = Record::RiskDeclined {
        txn: 1,
        rule: "x".repeat(700 << 10),
    };
    wal.append(&big).unwrap();
    for i in 0..5_000 {
        wal.append(&responded(i)).unwrap();
    }
    wal.append(&big).unwrap();
    durable(&wal, 5_000);
    let mut follower = Follower::new(dir.path(), 1);
    let mut seen = Vec::new();
    while follower
        .poll(wal.durable_mark().get(), 512, |e| seen.push(e.seq))
        .unwrap()
        > 0
    {}
    assert_eq!(seen, (1..=5_003).collect::<Vec<_>>());
    wal.close();
}
