//! The real `cardswitch serve` process: SIGHUP reloads routes (a broken file
//! keeps the old table), SIGTERM lets a request in flight finish.

use crate::common;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::BankSim;
use cardswitch::sim::report::PosReport;
use cardswitch::sim::rules::Rules;
use tokio::net::TcpListener;

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn purchase(addr: SocketAddr, bin: &str, expected: &str, count: u64) -> PosReport {
    common::purchases(addr, bin, expected, count).await
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
    let _guard = common::KillOnDrop(child.id());
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

    // Two identical ranges (the first in the file used to win silently):
    // refused, naming both entries; the old table stays.
    std::fs::write(
        &routes,
        "[[route]]\nprefix = \"476173\"\ndestination = \"bank\"\n[[route]]\nrange = [\"476174\", \"476179\"]\ndestination = \"bank\"\n[[route]]\nrange = [\"476174\", \"476179\"]\ndestination = \"bank\"\n",
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains("route[2].range: [476174, 476179] is also routed by")
            && said.contains("route[1]"),
        "{said}"
    );
    kill(&child, "-HUP");
    let line = wait_log("reload incomplete");
    assert!(line.contains("keeps its old version"), "{line}");
    wait_log("route[2].range: [476174, 476179] is also routed by");
    assert!(
        purchase(listen, "476174", "15", 4).await.all_checked_out(),
        "old table kept"
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_a_level_reloaded_on_sighup() {
    let bank = Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        Rules::default(),
    ))
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cardswitch.toml");
    let write_config = |level: &str, routed: &str| {
        std::fs::write(
            &config,
            format!(
                r#"{journal}
[log]
format = "json"
level = "{level}"
[switch]
acquirer_id = "4123456"
[[listener]]
name = "pos"
address = "{listen}"
dialect = "iso87ascii"
[[destination]]
name = "bank"
address = "{bank}"
dialect = "iso87binary"
links = 1
[[route]]
prefix = "{routed}"
destination = "bank"
[[terminal]]
id = "TERM0001"
merchant_id = "MERCHANT1"
name_location = "SHOP"
mcc = "5411"
currency = "978"
"#,
                journal = common::journal_section(dir.path()),
                bank = bank.addr(),
            ),
        )
        .unwrap();
    };
    write_config("info", "476173");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = common::KillOnDrop(child.id());
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let value: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let _ = tx.send(value);
        }
    });
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    let wait_for = |what: &str| loop {
        let v = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {what:?} event"));
        if message(&v) == what {
            return v;
        }
    };
    wait_for("link up");
    assert!(purchase(listen, "476173", "00", 2).await.all_checked_out());
    let event = wait_for("transaction");
    let fields = &event["fields"];
    assert_eq!(event["level"], "INFO");
    assert!(fields["pan"].as_str().unwrap().starts_with("476173******"));
    assert_eq!(fields["terminal"], "TERM0001");
    assert_eq!(fields["merchant"], "MERCHANT1");
    assert_eq!(fields["destination"], "bank");
    assert_eq!(fields["code"], "00");
    for key in ["stan", "rrn", "latency_us", "mti"] {
        assert!(!fields[key].is_null(), "{key} in {event}");
    }

    // A bad level refuses the file whole (#16.20): the new route is not
    // taken and the level stays.
    write_config("info,cardswitch=loud", "476174");
    kill(&child, "-HUP");
    let refused = loop {
        let v = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a refused reload");
        if message(&v).starts_with("reload incomplete") {
            break message(&v);
        }
    };
    assert!(refused.contains("log.level"), "{refused}");
    assert!(purchase(listen, "476174", "15", 2).await.all_checked_out());
    assert!(purchase(listen, "476173", "00", 1).await.all_checked_out());
    wait_for("transaction");

    // Quieter: after the reload no transaction events are logged.
    write_config("warn", "476173");
    kill(&child, "-HUP");
    let reloaded = wait_for("log level reloaded");
    assert_eq!(reloaded["fields"]["level"], "warn");
    assert!(purchase(listen, "476173", "00", 3).await.all_checked_out());
    kill(&child, "-TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    reader.join().unwrap();
    let after: Vec<serde_json::Value> = rx.try_iter().collect();
    assert!(
        after.iter().all(|v| message(v) != "transaction"),
        "transaction events at level warn: {after:?}"
    );
    bank.stop().await;
}
