//! The journal through the running switch over real TCP on 127.0.0.1:
//! card data at rest, store-and-forward across a restart, duplicates,
//! partial reversals, and the `journal` commands of the real binary.

use crate::common;
use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardswitch::config::Config;
use cardswitch::iso8583::framing::FrameCodec;
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::journal::view;
use cardswitch::security::pin::{self, PinFormat};
use cardswitch::server::{self, Running};
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::rules::Rules;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

const PANS: [&str; 3] = ["4761739001010119", "4761739001010127", "4761731234567890"];

async fn bank_at(listener: TcpListener, rules: &str) -> BankHandle {
    Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::default(),
        Rules::from_toml(rules, "rules.toml").unwrap(),
    ))
    .start(listener)
    .unwrap()
}

/// Writes the config: one bank whose PINs go under the ZPK, one terminal
/// whose PINs come under the TPK, keys from the test key store.
fn write_config(dir: &Path, bank: SocketAddr) -> PathBuf {
    Daemon::new(dir)
        .key_store()
        .timeout_ms(300)
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(
            Destination::new("bank", bank, "iso87binary")
                .reconnect_ms(20, 100)
                .security(r#"pin_key = "zpk""#),
        )
        .route("476173", "bank")
        .terminal(Terminal::new("TERM0001", "M1").security(r#"pin_key = "tpk""#))
        .write()
}

async fn start(config: &Path) -> Running {
    let running = server::start(Config::load(config).unwrap()).await.unwrap();
    let since = Instant::now();
    while running.switch().destination("bank").unwrap().links_up() == 0 {
        assert!(since.elapsed() < Duration::from_secs(5), "link up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running
}

async fn connect(running: &Running) -> Framed<TcpStream, FrameCodec> {
    Framed::new(
        TcpStream::connect(running.address("pos").unwrap())
            .await
            .unwrap(),
        FrameCodec::default(),
    )
}

fn purchase(pan: &str, stan: u32, amount: u64) -> Message {
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(2, pan.to_string())
        .set(3, "000000")
        .set(4, format!("{amount:012}"))
        .set(7, "1125120000")
        .set(11, format!("{stan:06}"))
        .set(35, format!("{pan}=29122011234567890"))
        .set(37, format!("{stan:012}"))
        .set(41, "TERM0001")
        .set(49, "978")
        .set(52, pin_block(pan));
    m
}

/// PIN 1234 in an ISO format 0 block under the terminal's PIN key.
fn pin_block(pan: &str) -> Vec<u8> {
    pin::encipher(PinFormat::Iso0, &common::test_key("tpk"), b"1234", pan).unwrap()
}

fn reversal_of(original: &Message, stan: u32) -> Message {
    let mut m = original.clone();
    m.set_mti(Mti::parse("0400").unwrap());
    m.set(11, format!("{stan:06}"));
    m.set(
        90,
        format!(
            "0200{}{}{:0>22}",
            original.text(11).unwrap(),
            original.text(7).unwrap(),
            "4123456"
        ),
    );
    m
}

fn cli(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["journal", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let since = Instant::now();
    while !done() {
        assert!(since.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_data_never_reaches_the_disk_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let bank = bank_at(TcpListener::bind("127.0.0.1:0").await.unwrap(), "").await;
    let config = write_config(dir.path(), bank.addr());
    let running = start(&config).await;
    let mut conn = connect(&running).await;
    for (i, pan) in PANS.iter().enumerate() {
        let answer = common::exchange(&mut conn, &purchase(pan, 200 + i as u32, 1000)).await;
        assert_eq!(answer.response_code(), Some("00"));
    }
    running.shutdown().await;
    // The switch (and so the journal) is gone once its tasks are: give the
    // index thread its final flush.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let journal = dir.path().join("journal");
    let states = view::replay(&journal, &cardswitch::journal::Cutover::default()).unwrap();
    assert_eq!(states.len(), 3);
    assert_eq!(
        states.values().next().unwrap().request.pan.masked,
        "476173******0119"
    );
    let files = files_under(&journal);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "wal"))
    );
    assert!(files.iter().any(|f| f.starts_with(journal.join("index"))));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for secret in PANS
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .chain(PANS.iter().map(|p| pin_block(p)))
            .chain([b"=29122011234567890".to_vec()])
        {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                "{} holds card data in clear",
                file.display()
            );
        }
    }
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_owed_survives_a_restart_and_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_addr = listener.local_addr().unwrap();
    // This bank takes the purchase and never answers it.
    let silent = bank_at(listener, "[[rule]]\namount = 9100\nno_answer = true\n").await;
    let config = write_config(dir.path(), bank_addr);
    let running = start(&config).await;
    let mut conn = connect(&running).await;
    let request = purchase(PANS[0], 300, 9100);
    let answer = common::exchange(&mut conn, &request).await;
    assert_eq!(answer.response_code(), Some("91"));
    running.shutdown().await;
    silent.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The reversal is owed, in the journal, while nobody runs.
    let (ok, out) = cli(&config, &["saf"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 reversals owed"), "{out}");
    assert!(
        out.contains("476173******0119") && out.contains("timeout"),
        "{out}"
    );

    // A bank that answers comes back on the same address; so does the
    // switch, which sends the reversal from its journal.
    let bank = bank_at(TcpListener::bind(bank_addr).await.unwrap(), "").await;
    let running = start(&config).await;
    let ledger = Arc::clone(bank.ledger());
    wait_for("reversal delivered", || ledger.unmatched_reversals() == 1).await;
    let journal = dir.path().join("journal");
    wait_for("acknowledged in the journal", || {
        view::replay(&journal, &cardswitch::journal::Cutover::default())
            .unwrap()
            .values()
            .all(|s| !s.reversal_pending())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ledger.unmatched_reversals(), 1, "delivered once");
    assert_eq!(running.switch().saf().depth(), 0);
    running.shutdown().await;
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_and_partial_reversals() {
    let dir = tempfile::tempdir().unwrap();
    let bank = bank_at(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        "[[rule]]\nmti = \"0200\"\ndelay_ms = 100\n",
    )
    .await;
    let config = write_config(dir.path(), bank.addr());
    let running = start(&config).await;

    // The same request twice, the second while the first is at the bank:
    // one forward, the same answer twice.
    let request = purchase(PANS[1], 400, 2500);
    let (mut a, mut b) = (connect(&running).await, connect(&running).await);
    let first = common::exchange(&mut a, &request);
    let second = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        common::exchange(&mut b, &request).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.response_code(), Some("00"));
    assert_eq!(
        (second.response_code(), second.auth_id()),
        (Some("00"), first.auth_id())
    );
    assert_eq!(bank.ledger().approvals().len(), 1, "the bank saw it once");

    // A partial reversal: 10.00 of the 25.00 stands.
    let mut partial = reversal_of(&request, 401);
    partial.set(95, format!("{:012}{:012}C00000000C00000000", 1000, 1000));
    let answer = common::exchange(&mut a, &partial).await;
    assert_eq!(answer.response_code(), Some("00"));
    let ledger = Arc::clone(bank.ledger());
    wait_for("partial reversal delivered", || {
        ledger.approvals().first().is_some_and(|a| a.reversals == 1)
    })
    .await;
    // Repeating the terminal's reversal does not reverse twice.
    let answer = common::exchange(&mut a, &reversal_of(&request, 402)).await;
    assert_eq!(answer.response_code(), Some("00"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ledger.approvals()[0].reversals, 1);

    let states = view::replay(
        &dir.path().join("journal"),
        &cardswitch::journal::Cutover::default(),
    )
    .unwrap();
    let original = states
        .values()
        .find(|s| s.request.stan == "000400")
        .unwrap();
    let reversal = original.reversal.as_ref().unwrap();
    assert_eq!(reversal.replacement, Some(1000));
    assert!(reversal.acknowledged.is_some());

    // The original and its reversals share the RRN: `journal show --rrn`
    // prints them as one JSON array, in journal id order (#16.8).
    let (ok, out) = cli(&config, &["show", "--rrn", "000000000400"]);
    assert!(ok, "{out}");
    let shown: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let shown = shown.as_array().expect("an array");
    assert!(shown.len() >= 2, "{out}");
    assert_eq!(shown[0]["id"], original.id);
    assert_eq!(shown[0]["stan"], "000400");
    assert!(
        shown[1..]
            .iter()
            .any(|v| v["reverses"] == original.id && v["stan"] == "000401"),
        "{out}"
    );
    let ids: Vec<u64> = shown.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert!(ids.is_sorted(), "{out}");

    // A full reversal of another purchase, to tell the two apart.
    let full = purchase(PANS[2], 410, 3000);
    assert_eq!(
        common::exchange(&mut a, &full).await.response_code(),
        Some("00")
    );
    let answer = common::exchange(&mut a, &reversal_of(&full, 411)).await;
    assert_eq!(answer.response_code(), Some("00"));
    wait_for("full reversal delivered", || {
        ledger
            .approvals()
            .iter()
            .any(|a| a.amount == 3000 && a.reversals == 1)
    })
    .await;
    wait_for("acknowledged in the journal", || {
        view::replay(
            &dir.path().join("journal"),
            &cardswitch::journal::Cutover::default(),
        )
        .unwrap()
        .values()
        .any(|s| {
            s.request.stan == "000410"
                && s.reversal
                    .as_ref()
                    .is_some_and(|r| r.acknowledged.is_some())
        })
    })
    .await;

    // `journal export` shows the amount that stands and the original, and
    // marks the reversal partial or full (#16.15): the partially reversed
    // 25.00 stands at 10.00, the fully reversed 30.00 at 0.
    let date = original.date.clone();
    let date = format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]);
    let (ok, out) = cli(&config, &["export", "--date", &date]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = |stan: &str| {
        rows.iter()
            .find(|r| r["stan"] == stan && r["reverses"].is_null())
            .unwrap_or_else(|| panic!("{stan}: {out}"))
            .clone()
    };
    let (partial_row, full_row) = (row("000400"), row("000410"));
    assert_eq!(
        (
            &partial_row["amount"],
            &partial_row["original_amount"],
            &partial_row["reversal"],
            &partial_row["reversal_kind"]
        ),
        (
            &serde_json::json!(1000),
            &serde_json::json!(2500),
            &serde_json::json!("acknowledged"),
            &serde_json::json!("partial")
        ),
        "{partial_row}"
    );
    assert_eq!(
        (
            &full_row["amount"],
            &full_row["original_amount"],
            &full_row["reversal"],
            &full_row["reversal_kind"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(3000),
            &serde_json::json!("acknowledged"),
            &serde_json::json!("full")
        ),
        "{full_row}"
    );
    let (ok, csv) = cli(&config, &["export", "--date", &date, "--format", "csv"]);
    assert!(ok, "{csv}");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let cells: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let csv_row = |stan: &str| {
        cells
            .iter()
            .find(|c| c[column("stan")] == stan && c[column("reverses")].is_empty())
            .unwrap()
    };
    for (stan, amount, original, kind) in [
        ("000400", "1000", "2500", "partial"),
        ("000410", "0", "3000", "full"),
    ] {
        let c = csv_row(stan);
        assert_eq!(
            (
                c[column("amount")],
                c[column("original_amount")],
                c[column("reversal")],
                c[column("reversal_kind")]
            ),
            (amount, original, "acknowledged", kind),
            "{csv}"
        );
    }
    running.shutdown().await;
    bank.stop().await;
}

/// A retransmission is recognised from the journal index once the
/// original has left the in-memory cache (shrunk here to 5 transactions),
/// and after a restart: the bank sees the purchase once and the terminal
/// gets the original's approval code each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_beyond_the_cache_and_a_restart_is_not_authorised_twice() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_addr = listener.local_addr().unwrap();
    let bank = bank_at(listener, "").await;
    let config = write_config(dir.path(), bank_addr);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("timeout_ms = 300\n", "timeout_ms = 300\nrecent_cache = 5\n"),
    )
    .unwrap();
    let running = start(&config).await;
    let mut conn = connect(&running).await;
    let request = purchase(PANS[0], 500, 4200);
    let first = common::exchange(&mut conn, &request).await;
    assert_eq!(first.response_code(), Some("00"));
    let approval = first.auth_id().map(String::from);
    assert!(approval.is_some());
    // Forty newer purchases push the original out of memory.
    for stan in 501..541 {
        let answer = common::exchange(&mut conn, &purchase(PANS[1], stan, 100)).await;
        assert_eq!(answer.response_code(), Some("00"));
    }
    let again = common::exchange(&mut conn, &request).await;
    assert_eq!(
        (again.response_code(), again.auth_id().map(String::from)),
        (Some("00"), approval.clone())
    );
    assert_eq!(
        bank.ledger().approvals().len(),
        41,
        "the bank saw the purchase once"
    );
    running.shutdown().await;

    // After a restart, with the newest five preloaded, the same again.
    let running = start(&config).await;
    let mut conn = connect(&running).await;
    let again = common::exchange(&mut conn, &request).await;
    assert_eq!(
        (again.response_code(), again.auth_id().map(String::from)),
        (Some("00"), approval)
    );
    assert_eq!(bank.ledger().approvals().len(), 41);
    // The same STAN with another amount is a new transaction, not a replay.
    let other = common::exchange(&mut conn, &purchase(PANS[0], 500, 4300)).await;
    assert_eq!(other.response_code(), Some("00"));
    assert_eq!(bank.ledger().approvals().len(), 42);
    running.shutdown().await;
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_commands_show_verify_export_backup_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let bank = bank_at(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        "[[rule]]\namount = 5100\ndecline = \"51\"\n",
    )
    .await;
    let config = write_config(dir.path(), bank.addr());
    let running = start(&config).await;
    let mut conn = connect(&running).await;
    assert_eq!(
        common::exchange(&mut conn, &purchase(PANS[0], 500, 1234))
            .await
            .response_code(),
        Some("00")
    );
    assert_eq!(
        common::exchange(&mut conn, &purchase(PANS[1], 501, 5100))
            .await
            .response_code(),
        Some("51")
    );

    // While the daemon runs: show, verify, export, backup.
    let (ok, out) = cli(&config, &["show", "--rrn", "000000000500"]);
    assert!(ok, "{out}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let [shown] = shown.as_array().unwrap().as_slice() else {
        panic!("one transaction: {out}");
    };
    assert_eq!(shown["pan"], "476173******0119");
    assert_eq!(shown["code"], "00");
    assert_eq!(shown["state"], "answered");
    assert_eq!(shown["destination"], "bank");
    // By journal id: the same shape, an array of one.
    let id = shown["id"].to_string();
    let (ok, out) = cli(&config, &["show", "--txn", &id]);
    assert!(ok, "{out}");
    let by_id: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(by_id, serde_json::json!([shown]));
    let (ok, out) = cli(&config, &["verify"]);
    assert!(ok && out.contains("all CRCs good"), "{out}");
    let today = {
        let t = cardswitch::clock::DateTime::now();
        format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
    };
    let (ok, out) = cli(&config, &["export", "--date", &today, "--format", "csv"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("id,date,"));
    assert!(lines[2].contains(",51,"), "{out}");
    assert!(!out.contains(PANS[0]) && !out.contains(PANS[1]));
    let backup = dir.path().join("backup");
    let (ok, out) = cli(&config, &["backup", backup.to_str().unwrap()]);
    assert!(ok, "{out}");
    running.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Stopped: stats, reindex; the backup restores the same history.
    let (ok, out) = cli(&config, &["stats"]);
    assert!(ok && out.contains("transactions: 2"), "{out}");
    let (ok, out) = cli(&config, &["reindex"]);
    assert!(ok && out.contains("index rebuilt from"), "{out}");
    let restored = view::replay(&backup, &cardswitch::journal::Cutover::default()).unwrap();
    let live = view::replay(
        &dir.path().join("journal"),
        &cardswitch::journal::Cutover::default(),
    )
    .unwrap();
    assert_eq!(restored, live);
    // A corrupted byte in the middle of the log is found and named.
    let segment = cardswitch::journal::wal::segments(&dir.path().join("journal"))
        .unwrap()
        .remove(0)
        .path;
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[20] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();
    let (ok, out) = cli(&config, &["verify"]);
    assert!(!ok && out.contains("corrupt record at offset 8"), "{out}");
    bank.stop().await;
}

/// `journal … | head`: every command that prints ends quietly when the
/// reader of its standard output has gone — exit 0, no panic, no
/// backtrace (#16.7). The read end of the pipe is closed before the
/// command starts, so every write it makes fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_commands_end_quietly_on_a_closed_output() {
    let dir = tempfile::tempdir().unwrap();
    let bank = bank_at(TcpListener::bind("127.0.0.1:0").await.unwrap(), "").await;
    let config = write_config(dir.path(), bank.addr());
    let running = start(&config).await;
    let mut conn = connect(&running).await;
    for stan in 600..610 {
        let answer = common::exchange(&mut conn, &purchase(PANS[0], stan, 100)).await;
        assert_eq!(answer.response_code(), Some("00"));
    }
    running.shutdown().await;
    bank.stop().await;

    let today = {
        let t = cardswitch::clock::DateTime::now();
        format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
    };
    let backup = dir.path().join("backup");
    let commands: Vec<Vec<&str>> = vec![
        vec!["export", "--date", &today],
        vec!["export", "--date", &today, "--format", "csv"],
        vec!["tail", "-n", "5"],
        vec!["tail", "-n", "5", "--follow"],
        vec!["show", "--rrn", "000000000600"],
        vec!["stats"],
        vec!["verify"],
        vec!["saf"],
        vec!["reindex"],
        vec!["backup", backup.to_str().unwrap()],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .args(["journal", "--config"])
            .arg(&config)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let since = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if since.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{args:?}: still running on a closed output");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
}
