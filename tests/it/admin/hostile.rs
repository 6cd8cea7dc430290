//! What a hostile client of the admin API can and cannot do: floods of
//! unauthenticated requests are counted and summarised, not written each
//! (#16.16); idle and half-sent connections do not block health (#16.17);
//! MTIs and codes from the wire do not create metric series (#16.18); the
//! bearer scheme is case-insensitive (#16.19).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{add_token, bank_with, http, http_with, purchases, sample};
use crate::common::daemon::{Daemon, Destination, Listener, Process, Terminal};
use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::BankHandle;
use cardswitch::sim::rules::Rules;

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
struct Harness {
    daemon: Process,
    admin: SocketAddr,
    listen: SocketAddr,
    dir: tempfile::TempDir,
    viewer: String,
    operator: String,
    bank: BankHandle,
}

impl Harness {
    async fn start(rules: Rules) -> Harness {
        let bank = bank_with(rules).await;
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        let viewer = add_token(&tokens, "vera", "viewer");
        let operator = add_token(&tokens, "otto", "operator");
        let daemon = Daemon::new(dir.path())
            .timeout_ms(2000)
            .admin()
            .listener(Listener::new("pos", "iso87ascii"))
            .destination(Destination::new("bank", bank.addr(), "iso87binary"))
            .route("476173", "bank")
            .terminal(Terminal::new("TERM0001", "M1"))
            .env("RUST_LOG", "warn")
            .start()
            .await;
        Harness {
            admin: daemon.admin(),
            listen: daemon.addr("pos"),
            daemon,
            dir,
            viewer,
            operator,
            bank,
        }
    }

    fn metrics(&self) -> String {
        let (status, text) = http(self.admin, "GET", "/metrics", Some(&self.viewer));
        assert_eq!(status, 200, "{text}");
        text
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        audit_lines(self.dir.path())
    }

    /// SIGTERM, and the exit status is success.
    async fn stop(self) -> Vec<serde_json::Value> {
        let Harness {
            mut daemon,
            dir,
            bank,
            ..
        } = self;
        let exit = daemon.stop().await;
        assert!(exit.success());
        let audit = audit_lines(dir.path());
        bank.stop().await;
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
    let daemon = Harness::start(Rules::default()).await;
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
    let daemon = Harness::start(Rules::default()).await;
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
    let daemon = Harness::start(rules).await;

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
    let daemon = Harness::start(Rules::default()).await;
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
