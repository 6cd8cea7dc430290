//! End-to-end benchmark: terminals → switch → bank → back, against a bare
//! TCP relay with the same framing that forwards frames without parsing
//! them (the physical limit of two TCP hops), and against the bank
//! directly.
//!
//! Run: `cargo bench --bench e2e` (needs `taskset`, from util-linux).
//!
//! The load driver and the bank stub are this executable's own lean ends
//! (`benches/common/lean.rs`: one task per connection, one write per
//! wake-up, requests patched from a template), pinned to CPU 0; the switch
//! or the relay is pinned to CPU 1, so that what is compared is one core's
//! worth of switch against one core's worth of relay in the same run. The
//! direct path (driver → stub) shows the driver is not the bottleneck: it
//! must run at several times the switch's rate.
//!
//! Each switch (journal `fsync`, then `none`) gets:
//! - a closed-loop run, 8 connections × 16 in flight, `E2E_COUNT`
//!   transactions: throughput, its share of the relay's, and CPU per
//!   transaction counted on every thread of the switch until it is quiet
//!   again (the index finishes its work after the load), with the split by
//!   thread;
//! - a closed-loop run with one request in flight per connection (8 × 1);
//! - open-loop runs at fixed rates (`E2E_SECONDS` each): p50/p99/p99.9,
//!   from when each request was due, and what the switch measured inside
//!   itself (`switch_added_duration_seconds`, journal syncs included).
//!
//! The switch with journal `none` then runs `E2E_SUSTAIN` seconds (default
//! 60; 0 skips it) closed-loop, and as long open-loop at `E2E_SUSTAIN_RATE`
//! (default: 50% of the rate one core carries, from the closed-loop run's
//! CPU per transaction, index included): the rates, and the index lag on
//! its `/metrics` the moment each ends.
//!
//! For the `fsync` target the bench times two back-to-back `fdatasync`s of
//! a file on the journal's disk (`FSYNC_PAIRS` pairs) in the same run.
//!
//! Environment: `E2E_COUNT` (default 200000), `E2E_SECONDS` (default 5),
//! `E2E_SUSTAIN` (default 60).
//!
//! The subcommands `relay LISTEN UPSTREAM`, `bank LISTEN` and
//! `drive TARGET closed COUNT PIPELINE [SECONDS] | open RATE SECONDS` run the
//! pieces themselves (the benchmark starts them that way).

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/lean.rs"]
mod lean;
#[path = "common/process.rs"]
mod process;

use lean::{Mode, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const CONNECTIONS: usize = 8;
const PIPELINE: usize = 16;
/// Pairs of back-to-back `fdatasync`s timed for the `fsync` target.
const FSYNC_PAIRS: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let addr = |i: usize| -> SocketAddr { arg(i).parse().expect("an address") };
    let num = |i: usize| -> u64 { arg(i).parse().expect("a number") };
    match arg(1) {
        "relay" => relay(addr(2), addr(3)),
        "bank" => lean::bank(addr(2)),
        "drive" => {
            let mode = match arg(3) {
                "open" => Mode::Open {
                    rate: num(4),
                    seconds: num(5),
                },
                _ => Mode::Closed {
                    count: num(4),
                    pipeline: num(5) as usize,
                    seconds: arg(6).parse().ok(),
                },
            };
            println!("{}", lean::drive(addr(2), CONNECTIONS, mode).to_json());
        }
        // `cargo bench -- --list` and test discovery: nothing to list.
        _ if args.iter().any(|a| a == "--list") => {}
        _ => run_benchmark(),
    }
}

/// The bare relay: per terminal connection one upstream connection; frames
/// are cut by the length prefix and forwarded untouched, both ways.
fn relay(listen: SocketAddr, upstream: SocketAddr) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind relay");
        loop {
            let Ok((down, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let codec = FrameCodec::new(LengthPrefix::Binary2);
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                let a = pump(FramedRead::new(dr, codec), FramedWrite::new(uw, codec));
                let b = pump(FramedRead::new(ur, codec), FramedWrite::new(dw, codec));
                tokio::join!(a, b);
            });
        }
    });
}

async fn pump(
    mut from: FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>,
    mut to: FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
) {
    while let Some(Ok(frame)) = from.next().await {
        if to.feed(frame).await.is_err() {
            return;
        }
        // Forward everything already read in one flush, as the switch does.
        while let Some(Some(Ok(frame))) = from.next().now_or_never() {
            if to.feed(frame).await.is_err() {
                return;
            }
        }
        if to.flush().await.is_err() {
            return;
        }
    }
}

fn free_port() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("local addr")
}

fn wait_listening(addr: SocketAddr) {
    let since = Instant::now();
    while StdStream::connect(addr).is_err() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pinned(cpu: &str, program: &Path, args: &[&str]) -> Child {
    Command::new("taskset")
        .arg("-c")
        .arg(cpu)
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset (util-linux) must be installed")
}

/// utime + stime of a process, in seconds.
/// Runs the lean driver (this executable, `drive` mode) on CPU 0.
fn drive(target: SocketAddr, mode: Mode) -> Outcome {
    let me = std::env::current_exe().expect("bench executable");
    let mut args = vec!["drive".to_string(), target.to_string()];
    match mode {
        Mode::Closed {
            count,
            pipeline,
            seconds,
        } => {
            args.extend(["closed".into(), count.to_string(), pipeline.to_string()]);
            args.extend(seconds.map(|s| s.to_string()));
        }
        Mode::Open { rate, seconds } => {
            args.extend(["open".into(), rate.to_string(), seconds.to_string()]);
        }
    }
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(me)
        .args(&args)
        .output()
        .expect("taskset (util-linux) must be installed");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    Outcome::from_json(stdout.lines().last().unwrap_or_default())
}

/// A switch's config (with an admin API whose `/metrics` the bench reads)
/// and a viewer token for it.
fn switch_config(
    dir: &Path,
    listen: SocketAddr,
    bank: SocketAddr,
    admin: SocketAddr,
    durability: &str,
) -> (PathBuf, String) {
    let dir = dir.join(durability);
    std::fs::create_dir_all(&dir).expect("switch dir");
    let (mut text, token) = daemon::head(BIN, &dir, admin, durability);
    let dialect = lean::DIALECT;
    text.push_str(&format!(
        r#"[[listener]]
name = "pos"
address = "{listen}"
dialect = "{dialect}"
framing = "binary2"
[[destination]]
name = "bank"
address = "{bank}"
dialect = "{dialect}"
framing = "binary2"
links = 2
[[route]]
prefix = "476173"
destination = "bank"
"#
    ));
    for i in 0..CONNECTIONS {
        text.push_str(&format!(
            "[[terminal]]\nid = \"TERM{:04}\"\nmerchant_id = \"M{i}\"\nname_location = \"BENCH\"\nmcc = \"5411\"\ncurrency = \"978\"\n",
            i + 1
        ));
    }
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).expect("write config");
    (path, token)
}

/// The cumulative buckets (upper bound in seconds, count) of
/// `cardswitch_switch_added_duration_seconds` in the switch's `/metrics`.
fn switch_added(admin: SocketAddr, token: &str) -> Vec<(f64, f64)> {
    let Some(body) = daemon::scrape(admin, token) else {
        return Vec::new();
    };
    body.lines()
        .filter_map(|line| {
            let rest =
                line.strip_prefix("cardswitch_switch_added_duration_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// What the switch added inside itself during one run (the difference of
/// two bucket readings): the share of requests that took at most 5 ms, and
/// the smallest bucket bound (ms) holding 99% of them.
#[derive(Debug, Clone, Copy, Default)]
struct Inside {
    within_5ms: f64,
    p99_bound_ms: f64,
}

fn inside(before: &[(f64, f64)], after: &[(f64, f64)]) -> Inside {
    let diff: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - was)
        })
        .collect();
    let total = diff.last().map_or(0.0, |(_, n)| *n).max(1.0);
    Inside {
        within_5ms: diff
            .iter()
            .find(|(le, _)| (*le - 0.005).abs() < 1e-9)
            .map_or(0.0, |(_, n)| n / total),
        p99_bound_ms: diff
            .iter()
            .find(|(_, n)| *n >= 0.99 * total)
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0),
    }
}

/// How much load the runs put on.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Transactions per closed-loop run (`E2E_COUNT`).
    count: u64,
    /// Length of each open-loop run (`E2E_SECONDS`).
    seconds: u64,
    /// Length of each sustained run (`E2E_SUSTAIN`, 0: none).
    sustain: u64,
    /// Rate of the open-loop sustained run (`E2E_SUSTAIN_RATE`; default 50%
    /// of what one core carries by the closed loop's CPU per transaction).
    sustain_rate: Option<u64>,
}

impl Load {
    fn from_env() -> Load {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Load {
            count: var("E2E_COUNT", 200_000),
            seconds: var("E2E_SECONDS", 5),
            sustain: var("E2E_SUSTAIN", 60),
            sustain_rate: std::env::var("E2E_SUSTAIN_RATE")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }

    fn piped(&self) -> Mode {
        Mode::Closed {
            count: self.count,
            pipeline: PIPELINE,
            seconds: None,
        }
    }

    fn single(&self) -> Mode {
        Mode::Closed {
            count: self.count / 4,
            pipeline: 1,
            seconds: None,
        }
    }

    fn at_rate(&self, rate: u64) -> Mode {
        Mode::Open {
            rate,
            seconds: self.seconds,
        }
    }
}

/// The rates of the open-loop runs, in transactions per second.
const RATES: [u64; 2] = [5_000, 20_000];

/// CPU a process spent on a run: while the load was on, and in all until it
/// was quiet again, per transaction.
#[derive(Debug, Clone, Default)]
struct Cpu {
    /// µs per transaction while the driver ran.
    during: f64,
    /// µs per transaction until quiet, every thread.
    total: f64,
    /// How long after the load the process was busy.
    quiet_after: Duration,
    /// µs per transaction until quiet, by thread name.
    threads: Vec<(String, f64)>,
}

/// A closed-loop run against a process, with its CPU counted until quiet.
fn measured(target: SocketAddr, pid: u32, mode: Mode) -> (Outcome, Cpu) {
    let before = process::cpu_seconds(pid);
    let threads_before = process::threads_cpu(pid);
    let run = drive(target, mode);
    let during = process::cpu_seconds(pid) - before;
    let quiet_after = process::until_quiet(pid);
    let total = process::cpu_seconds(pid) - before;
    let per_tx = |secs: f64| secs / run.ok.max(1) as f64 * 1e6;
    let threads = process::threads_cpu(pid)
        .into_iter()
        .map(|(name, secs)| {
            let was = threads_before
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, s)| *s);
            (name, per_tx(secs - was))
        })
        .filter(|(_, us)| *us >= 0.05)
        .collect();
    let cpu = Cpu {
        during: per_tx(during),
        total: per_tx(total),
        quiet_after,
        threads,
    };
    (run, cpu)
}

/// The sustained run of the switch and the index lag when it ended.
#[derive(Debug, Clone, Default)]
struct Sustained {
    run: Outcome,
    cpu: Cpu,
    seconds: u64,
    /// The open loop's rate (none: closed loop).
    rate: Option<u64>,
    lag_records: Option<f64>,
    lag_ms: Option<f64>,
}

/// One switch's results.
struct SwitchRun {
    durability: &'static str,
    piped: Outcome,
    cpu: Cpu,
    single: Outcome,
    rates: Vec<(Outcome, Inside)>,
    /// Closed loop, then open loop (journal `none` only).
    sustained: Option<(Sustained, Sustained)>,
    /// Resident memory after all its runs, MiB.
    rss_mib: Option<u64>,
}

/// The bank stub, on CPU 0, once it listens.
fn start_bank() -> (Child, SocketAddr) {
    let bank_addr = free_port();
    let me = std::env::current_exe().expect("bench executable");
    let bank = pinned("0", &me, &["bank", &bank_addr.to_string()]);
    wait_listening(bank_addr);
    (bank, bank_addr)
}

/// The bare relay in front of the bank (this executable, `relay` mode), on
/// CPU 1, once it listens.
fn start_relay(bank_addr: SocketAddr) -> (Child, SocketAddr) {
    let relay_addr = free_port();
    let me = std::env::current_exe().expect("bench executable");
    let relay_child = pinned(
        "1",
        &me,
        &["relay", &relay_addr.to_string(), &bank_addr.to_string()],
    );
    wait_listening(relay_addr);
    (relay_child, relay_addr)
}

fn warm_up(addr: SocketAddr) {
    let since = Instant::now();
    let warm = Mode::Closed {
        count: 2_000,
        pipeline: 4,
        seconds: None,
    };
    while !drive(addr, warm).checked_out() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{addr} never served"
        );
    }
}

/// Starts a switch on CPU 1 with the given journal durability, warms it
/// up, runs every run against it, then stops it.
fn bench_switch(
    dir: &Path,
    bank_addr: SocketAddr,
    durability: &'static str,
    load: Load,
) -> SwitchRun {
    let switch_addr = free_port();
    let admin = free_port();
    let (config, token) = switch_config(dir, switch_addr, bank_addr, admin, durability);
    let mut switch = Command::new("taskset")
        .args(["-c", "1", BIN, "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switch");
    // `taskset` execs the switch: its pid is the switch's.
    let pid = switch.id();
    wait_listening(switch_addr);
    warm_up(switch_addr);
    process::until_quiet(pid);
    let (piped, cpu) = measured(switch_addr, pid, load.piped());
    let single = drive(switch_addr, load.single());
    let rates = RATES
        .iter()
        .map(|rate| {
            let before = switch_added(admin, &token);
            let run = drive(switch_addr, load.at_rate(*rate));
            (run, inside(&before, &switch_added(admin, &token)))
        })
        .collect();
    let sustained = (durability == "none" && load.sustain > 0).then(|| {
        // Closed loop: as fast as it goes (the index falls behind); then open
        // loop at half of what one core carries with the index's work
        // counted (sled grows slower as the index grows; 80% fell behind).
        let carried = 0.5 * 1e6 / cpu.total.max(1.0);
        let rate = load.sustain_rate.unwrap_or(carried as u64 / 1000 * 1000);
        let closed = sustain(pid, admin, &token, switch_addr, load.sustain, None);
        let open = sustain(pid, admin, &token, switch_addr, load.sustain, Some(rate));
        (closed, open)
    });
    let rss_mib = daemon::rss_mib(pid);
    let _ = switch.kill();
    let _ = switch.wait();
    SwitchRun {
        durability,
        piped,
        cpu,
        single,
        rates,
        sustained,
        rss_mib,
    }
}

/// A sustained run of `seconds`: closed loop 8 × 16, or open loop at
/// `rate`; the index lag on `/metrics` the moment it ends.
fn sustain(
    pid: u32,
    admin: SocketAddr,
    token: &str,
    switch_addr: SocketAddr,
    seconds: u64,
    rate: Option<u64>,
) -> Sustained {
    process::until_quiet(pid);
    let mode = match rate {
        Some(rate) => Mode::Open { rate, seconds },
        None => Mode::Closed {
            count: u64::MAX / 2,
            pipeline: PIPELINE,
            seconds: Some(seconds),
        },
    };
    let before = process::cpu_seconds(pid);
    let run = drive(switch_addr, mode);
    let body = daemon::scrape(admin, token).unwrap_or_default();
    let lag_records = process::metric(&body, "cardswitch_journal_index_lag_records");
    let lag_ms = process::metric(&body, "cardswitch_journal_index_lag_milliseconds");
    let quiet_after = process::until_quiet(pid);
    let total = (process::cpu_seconds(pid) - before) / run.ok.max(1) as f64 * 1e6;
    Sustained {
        run,
        cpu: Cpu {
            total,
            quiet_after,
            ..Cpu::default()
        },
        seconds,
        rate,
        lag_records,
        lag_ms,
    }
}

/// The p99 of two back-to-back `fdatasync`s (each after a 512-byte
/// append) of a file in `dir`, µs.
fn fdatasync_pair_p99(dir: &Path) -> u64 {
    let path = dir.join("fdatasync-probe");
    let Ok(mut file) = std::fs::File::create(&path) else {
        return 0;
    };
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let block = [0u8; 512];
    for _ in 0..FSYNC_PAIRS {
        let since = Instant::now();
        for _ in 0..2 {
            let _ = file.write_all(&block);
            let _ = file.sync_data();
        }
        let _ = h.record(since.elapsed().as_micros() as u64);
    }
    let _ = std::fs::remove_file(&path);
    h.value_at_quantile(0.99)
}

/// What the paths without a switch did.
struct Baseline {
    direct: Outcome,
    relay: Outcome,
    relay_cpu: Cpu,
    direct_single: Outcome,
    relay_single: Outcome,
    rates: Vec<(u64, Outcome, Outcome)>,
    fdatasync_pair_p99: u64,
}

fn run_benchmark() {
    let load = Load::from_env();
    let dir = std::env::temp_dir().join(format!("cardswitch-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let (mut bank, bank_addr) = start_bank();
    let (mut relay_child, relay_addr) = start_relay(bank_addr);
    warm_up(relay_addr);
    let direct = drive(bank_addr, load.piped());
    let (relay, relay_cpu) = measured(relay_addr, relay_child.id(), load.piped());
    let direct_single = drive(bank_addr, load.single());
    let relay_single = drive(relay_addr, load.single());

    // The switch twice, one after the other on the same core: journal
    // synced with fdatasync (the default), then not synced.
    let switches: Vec<SwitchRun> = ["fsync", "none"]
        .into_iter()
        .map(|durability| bench_switch(&dir, bank_addr, durability, load))
        .collect();

    let rates = RATES
        .iter()
        .map(|rate| {
            let mode = load.at_rate(*rate);
            (*rate, drive(bank_addr, mode), drive(relay_addr, mode))
        })
        .collect();
    let baseline = Baseline {
        direct,
        relay,
        relay_cpu,
        direct_single,
        relay_single,
        rates,
        fdatasync_pair_p99: fdatasync_pair_p99(&dir),
    };

    for child in [&mut relay_child, &mut bank] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);

    report::print(load, &baseline, &switches);
}

#[path = "common/e2e_report.rs"]
mod report;
