//! The admin API of the real `cardswitch serve` process, over HTTP on
//! 127.0.0.1: token roles (401/403), the audit log, metrics that move with
//! traffic, links taken out of rotation steering traffic to the fallback,
//! transaction look-ups with masked PANs, and `cardswitch ctl`; and what a
//! hostile client can and cannot do: floods of unauthenticated requests are
//! counted and summarised, not written each (#16.16); idle and half-sent
//! connections do not block health (#16.17); MTIs and codes from the wire
//! do not create metric series (#16.18); the bearer scheme is
//! case-insensitive (#16.19).

use crate::common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::rules::Rules;
use tokio::net::TcpListener;

/// One HTTP/1.1 exchange on a fresh connection: status and body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    http_with(addr, method, path, &auth)
}

/// One HTTP/1.1 exchange with extra header lines (each ending in CRLF).
fn http_with(addr: SocketAddr, method: &str, path: &str, auth: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample line of the exposition (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The RRN of the first transaction event answered `code`.
fn rrn_answered(events: &[String], code: &str) -> String {
    events
        .iter()
        .filter(|l| l.contains(&format!("code=\"{code}\"")))
        .find_map(|l| {
            let at = l.find("rrn=\"")? + 5;
            Some(l.get(at..at + 12)?.to_string())
        })
        .unwrap_or_else(|| panic!("no transaction answered {code} in {:?}", events.first()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn bank() -> BankHandle {
    Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        Rules::default(),
    ))
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap()
}

async fn purchases(addr: SocketAddr, count: u64) {
    purchases_on(addr, "476173", "00", count).await;
}

async fn purchases_on(addr: SocketAddr, bin: &str, code: &str, count: u64) {
    let report = common::purchases(addr, bin, code, count).await;
    assert!(report.all_checked_out(), "{}", report.to_json());
}

fn cardswitch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn add_token(file: &Path, name: &str, role: &str) -> String {
    let out = cardswitch(&[
        "tokens",
        "--file",
        file.to_str().unwrap(),
        "add",
        name,
        "--role",
        role,
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn financial(bank: &BankHandle) -> u64 {
    let s = bank.stats().snapshot();
    s.requests - s.network
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_roles_audit_metrics_and_link_steering() {
    let main_bank = bank().await;
    let backup_bank = bank().await;
    let dir = std::env::temp_dir().join(format!("cardswitch-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.toml");
    let viewer = add_token(&tokens, "vera", "viewer");
    let operator = add_token(&tokens, "otto", "operator");
    let stored = std::fs::read_to_string(&tokens).unwrap();
    assert!(!stored.contains(&viewer) && !stored.contains(&operator));

    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join("cardswitch.toml");
    std::fs::write(
        &config,
        format!(
            r#"{journal}
[switch]
acquirer_id = "4123456"
timeout_ms = 2000
[admin]
address = "{admin}"
tokens_file = "tokens.toml"
audit_log = "audit.log"
[[listener]]
name = "pos"
address = "{listen}"
dialect = "iso87ascii"
[[destination]]
name = "bank"
address = "{}"
dialect = "iso87binary"
links = 2
fallback = "backup"
[[destination]]
name = "backup"
address = "{}"
dialect = "iso87binary"
links = 1
[[route]]
prefix = "476173"
destination = "bank"
[[route]]
prefix = "476175"
destination = "bank"
[[terminal]]
id = "TERM0001"
merchant_id = "M1"
name_location = "SHOP"
mcc = "5411"
currency = "978"
[[risk.block]]
id = "stolen-bins"
bins = ["476175"]
"#,
            main_bank.addr(),
            backup_bank.addr(),
            journal = common::journal_section(&dir)
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = common::KillOnDrop(child.id());
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    // Ready once both destinations have their links up.
    let since = Instant::now();
    loop {
        if TcpStream::connect(admin).is_ok() && http(admin, "GET", "/health/ready", None).0 == 200 {
            let (_, links) = http(admin, "GET", "/v1/links", Some(&viewer));
            if links.matches("\"up\":true").count() == 3 {
                break;
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "daemon not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Health needs no token; everything else does, and actions need an operator.
    assert_eq!(http(admin, "GET", "/health/live", None).0, 200);
    assert_eq!(http(admin, "GET", "/metrics", None).0, 401);
    assert_eq!(http(admin, "GET", "/metrics", Some("not-a-token")).0, 401);
    assert_eq!(http(admin, "POST", "/v1/reload", None).0, 401);
    assert_eq!(http(admin, "POST", "/v1/reload", Some(&viewer)).0, 403);
    let (status, body) = http(admin, "POST", "/v1/reload", Some(&operator));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"complete\":true"), "{body}");
    assert_eq!(http(admin, "GET", "/v1/nothing", Some(&viewer)).0, 404);

    // Metrics move with traffic.
    let (status, before) = http(admin, "GET", "/metrics", Some(&viewer));
    assert_eq!(status, 200);
    purchases(listen, 20).await;
    let (_, after) = http(admin, "GET", "/metrics", Some(&viewer));
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        delta("cardswitch_requests_total{listener=\"pos\",mti=\"0200\"}"),
        20.0
    );
    assert_eq!(
        delta("cardswitch_responses_total{listener=\"pos\",mti=\"0210\",code=\"00\"}"),
        20.0
    );
    assert_eq!(
        delta("cardswitch_destination_responses_total{destination=\"bank\",code=\"00\"}"),
        20.0
    );
    assert_eq!(delta("cardswitch_request_duration_seconds_count"), 20.0);
    // What the switch adds is each request's duration less its wait for the
    // bank: as many samples, a smaller total.
    assert_eq!(
        delta("cardswitch_switch_added_duration_seconds_count"),
        20.0
    );
    let added = delta("cardswitch_switch_added_duration_seconds_sum");
    assert!(
        added > 0.0 && added < delta("cardswitch_request_duration_seconds_sum"),
        "switch-added {added} s"
    );
    assert!(
        sample(
            &after,
            "cardswitch_destination_duration_seconds_count{destination=\"bank\"}"
        ) >= 20.0
    );
    assert!(sample(&after, "cardswitch_journal_fsync_duration_seconds_count") > 0.0);
    assert!(sample(&after, "cardswitch_journal_groups_total") > 0.0);
    assert_eq!(
        sample(
            &after,
            "cardswitch_link_up{destination=\"bank\",link=\"1\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "cardswitch_saf_depth{destination=\"bank\"}"),
        0.0
    );
    assert_eq!(sample(&after, "cardswitch_in_flight"), 0.0);

    // A risk decline: answered 62 by the daemon, counted by rule, and its
    // transaction names the rule.
    let main_before = financial(&main_bank);
    purchases_on(listen, "476175", "62", 3).await;
    assert_eq!(
        financial(&main_bank),
        main_before,
        "declined before the bank"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&viewer));
    assert_eq!(
        sample(
            &metrics,
            "cardswitch_risk_declines_total{rule=\"stolen-bins\",code=\"62\"}"
        ),
        3.0
    );

    // Taking the main bank's links out steers traffic to the fallback.
    let ctl = |args: &[&str], token: &str| {
        let file = dir.join(format!("{token}.token"));
        std::fs::write(&file, token).unwrap();
        let mut all = vec!["ctl", "--url"];
        let url = format!("http://{admin}");
        all.push(&url);
        all.extend(["--token-file", file.to_str().unwrap()]);
        all.extend(args);
        let out = cardswitch(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, _) = ctl(&["link", "disable", "bank/0"], &viewer);
    assert_eq!(code, Some(1), "a viewer may not disable a link");
    assert_eq!(ctl(&["link", "disable", "bank/0"], &operator).0, Some(0));
    let (main_before, backup_before) = (financial(&main_bank), financial(&backup_bank));
    purchases(listen, 10).await;
    assert_eq!(
        financial(&main_bank) - main_before,
        10,
        "bank/1 still carries traffic"
    );
    assert_eq!(financial(&backup_bank), backup_before);
    assert_eq!(ctl(&["link", "disable", "bank/1"], &operator).0, Some(0));
    let (out_status, out) = ctl(&["links"], &viewer);
    assert_eq!(out_status, Some(0));
    assert!(out.contains("bank/0") && out.contains("false"), "{out}");
    let (main_before, backup_before) = (financial(&main_bank), financial(&backup_bank));
    purchases(listen, 10).await;
    assert_eq!(
        financial(&main_bank),
        main_before,
        "no link of bank in rotation"
    );
    assert_eq!(
        financial(&backup_bank) - backup_before,
        10,
        "all went to the fallback"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&viewer));
    assert_eq!(
        sample(
            &metrics,
            "cardswitch_link_enabled{destination=\"bank\",link=\"0\"}"
        ),
        0.0
    );
    assert_eq!(ctl(&["link", "enable", "bank/0"], &operator).0, Some(0));
    assert_eq!(ctl(&["link", "enable", "bank/1"], &operator).0, Some(0));
    assert_eq!(
        http(admin, "POST", "/v1/links/bank/7/disable", Some(&operator)).0,
        404
    );
    let (main_before, backup_before) = (financial(&main_bank), financial(&backup_bank));
    purchases(listen, 5).await;
    assert_eq!(financial(&main_bank) - main_before, 5);
    assert_eq!(financial(&backup_bank), backup_before);

    // Status, a transaction by RRN (masked PAN only) and the SAF queue.
    let (code, status) = ctl(&["status"], &viewer);
    assert_eq!(code, Some(0), "{status}");
    assert!(
        status.contains("ready: yes") && status.contains("backup"),
        "{status}"
    );
    let events: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("transaction"))
        .cloned()
        .collect();
    let rrn = rrn_answered(&events, "00");
    let (status, body) = http(
        admin,
        "GET",
        &format!("/v1/transactions?rrn={rrn}"),
        Some(&viewer),
    );
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    let txn = &found["transactions"][0];
    assert_eq!(txn["rrn"], rrn.as_str());
    let pan = txn["pan"].as_str().unwrap();
    assert!(pan.starts_with("476173") && pan.contains("******"), "{pan}");
    assert_eq!(txn["state"], "answered");
    let (code, out) = ctl(&["txn", "--rrn", &rrn], &viewer);
    assert_eq!(code, Some(0));
    assert!(out.contains(&rrn), "{out}");
    assert_eq!(
        http(admin, "GET", "/v1/transactions?rrn=a%27b", Some(&viewer)).0,
        400
    );
    // Keys longer than their field are refused, not cut.
    let too_long = format!("/v1/transactions?rrn={rrn}9");
    assert_eq!(http(admin, "GET", &too_long, Some(&viewer)).0, 400);
    let declined = rrn_answered(&events, "62");
    let (_, body) = http(
        admin,
        "GET",
        &format!("/v1/transactions?rrn={declined}"),
        Some(&viewer),
    );
    assert!(body.contains("\"risk_rule\":\"stolen-bins\""), "{body}");
    let (status, saf) = http(admin, "GET", "/v1/saf", Some(&viewer));
    assert_eq!((status, saf.contains("\"depth\":0")), (200, true), "{saf}");

    // Every POST is in the audit log: who, what, when, result.
    let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let entries: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |who: &str, action: &str, status: u64| {
        entries.iter().any(|e| {
            e["who"] == who
                && e["action"] == action
                && e["status"] == status
                && e["time"].is_string()
        })
    };
    // Refused for want of a token: counted, not a line each (#16.16).
    assert!(!entries.iter().any(|e| e["status"] == 401));
    assert!(
        sample(
            &metrics,
            "cardswitch_admin_auth_failures_total{reason=\"missing\"}"
        ) >= 2.0
    );
    assert!(
        sample(
            &metrics,
            "cardswitch_admin_auth_failures_total{reason=\"unknown_token\"}"
        ) >= 1.0
    );
    assert!(find("vera", "POST /v1/reload", 403));
    assert!(find("otto", "POST /v1/reload", 200));
    assert!(find("vera", "POST /v1/links/bank/0/disable", 403));
    assert!(find("otto", "POST /v1/links/bank/0/disable", 200));
    assert!(find("otto", "POST /v1/links/bank/1/enable", 200));
    assert!(
        entries
            .iter()
            .all(|e| e["result"] == "ok" || e["status"] != 200)
    );

    // A token removed from the file stops working at the next reload.
    let out = cardswitch(&[
        "tokens",
        "--file",
        tokens.to_str().unwrap(),
        "remove",
        "vera",
    ]);
    assert!(out.status.success());
    assert_eq!(http(admin, "POST", "/v1/reload", Some(&operator)).0, 200);
    assert_eq!(http(admin, "GET", "/metrics", Some(&viewer)).0, 401);

    // No answer or log line carries a token.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    reader.join().unwrap();
    for line in lines.lock().unwrap().iter() {
        assert!(
            !line.contains(&operator) && !line.contains(&viewer),
            "{line}"
        );
    }
    // At the latest when the daemon stops, the refused ones are summarised.
    let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let refused: u64 = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "failed authentication")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert!(refused >= 4, "{audit}");
    main_bank.stop().await;
    backup_bank.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The audit log's lines in `dir`.
fn audit_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A daemon with the admin API, one listener (`pos`, iso87ascii) and one
/// bank, for the hostile-client tests.
struct Daemon {
    child: std::process::Child,
    admin: SocketAddr,
    listen: SocketAddr,
    dir: std::path::PathBuf,
    viewer: String,
    operator: String,
    bank: BankHandle,
    _guard: common::KillOnDrop,
}

impl Daemon {
    async fn start(name: &str, rules: Rules) -> Daemon {
        let bank = Arc::new(BankSim::new(
            Dialect::builtin("iso87binary").unwrap().unwrap(),
            FrameCodec::new(LengthPrefix::Binary2),
            rules,
        ))
        .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
        let dir =
            std::env::temp_dir().join(format!("cardswitch-admin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens.toml");
        let viewer = add_token(&tokens, "vera", "viewer");
        let operator = add_token(&tokens, "otto", "operator");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("cardswitch.toml");
        std::fs::write(
            &config,
            format!(
                r#"{journal}
[switch]
acquirer_id = "4123456"
timeout_ms = 2000
[admin]
address = "{admin}"
tokens_file = "tokens.toml"
audit_log = "audit.log"
[[listener]]
name = "pos"
address = "{listen}"
dialect = "iso87ascii"
[[destination]]
name = "bank"
address = "{}"
dialect = "iso87binary"
links = 1
[[route]]
prefix = "476173"
destination = "bank"
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
        let child = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let guard = common::KillOnDrop(child.id());
        let since = Instant::now();
        while !(TcpStream::connect(admin).is_ok()
            && http(admin, "GET", "/health/ready", None).0 == 200)
        {
            assert!(
                since.elapsed() < Duration::from_secs(15),
                "daemon not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Daemon {
            child,
            admin,
            listen,
            dir,
            viewer,
            operator,
            bank,
            _guard: guard,
        }
    }

    fn metrics(&self) -> String {
        let (status, text) = http(self.admin, "GET", "/metrics", Some(&self.viewer));
        assert_eq!(status, 200, "{text}");
        text
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        audit_lines(&self.dir)
    }

    /// SIGTERM, and the exit status is success.
    async fn stop(self) -> Vec<serde_json::Value> {
        let Daemon {
            mut child,
            dir,
            bank,
            _guard,
            ..
        } = self;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(exit.success());
        let audit = audit_lines(&dir);
        bank.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        audit
    }
}

/// #16.16: thousands of unauthenticated requests (no header, another
/// scheme, an unknown token) from 8 clients write no audit line each: the
/// counter has every one of them, the audit log a summary per interval at
/// most (and at stop), whose counts add up to all of them; an operator's
/// action is still a line of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_counted_and_summarised_not_written_each() {
    let started = Instant::now();
    let daemon = Daemon::start("flood", Rules::default()).await;
    let admin = daemon.admin;
    const CLIENTS: usize = 8;
    const EACH: usize = 250;
    let auths = [
        "",
        "Authorization: Basic b3R0bzpzZWNyZXQ=\r\n",
        "Authorization: Bearer 00ff\r\n",
    ];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let (method, path) = if n % 5 == 0 {
                        ("GET", "/metrics")
                    } else {
                        ("POST", "/v1/reload")
                    };
                    let auth = auths[(client + n) % auths.len()];
                    assert_eq!(http_with(admin, method, path, auth).0, 401);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // Not a line each: one summary per 10 s interval at most so far.
    let during = daemon.audit();
    let elapsed = started.elapsed().as_secs();
    assert!(
        during.len() as u64 <= elapsed / 10 + 1,
        "{} audit lines after {elapsed} s",
        during.len()
    );
    let total = (CLIENTS * EACH) as f64;
    let metrics = daemon.metrics();
    let counted: f64 = ["missing", "scheme", "unknown_token"]
        .iter()
        .map(|r| {
            sample(
                &metrics,
                &format!("cardswitch_admin_auth_failures_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    assert_eq!(counted, total, "every refusal counted");
    assert!(
        sample(
            &metrics,
            "cardswitch_admin_auth_failures_total{reason=\"scheme\"}"
        ) > 0.0
    );
    // An operator's action is still a line of its own.
    let (status, _) = http(admin, "POST", "/v1/reload", Some(&daemon.operator));
    assert_eq!(status, 200);
    let audit = daemon.stop().await;
    let elapsed = started.elapsed().as_secs();
    let summaries: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|e| e["action"] == "failed authentication")
        .collect();
    assert!(
        !summaries.is_empty() && summaries.len() as u64 <= elapsed / 10 + 2,
        "{summaries:?}"
    );
    let summed: u64 = summaries.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(summed as f64, total);
    for summary in &summaries {
        let by_reason: u64 = ["missing", "scheme", "unknown_token"]
            .iter()
            .map(|r| summary["reasons"][r].as_u64().unwrap())
            .sum();
        assert_eq!(Some(by_reason), summary["count"].as_u64());
        assert_eq!(summary["remote"], "127.0.0.1");
    }
    assert_eq!(audit.len(), summaries.len() + 1, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|e| e["who"] == "otto" && e["action"] == "POST /v1/reload" && e["status"] == 200)
    );
}

/// #16.17: 100 connections that send nothing or half a request head do not
/// keep `/health/live` (or a scrape) from being answered at once, and what
/// is left of them is closed after the header read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_do_not_block_health() {
    let daemon = Daemon::start("idle", Rules::default()).await;
    let admin = daemon.admin;
    let mut held = Vec::new();
    for n in 0..100 {
        let mut stream = TcpStream::connect(admin).unwrap();
        if n % 2 == 1 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: cardswitch\r\nAuthoriz")
                .unwrap();
        }
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let asked = Instant::now();
        let (status, body) = http(admin, "GET", "/health/live", None);
        assert_eq!(status, 200, "{body}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "/health/live took {:?}",
            asked.elapsed()
        );
    }
    let asked = Instant::now();
    daemon.metrics();
    assert!(asked.elapsed() < Duration::from_secs(1));
    // Every held connection is closed by the daemon within the header read
    // timeout (5 s) and a margin.
    let deadline = Instant::now() + Duration::from_secs(8);
    for mut stream in held {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("an idle connection still open: {e}"),
        }
    }
    assert_eq!(http(admin, "GET", "/health/live", None).0, 200);
    daemon.stop().await;
}

/// #16.18: frames with 3,000 distinct MTIs and bank answers with 260 codes
/// outside the code set leave the number of series bounded: MTIs and codes
/// are labels only from closed sets, the rest is `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_mtis_and_codes_do_not_create_metric_series() {
    use cardswitch::iso8583::{Message, Mti};
    use cardswitch::sim::rules::{Action, Match, Rule};
    let junk_codes: Vec<String> = ('A'..='Z')
        .flat_map(|l| ('0'..='9').map(move |d| format!("{l}{d}")))
        .collect();
    let rules = Rules::new(
        junk_codes
            .iter()
            .enumerate()
            .map(|(i, code)| Rule {
                when: Match {
                    amount: Some(1000 + i as u64),
                    mti: Some(Mti::from_static("0200")),
                    ..Match::default()
                },
                action: Action::Respond {
                    delay: Duration::ZERO,
                    decline: Some(code.clone()),
                },
            })
            .collect(),
    );
    let daemon = Daemon::start("labels", rules).await;

    // Raw frames, one connection each (an unreadable MTI may close it):
    // send, half-close, read until the switch closes.
    let ascii = Dialect::builtin("iso87ascii").unwrap().unwrap();
    let frames: Vec<Vec<u8>> = (0..3000)
        .map(|n| {
            let mut m = Message::new(Mti::parse(&format!("{n:04}")).unwrap());
            m.set(11, format!("{:06}", n + 1)).set(41, "TERM0001");
            let body = m.to_bytes(&ascii).unwrap();
            let mut frame = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            frame
        })
        .collect();
    let listen = daemon.listen;
    let frames = Arc::new(frames);
    let senders: Vec<_> = (0..8)
        .map(|k| {
            let frames = Arc::clone(&frames);
            std::thread::spawn(move || {
                for frame in frames.iter().skip(k).step_by(8) {
                    let mut stream = TcpStream::connect(listen).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let _ = stream.write_all(frame);
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    let _ = stream.read_to_end(&mut Vec::new());
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }

    // Purchases the bank declines with codes outside the code set.
    let scenario = cardswitch::sim::scenario::Scenario::new(
        (0..junk_codes.len())
            .map(|i| {
                cardswitch::sim::scenario::TxnTemplate::purchase(
                    &format!("junk{i}"),
                    "476173",
                    1000 + i as u64,
                )
                .expecting(None)
            })
            .collect(),
    )
    .unwrap();
    let mut cfg = cardswitch::sim::pos::PosConfig::new(
        listen,
        Dialect::builtin("iso87ascii").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        scenario,
    );
    cfg.count = 600;
    cardswitch::sim::pos::run(cfg).await.unwrap();
    purchases(listen, 5).await;

    let metrics = daemon.metrics();
    let series = |name: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("cardswitch_{name}{{")))
            .count()
    };
    assert!(
        series("requests_total") <= 51,
        "{}",
        series("requests_total")
    );
    assert!(
        series("responses_total") <= 200,
        "{}",
        series("responses_total")
    );
    assert!(
        series("destination_responses_total") <= 131,
        "{}",
        series("destination_responses_total")
    );
    assert!(
        metrics.len() < 64 * 1024,
        "{} bytes of /metrics",
        metrics.len()
    );
    assert!(
        sample(
            &metrics,
            "cardswitch_requests_total{listener=\"pos\",mti=\"0200\"}"
        ) >= 5.0
    );
    // Every MTI and code label is a known value (digits) or `other`.
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        for name in ["mti", "code"] {
            if let Some(value) = label(line, name) {
                assert!(
                    value == "other" || value.bytes().all(|b| b.is_ascii_digit()),
                    "{line}"
                );
            }
        }
    }
    daemon.stop().await;
}

/// #16.19: the bearer scheme is case-insensitive (RFC 7235 §2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let daemon = Daemon::start("scheme", Rules::default()).await;
    let admin = daemon.admin;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("Authorization: {scheme} {}\r\n", daemon.viewer);
        let (status, body) = http_with(admin, "GET", "/v1/links", &auth);
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let auth = format!("Authorization: bearer   {}\r\n", daemon.operator);
    assert_eq!(http_with(admin, "POST", "/v1/reload", &auth).0, 200);
    let auth = format!("Authorization: Basic {}\r\n", daemon.viewer);
    assert_eq!(http_with(admin, "GET", "/v1/links", &auth).0, 401);
    let auth = format!("Authorization: bearer{}\r\n", daemon.viewer);
    assert_eq!(http_with(admin, "GET", "/v1/links", &auth).0, 401);
    let audit = daemon.stop().await;
    assert!(
        audit
            .iter()
            .any(|e| e["who"] == "otto" && e["status"] == 200),
        "{audit:?}"
    );
}
