//! Crash test: the real daemon killed with SIGKILL at random points under
//! pipelined load, restarted each time, then left to drain its
//! store-and-forward queue. Checked from both ends: every approval a
//! terminal received is in the journal (and was not reversed), and every
//! request the bank approved that the terminal did not receive as approved
//! was reversed at the bank exactly once. Finally the index rebuilt from
//! the log equals the live one.
//!
//! The terminals behave like real POS terminals: a request that gets no
//! answer (the connection died) is reversed by the terminal (0400 naming it
//! in field 90) after reconnecting, repeated until answered.

use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cardswitch::iso8583::framing::{Frame, FrameCodec};
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::journal::{Index, Phase, view};
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::rules::Rules;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;

const TERMINALS: usize = 4;
const IN_FLIGHT: usize = 8;
const KILLS: usize = 3;

fn ascii() -> Arc<Dialect> {
    Dialect::builtin("iso87ascii").unwrap().unwrap()
}

/// What a terminal saw for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Approved,
    Other,
    NoAnswer,
}

#[derive(Debug, Clone)]
struct Sent {
    terminal: String,
    stan: u32,
    transmission: String,
    rrn: String,
}

/// Everything the terminals did.
#[derive(Debug, Default)]
struct Terminals {
    results: Mutex<HashMap<String, (Sent, Seen)>>,
    next_stan: AtomicU32,
}

fn purchase(sent: &Sent) -> Message {
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(2, "4761739001010119")
        .set(3, "000000")
        .set(4, "000000001500")
        .set(7, sent.transmission.clone())
        .set(11, format!("{:06}", sent.stan))
        .set(37, sent.rrn.clone())
        .set(41, sent.terminal.clone())
        .set(49, "978");
    m
}

fn reversal(original: &Sent, stan: u32) -> Message {
    let mut m = purchase(original);
    m.set_mti(Mti::parse("0400").unwrap());
    m.set(11, format!("{stan:06}"));
    m.set(
        90,
        format!(
            "0200{:06}{}{:0>22}",
            original.stan, original.transmission, "4123456"
        ),
    );
    m
}

async fn connect(addr: SocketAddr) -> Framed<TcpStream, FrameCodec> {
    loop {
        if let Ok(stream) = TcpStream::connect(addr).await {
            return Framed::new(stream, FrameCodec::default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `reversals` first (each until answered), then purchases, pipelined,
/// until `stop_at`. Returns when the connection dies or time is up; the
/// requests left without an answer are marked `NoAnswer`.
async fn run_terminal(addr: SocketAddr, terminal: String, all: Arc<Terminals>, stop_at: Instant) {
    loop {
        // Reversals owed from earlier connections, one at a time.
        let owed: Vec<Sent> = all
            .results
            .lock()
            .unwrap()
            .values()
            .filter(|(s, seen)| s.terminal == terminal && *seen == Seen::NoAnswer)
            .map(|(s, _)| s.clone())
            .collect();
        let mut conn = connect(addr).await;
        let mut broken = false;
        for original in owed {
            let stan = all.next_stan.fetch_add(1, Ordering::Relaxed) % 999_999 + 1;
            let bytes = reversal(&original, stan).to_bytes(&ascii()).unwrap();
            let frame = Frame {
                header: Bytes::new(),
                message: bytes,
            };
            let answered = match conn.send(frame).await {
                Ok(()) => matches!(
                    tokio::time::timeout(Duration::from_secs(5), conn.next()).await,
                    Ok(Some(Ok(_)))
                ),
                Err(_) => false,
            };
            if !answered {
                broken = true;
                break;
            }
            if let Some(entry) = all.results.lock().unwrap().get_mut(&original.rrn) {
                entry.1 = Seen::Other;
            }
        }
        if broken {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        if Instant::now() >= stop_at {
            return;
        }
        let (mut sink, mut stream) = conn.split();
        let window = Arc::new(Semaphore::new(IN_FLIGHT));
        let outstanding: Arc<Mutex<HashMap<u32, Sent>>> = Arc::default();
        let reader = {
            let (all, outstanding, window) = (
                Arc::clone(&all),
                Arc::clone(&outstanding),
                Arc::clone(&window),
            );
            tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    let Ok(m) = Message::decode(&ascii(), frame.message) else {
                        continue;
                    };
                    let Some(sent) = m
                        .stan()
                        .and_then(|s| outstanding.lock().unwrap().remove(&s))
                    else {
                        continue;
                    };
                    let seen = if m.response_code() == Some("00") {
                        Seen::Approved
                    } else {
                        Seen::Other
                    };
                    all.results
                        .lock()
                        .unwrap()
                        .insert(sent.rrn.clone(), (sent, seen));
                    window.add_permits(1);
                }
            })
        };
        while Instant::now() < stop_at && !reader.is_finished() {
            let Ok(Ok(permit)) =
                tokio::time::timeout(Duration::from_millis(200), window.acquire()).await
            else {
                continue;
            };
            permit.forget();
            let stan = all.next_stan.fetch_add(1, Ordering::Relaxed) % 999_999 + 1;
            let sent = Sent {
                terminal: terminal.clone(),
                stan,
                transmission: format!("1125{:06}", stan % 1_000_000),
                rrn: format!("{:012}", stan),
            };
            // Recorded as unanswered before it leaves.
            all.results
                .lock()
                .unwrap()
                .insert(sent.rrn.clone(), (sent.clone(), Seen::NoAnswer));
            outstanding.lock().unwrap().insert(stan, sent.clone());
            let bytes = purchase(&sent).to_bytes(&ascii()).unwrap();
            if sink
                .send(Frame {
                    header: Bytes::new(),
                    message: bytes,
                })
                .await
                .is_err()
            {
                break;
            }
        }
        // Let answers in flight arrive (or the connection die).
        let deadline = Instant::now() + Duration::from_secs(3);
        while !outstanding.lock().unwrap().is_empty()
            && !reader.is_finished()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reader.abort();
        let lost = !outstanding.lock().unwrap().is_empty();
        if !lost && Instant::now() >= stop_at {
            return;
        }
    }
}

/// The daemon under test: its listener at `listen` (the same after each
/// restart), one bank with two links, a terminal per load generator.
fn daemon(dir: &Path, listen: SocketAddr, bank: &BankHandle) -> Daemon {
    let mut daemon = Daemon::new(dir)
        .timeout_ms(2000)
        .shutdown_grace_ms(3000)
        .listener(Listener::new("pos", "iso87ascii").address(listen))
        .destination(
            Destination::new("bank", bank.addr(), "iso87binary")
                .links(2)
                .reconnect_ms(20, 200),
        )
        .route("476173", "bank")
        .env("RUST_LOG", "info");
    for t in 0..TERMINALS {
        daemon = daemon.terminal(Terminal::new(&format!("CRASH{t:03}"), &format!("M{t}")));
    }
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::default(),
        Rules::from_toml("[[rule]]\nmti = \"0200\"\ndelay_ms = 3\n", "rules.toml").unwrap(),
    ))
    .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = daemon(dir.path(), listen, &bank);

    let all = Arc::new(Terminals::default());
    all.next_stan
        .store(fastrand::u32(1..900_000), Ordering::Relaxed);
    let load_for = Duration::from_millis(700) * (KILLS as u32 + 1) + Duration::from_secs(1);
    let stop_at = Instant::now() + load_for;
    let mut daemon = config.spawn();
    let terminals: Vec<_> = (0..TERMINALS)
        .map(|t| {
            tokio::spawn(run_terminal(
                listen,
                format!("CRASH{t:03}"),
                Arc::clone(&all),
                stop_at,
            ))
        })
        .collect();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..700))).await;
        daemon.kill();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..100))).await;
        daemon = config.spawn();
    }
    for t in terminals {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("terminals finish")
            .unwrap();
    }

    // Let store-and-forward drain, read from the log while it runs.
    let journal = dir.path().join("journal");
    let since = Instant::now();
    loop {
        let states = view::replay(&journal, &cardswitch::journal::Cutover::default()).unwrap();
        if !states.values().any(|s| s.reversal_pending()) {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "store-and-forward queue drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: graceful stop, the index catches up and is flushed.
    daemon.stop().await;

    let results = all.results.lock().unwrap().clone();
    let approved_at_terminal: HashSet<&str> = results
        .iter()
        .filter(|(_, (_, seen))| *seen == Seen::Approved)
        .map(|(rrn, _)| rrn.as_str())
        .collect();
    assert!(
        approved_at_terminal.len() > 50,
        "enough load: {} approvals",
        approved_at_terminal.len()
    );
    assert!(
        results.values().all(|(_, seen)| *seen != Seen::NoAnswer),
        "every unanswered request was reversed by its terminal"
    );

    // 1. Every approval a terminal received is in the journal, approved and
    //    not reversed.
    let states = view::replay(&journal, &cardswitch::journal::Cutover::default()).unwrap();
    let purchases: HashMap<&str, _> = states
        .values()
        .filter(|s| s.request.mti == "0200")
        .map(|s| (s.request.rrn.as_str(), s))
        .collect();
    for rrn in &approved_at_terminal {
        let s = purchases
            .get(rrn)
            .unwrap_or_else(|| panic!("approval {rrn} missing from the journal"));
        assert_eq!(
            (s.phase, s.code.as_deref(), s.reversal.is_some()),
            (Phase::Answered, Some("00"), false),
            "approval {rrn}"
        );
    }

    // 2. Every bank approval the terminal did not get as approved was
    //    reversed at the bank exactly once; the others never.
    let mut reversed = 0;
    for approval in bank.ledger().approvals() {
        if approved_at_terminal.contains(approval.rrn.as_str()) {
            assert_eq!(
                approval.reversals, 0,
                "approved at the terminal: {approval:?}"
            );
        } else {
            assert_eq!(approval.reversals, 1, "reversed exactly once: {approval:?}");
            reversed += 1;
        }
    }
    eprintln!(
        "crash test: {} requests, {} approved at terminals, {} reversed at the bank, {} reversals matching nothing at the bank",
        results.len(),
        approved_at_terminal.len(),
        reversed,
        bank.ledger().unmatched_reversals()
    );

    // 3. The index rebuilt from scratch equals the live one.
    let live = Index::open(
        &journal.join("index"),
        cardswitch::journal::Cutover::default(),
    )
    .unwrap();
    let live_dump = live.dump().unwrap();
    drop(live);
    let fresh_dir = dir.path().join("fresh-index");
    let fresh = Index::open(&fresh_dir, cardswitch::journal::Cutover::default()).unwrap();
    fresh.rebuild(&journal, |_| {}).unwrap();
    assert_eq!(
        fresh.dump().unwrap(),
        live_dump,
        "rebuilt index equals the live one"
    );
    bank.stop().await;
}
