//! Journal benchmark: durable appends per second with 1, 16 and 256
//! concurrent appenders (group commit), against the raw limit of the disk
//! measured the same way: plain `write` of 64 records + one `fdatasync`.
//!
//! Run: `cargo bench --bench journal`. Environment: `JOURNAL_SECONDS`
//! (length of each run, default 3), `JOURNAL_DIR` (where to write, default
//! the system temp directory — use the disk the journal will live on).
//!
//! Appenders are tokio tasks on a 2-thread runtime, each appending a
//! realistic `Received` record (sealed PAN, ~230 bytes) and waiting for it
//! to be durable before the next, like the switch's request path. The
//! journal includes its sled index thread.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cardswitch::journal::record::{Merchant, Received, Record};
use cardswitch::journal::{Durability, Journal, JournalConfig, Vault};
use cardswitch::txn::TxnKind;
use hdrhistogram::Histogram;

/// The allocator of the `cardswitch` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn record(vault: &Vault) -> Record {
    Record::Received(Box::new(Received {
        kind: TxnKind::Purchase,
        mti: "0200".into(),
        processing_code: "000000".into(),
        amount: 1500,
        currency: "978".into(),
        pan: vault.seal("4761739001010119"),
        terminal: "TERM0001".into(),
        merchant: Some(Merchant {
            id: "MERCH0000000001".into(),
            mcc: "5411".into(),
            name_location: "BENCH SHOP            LONDON        GB".into(),
        }),
        stan: "000123".into(),
        transmission: "1125120000".into(),
        local_time: Some("120000".into()),
        local_date: Some("1125".into()),
        entry_mode: Some("051".into()),
        condition: Some("00".into()),
        rrn: "000000000123".into(),
        original: None,
        replacement: None,
    }))
}

struct Measured {
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
    group: f64,
    /// Time the index needed after the run to apply what it had not yet.
    catch_up: Duration,
}

fn journal_run(base: &Path, appenders: usize, seconds: u64) -> Measured {
    let dir = base.join(format!("appenders-{appenders}"));
    let _ = std::fs::remove_dir_all(&dir);
    let config = JournalConfig {
        dir: dir.clone(),
        durability: Durability::Fsync,
        segment_bytes: 64 << 20,
        cutover: cardswitch::journal::Cutover::default(),
        data_key: cardswitch::journal::DataKey::File(dir.join("unused")),
        saf_retry_min: Duration::from_millis(500),
        saf_retry_max: Duration::from_secs(30),
    };
    let (journal, _) = Journal::open_with(config, Vault::new(&[7; 32])).expect("open journal");
    let journal = Arc::new(journal);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let histograms = runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders)
            .map(|_| {
                let journal = Arc::clone(&journal);
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    let rec = record(journal.vault());
                    let mut h = Histogram::<u64>::new(3).expect("histogram");
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        journal.commit(&rec).await.expect("append");
                        let _ = h.record(started.elapsed().as_micros() as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    h
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("appender"));
        }
        all
    });
    let mut merged = Histogram::<u64>::new(3).expect("histogram");
    for h in &histograms {
        let _ = merged.add(h);
    }
    let stats = journal.stats();
    drop(runtime);
    let closing = Instant::now();
    if let Ok(journal) = Arc::try_unwrap(journal) {
        journal.close();
    }
    let catch_up = closing.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    Measured {
        per_second: done.load(Ordering::Relaxed) as f64 / seconds as f64,
        p50_us: merged.value_at_quantile(0.5),
        p99_us: merged.value_at_quantile(0.99),
        group: stats.records as f64 / stats.groups.max(1) as f64,
        catch_up,
    }
}

/// Plain appends of `group` records of the same size, one `fdatasync` per
/// group: the disk's limit for this record size and group.
fn raw_run(base: &Path, group: usize, seconds: u64) -> (f64, Histogram<u64>) {
    let path = base.join(format!("raw-{group}"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    let frame = vec![
        0x5a_u8;
        25 + cardswitch::journal::record::encode(&record(&Vault::new(&[7; 32]))).len()
    ];
    let batch: Vec<u8> = frame.repeat(group);
    let mut syncs = Histogram::<u64>::new(3).expect("histogram");
    let mut records = 0u64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        file.write_all(&batch).expect("write");
        let started = Instant::now();
        file.sync_data().expect("fdatasync");
        let _ = syncs.record(started.elapsed().as_micros() as u64);
        records += group as u64;
    }
    let _ = std::fs::remove_file(&path);
    (records as f64 / seconds as f64, syncs)
}

/// Share of `seconds` of wall time spent inside syncs slower than
/// `slower_than_us`: a request that becomes pending then waits for at least
/// the rest of such a sync.
fn slow_share(syncs: &Histogram<u64>, seconds: u64, slower_than_us: u64) -> f64 {
    let inside: u64 = syncs
        .iter_recorded()
        .filter(|v| v.value_iterated_to() > slower_than_us)
        .map(|v| v.value_iterated_to() * v.count_at_value())
        .sum();
    inside as f64 / (seconds as f64 * 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("JOURNAL_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let base = std::env::var_os("JOURNAL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("cardswitch-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("bench dir");

    let (raw64, syncs64) = raw_run(&base, 64, seconds);
    let (raw1, syncs1) = raw_run(&base, 1, seconds);
    let runs: Vec<(usize, Measured)> = [1usize, 16, 256]
        .iter()
        .map(|n| (*n, journal_run(&base, *n, seconds)))
        .collect();
    let _ = std::fs::remove_dir_all(&base);

    println!(
        "\n## Journal: durable appends ({seconds} s per run, {})\n",
        base.parent().unwrap_or(&base).display()
    );
    println!(
        "| writer | records/s | % of raw limit | append p50 µs | append p99 µs | records per fdatasync | close (index drain, at most 5 s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("| raw: write 64 records + fdatasync | {raw64:.0} | 100% | | | 64 | |");
    println!(
        "| raw: write 1 record + fdatasync | {raw1:.0} | {:.0}% | | | 1 | |",
        100.0 * raw1 / raw64
    );
    for (n, m) in &runs {
        println!(
            "| journal, {n} appender{} | {:.0} | {:.0}% | {} | {} | {:.1} | {:.1} s |",
            if *n == 1 { "" } else { "s" },
            m.per_second,
            100.0 * m.per_second / raw64,
            m.p50_us,
            m.p99_us,
            m.group,
            m.catch_up.as_secs_f64()
        );
    }
    println!(
        "\nfdatasync latency: 1 record p50 {} µs, p99 {} µs, max {} µs; 64 records p50 {} µs, p99 {} µs",
        syncs1.value_at_quantile(0.5),
        syncs1.value_at_quantile(0.99),
        syncs1.max(),
        syncs64.value_at_quantile(0.5),
        syncs64.value_at_quantile(0.99)
    );
    println!(
        "wall time inside syncs slower than 2.5 ms: {:.2}% (1 record), {:.2}% (64 records)",
        100.0 * slow_share(&syncs1, seconds, 2_500),
        100.0 * slow_share(&syncs64, seconds, 2_500)
    );
}
