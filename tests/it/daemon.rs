//! The real `cardswitch serve` process: SIGHUP reloads routes (a broken file
//! keeps the old table), SIGTERM lets a request in flight finish.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common;
use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::BankSim;
use cardswitch::sim::report::PosReport;
use cardswitch::sim::rules::Rules;
use tokio::net::TcpListener;

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

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut daemon = Daemon::new(dir)
        .routes_in_file("routes.toml")
        .route("476173", "bank")
        .timeout_ms(2000)
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(Destination::new("bank", bank.addr(), "iso87binary"))
        .terminal(Terminal::new("TERM0001", "M1"))
        .env("RUST_LOG", "info")
        .spawn();
    let (listen, config, routes) = (
        daemon.addr("pos"),
        daemon.config().to_path_buf(),
        dir.join("routes.toml"),
    );
    let wait_log = |needle: &str| daemon.wait_log(needle);
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
    daemon.signal("-HUP");
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
    daemon.signal("-HUP");
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
    daemon.signal("-HUP");
    wait_log("tables reloaded");

    // SIGTERM while a 400 ms request is in flight: it is still answered 00.
    let in_flight = tokio::spawn(purchase(listen, "476174", "00", 1));
    tokio::time::sleep(Duration::from_millis(150)).await;
    daemon.signal("-TERM");
    let report = in_flight.await.unwrap();
    // The switch closes the connection after answering: nothing was lost.
    assert_eq!(
        (report.ok, report.lost, report.timeouts),
        (1, 0, 0),
        "{}",
        report.to_json()
    );
    let status = daemon.wait().await;
    assert!(status.success(), "clean exit: {status}");

    // PCI DSS: no full PAN in the log. Every transaction event carries a
    // masked PAN, and no line holds a run of 13 or more digits.
    let lines = daemon.lines();
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
    let dir = tempfile::tempdir().unwrap();
    // Free ports fixed now: the rewritten files keep the listener's.
    let base = Daemon::new(dir.path())
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(Destination::new("bank", bank.addr(), "iso87binary"))
        .terminal(Terminal::new("TERM0001", "MERCHANT1"))
        .env_remove("RUST_LOG")
        .with_free_ports();
    let config = |level: &str, routed: &str| base.clone().log("json", level).route(routed, "bank");
    let write_config = |level: &str, routed: &str| {
        config(level, routed).write();
    };
    let mut daemon = config("info", "476173").spawn();
    let listen = daemon.addr("pos");
    // Every line of the log is a JSON object.
    let json = |line: String| -> serde_json::Value {
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    let next = |what: &str| {
        json(
            daemon
                .next_line(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no {what:?} event")),
        )
    };
    let wait_for = |what: &str| loop {
        let v = next(what);
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
    daemon.signal("-HUP");
    let refused = loop {
        let v = next("a refused reload");
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
    daemon.signal("-HUP");
    let reloaded = wait_for("log level reloaded");
    assert_eq!(reloaded["fields"]["level"], "warn");
    assert!(purchase(listen, "476173", "00", 3).await.all_checked_out());
    let status = daemon.stop().await;
    assert!(status.success());
    let after: Vec<serde_json::Value> = daemon.rest().into_iter().map(json).collect();
    for line in daemon.lines() {
        json(line);
    }
    assert!(
        after.iter().all(|v| message(v) != "transaction"),
        "transaction events at level warn: {after:?}"
    );
    bank.stop().await;
}
