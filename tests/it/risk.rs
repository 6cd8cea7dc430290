//! Risk rules through the running switch over TCP: every rule type declines
//! with its code before the bank sees the request, the decline is journaled
//! with its rule id and counted, and a reload changes the rules.

use crate::common;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::common::daemon::{Daemon, Destination, Listener, Terminal};
use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::metrics::RuleLabels;
use cardswitch::server::Running;
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::pos::{self, PosConfig};
use cardswitch::sim::rules::Rules;
use cardswitch::sim::scenario::{Scenario, TxnTemplate};
use tokio::net::TcpListener;

/// A 15-digit "BIN": every PAN the simulator makes on it is the same card.
const ONE_CARD: &str = "476173000000001";
/// Another single card, blocked by its keyed hash.
const HOT_CARD: &str = "476173000000002";

/// The switch with one bank (every BIN starting 4), six terminals
/// (TERM0005 a gambling merchant) and the risk rules `risk`.
fn switch(dir: &Path, bank: SocketAddr, risk: &str) -> Daemon {
    let mut daemon = Daemon::new(dir)
        .timeout_ms(2000)
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(Destination::new("bank", bank, "iso87binary"))
        .route("4", "bank");
    for (id, merchant, mcc) in [
        ("TERM0001", "M1", "5411"),
        ("TERM0002", "M2", "5411"),
        ("TERM0003", "M3", "5411"),
        ("TERM0004", "M4", "5411"),
        ("TERM0005", "M5", "7995"),
        ("TERM0006", "M6", "5411"),
    ] {
        daemon = daemon.terminal(Terminal::new(id, merchant).mcc(mcc));
    }
    daemon.section(risk)
}

const RULES: &str = r#"
[[risk.block]]
id = "stolen-bins"
bins = ["476175"]
ranges = [["4761800", "4761899"]]
terminals = ["TERM0002"]

[[risk.currencies]]
id = "usd-only"
merchants = ["M3"]
allowed = ["840"]

[[risk.amount_limit]]
id = "gambling-cap"
mcc = ["7995"]
currency = "978"
max_amount = 5000

[[risk.velocity]]
id = "card-burst"
window_secs = 3600
max_count = 3

[[risk.merchant_daily]]
id = "m4-daily"
merchants = ["M4"]
currency = "978"
max_amount = 1000
"#;

struct Harness {
    running: Running,
    bank: BankHandle,
    path: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start(dir: tempfile::TempDir, risk: &str) -> Harness {
        let bank = Arc::new(BankSim::new(
            Dialect::builtin("iso87binary").unwrap().unwrap(),
            FrameCodec::new(LengthPrefix::Binary2),
            Rules::default(),
        ))
        .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
        let daemon = switch(dir.path(), bank.addr(), risk);
        let path = daemon.path();
        let running = daemon.start_in_process().await;
        Harness {
            running,
            bank,
            path,
            dir,
        }
    }

    /// `count` requests of `template` from `terminal`, each answered as expected.
    async fn run(&self, terminal: &str, template: TxnTemplate, count: u64) {
        let mut cfg = PosConfig::new(
            self.running.address("pos").unwrap(),
            Dialect::builtin("iso87ascii").unwrap().unwrap(),
            FrameCodec::new(LengthPrefix::Binary2),
            Scenario::new(vec![template]).unwrap(),
        );
        cfg.count = count;
        cfg.terminals = vec![terminal.to_string()];
        let report = pos::run(cfg).await.unwrap();
        assert!(report.all_checked_out(), "{terminal}: {}", report.to_json());
    }

    fn financial(&self) -> u64 {
        let s = self.bank.stats().snapshot();
        s.requests - s.network
    }

    fn declines(&self, rule: &str, code: &str) -> u64 {
        self.running
            .switch()
            .metrics()
            .risk_declines
            .get_or_create(&RuleLabels {
                rule: rule.into(),
                code: code.into(),
            })
            .get()
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.bank.stop().await;
    }
}

/// The config file of the harness, rewritten with the rules `risk`.
fn rewrite(h: &Harness, risk: &str) {
    switch(h.dir.path(), h.bank.addr(), risk).write();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_type_declines_before_the_bank_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    common::journal_section(dir.path());
    // The keyed hash operators put in a block list: what the journal keeps
    // to find a card, under the same data key.
    let pan = cardswitch::card::luhn_complete(HOT_CARD).unwrap();
    let vault = cardswitch::journal::read_data_key(&dir.path().join("data.key")).unwrap();
    let rules = format!(
        "{RULES}\n[[risk.block]]\nid = \"hot-card\"\ncards = [\"{}\"]\n",
        hex::encode(vault.digest(&pan))
    );
    let h = Harness::start(dir, &rules).await;
    // `cardswitch journal card-hash` gives operators the same value.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["journal", "--config"])
        .arg(&h.path)
        .arg("card-hash")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{pan}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        hex::encode(vault.digest(&pan))
    );
    let before = h.financial();
    let purchase = |bin: &str, amount: u64, code: &str| {
        TxnTemplate::purchase("p", bin, amount).expecting(Some(code))
    };
    // Stateless rules.
    h.run("TERM0001", purchase("476175", 100, "62"), 3).await;
    h.run("TERM0001", purchase("4761850", 100, "62"), 2).await;
    h.run("TERM0002", purchase("476173", 100, "58"), 2).await;
    h.run("TERM0003", purchase("476173", 100, "57"), 2).await;
    h.run("TERM0005", purchase("476173", 6000, "61"), 2).await;
    h.run("TERM0001", purchase(HOT_CARD, 100, "62"), 1).await;
    assert_eq!(
        h.financial(),
        before,
        "no declined request reached the bank"
    );
    // Within the limits: approved by the bank.
    h.run("TERM0005", purchase("476173", 5000, "00"), 2).await;
    // Refunds are outside the gambling cap's kinds.
    h.run("TERM0005", purchase("476173", 6000, "00").refund(), 1)
        .await;
    // Velocity: the same card three times in the window, then 65.
    h.run("TERM0006", purchase(ONE_CARD, 100, "00"), 3).await;
    h.run("TERM0006", purchase(ONE_CARD, 100, "65"), 2).await;
    // Merchant daily: 400 + 400 fit in 1000, the third does not.
    h.run("TERM0004", purchase("476173", 400, "00"), 2).await;
    h.run("TERM0004", purchase("476173", 400, "61"), 1).await;
    assert_eq!(h.financial() - before, 2 + 1 + 3 + 2);

    for (rule, code, count) in [
        ("stolen-bins", "62", 5),
        ("stolen-bins", "58", 2),
        ("usd-only", "57", 2),
        ("gambling-cap", "61", 2),
        ("hot-card", "62", 1),
        ("card-burst", "65", 2),
        ("m4-daily", "61", 1),
    ] {
        assert_eq!(h.declines(rule, code), count, "{rule} {code}");
    }

    // The journal names the rule of each decline.
    let journal = h.running.switch().journal();
    journal.index_current().await;
    let states = journal.index().newest(100).unwrap();
    let by_rule = |rule: &str| {
        states
            .iter()
            .filter(|s| s.risk_rule.as_deref() == Some(rule))
            .count()
    };
    assert_eq!(by_rule("stolen-bins"), 7);
    assert_eq!(by_rule("card-burst"), 2);
    assert_eq!(by_rule("m4-daily"), 1);
    assert!(
        states
            .iter()
            .filter(|s| s.risk_rule.is_some())
            .all(|s| s.forwarded.is_none() && s.code.is_some())
    );

    // A reload replaces the rules: 476175 is no longer blocked, 476173 is.
    rewrite(
        &h,
        "[[risk.block]]\nid = \"new-list\"\nbins = [\"476173\"]\n",
    );
    h.running.reload().unwrap();
    h.run("TERM0001", purchase("476175", 100, "00"), 1).await;
    h.run("TERM0001", purchase("476173", 100, "62"), 1).await;
    assert_eq!(h.declines("new-list", "62"), 1);
    // A broken rule file keeps the rules in force.
    rewrite(
        &h,
        "[[risk.velocity]]\nid = \"bad\"\nwindow_secs = 0\nmax_count = 1\n",
    );
    let e = h.running.reload().unwrap_err().to_string();
    assert!(e.contains("bad") && e.contains("window_secs"), "{e}");
    h.run("TERM0001", purchase("476173", 100, "62"), 1).await;
    h.stop().await;
}
