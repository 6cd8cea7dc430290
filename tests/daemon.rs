//! The real `cardswitch serve` process: SIGHUP reloads routes (a broken file
//! keeps the old table), SIGTERM lets a request in flight finish.

mod common;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::BankSim;
use cardswitch::sim::pos::{self, PosConfig};
use cardswitch::sim::report::PosReport;
use cardswitch::sim::rules::Rules;
use cardswitch::sim::scenario::{Scenario, TxnTemplate};
use tokio::net::TcpListener;

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn purchase(addr: SocketAddr, bin: &str, expected: &str, count: u64) -> PosReport {
    let mut cfg = PosConfig::new(
        addr,
        Dialect::builtin("iso87ascii").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        Scenario::new(vec![
            TxnTemplate::purchase("p", bin, 100).expecting(Some(expected)),
        ])
        .unwrap(),
    );
    cfg.count = count;
    pos::run(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_on_sighup_and_drains_on_sigterm() {
    let rules = Rules::from_toml(
        "[[rule]]\npan_prefix = \"476174\"\ndelay_ms = 400\n",
        "r.toml",
    )
    .unwrap();
    let bank = Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        rules,
    ))
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap();

    // A free port for the switch's listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = std::env::temp_dir().join(format!("cardswitch-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let routes = dir.join("routes.toml");
    std::fs::write(
        &routes,
        "[[route]]\nprefix = \"476173\"\ndestination = \"bank\"\n",
    )
    .unwrap();
    let config = dir.join("cardswitch.toml");
    std::fs::write(
        &config,
        format!(
            r#"routes_file = "routes.toml"
{journal}
[switch]
acquirer_id = "4123456"
timeout_ms = 2000
[[listener]]
name = "pos"
address = "{listen}"
dialect = "iso87ascii"
[[destination]]
name = "bank"
address = "{}"
dialect = "iso87binary"
links = 1
[[terminal]]
id = "TERM0001"
merchant_id = "M1"
name_location = "SHOP"
mcc = "5411"
currency = "978"
"#,
            bank.addr(),
            journal = common::journal_section(&dir)
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let stderr = child.stderr.take().unwrap();
    let (log_tx, log_rx) = std::sync::mpsc::channel::<String>();
    let all_lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let all_lines = Arc::clone(&all_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all_lines.lock().unwrap().push(line.clone());
                let _ = log_tx.send(line);
            }
        })
    };
    let wait_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log_rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line containing {needle:?}"),
            }
        }
    };
    wait_log("link up");

    assert!(purchase(listen, "476173", "00", 4).await.all_checked_out());
    assert!(
        purchase(listen, "476174", "15", 4).await.all_checked_out(),
        "476174 not routed yet"
    );

    // A broken routes file: refused, old table kept.
    std::fs::write(
        &routes,
        "[[route]]\nprefix = \"47x\"\ndestination = \"bank\"\n",
    )
    .unwrap();
    kill(&child, "-HUP");
    let line = wait_log("reload incomplete");
    assert!(line.contains("keeps its old version"), "{line}");
    wait_log("route[0].prefix: must be 1 to 11 digits");
    assert!(purchase(listen, "476173", "00", 4).await.all_checked_out());

    // A good one: 476174 is now routed.
    std::fs::write(
        &routes,
        "[[route]]\nprefix = \"476173\"\ndestination = \"bank\"\n[[route]]\nprefix = \"476174\"\ndestination = \"bank\"\n",
    )
    .unwrap();
    kill(&child, "-HUP");
    wait_log("tables reloaded");

    // SIGTERM while a 400 ms request is in flight: it is still answered 00.
    let in_flight = tokio::spawn(purchase(listen, "476174", "00", 1));
    tokio::time::sleep(Duration::from_millis(150)).await;
    kill(&child, "-TERM");
    let report = in_flight.await.unwrap();
    // The switch closes the connection after answering: nothing was lost.
    assert_eq!(
        (report.ok, report.lost, report.timeouts),
        (1, 0, 0),
        "{}",
        report.to_json()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit: {status}");

    // PCI DSS: no full PAN in the log. Every transaction event carries a
    // masked PAN, and no line holds a run of 13 or more digits.
    reader.join().unwrap();
    let lines = all_lines.lock().unwrap().clone();
    let events: Vec<&String> = lines.iter().filter(|l| l.contains("transaction")).collect();
    assert!(
        events.len() >= 13,
        "one event per transaction: {}",
        events.len()
    );
    for line in lines.iter() {
        let longest = line
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest < 13, "possible clear PAN in the log: {line}");
    }
    for l in &events {
        assert!(
            l.contains("476173******") || l.contains("476174******"),
            "PAN masked: {l}"
        );
    }
    bank.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Kills the daemon if the test fails before stopping it, so that no
/// orphan keeps the test's output pipe open.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-9", &self.0.to_string()])
                .status();
        }
    }
}
