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
use cardswitch::iso8583::framing::FrameCodec;
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::journal::Cutover;
use cardswitch::server::Running;
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::ledger::Breaks;
use cardswitch::sim::rules::Rules;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

mod day;
mod runs;

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

/// The switch of the clearing tests, kept in `dir` as `name`: banks A
/// (cards 476173, clearing in blocked IPM) and B (cards 5, CSV), three
/// terminals of merchants M1 (EUR), M2 (USD) and M3 (JPY) in London, and a
/// `[clearing]` section pricing M1 on its own.
fn switch(dir: &Path, a: SocketAddr, b: SocketAddr, cutover: &str, name: &str) -> Daemon {
    let terminal = |id: &str, merchant: &str, currency: &str| {
        Terminal::new(id, merchant)
            .name_location(&format!(
                "{:<22} {:<13} GBR",
                format!("SHOP {merchant}"),
                "LONDON"
            ))
            .currency(currency)
    };
    Daemon::new(dir)
        .file_name(name)
        .cutover(cutover)
        .timeout_ms(400)
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(Destination::new("bank_a", a, "iso87binary").reconnect_ms(20, 100))
        .destination(Destination::new("bank_b", b, "iso87binary"))
        .route("476173", "bank_a")
        .route("5", "bank_b")
        .terminal(terminal("TERM0001", "M1", "978"))
        .terminal(terminal("TERM0002", "M2", "840"))
        .terminal(terminal("TERM0003", "M3", "392"))
        .section(
            r#"[clearing]
out_dir = "out"
acquirer_bin = "412345"
processor_id = "00000012345"
destinations = { bank_a = { format = "ipm", blocked = true } }
pricing = { percent = "1.5" }
[[clearing.merchant]]
id = "M1"
percent = "1.75"
fixed = 10
"#,
        )
}

/// [`switch`], written: its path.
fn config(dir: &Path, a: SocketAddr, b: SocketAddr, cutover: &str, name: &str) -> PathBuf {
    switch(dir, a, b, cutover, name).write()
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

/// Starts the switch in process, waits for both bank links and connects
/// a terminal.
async fn start(daemon: &Daemon) -> (Running, Framed<TcpStream, FrameCodec>) {
    let running: Running = daemon.start_in_process().await;
    let conn = Framed::new(
        TcpStream::connect(running.address("pos").unwrap())
            .await
            .unwrap(),
        FrameCodec::default(),
    );
    (running, conn)
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
