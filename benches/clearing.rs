//! Clearing at scale: a journal holding `CLEARING_TXNS` transactions
//! (default 10 million) of one business date, generated straight into the
//! log, then the real binary clears it (`cardswitch clearing run`, in a
//! child process): wall time, transactions per second and the peak
//! resident memory the run reports.
//!
//! Run: `cargo bench --bench clearing`. Environment: `CLEARING_TXNS`,
//! `CLEARING_DIR` (where the journal and the files go, default the system
//! temp directory; about 4 GB for 10 million transactions; it is removed
//! afterwards unless `CLEARING_KEEP=1`).
//!
//! The day's mix: 80% approved purchases, 8% approved refunds, 7% declined
//! purchases, 3% purchases reversed in part and 2% reversed in full, over
//! 1,000 cards, 200 merchants, three currencies (EUR, USD, JPY) and two
//! destinations, one taking IPM (1014-blocked) and one CSV. The generator
//! appends the records a switch would (`Received`, `Forwarded`,
//! `Responded`, `ReversalQueued`) without syncing; its business date is
//! yesterday's (cutover 23:59:59 UTC), so clearing (cutover 00:00) finds it
//! ended.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cardswitch::journal::record::{Forwarded, Merchant, Received, Record, ReversalReason, Source};
use cardswitch::journal::vault::SealedPan;
use cardswitch::journal::wal::{Wal, WalConfig};
use cardswitch::journal::{Cutover, Durability, Vault};
use cardswitch::txn::TxnKind;

/// The allocator of the `cardswitch` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: [u8; 32] = [7; 32];
const CARDS: usize = 1000;
const MERCHANTS: usize = 200;

/// Where the day's business date ends: one second before midnight UTC.
fn generator_cutover() -> Cutover {
    Cutover::utc(86_399)
}

fn generate(dir: &Path, txns: u64) -> String {
    let vault = Vault::new(&KEY);
    let (wal, _) = Wal::open(WalConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 256 << 20,
        durability: Durability::None,
        cutover: generator_cutover(),
    })
    .expect("open the log");
    let day = Population::new(&vault);
    let mut rng = fastrand::Rng::with_seed(42);
    let started = Instant::now();
    for n in 0..txns {
        day.append(&wal, &mut rng, n);
        if n > 0 && n % 1_000_000 == 0 {
            eprintln!(
                "generated {n} transactions ({:.0}/s)",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    wal.close();
    eprintln!(
        "generated {txns} transactions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    generator_cutover().date(cardswitch::journal::wal::now_micros())
}

/// Who trades on the generated day: the cards (sealed, and whether
/// `bank_a` issues them rather than `bank_b`) and the merchants.
struct Population {
    cards: Vec<(SealedPan, bool)>,
    merchants: Vec<Merchant>,
}

impl Population {
    fn new(vault: &Vault) -> Population {
        let cards = (0..CARDS)
            .map(|i| {
                let body = format!("{}{:09}", if i % 2 == 0 { "476173" } else { "541333" }, i);
                let pan = cardswitch::card::luhn_complete(&body).expect("pan");
                (vault.seal(&pan), i % 2 == 0)
            })
            .collect();
        let merchants = (0..MERCHANTS)
            .map(|i| Merchant {
                id: format!("MERCH{i:010}"),
                mcc: "5411".into(),
                name_location: format!("{:<22} {:<13} GBR", format!("SHOP {i}"), "LONDON"),
            })
            .collect();
        Population { cards, merchants }
    }

    /// Appends the records of transaction `n`, drawn from `rng`: received,
    /// forwarded and responded, and for some a reversal queued.
    fn append(&self, wal: &Wal, rng: &mut fastrand::Rng, n: u64) {
        let (pan, on_a) = &self.cards[rng.usize(..CARDS)];
        let merchant = &self.merchants[rng.usize(..MERCHANTS)];
        let currency = ["978", "840", "392"][rng.usize(..3)];
        let roll = rng.u32(..100);
        let kind = if (80..88).contains(&roll) {
            TxnKind::Refund
        } else {
            TxnKind::Purchase
        };
        let amount = rng.u64(100..100_000);
        let stan = format!("{:06}", n % 1_000_000);
        let id = wal
            .append(&Record::Received(Box::new(Received {
                kind,
                mti: "0200".into(),
                processing_code: if kind == TxnKind::Refund {
                    "200000"
                } else {
                    "000000"
                }
                .into(),
                amount,
                currency: currency.into(),
                pan: pan.clone(),
                terminal: format!("T{:07}", n % 5000),
                merchant: Some(merchant.clone()),
                stan: stan.clone(),
                transmission: "1125101500".into(),
                local_time: Some("101500".into()),
                local_date: Some("1125".into()),
                entry_mode: Some("051".into()),
                condition: Some("00".into()),
                rrn: format!("{:012}", n),
                original: None,
                replacement: None,
            })))
            .expect("append");
        let destination = if *on_a { "bank_a" } else { "bank_b" };
        wal.append(&Record::Forwarded {
            txn: id,
            to: Forwarded {
                destination: destination.into(),
                switch_stan: (n % 999_999) as u32 + 1,
                transmission: "1125101500".into(),
                local_93: None,
            },
        })
        .expect("append");
        let approved = !(88..95).contains(&roll);
        wal.append(&Record::Responded {
            txn: id,
            code: if approved { "00" } else { "51" }.into(),
            auth_id: approved.then(|| format!("A{:05}", n % 100_000)),
            source: Source::Destination,
        })
        .expect("append");
        if roll >= 95 {
            wal.append(&Record::ReversalQueued {
                txn: id,
                reason: ReversalReason::Terminal,
                replacement: (roll < 98).then_some(amount / 2),
            })
            .expect("append");
        }
    }
}

fn config(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("data.key");
    let _ = std::fs::remove_file(&key);
    cardswitch::files::write_private_atomically(&key, format!("{}\n", hex::encode(KEY)).as_bytes())
        .expect("data key");
    let mut text = String::from(
        r#"[journal]
dir = "journal"
data_key_file = "data.key"
[switch]
acquirer_id = "4123456"
[[listener]]
name = "pos"
address = "127.0.0.1:0"
dialect = "iso87ascii"
[[destination]]
name = "bank_a"
address = "127.0.0.1:9"
dialect = "iso87binary"
[[destination]]
name = "bank_b"
address = "127.0.0.1:9"
dialect = "iso87binary"
[clearing]
out_dir = "out"
acquirer_bin = "412345"
processor_id = "00000012345"
destinations = { bank_a = { format = "ipm", blocked = true } }
pricing = { percent = "1.5", fixed = 5 }
"#,
    );
    for i in 0..MERCHANTS / 2 {
        text.push_str(&format!(
            "[[clearing.merchant]]\nid = \"MERCH{i:010}\"\npercent = \"1.75\"\nfixed = 10\n"
        ));
    }
    let path = dir.join("cardswitch.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let txns: u64 = std::env::var("CLEARING_TXNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let base = std::env::var_os("CLEARING_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("cardswitch-clearing-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("bench dir");
    let date = generate(&base.join("journal"), txns);
    let config = config(&base);
    let day = format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["clearing", "run", "--config"])
        .arg(&config)
        .args(["--date", &day])
        .output()
        .expect("run cardswitch");
    let wall = started.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "clearing failed: {said}");
    let peak = said
        .lines()
        .find_map(|l| l.split("peak RSS ").nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let bytes: u64 = std::fs::read_dir(base.join("journal"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!("\n## Clearing: {txns} transactions of one business date\n");
    println!("| transactions | journal size | wall time | transactions/s | peak RSS |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {txns} | {:.2} GB | {:.1} s | {:.0} | {peak} |",
        bytes as f64 / 1e9,
        wall.as_secs_f64(),
        txns as f64 / wall.as_secs_f64()
    );
    for line in said
        .lines()
        .filter(|l| l.starts_with("cleared:") || l.starts_with("batch"))
    {
        println!("{line}");
    }
    if std::env::var_os("CLEARING_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&base);
    } else {
        println!("kept: {}", base.display());
    }
}
