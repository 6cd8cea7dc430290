//! The simulators against each other over real TCP on 127.0.0.1: the POS
//! load generator straight into the bank simulator (no switch), in every
//! built-in dialect, with each kind of bank rule; raw clients for delays,
//! garbage and network management; and the `cardswitch sim` commands.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, FramedRead};

use cardswitch::iso8583::framing::{Frame, FrameCodec, LengthPrefix};
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::sim::{
    BankHandle, BankSim, PosConfig, PosReport, Rules, Scenario, TxnTemplate, run,
};

const BOUND: Duration = Duration::from_secs(10);

struct Bank {
    handle: BankHandle,
    dialect: Arc<Dialect>,
    codec: FrameCodec,
}

async fn bank(dialect: &str, codec: FrameCodec, rules: &str) -> Bank {
    let dialect = Dialect::builtin(dialect).unwrap().unwrap();
    let rules = Rules::from_toml(rules, "test.toml").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Arc::new(BankSim::new(Arc::clone(&dialect), codec, rules));
    Bank {
        handle: sim.start(listener).unwrap(),
        dialect,
        codec,
    }
}

impl Bank {
    fn pos(&self, scenario: Scenario) -> PosConfig {
        PosConfig::new(
            self.handle.addr(),
            Arc::clone(&self.dialect),
            self.codec,
            scenario,
        )
    }

    async fn connect(&self) -> Framed<TcpStream, FrameCodec> {
        let stream = TcpStream::connect(self.handle.addr()).await.unwrap();
        Framed::new(stream, self.codec)
    }
}

async fn bounded_run(cfg: PosConfig) -> PosReport {
    tokio::time::timeout(BOUND, run(cfg))
        .await
        .expect("the run is bounded")
        .unwrap()
}

async fn next_frame(link: &mut Framed<TcpStream, FrameCodec>) -> Option<Frame> {
    tokio::time::timeout(BOUND, link.next())
        .await
        .expect("an answer or a close within the bound")
        .and_then(Result::ok)
}

fn request(mti: &str, stan: u32, amount: u64) -> Message {
    let mut m = Message::new(Mti::parse(mti).unwrap());
    m.set(2, "4761739001010119")
        .set(3, "000000")
        .set(4, format!("{amount:012}"))
        .set(11, format!("{stan:06}"))
        .set(37, format!("RRN{stan:09}"))
        .set(41, "TERM0001");
    m
}

fn frame(bank: &Bank, m: &Message) -> Frame {
    Frame {
        header: Bytes::new(),
        message: m.to_bytes(&bank.dialect).unwrap(),
    }
}

fn decode(bank: &Bank, f: Frame) -> Message {
    Message::decode(&bank.dialect, f.message).unwrap()
}

fn mixed_scenario() -> Scenario {
    Scenario::new(vec![
        TxnTemplate::purchase("visa", "476173", 1000).weight(2),
        TxnTemplate::purchase("mastercard", "543210", 2599).authorisation(),
        TxnTemplate::purchase("funds", "476173", 5100).expecting(Some("51")),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pos_to_bank_in_every_dialect() {
    let cases = [
        (
            "iso87ascii",
            FrameCodec::new(LengthPrefix::Ascii4),
            "00",
            "51",
        ),
        (
            "iso87binary",
            FrameCodec::new(LengthPrefix::Binary2).with_header(5),
            "00",
            "51",
        ),
        (
            "iso93binary",
            FrameCodec::new(LengthPrefix::Bcd2),
            "000",
            "116",
        ),
    ];
    for (dialect, codec, approved, declined) in cases {
        let bank = bank(
            dialect,
            codec,
            "[[rule]]\namount = 5100\ndecline = \"51\"\n",
        )
        .await;
        let mut cfg = bank.pos(mixed_scenario());
        cfg.count = 800;
        cfg.connections = 4;
        cfg.pipeline = 8;
        let report = bounded_run(cfg).await;
        assert!(report.all_checked_out(), "{dialect}:\n{report}");
        assert_eq!((report.sent, report.ok), (800, 800), "{dialect}");
        assert_eq!(report.by_code.get(approved), Some(&600), "{dialect}");
        assert_eq!(report.by_code.get(declined), Some(&200), "{dialect}");
        assert_eq!(report.by_template["visa"][approved], 400);
        assert_eq!(report.by_template["mastercard"][approved], 200);
        assert_eq!(report.latency.count, 800);
        assert!(report.latency.p50_us <= report.latency.max_us);
        let stats = bank.handle.stats().snapshot();
        assert_eq!(
            (
                stats.requests,
                stats.responses,
                stats.approved,
                stats.declined
            ),
            (800, 800, 600, 200),
            "{dialect}"
        );
        assert_eq!(stats.connections, 4);
        bank.handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_echo_the_request_without_card_secrets() {
    for dialect in ["iso87ascii", "iso87binary"] {
        let bank = bank(dialect, FrameCodec::default(), "").await;
        let mut link = bank.connect().await;
        let mut m = request("0100", 42, 1000);
        m.set(35, "4761739001010119=27122011234567890123")
            .set(52, vec![0x12u8; 8]);
        link.send(frame(&bank, &m)).await.unwrap();
        let answer = decode(&bank, next_frame(&mut link).await.unwrap());
        assert_eq!(answer.mti().as_str(), "0110");
        assert_eq!(answer.response_code(), Some("00"));
        assert_eq!(answer.auth_id(), Some("A00042"));
        for n in [2, 3, 4, 11, 37, 41] {
            assert_eq!(answer.get(n), m.get(n), "{dialect}: field {n} echoed");
        }
        assert!(!answer.contains(35) && !answer.contains(52), "{dialect}");
        bank.handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_answer_does_not_hold_back_the_others() {
    let bank = bank(
        "iso87ascii",
        FrameCodec::default(),
        "[[rule]]\namount = 4242\ndelay_ms = 300\n",
    )
    .await;
    let mut link = bank.connect().await;
    let start = Instant::now();
    link.feed(frame(&bank, &request("0200", 1, 4242)))
        .await
        .unwrap();
    for stan in 2..=6 {
        link.feed(frame(&bank, &request("0200", stan, 1000)))
            .await
            .unwrap();
    }
    link.flush().await.unwrap();
    let mut order = Vec::new();
    for _ in 0..6 {
        let answer = decode(&bank, next_frame(&mut link).await.unwrap());
        order.push((answer.stan().unwrap(), start.elapsed()));
    }
    let stans: Vec<u32> = order.iter().map(|(s, _)| *s).collect();
    assert_eq!(stans, [2, 3, 4, 5, 6, 1], "the delayed answer comes last");
    let (_, fast_done) = order[4];
    let (_, slow_done) = order[5];
    assert!(fast_done < Duration::from_millis(250), "{fast_done:?}");
    assert!(slow_done >= Duration::from_millis(300), "{slow_done:?}");
    assert_eq!(bank.handle.stats().snapshot().delayed, 1);
    bank.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_can_come_with_a_decline_and_pos_runs_through_delays() {
    let bank = bank(
        "iso87binary",
        FrameCodec::default(),
        "[[rule]]\npan_prefix = \"455599\"\ndelay_ms = 30\ndecline = \"61\"\n",
    )
    .await;
    let scenario = Scenario::new(vec![
        TxnTemplate::purchase("fast", "476173", 1000).weight(3),
        TxnTemplate::purchase("slow", "455599", 1000).expecting(Some("61")),
    ])
    .unwrap();
    let mut cfg = bank.pos(scenario);
    cfg.count = 200;
    cfg.connections = 2;
    cfg.pipeline = 8;
    let report = bounded_run(cfg).await;
    assert!(report.all_checked_out(), "{report}");
    assert_eq!(report.by_code["61"], 50);
    assert!(report.latency.max_us >= 30_000, "{:?}", report.latency);
    bank.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_a_timeout() {
    let bank = bank(
        "iso87ascii",
        FrameCodec::default(),
        "[[rule]]\namount = 9100\nno_answer = true\n",
    )
    .await;
    let scenario = Scenario::new(vec![
        TxnTemplate::purchase("answered", "476173", 1000),
        TxnTemplate::purchase("silent", "476173", 9100),
    ])
    .unwrap();
    let mut cfg = bank.pos(scenario);
    cfg.count = 10;
    cfg.pipeline = 4;
    cfg.timeout = Duration::from_millis(200);
    let report = bounded_run(cfg).await;
    assert_eq!(
        (report.sent, report.ok, report.timeouts),
        (10, 5, 5),
        "{report}"
    );
    assert_eq!(report.by_template["silent"]["timeout"], 5);
    assert!(!report.all_checked_out());
    assert_eq!(bank.handle.stats().snapshot().unanswered, 5);
    bank.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_rule_drops_only_that_terminals_link() {
    let bank = bank(
        "iso87binary",
        FrameCodec::default(),
        "[[rule]]\nterminal = \"TERM0002\"\nclose = true\n",
    )
    .await;
    let mut cfg = bank.pos(Scenario::approvals(&["476173"]).unwrap());
    cfg.count = 300;
    cfg.connections = 3;
    cfg.pipeline = 2;
    let report = bounded_run(cfg).await;
    assert_eq!(report.errors.len(), 1, "{report}");
    assert!(report.errors[0].starts_with("TERM0002: "), "{report}");
    assert!(report.lost >= 1, "{report}");
    assert_eq!(report.ok, report.sent - report.lost, "{report}");
    assert_eq!(report.sent, 300, "the other terminals take over the work");
    assert!(!report.all_checked_out());
    assert_eq!(bank.handle.stats().snapshot().closed, 1);
    bank.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_format_error_or_a_close_and_the_bank_carries_on() {
    for (dialect, readable, code) in [
        // MTI 0200, then a bitmap that is not hex.
        ("iso87ascii", b"0200ZZZZZZZZZZZZZZZZ".to_vec(), "30"),
        // MTI 1200, a bitmap announcing field 2, and nothing after it.
        (
            "iso93binary",
            vec![0x12, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0],
            "904",
        ),
    ] {
        let bank = bank(dialect, FrameCodec::default(), "").await;
        let mut bystander = bank.connect().await;

        let mut link = bank.connect().await;
        link.send(Frame {
            header: Bytes::new(),
            message: Bytes::from(readable),
        })
        .await
        .unwrap();
        let answer = decode(&bank, next_frame(&mut link).await.unwrap());
        assert_eq!(&answer.mti().as_str()[1..], "210", "{dialect}");
        assert_eq!(answer.response_code(), Some(code), "{dialect}");

        // An unreadable MTI closes the link.
        link.send(Frame {
            header: Bytes::new(),
            message: Bytes::from_static(b"\xFF\xFFnot iso"),
        })
        .await
        .unwrap();
        assert!(next_frame(&mut link).await.is_none(), "{dialect}: closed");

        // So does an oversized length prefix, on another link.
        let mut raw = TcpStream::connect(bank.handle.addr()).await.unwrap();
        raw.write_all(&[0xFF, 0xFF, 0x00, 0x01]).await.unwrap();
        let mut rest = FramedRead::new(raw, bank.codec);
        let closed = tokio::time::timeout(BOUND, rest.next()).await.unwrap();
        assert!(closed.is_none_or(|r| r.is_err()), "{dialect}: closed");

        // The link opened before all this still works, and so do new ones.
        let m = request(
            if dialect == "iso93binary" {
                "1200"
            } else {
                "0200"
            },
            7,
            100,
        );
        bystander.send(frame(&bank, &m)).await.unwrap();
        let answer = decode(&bank, next_frame(&mut bystander).await.unwrap());
        assert_eq!(answer.stan(), Some(7));
        let mut cfg = bank.pos(Scenario::approvals(&["476173"]).unwrap());
        cfg.count = 50;
        cfg.pipeline = 4;
        let report = bounded_run(cfg).await;
        assert!(report.all_checked_out(), "{dialect}:\n{report}");

        let stats = bank.handle.stats().snapshot();
        assert_eq!(stats.format_errors, 2, "{dialect}");
        assert_eq!(stats.closed, 2, "{dialect}");
        bank.handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_management_is_answered() {
    for (dialect, mti, function, answer_mti, code) in [
        ("iso87ascii", "0800", (70, "301"), "0810", "00"),
        ("iso87binary", "0800", (70, "001"), "0810", "00"),
        ("iso93binary", "1804", (24, "831"), "1814", "800"),
    ] {
        let bank = bank(dialect, FrameCodec::new(LengthPrefix::Ascii4), "").await;
        let mut link = bank.connect().await;
        let mut m = Message::new(Mti::parse(mti).unwrap());
        m.set(7, "0315143000")
            .set(11, "000129")
            .set(function.0, function.1);
        link.send(frame(&bank, &m)).await.unwrap();
        let answer = decode(&bank, next_frame(&mut link).await.unwrap());
        assert_eq!(answer.mti().as_str(), answer_mti, "{dialect}");
        assert_eq!(answer.response_code(), Some(code), "{dialect}");
        assert_eq!(answer.text(function.0), Some(function.1), "{dialect}");
        assert!(!answer.contains(38), "no approval code on network messages");
        assert_eq!(bank.handle.stats().snapshot().network, 1);
        bank.handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_and_duration_bound_the_run() {
    let bank = bank("iso87binary", FrameCodec::default(), "").await;
    let mut cfg = bank.pos(Scenario::approvals(&["476173"]).unwrap());
    cfg.count = u64::MAX;
    cfg.duration = Some(Duration::from_millis(300));
    cfg.rate = Some(200);
    cfg.connections = 2;
    cfg.pipeline = 4;
    let report = bounded_run(cfg).await;
    assert!(report.all_checked_out(), "{report}");
    // 200/s for 0.3 s: at most transactions 0..=59 are due before the end,
    // and the run lasts until then.
    assert!((1..=60).contains(&report.sent), "{report}");
    assert!(report.elapsed >= Duration::from_millis(290), "{report}");
    bank.handle.stop().await;
}

fn cardswitch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cardswitch"))
}

#[test]
fn the_sim_commands_talk_to_each_other() {
    let mut bank = cardswitch()
        .args([
            "sim",
            "bank",
            "--listen",
            "127.0.0.1:0",
            "-d",
            "iso87binary",
        ])
        .args(["--framing", "bcd2", "--demo-rules"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(bank.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    let addr = banner
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();

    let json_file = std::env::temp_dir().join(format!("sim-pos-{}.json", std::process::id()));
    let pos = |extra: &[&str]| {
        cardswitch()
            .args(["sim", "pos", "--connect", &addr, "-d", "iso87binary"])
            .args(["--framing", "bcd2", "--quiet"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = pos(&[
        "--count",
        "200",
        "--connections",
        "2",
        "--pipeline",
        "4",
        "--bins",
        "476173,543210",
        "--json",
        json_file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("every response checked out"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(report["ok"], 200);
    assert_eq!(report["by_code"]["00"], 200);
    let written = std::fs::read_to_string(&json_file).unwrap();
    assert_eq!(written.trim(), last);
    let _ = std::fs::remove_file(&json_file);

    // 51.00 is declined by the demo rules: exit 1 unless 51 is expected.
    let out = pos(&["--count", "3", "--amount", "5100"]);
    assert_eq!(out.status.code(), Some(1));
    let out = pos(&["--count", "3", "--amount", "5100", "--expect", "51"]);
    assert!(out.status.success());

    // SIGTERM stops the bank cleanly; it prints its counters.
    let killed = Command::new("kill")
        .args(["-TERM", &bank.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = bank.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the bank stops on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut counters = String::new();
    std::io::Read::read_to_string(&mut bank.stdout.take().unwrap(), &mut counters).unwrap();
    let stats: serde_json::Value = serde_json::from_str(counters.trim()).unwrap();
    assert_eq!(stats["requests"], 206);
    assert_eq!(stats["declined"], 6);
}
