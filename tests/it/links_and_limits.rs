//! Reversals, echo-test failure and reconnection, and listener limits, over
//! real TCP on 127.0.0.1.

use crate::common;
use crate::common::daemon::{Daemon, Destination, Listener, Terminal};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cardswitch::iso8583::framing::{Frame, FrameCodec, LengthPrefix};
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::server::Running;
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::rules::Rules;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

fn ascii() -> Arc<Dialect> {
    Dialect::builtin("iso87ascii").unwrap().unwrap()
}

async fn bank(rules: &str) -> BankHandle {
    let sim = BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        Rules::from_toml(rules, "rules.toml").unwrap(),
    );
    Arc::new(sim)
        .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap()
}

/// The switch with one bank, its destination and listener as `destination`
/// and `listener` make them; once the bank's link is up.
async fn switch(
    bank: SocketAddr,
    destination: impl FnOnce(Destination) -> Destination,
    listener: impl FnOnce(Listener) -> Listener,
) -> Running {
    let dir = tempfile::tempdir().unwrap().keep();
    Daemon::new(&dir)
        .timeout_ms(1000)
        .listener(listener(Listener::new("pos", "iso87ascii")))
        .destination(destination(
            Destination::new("bank", bank, "iso87binary").reconnect_ms(20, 100),
        ))
        .route("476173", "bank")
        .terminal(Terminal::new("TERM0001", "M1"))
        .start_in_process()
        .await
}

fn request(mti: &str, stan: &str) -> Message {
    let mut m = Message::new(Mti::parse(mti).unwrap());
    m.set(2, "4761739001010119")
        .set(3, "000000")
        .set(4, "000000001500")
        .set(7, "1125120000")
        .set(11, stan.to_string())
        .set(37, format!("000000{stan}"))
        .set(41, "TERM0001")
        .set(49, "978");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversals_reach_the_original_destination_with_the_switch_stan() {
    let bank = bank("[[rule]]\nmti = \"0200\"\namount = 9100\nno_answer = true\n").await;
    let running = switch(bank.addr(), |d| d, |l| l).await;
    let mut conn = Framed::new(
        TcpStream::connect(running.address("pos").unwrap())
            .await
            .unwrap(),
        FrameCodec::default(),
    );
    let answer = common::exchange(&mut conn, &request("0200", "000101")).await;
    assert_eq!(answer.response_code(), Some("00"));

    // 0400 naming the original (MTI 0200, STAN 000101) in field 90.
    let mut reversal = request("0400", "000102");
    reversal.set(90, format!("0200000101{}{:0>22}", "1125120000", "4123456"));
    let answer = common::exchange(&mut conn, &reversal).await;
    assert_eq!(
        (answer.mti().as_str(), answer.response_code()),
        ("0410", Some("00"))
    );
    assert_eq!(
        answer.stan(),
        Some(102),
        "the terminal's own STAN comes back"
    );

    // The bank never answers this purchase: the terminal gets 91 and its
    // reversal still reaches the bank (that is when reversals matter most).
    let mut silent = request("0200", "000110");
    silent.set(4, "000000009100");
    let answer = common::exchange(&mut conn, &silent).await;
    assert_eq!(answer.response_code(), Some("91"));
    let mut reversal = request("0400", "000111");
    reversal.set(4, "000000009100");
    reversal.set(90, format!("0200000110{}{:0>22}", "1125120000", "4123456"));
    let answer = common::exchange(&mut conn, &reversal).await;
    assert_eq!(
        (answer.mti().as_str(), answer.response_code()),
        ("0410", Some("00"))
    );

    // A reversal of something the switch never forwarded: accepted (00) so
    // the terminal stops repeating it, and nothing is sent to the bank.
    let mut unknown = request("0420", "000103");
    unknown.set(90, format!("0200999999{}{:0>22}", "1125120000", "4123456"));
    let answer = common::exchange(&mut conn, &unknown).await;
    assert_eq!(
        (answer.mti().as_str(), answer.response_code()),
        ("0430", Some("00"))
    );

    // Store-and-forward delivers the reversals: the approved purchase is
    // reversed once at the bank under the switch's STAN; the purchase that
    // timed out gets exactly one reversal although the terminal also sent
    // one (the bank never approved it, so it matches nothing there).
    let ledger = Arc::clone(bank.ledger());
    let since = Instant::now();
    while ledger.unmatched_reversals() < 1
        || ledger.approvals().first().is_none_or(|a| a.reversals < 1)
    {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "reversals delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let approvals = ledger.approvals();
    assert_eq!(approvals.len(), 1);
    assert_eq!((approvals[0].reversals, approvals[0].repeats), (1, 0));
    assert_ne!(approvals[0].stan, "000101", "the switch's own STAN");
    assert_eq!(ledger.unmatched_reversals(), 1);

    // A malformed request (bytes after its last field) is answered 30 with
    // the terminal's own STAN and terminal id, so the terminal can match it.
    let mut wire = request("0200", "000105")
        .to_bytes(&ascii())
        .unwrap()
        .to_vec();
    wire.extend_from_slice(b"XX");
    conn.send(Frame {
        header: Bytes::new(),
        message: Bytes::from(wire),
    })
    .await
    .unwrap();
    let answer = Message::decode(&ascii(), conn.next().await.unwrap().unwrap().message).unwrap();
    assert_eq!(
        (answer.mti().as_str(), answer.response_code()),
        ("0210", Some("30"))
    );
    assert_eq!(
        (answer.stan(), answer.terminal_id()),
        (Some(105), Some("TERM0001"))
    );

    // Network management from the terminal is answered by the switch.
    let mut echo = Message::new(Mti::parse("0800").unwrap());
    echo.set(7, "1125120000").set(11, "000104").set(70, "301");
    let answer = common::exchange(&mut conn, &echo).await;
    assert_eq!(
        (answer.mti().as_str(), answer.response_code()),
        ("0810", Some("00"))
    );
    running.shutdown().await;
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_misses_its_echoes_is_closed_and_reconnected() {
    // The host never answers 0800; without sign-on the link comes up anyway,
    // then its echo test fails.
    let bank = bank("[[rule]]\nmti = \"0800\"\nno_answer = true\n").await;
    let running = switch(
        bank.addr(),
        |d| {
            d.line("sign_on = false")
                .echo_interval_s(1)
                .line("echo_misses = 1")
                .timeout_ms(300)
        },
        |l| l,
    )
    .await;
    let destination = Arc::clone(running.switch().destination("bank").unwrap());
    let since = Instant::now();
    while destination.stats().connects.load(Ordering::Relaxed) < 2 {
        assert!(
            since.elapsed() < Duration::from_secs(6),
            "the link was reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(destination.stats().timeouts.load(Ordering::Relaxed) >= 1);
    running.shutdown().await;
    bank.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_connections_are_refused_and_idle_ones_closed() {
    let bank = bank("").await;
    let running = switch(
        bank.addr(),
        |d| d,
        |l| l.max_connections(2).idle_timeout_s(1),
    )
    .await;
    let addr = running.address("pos").unwrap();
    let mut first = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        FrameCodec::default(),
    );
    let answer = common::exchange(&mut first, &request("0200", "000201")).await;
    assert_eq!(answer.response_code(), Some("00"));
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
        .await
        .expect("refused at once, not left waiting")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(
        running
            .listener_stats("pos")
            .unwrap()
            .refused
            .load(Ordering::Relaxed),
        1
    );

    // Idle for more than a second: closed by the switch.
    let closed = tokio::time::timeout(Duration::from_secs(3), first.next())
        .await
        .unwrap();
    assert!(closed.is_none(), "idle connection closed");
    running.shutdown().await;
    bank.stop().await;
}

/// A bank written here, not the simulator: it answers network management,
/// answers purchases with an approval code but no readable response code
/// (none at all for 16.00, `#!` for 17.00), and acknowledges reversals,
/// counting them by the switch STAN they name.
async fn unreadable_bank(listener: TcpListener, reversed: Arc<std::sync::Mutex<Vec<String>>>) {
    let binary = Dialect::builtin("iso87binary").unwrap().unwrap();
    let (socket, _) = listener.accept().await.unwrap();
    let mut link = Framed::new(socket, FrameCodec::new(LengthPrefix::Binary2));
    while let Some(Ok(frame)) = link.next().await {
        let request = Message::decode(&binary, frame.message).unwrap();
        let mut answer = Message::new(request.mti().response().unwrap());
        for field in [3, 4, 7, 11, 37, 41, 70] {
            if let Some(value) = request.get_bytes(field) {
                answer.set(field, value);
            }
        }
        match request.mti().as_str() {
            "0200" => {
                answer.set(38, "AP0001");
                if request.text(4) == Some("000000001700") {
                    answer.set(39, "#!");
                }
            }
            "0420" | "0421" => {
                reversed
                    .lock()
                    .unwrap()
                    .push(request.text(90).unwrap_or_default()[4..10].to_string());
                answer.set(39, "00");
            }
            _ => {
                answer.set(39, "00");
            }
        }
        let message = answer.to_bytes(&binary).unwrap();
        if link
            .send(Frame {
                header: Bytes::new(),
                message,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

/// An answer without a readable outcome is an unknown outcome: the terminal
/// gets 96 and the purchase is reversed, as after a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_a_readable_code_is_reversed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let reversed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let bank = tokio::spawn(unreadable_bank(listener, Arc::clone(&reversed)));
    let running = switch(address, |d| d, |l| l).await;
    let mut conn = Framed::new(
        TcpStream::connect(running.address("pos").unwrap())
            .await
            .unwrap(),
        FrameCodec::default(),
    );
    for (stan, amount) in [("000201", "000000001600"), ("000202", "000000001700")] {
        let mut purchase = request("0200", stan);
        purchase.set(4, amount);
        let answer = common::exchange(&mut conn, &purchase).await;
        assert_eq!(
            (answer.response_code(), answer.auth_id()),
            (Some("96"), None),
            "{amount}"
        );
    }
    let since = Instant::now();
    while reversed.lock().unwrap().len() < 2 {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "both purchases reversed: {:?}",
            reversed.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.switch().journal().index_current().await;
    let states = running.switch().journal().index().in_flight().unwrap();
    assert!(states.is_empty(), "both ended in the journal");
    running.shutdown().await;
    bank.abort();
}

/// A pipelining terminal that never stops sending while the switch stops
/// (#16.4): every answer the bank gave reaches it, then the end of the
/// stream — not a reset that would discard answers it had not read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_half_closes_so_a_pipelining_terminal_reads_every_answer() {
    let bank = bank("[[rule]]\nmti = \"0200\"\ndelay_ms = 20\n").await;
    let running = switch(bank.addr(), |d| d, |l| l).await;
    // A small receive buffer and a slow reader: answers wait in the
    // switch's send buffer when it stops, which a reset would discard.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let socket = socket
        .connect(running.address("pos").unwrap())
        .await
        .unwrap();
    let (read, write) = socket.into_split();
    let mut answers = tokio_util::codec::FramedRead::new(read, FrameCodec::default());
    let mut requests = tokio_util::codec::FramedWrite::new(write, FrameCodec::default());
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let ended = Arc::clone(&ended);
        tokio::spawn(async move {
            for n in 1..100_000u32 {
                if ended.load(Ordering::Relaxed) {
                    break;
                }
                let message = request("0200", &format!("{n:06}"))
                    .to_bytes(&ascii())
                    .unwrap();
                let frame = Frame {
                    header: Bytes::new(),
                    message,
                };
                if requests.send(frame).await.is_err() {
                    break;
                }
                // A burst, then one request every few milliseconds.
                if n > 1_000 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let receiver = {
        let ended = Arc::clone(&ended);
        tokio::spawn(async move {
            let mut approved = 0u64;
            let end = loop {
                match answers.next().await {
                    Some(Ok(frame)) => {
                        let answer = Message::decode(&ascii(), frame.message).unwrap();
                        approved += u64::from(answer.response_code() == Some("00"));
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Some(Err(e)) => break Err(e.to_string()),
                    None => break Ok(()),
                }
            };
            ended.store(true, Ordering::Relaxed);
            (approved, end)
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    running.shutdown().await;
    let (approved, end) = receiver.await.unwrap();
    sender.await.unwrap();
    assert_eq!(end, Ok(()), "the stream ended cleanly, not with a reset");
    // The bank counts its answers to network management as approvals too.
    let stats = bank.stats().snapshot();
    let at_bank = stats.approved - stats.network;
    assert!(at_bank >= 10, "the terminal was pipelining: {at_bank}");
    assert_eq!(approved, at_bank, "every approval reached the terminal");
    bank.stop().await;
}

/// Two copies of one request sent back to back, before either is answered
/// (a terminal that retransmits at once, or two of its connections): one
/// transaction, forwarded once, both copies answered with its outcome — for
/// a purchase and for a reversal of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_sent_at_once_are_one_transaction() {
    let bank = bank("[[rule]]\nmti = \"0200\"\ndelay_ms = 50\n").await;
    let running = switch(bank.addr(), |d| d, |l| l).await;
    let connect = async || {
        Framed::new(
            TcpStream::connect(running.address("pos").unwrap())
                .await
                .unwrap(),
            FrameCodec::default(),
        )
    };
    let (mut one, mut two) = (connect().await, connect().await);
    let frame = |m: &Message| Frame {
        header: Bytes::new(),
        message: m.to_bytes(&ascii()).unwrap(),
    };
    let purchase = request("0200", "000301");
    let mut reversal = request("0400", "000302");
    reversal.set(90, format!("0200000301{}{:0>22}", "1125120000", "4123456"));
    for m in [&purchase, &reversal] {
        one.send(frame(m)).await.unwrap();
        one.send(frame(m)).await.unwrap();
        two.send(frame(m)).await.unwrap();
        let mut answers = Vec::new();
        for which in [0, 0, 1] {
            let conn = if which == 0 { &mut one } else { &mut two };
            let answer =
                Message::decode(&ascii(), conn.next().await.unwrap().unwrap().message).unwrap();
            answers.push((
                answer.response_code().map(String::from),
                answer.auth_id().map(String::from),
            ));
        }
        assert!(
            answers
                .iter()
                .all(|a| *a == answers[0] && a.0.as_deref() == Some("00")),
            "{}: {answers:?}",
            m.mti()
        );
    }
    // The reversal reaches the bank by store-and-forward.
    let financial = || {
        let stats = bank.stats().snapshot();
        stats.requests - stats.network
    };
    let since = Instant::now();
    while financial() < 2 && since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        financial(),
        2,
        "the bank got the purchase once and its reversal once"
    );
    running.shutdown().await;
    bank.stop().await;
}
