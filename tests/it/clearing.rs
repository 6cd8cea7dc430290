//! End-of-day clearing of one day of real traffic: the switch runs over TCP
//! on 127.0.0.1 with two simulated banks, terminals send purchases,
//! refunds, declines, a timeout, reversals (full and partial) and
//! pre-authorisations with completions; then the real binary clears the
//! day (`cardswitch clearing run`), runs again (nothing changes), reissues,
//! and reconciles each bank's own settlement file (`cardswitch recon`),
//! clean and with injected breaks.
//!
//! The daemon's cutover is 23:59 UTC and clearing's is 00:00 UTC: the
//! day's traffic belongs to yesterday's business date, which has ended for
//! clearing — the only way to clear a day within a test.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardswitch::card::luhn_complete;
use cardswitch::clearing::ipm::IpmReader;
use cardswitch::config::Config;
use cardswitch::iso8583::framing::FrameCodec;
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::journal::Cutover;
use cardswitch::server::{self, Running};
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::ledger::Breaks;
use cardswitch::sim::rules::Rules;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// A card routed to bank A (IPM, 1014-blocked).
const CARD_A: &str = "4761739001010119";

fn card_b() -> String {
    luhn_complete("541333000000001").unwrap()
}

async fn bank() -> BankHandle {
    Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::default(),
        Rules::from_toml(
            "[[rule]]\namount = 5100\ndecline = \"51\"\n[[rule]]\nmti = \"0200\"\namount = 9100\nno_answer = true\n[[rule]]\nmti = \"0220\"\namount = 3333\ndecline = \"05\"\n",
            "rules.toml",
        )
        .unwrap(),
    ))
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap()
}

fn config(dir: &Path, a: SocketAddr, b: SocketAddr, cutover: &str, name: &str) -> PathBuf {
    let terminal = |id: &str, merchant: &str, currency: &str| {
        format!(
            "[[terminal]]\nid = \"{id}\"\nmerchant_id = \"{merchant}\"\nname_location = \"{:<22} {:<13} GBR\"\nmcc = \"5411\"\ncurrency = \"{currency}\"\n",
            format!("SHOP {merchant}"),
            "LONDON"
        )
    };
    let text = format!(
        r#"{journal}cutover = "{cutover}"
[switch]
acquirer_id = "4123456"
timeout_ms = 400
[[listener]]
name = "pos"
address = "127.0.0.1:0"
dialect = "iso87ascii"
[[destination]]
name = "bank_a"
address = "{a}"
dialect = "iso87binary"
links = 1
reconnect_min_ms = 20
reconnect_max_ms = 100
[[destination]]
name = "bank_b"
address = "{b}"
dialect = "iso87binary"
links = 1
[[route]]
prefix = "476173"
destination = "bank_a"
[[route]]
prefix = "5"
destination = "bank_b"
{t1}{t2}{t3}
[clearing]
out_dir = "out"
acquirer_bin = "412345"
processor_id = "00000012345"
destinations = {{ bank_a = {{ format = "ipm", blocked = true }} }}
pricing = {{ percent = "1.5" }}
[[clearing.merchant]]
id = "M1"
percent = "1.75"
fixed = 10
"#,
        journal = common::journal_section(dir),
        t1 = terminal("TERM0001", "M1", "978"),
        t2 = terminal("TERM0002", "M2", "840"),
        t3 = terminal("TERM0003", "M3", "392"),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn request(mti: &str, pc: &str, pan: &str, stan: u32, amount: u64, terminal: &str) -> Message {
    let mut m = Message::new(Mti::parse(mti).unwrap());
    m.set(2, pan.to_string())
        .set(3, pc.to_string())
        .set(4, format!("{amount:012}"))
        .set(7, "1126101500")
        .set(11, format!("{stan:06}"))
        .set(12, "101500")
        .set(13, "1126")
        .set(22, "051")
        .set(37, format!("63301{stan:07}"))
        .set(41, terminal.to_string());
    m
}

/// A message naming `original` in field 90.
fn follow_up(mti: &str, original: &Message, stan: u32, amount: u64) -> Message {
    let mut m = original.clone();
    m.set_mti(Mti::parse(mti).unwrap());
    m.set(11, format!("{stan:06}"))
        .set(4, format!("{amount:012}"))
        .set(37, format!("63301{stan:07}"))
        .set(
            90,
            format!(
                "{}{}{}{:0>22}",
                original.mti().as_str(),
                original.text(11).unwrap(),
                original.text(7).unwrap(),
                "4123456"
            ),
        );
    m
}

fn cli(args: &[&str]) -> (u8, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1) as u8,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `cardswitch recon` of `destination`'s bank file, the breaks to `breaks`.
fn recon(config: &str, date: &str, destination: &str, file: &Path, breaks: &Path) -> (u8, String) {
    cli(&[
        "recon",
        "--config",
        config,
        "--date",
        date,
        "--destination",
        destination,
        "--bank-file",
        file.to_str().unwrap(),
        "--breaks",
        breaks.to_str().unwrap(),
    ])
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Rows of a CSV with a header line, as column → value maps.
fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
        .collect()
}

/// Waits until midnight UTC is not within a minute: the day's traffic must
/// stay on one business date.
async fn away_from_midnight() {
    let secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 86_400
    };
    while secs() > 86_400 - 90 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Day {
    dir: tempfile::TempDir,
    clearing_config: PathBuf,
    date: String,
    compact: String,
    bank_a: BankHandle,
    bank_b: BankHandle,
}

/// Starts the switch, waits for both bank links and connects a terminal.
async fn start(config: &Path) -> (Running, Framed<TcpStream, FrameCodec>) {
    let running: Running = server::start(Config::load(config).unwrap()).await.unwrap();
    let since = Instant::now();
    while ["bank_a", "bank_b"]
        .iter()
        .any(|d| running.switch().destination(d).unwrap().links_up() == 0)
    {
        assert!(since.elapsed() < Duration::from_secs(10), "links up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let conn = Framed::new(
        TcpStream::connect(running.address("pos").unwrap())
            .await
            .unwrap(),
        FrameCodec::default(),
    );
    (running, conn)
}

/// Runs the day's traffic and stops the switch.
async fn one_day() -> Day {
    away_from_midnight().await;
    let dir = tempfile::tempdir().unwrap();
    let (bank_a, bank_b) = (bank().await, bank().await);
    let daemon = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "23:59",
        "daemon.toml",
    );
    let clearing_config = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "00:00",
        "clearing.toml",
    );
    let (running, mut conn) = start(&daemon).await;
    let mut send = async |m: &Message, expected: &str| {
        let answer = common::exchange(&mut conn, m).await;
        assert_eq!(
            answer.response_code(),
            Some(expected),
            "{} {}",
            m.mti().as_str(),
            m.text(4).unwrap()
        );
        answer
    };
    let b = card_b();
    // Cleared: a purchase, a refund.
    send(
        &request("0200", "000000", CARD_A, 1, 1000, "TERM0001"),
        "00",
    )
    .await;
    send(&request("0200", "200000", CARD_A, 2, 500, "TERM0001"), "00").await;
    // Not cleared: a decline, a timeout (reversed by the switch).
    send(
        &request("0200", "000000", CARD_A, 3, 5100, "TERM0001"),
        "51",
    )
    .await;
    send(
        &request("0200", "000000", CARD_A, 4, 9100, "TERM0001"),
        "91",
    )
    .await;
    // A purchase reversed in full, one reversed in part (1,800 stands).
    let reversed = request("0200", "000000", CARD_A, 5, 2000, "TERM0001");
    send(&reversed, "00").await;
    send(&follow_up("0400", &reversed, 6, 2000), "00").await;
    let partial = request("0200", "000000", CARD_A, 7, 3000, "TERM0001");
    send(&partial, "00").await;
    let mut cut = follow_up("0400", &partial, 8, 3000);
    cut.set(95, format!("{:012}{:030}", 1800, 0));
    send(&cut, "00").await;
    // A pre-authorisation completed for less; a second completion and one
    // for more than approved are refused; a pre-authorisation alone does
    // not clear.
    let pre = request("0100", "000000", CARD_A, 9, 4000, "TERM0001");
    send(&pre, "00").await;
    // A completion on another card is refused; one the bank declines gives
    // the pre-authorisation back for the next.
    let mut other_card = follow_up("0220", &pre, 16, 3500);
    other_card.set(2, card_b());
    send(&other_card, "25").await;
    send(&follow_up("0220", &pre, 17, 3333), "05").await;
    send(&follow_up("0220", &pre, 10, 3500), "00").await;
    send(&follow_up("0220", &pre, 11, 100), "25").await;
    let small = request("0100", "000000", CARD_A, 12, 1000, "TERM0001");
    send(&small, "00").await;
    send(&follow_up("0220", &small, 13, 2000), "13").await;
    // Bank B: dollars and yen.
    send(&request("0200", "000000", &b, 14, 777, "TERM0002"), "00").await;
    send(&request("0200", "000000", &b, 15, 1500, "TERM0003"), "00").await;
    // The timed-out purchase's reversal reaches bank A (its store-and-forward).
    let since = Instant::now();
    while bank_a.ledger().unmatched_reversals() == 0 {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "timeout reversal sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(conn);
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // After a restart the journal still knows the pre-authorisation was
    // completed: a second completion is refused.
    let (running, mut conn) = start(&daemon).await;
    let answer = common::exchange(&mut conn, &follow_up("0220", &pre, 18, 500)).await;
    assert_eq!(
        answer.response_code(),
        Some("25"),
        "completed before the restart"
    );
    drop(conn);
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let compact = Cutover::utc(23 * 3600 + 59 * 60).date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let date = format!("{}-{}-{}", &compact[..4], &compact[4..6], &compact[6..]);
    Day {
        dir,
        clearing_config,
        date,
        compact,
        bank_a,
        bank_b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_clears_once_exactly_and_reconciles() {
    let day = one_day().await;
    let config = day.clearing_config.to_str().unwrap().to_string();
    let out = day.dir.path().join("out");
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &day.date]);
    assert_eq!(code, 0, "{said}");
    assert!(
        !said.contains(CARD_A) && !said.contains(&card_b()),
        "{said}"
    );
    let d = &day.compact;
    let ipm = out.join(format!("bank_a-{d}.ipm"));
    let csv = out.join(format!("bank_b-{d}.csv"));
    let settlement = out.join(format!("settlement-{d}.csv"));
    let manifest = out.join(format!("manifest-{d}.json"));

    // Bank A's IPM file: header, four presentments, trailer.
    let bytes = std::fs::read(&ipm).unwrap();
    assert_eq!(bytes.len() % 1014, 0, "1014-blocked");
    let messages: Vec<_> = IpmReader::new(&bytes[..], true)
        .collect::<Result<_, _>>()
        .unwrap();
    let mtis: Vec<&str> = messages.iter().map(|m| m.mti.as_str()).collect();
    assert_eq!(mtis, ["1644", "1240", "1240", "1240", "1240", "1644"]);
    let field = |m: &cardswitch::clearing::ipm::IpmMessage, f: u8| {
        m.fields.get(&f).cloned().unwrap_or_default()
    };
    let presentments: Vec<(String, String, String)> = messages[1..5]
        .iter()
        .map(|m| (field(m, 3), field(m, 4), field(m, 2)))
        .collect();
    assert_eq!(
        presentments,
        [
            ("000000".into(), "000000001000".into(), CARD_A.into()),
            ("200000".into(), "000000000500".into(), CARD_A.into()),
            ("000000".into(), "000000001800".into(), CARD_A.into()),
            ("000000".into(), "000000003500".into(), CARD_A.into()),
        ]
    );
    for m in &messages[1..5] {
        assert_eq!(field(m, 24), "200");
        assert_eq!(field(m, 49), "978");
        assert_eq!(field(m, 38).len(), 6, "approval code");
        let ard = field(m, 31);
        assert!(
            ard.len() == 23 && cardswitch::card::luhn_valid(&ard),
            "{ard}"
        );
    }
    let trailer = &messages[5];
    assert_eq!(field(trailer, 24), "695");
    assert_eq!(
        trailer.pds.get(&301).map(String::as_str),
        Some("0000000000006800")
    );
    assert_eq!(trailer.pds.get(&306).map(String::as_str), Some("00000006"));

    // Bank B's flat file: dollars and yen.
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].contains(",debit,777,840,"), "{text}");
    assert!(lines[2].contains(",debit,1500,392,"), "{text}");
    assert_eq!(lines[3], "TRAILER,2,2277,0");

    // Settlement: fees per transaction, rounded half away from zero.
    let rows = csv_rows(&std::fs::read_to_string(&settlement).unwrap());
    let merchant = |id: &str| {
        rows.iter()
            .find(|r| {
                r.get("record").map(String::as_str) == Some("merchant")
                    && r.get("merchant").map(String::as_str) == Some(id)
            })
            .unwrap_or_else(|| panic!("merchant {id} in {rows:?}"))
            .clone()
    };
    let m1 = merchant("M1");
    // 1.75 % + 0.10 of 10.00, 18.00 and 35.00: 0.28 + 0.42 + 0.71.
    assert_eq!(m1["fees_minor"], "141", "{m1:?}");
    assert_eq!(m1["net_payable_minor"], "5659", "{m1:?}");
    assert_eq!(m1["reversal_minor"], "3200", "{m1:?}");
    assert_eq!(merchant("M2")["net_payable"], "7.65");
    assert_eq!(
        merchant("M3")["net_payable"],
        "1477",
        "yen have no minor unit"
    );

    // The manifest names every file with its SHA-256.
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let files = listed["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for f in files {
        let path = out.join(f["name"].as_str().unwrap());
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            sha256(&path),
            "{}",
            path.display()
        );
    }
    assert_eq!(listed["files"][0]["totals"]["978"]["debits"], 6300);
    assert_eq!(listed["files"][0]["totals"]["978"]["credits"], 500);
    let no_temp = std::fs::read_dir(&out)
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp"));
    assert!(no_temp, "no temporary file left");

    // Again: nothing cleared twice, files untouched.
    let digests = || [&ipm, &csv, &settlement, &manifest].map(|p| sha256(p));
    let before = digests();
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &day.date]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("cleared already"), "{said}");
    let after = digests();
    assert_eq!(before, after);

    // A lost file is noticed; a reissue rewrites it byte for byte.
    std::fs::remove_file(&csv).unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &day.date]);
    assert_eq!(code, 65, "{said}");
    assert!(said.contains("--reissue"), "{said}");
    let (code, said) = cli(&[
        "clearing",
        "run",
        "--config",
        &config,
        "--date",
        &day.date,
        "--reissue",
    ]);
    assert_eq!(code, 0, "{said}");
    let reissued = digests();
    assert_eq!(before, reissued);

    // A reissue that would not give the recorded files (here: the pricing
    // changed since) is refused before anything is replaced.
    let repriced = day.dir.path().join("repriced.toml");
    std::fs::write(
        &repriced,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("percent = \"1.75\"", "percent = \"2.00\""),
    )
    .unwrap();
    let (code, said) = cli(&[
        "clearing",
        "run",
        "--config",
        repriced.to_str().unwrap(),
        "--date",
        &day.date,
        "--reissue",
    ]);
    assert_eq!(code, 65, "{said}");
    assert!(said.contains("settlement"), "{said}");
    let untouched = digests();
    assert_eq!(before, untouched);
    let leftovers = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);

    // A date before the journal began is a mistake, not an empty day.
    let (code, said) = cli(&[
        "clearing",
        "run",
        "--config",
        &config,
        "--date",
        "2001-01-01",
    ]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("before the journal's first business date"),
        "{said}"
    );
    assert!(
        !day.dir
            .path()
            .join("journal/clearing/20010101.json")
            .exists()
    );

    // Today has not ended: clearing it is refused, to be retried (75).
    let today = Cutover::utc(0).date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let today = format!("{}-{}-{}", &today[..4], &today[4..6], &today[6..]);
    let (code, said) = cli(&["clearing", "run", "--config", &config, "--date", &today]);
    assert_eq!(code, 75, "{said}");

    // Each bank's own settlement file reconciles with what was cleared.
    for (bank, name) in [(&day.bank_a, "bank_a"), (&day.bank_b, "bank_b")] {
        let file = day.dir.path().join(format!("{name}-settlement.csv"));
        let mut text = Vec::new();
        bank.ledger()
            .settlement_csv(&Breaks::default(), &mut text)
            .unwrap();
        std::fs::write(&file, text).unwrap();
        let breaks = day.dir.path().join(format!("{name}-breaks.csv"));
        let (code, said) = recon(&config, &day.date, name, &file, &breaks);
        assert_eq!(code, 0, "{name}: {said}");
        assert!(
            !said.contains(CARD_A) && !said.contains(&card_b()),
            "{said}"
        );
    }

    // Breaks put in on purpose are found, and nothing else.
    let file = day.dir.path().join("bank_a-broken.csv");
    let mut text = Vec::new();
    let broken = day
        .bank_a
        .ledger()
        .settlement_csv(
            &Breaks {
                drop: 1,
                unknown: 1,
                amount: 1,
                currency: 1,
                seed: 7,
            },
            &mut text,
        )
        .unwrap();
    std::fs::write(&file, text).unwrap();
    let breaks = day.dir.path().join("breaks.csv");
    let (code, said) = recon(&config, &day.date, "bank_a", &file, &breaks);
    assert_eq!(code, 3, "{said}");
    let found = csv_rows(&std::fs::read_to_string(&breaks).unwrap());
    assert_eq!(found.len(), 4, "{found:?}");
    let kinds: Vec<(String, String)> = found
        .iter()
        .map(|r| (r["break"].clone(), r["rrn"].clone()))
        .collect();
    for (kind, rrn) in broken.all() {
        assert!(
            kinds.contains(&(kind.to_string(), rrn.clone())),
            "{kind} {rrn} not in {kinds:?}"
        );
    }
    day.bank_a.stop().await;
    day.bank_b.stop().await;
}

#[test]
fn a_merchant_location_ipm_cannot_carry_is_refused_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let path = config(dir.path(), addr, addr, "00:00", "cardswitch.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "SHOP M1                LONDON        GBR",
        "SHOP M1 LONDON",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let (code, said) = cli(&["config", "check", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{said}");
    assert!(
        said.contains("terminal TERM0001: name_location:") && said.contains("country code"),
        "{said}"
    );
}

/// The business date the daemon (cutover 23:59 UTC) files today's traffic
/// under: `(YYYYMMDD, YYYY-MM-DD)`.
fn daemon_date() -> (String, String) {
    let compact = Cutover::utc(23 * 3600 + 59 * 60).date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let date = format!("{}-{}-{}", &compact[..4], &compact[4..6], &compact[6..]);
    (compact, date)
}

/// #16.9: a completion reversed in full is a reversal in the settlement
/// report, beside a purchase reversed in full and one reversed in part:
/// 3 reversals, 80.00 + 50.00 + 70.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_reversed_in_full_counts_in_the_reversal_columns() {
    away_from_midnight().await;
    let dir = tempfile::tempdir().unwrap();
    let (bank_a, bank_b) = (bank().await, bank().await);
    let daemon = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "23:59",
        "daemon.toml",
    );
    let clearing_config = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "00:00",
        "clearing.toml",
    );
    let (running, mut conn) = start(&daemon).await;
    let mut send = async |m: &Message| {
        let answer = common::exchange(&mut conn, m).await;
        assert_eq!(answer.response_code(), Some("00"), "{}", m.mti().as_str());
    };
    // Pre-authorisation 100.00, completed for 80.00, the completion
    // reversed in full.
    let pre = request("0100", "000000", CARD_A, 1, 10_000, "TERM0001");
    send(&pre).await;
    let completion = follow_up("0220", &pre, 2, 8_000);
    send(&completion).await;
    send(&follow_up("0400", &completion, 3, 8_000)).await;
    // A purchase of 50.00 reversed in full.
    let purchase = request("0200", "000000", CARD_A, 4, 5_000, "TERM0001");
    send(&purchase).await;
    send(&follow_up("0400", &purchase, 5, 5_000)).await;
    // A purchase of 100.00 reversed in part: 30.00 stands, 70.00 reversed.
    let partial = request("0200", "000000", CARD_A, 6, 10_000, "TERM0001");
    send(&partial).await;
    let mut cut = follow_up("0400", &partial, 7, 10_000);
    cut.set(95, format!("{:012}{:030}", 3_000, 0));
    send(&cut).await;
    drop(conn);
    running.shutdown().await;
    bank_a.stop().await;
    bank_b.stop().await;

    let (compact, date) = daemon_date();
    let config = clearing_config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let settlement = dir.path().join(format!("out/settlement-{compact}.csv"));
    let rows = csv_rows(&std::fs::read_to_string(&settlement).unwrap());
    for record in ["merchant", "currency"] {
        let row = rows
            .iter()
            .find(|r| r["record"] == record && r["currency"] == "978")
            .unwrap_or_else(|| panic!("{record} row in {rows:?}"));
        assert_eq!(row["reversal_count"], "3", "{record}: {row:?}");
        assert_eq!(row["reversal_minor"], "20000", "{record}: {row:?}");
        assert_eq!(row["reversal"], "200.00", "{record}: {row:?}");
        // What clears: the 30.00 that stands, nothing of the completion.
        assert_eq!(row["completion_count"], "0", "{record}: {row:?}");
        assert_eq!(row["purchase_minor"], "3000", "{record}: {row:?}");
    }
}

/// Writes `count` approved purchases (alternately to bank_a and bank_b)
/// straight into `DIR/journal` as the switch journals them, one group per
/// record and segments closed at `segment_bytes`, filed under the business
/// date of a cutover one second before midnight UTC (yesterday for
/// clearing's 00:00) — or today with `today`. Returns the clearing config
/// and the date (`YYYY-MM-DD`).
fn written_day(dir: &Path, count: u32, segment_bytes: u64, today: bool) -> (PathBuf, String) {
    use cardswitch::journal::Durability;
    use cardswitch::journal::record::{Forwarded, Merchant, Received, Record, Source};
    use cardswitch::journal::wal::{Wal, WalConfig};

    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = config(dir, addr, addr, "00:00", "clearing.toml");
    let vault = Config::load(&config).unwrap().journal.vault().unwrap();
    let cutover = Cutover::utc(if today { 0 } else { 86_399 });
    let (wal, _) = Wal::open(WalConfig {
        dir: dir.join("journal"),
        segment_bytes,
        durability: Durability::None,
        cutover: cutover.clone(),
    })
    .unwrap();
    let write = |record: &Record| {
        let (seq, durable) = wal.append_durable(record).unwrap();
        durable.wait_blocking().unwrap();
        seq
    };
    let b = card_b();
    for n in 0..count {
        let (pan, destination) = if n % 2 == 0 {
            (CARD_A, "bank_a")
        } else {
            (b.as_str(), "bank_b")
        };
        let id = write(&Record::Received(Box::new(Received {
            kind: cardswitch::txn::TxnKind::Purchase,
            mti: "0200".into(),
            processing_code: "000000".into(),
            amount: 1000 + u64::from(n),
            currency: "978".into(),
            pan: vault.seal(pan),
            terminal: "TERM0001".into(),
            merchant: Some(Merchant {
                id: "M1".into(),
                mcc: "5411".into(),
                name_location: format!("{:<22} {:<13} GBR", "SHOP M1", "LONDON"),
            }),
            stan: format!("{:06}", n + 1),
            transmission: "1126101500".into(),
            local_time: Some("101500".into()),
            local_date: Some("1126".into()),
            entry_mode: Some("051".into()),
            condition: Some("00".into()),
            rrn: format!("63301{:07}", n + 1),
            original: None,
            replacement: None,
        })));
        write(&Record::Forwarded {
            txn: id,
            to: Forwarded {
                destination: destination.into(),
                switch_stan: n + 1,
                transmission: "1126101500".into(),
                local_93: None,
            },
        });
        write(&Record::Responded {
            txn: id,
            code: "00".into(),
            auth_id: Some(format!("A{n:05}")),
            source: Source::Destination,
        });
    }
    wal.close();
    let date = cutover.date(cardswitch::journal::wal::now_micros());
    (
        config,
        format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]),
    )
}

/// Runs the binary with its stdout a pipe whose reader is closed before
/// anything is written; returns the exit status and stderr.
fn with_stdout_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An empty bank settlement file: every cleared item is missing at the
/// bank.
fn empty_bank_file(dir: &Path) -> PathBuf {
    let file = dir.join("empty-bank.csv");
    std::fs::write(
        &file,
        format!(
            "{}\nTRAILER,0,0,0\n",
            cardswitch::clearing::recon::CSV_HEADER
        ),
    )
    .unwrap();
    file
}

/// #16.7: `clearing run` and `recon` end quietly, with their normal
/// status, when their stdout is closed (`| head`).
#[test]
fn a_closed_stdout_ends_clearing_and_recon_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 6, 64 << 20, false);
    let config = config.to_str().unwrap();
    let (code, stderr) =
        with_stdout_closed(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let compact = date.replace('-', "");
    assert!(
        dir.path()
            .join(format!("journal/clearing/{compact}.json"))
            .exists(),
        "the batch is recorded"
    );
    // Again: cleared already, said to a closed stdout.
    let (code, stderr) =
        with_stdout_closed(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Reconciliation with breaks: its own status (3), no panic.
    let bank = empty_bank_file(dir.path());
    let (code, stderr) = with_stdout_closed(&[
        "recon",
        "--config",
        config,
        "--date",
        &date,
        "--bank-file",
        bank.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// #16.10: a segment cut short in the middle of the log is reported by
/// `clearing run` with the segment file and offset `journal verify` gives.
#[test]
fn a_truncated_segment_is_named_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 12, 700, false);
    let config = config.to_str().unwrap();
    let segments = cardswitch::journal::wal::segments(&dir.path().join("journal")).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    // The second segment loses the last 5 bytes of its last record.
    let cut = &segments[1].path;
    let len = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (code, verified) = cli(&["journal", "verify", "--config", config]);
    assert_ne!(code, 0, "{verified}");
    let named = verified
        .lines()
        .find(|l| l.contains("corrupt record"))
        .unwrap_or_else(|| panic!("{verified}"))
        .to_string();
    assert!(named.contains(&cut.display().to_string()), "{named}");
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&named),
        "clearing says {said:?}, verify {named:?}"
    );
    assert!(!said.contains("offset 0:"), "{said}");

    // Cut at a record boundary (the segment's last record gone whole):
    // the segment and the end of its last whole record are named.
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 12, 700, false);
    let config = config.to_str().unwrap();
    let journal = dir.path().join("journal");
    let segments = cardswitch::journal::wal::segments(&journal).unwrap();
    let cut = &segments[1].path;
    let data = std::fs::read(cut).unwrap();
    let mut ends = Vec::new();
    cardswitch::journal::wal::scan_bytes(&data, "", false, |e| {
        ends.push(e.offset);
        Ok(())
    })
    .unwrap();
    let last = *ends.last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(last)
        .unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains(&format!(
            "journal segment {}: corrupt record at offset {last}:",
            cut.display()
        )),
        "{said}"
    );
}

/// Inode, modification time and size of every file under `dirs`.
fn stats(dirs: &[PathBuf]) -> BTreeMap<PathBuf, (u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeMap::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let m = std::fs::metadata(&path).unwrap();
            if m.is_file() {
                found.insert(path, (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
            }
        }
    }
    found
}

/// #16.11: a rerun for a cleared date leaves every file of it untouched
/// (same inode and modification time), the manifest included; a manifest
/// lost after the batch was recorded is written again.
#[test]
fn a_rerun_leaves_every_file_of_the_date_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 6, 64 << 20, false);
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let dirs = [dir.path().join("out"), dir.path().join("journal/clearing")];
    let before = stats(&dirs);
    let compact = date.replace('-', "");
    let manifest = dir.path().join(format!("out/manifest-{compact}.json"));
    assert!(before.contains_key(&manifest), "{before:?}");
    std::thread::sleep(Duration::from_millis(20));
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("cleared already"), "{said}");
    assert_eq!(stats(&dirs), before);

    // A run stopped between the batch record and the manifest: the next
    // run writes the manifest, with the batch record's bytes.
    std::fs::remove_file(&manifest).unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        std::fs::read(dir.path().join(format!("journal/clearing/{compact}.json"))).unwrap()
    );
    // A manifest that is not the recorded one is reported, not replaced.
    std::fs::write(&manifest, "{}\n").unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 65, "{said}");
    assert!(
        said.contains("manifest") && said.contains("--reissue"),
        "{said}"
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), b"{}\n");
}

/// #16.12: the default break report names its destination: reconciling
/// bank A, then bank B, leaves two reports.
#[test]
fn break_reports_of_two_destinations_are_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let (config, date) = written_day(dir.path(), 6, 64 << 20, false);
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let bank = empty_bank_file(dir.path());
    let compact = date.replace('-', "");
    for destination in ["bank_a", "bank_b"] {
        let (code, said) = cli(&[
            "recon",
            "--config",
            config,
            "--date",
            &date,
            "--destination",
            destination,
            "--bank-file",
            bank.to_str().unwrap(),
        ]);
        assert_eq!(code, 3, "{said}");
        let report = dir
            .path()
            .join(format!("out/breaks-{destination}-{compact}.csv"));
        assert!(said.contains(&report.display().to_string()), "{said}");
    }
    for destination in ["bank_a", "bank_b"] {
        let report = dir
            .path()
            .join(format!("out/breaks-{destination}-{compact}.csv"));
        let rows = csv_rows(&std::fs::read_to_string(&report).unwrap());
        assert_eq!(rows.len(), 3, "{destination}: {rows:?}");
        assert!(rows.iter().all(|r| r["break"] == "missing_at_bank"));
    }
    // A destination that cannot be one is refused before anything is
    // written.
    let (code, said) = cli(&[
        "recon",
        "--config",
        config,
        "--date",
        &date,
        "--destination",
        "../elsewhere",
        "--bank-file",
        bank.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("not a destination name"), "{said}");
}

/// #16.13: the timer's first night: `--date previous` before the journal's
/// first business date (or with no journal at all) has nothing to clear,
/// exit 0, and writes nothing; the same date given explicitly is refused.
#[test]
fn nothing_to_clear_before_the_journal_is_a_success() {
    // No journal yet: the daemon never ran.
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = config(dir.path(), addr, addr, "00:00", "clearing.toml");
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", "previous"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("nothing to clear"), "{said}");
    assert!(!dir.path().join("journal").exists(), "nothing created");
    assert!(!dir.path().join("out").exists(), "nothing created");

    // A journal whose first business date is today.
    let dir = tempfile::tempdir().unwrap();
    let (config, today) = written_day(dir.path(), 2, 64 << 20, true);
    let config = config.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", "previous"]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("nothing to clear")
            && said.contains(&format!(
                "before the journal's first business date ({})",
                today.replace('-', "")
            )),
        "{said}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("journal/clearing"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "no batch recorded"
    );
    assert!(!dir.path().join("out").exists(), "no file written");
    // Named explicitly, the same date is a mistake (exit 1).
    let previous = Cutover::utc(86_399).date(cardswitch::journal::wal::now_micros());
    let explicit = format!("{}-{}-{}", &previous[..4], &previous[4..6], &previous[6..]);
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &explicit]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("before the journal's first business date"),
        "{said}"
    );
}

/// #16.14: an operator closes the business date on demand (`ctl cutover`,
/// operator role, audited) and the closed date clears at once, with one
/// configuration for the daemon and clearing and no wall-clock wait; a
/// second cutover the same day is refused, and the traffic after it
/// belongs to the next date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cutover_closes_the_day_for_clearing_at_once() {
    away_from_midnight().await;
    let dir = tempfile::tempdir().unwrap();
    let (bank_a, bank_b) = (bank().await, bank().await);
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (pos, admin) = (free(), free());
    let path = config(
        dir.path(),
        bank_a.addr(),
        bank_b.addr(),
        "00:00",
        "cardswitch.toml",
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:0", &pos.to_string());
    std::fs::write(
        &path,
        format!(
            "{text}[admin]\naddress = \"{admin}\"\ntokens_file = \"tokens.toml\"\naudit_log = \"audit.log\"\n"
        ),
    )
    .unwrap();
    let tokens = dir.path().join("tokens.toml");
    let token = |name: &str, role: &str| {
        let (code, said) = cli(&[
            "tokens",
            "--file",
            tokens.to_str().unwrap(),
            "add",
            name,
            "--role",
            role,
        ]);
        assert_eq!(code, 0, "{said}");
        let file = dir.path().join(format!("{name}.token"));
        // The token is the first line printed (stdout); advice follows.
        std::fs::write(&file, said.lines().next().unwrap_or_default()).unwrap();
        file
    };
    let (operator, viewer) = (token("otto", "operator"), token("vera", "viewer"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = common::KillOnDrop(child.id());
    let url = format!("http://{admin}");
    let ctl = |token: &Path, command: &str| {
        cli(&[
            "ctl",
            "--url",
            &url,
            "--token-file",
            token.to_str().unwrap(),
            command,
        ])
    };
    let since = Instant::now();
    while ctl(&viewer, "status").0 != 0 {
        assert!(since.elapsed() < Duration::from_secs(15), "daemon ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = common::purchases(pos, "476173", "00", 5).await;
    assert!(report.all_checked_out(), "{}", report.to_json());

    let today = Cutover::utc(0).date(cardswitch::journal::wal::now_micros());
    let date = format!("{}-{}-{}", &today[..4], &today[4..6], &today[6..]);
    let config = path.to_str().unwrap();
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_ne!(code, 0, "the day has not ended yet: {said}");

    assert_eq!(ctl(&viewer, "cutover").0, 1, "a viewer may not cut over");
    let (code, said) = ctl(&operator, "cutover");
    assert_eq!(code, 0, "{said}");
    let answer: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(answer["closed"], today.as_str(), "{said}");
    let next = answer["business_date"].as_str().unwrap().to_string();
    assert!(next > today, "{said}");
    let (code, said) = ctl(&operator, "cutover");
    assert_ne!(code, 0, "a second cutover the same day is refused: {said}");

    // Traffic after the cutover belongs to the next date, not the closed one.
    let report = common::purchases(pos, "476173", "00", 3).await;
    assert!(report.all_checked_out(), "{}", report.to_json());
    let (code, said) = cli(&["clearing", "run", "--config", config, "--date", &date]);
    assert_eq!(code, 0, "{said}");
    let ipm = dir.path().join(format!("out/bank_a-{today}.ipm"));
    let bytes = std::fs::read(&ipm).unwrap();
    let presentments = IpmReader::new(&bytes[..], true)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .iter()
        .filter(|m| m.mti.as_str() == "1240")
        .count();
    assert_eq!(presentments, 5, "the closed day's purchases only");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(
        audit.matches("POST /v1/cutover").count(),
        3,
        "every attempt is audited: {audit}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(stopped.success(), "clean stop: {stopped}");
    bank_a.stop().await;
    bank_b.stop().await;
}
