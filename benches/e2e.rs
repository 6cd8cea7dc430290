//! End-to-end benchmark: terminals → switch → simulated bank → back, against
//! a bare TCP relay with the same framing that forwards frames without
//! parsing them (the physical limit of two TCP hops), and against the bank
//! directly.
//!
//! Run: `cargo bench --bench e2e` (needs `taskset`, from util-linux).
//!
//! The load generator and the bank simulator are pinned to CPU 0, the switch
//! or the relay to CPU 1, so that what is compared is one core's worth of
//! switch against one core's worth of relay in the same run. CPU time per
//! transaction is read from `/proc/PID/stat` of the switch or relay process.
//!
//! The switch runs twice: with `durability = "fsync"` (the default) and with
//! `durability = "none"`, to show what syncing the journal costs.
//!
//! Latency added by the switch is shown two ways for the fixed-rate runs:
//! from outside (the terminals' p99 less the direct path's p99, which also
//! carries the extra hop and the wake-up of the switch's CPU) and from
//! inside (the switch's own `switch_added_duration_seconds` histogram, read
//! from its admin API before and after the run: each request's time in the
//! switch less the time from handing it to a bank link to the answer's frame
//! being read from it, journal syncs included).
//!
//! Environment: `E2E_COUNT` (transactions of the throughput runs, default
//! 200000), `E2E_SECONDS` (length of the fixed-rate runs, default 5).
//!
//! `benches/e2e.rs relay LISTEN UPSTREAM` runs the relay itself (the
//! benchmark starts it that way).

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

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");
const CONNECTIONS: usize = 8;
const PIPELINE: usize = 16;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("relay") {
        let (Some(listen), Some(upstream)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: e2e relay LISTEN UPSTREAM");
            std::process::exit(2);
        };
        relay(
            listen.parse().expect("LISTEN address"),
            upstream.parse().expect("UPSTREAM address"),
        );
        return;
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` and test discovery: nothing to list.
        return;
    }
    run_benchmark();
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
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

#[derive(Debug, Clone, Default)]
struct Run {
    throughput: f64,
    p50: u64,
    p99: u64,
    max: u64,
    ok: bool,
    count: u64,
}

fn pos(target: SocketAddr, extra: &[String]) -> Run {
    let mut args: Vec<String> = [
        "sim",
        "pos",
        "--connect",
        &target.to_string(),
        "--dialect",
        "iso87binary",
        "--framing",
        "binary2",
        "--connections",
        &CONNECTIONS.to_string(),
        "--pipeline",
        &PIPELINE.to_string(),
        "--bins",
        "476173",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend_from_slice(extra);
    let out = Command::new("taskset")
        .args(["-c", "0", BIN])
        .args(&args)
        .output()
        .expect("run sim pos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    let lat = |k: &str| v["latency"][k].as_u64().unwrap_or_default();
    Run {
        throughput: v["throughput"].as_f64().unwrap_or_default(),
        p50: lat("p50_us"),
        p99: lat("p99_us"),
        max: lat("max_us"),
        ok: out.status.success(),
        count: v["ok"].as_u64().unwrap_or_default(),
    }
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
    text.push_str(&format!(
        r#"[[listener]]
name = "pos"
address = "{listen}"
dialect = "iso87binary"
framing = "binary2"
[[destination]]
name = "bank"
address = "{bank}"
dialect = "iso87binary"
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

/// How much load the runs put on: `E2E_COUNT` transactions per throughput
/// run, `E2E_SECONDS` per fixed-rate run.
#[derive(Debug, Clone, Copy)]
struct Load {
    count: u64,
    seconds: u64,
}

impl Load {
    fn from_env() -> Load {
        let count: u64 = std::env::var("E2E_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let seconds: u64 = std::env::var("E2E_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        Load { count, seconds }
    }

    /// A throughput run against `addr`, with the CPU time (µs per
    /// transaction) of process `pid` when given.
    fn throughput(&self, addr: SocketAddr, pid: Option<u32>) -> (Run, Option<f64>) {
        let before = pid.map(cpu_seconds).unwrap_or_default();
        let run = pos(addr, &["--count".into(), self.count.to_string()]);
        let cpu = pid.map(|p| (cpu_seconds(p) - before) / run.count.max(1) as f64 * 1e6);
        (run, cpu)
    }

    /// A fixed-rate run against `addr`.
    fn at_rate(&self, addr: SocketAddr, rate: u64) -> Run {
        pos(
            addr,
            &[
                "--rate".into(),
                rate.to_string(),
                "--duration".into(),
                self.seconds.to_string(),
                "--count".into(),
                "100000000".into(),
            ],
        )
    }
}

/// The rates of the fixed-rate runs, in transactions per second.
const RATES: [u64; 2] = [5_000, 20_000];

/// One switch's results: its throughput run (with CPU µs per
/// transaction) and, per rate of [`RATES`], the fixed-rate run and what the
/// switch measured inside itself.
struct SwitchRun {
    durability: &'static str,
    run: Run,
    cpu: Option<f64>,
    rates: Vec<(Run, Inside)>,
    /// Resident memory after the throughput and fixed-rate runs, MiB.
    rss_mib: Option<u64>,
}

/// The bank simulator, on CPU 0, once it listens.
fn start_bank() -> (Child, SocketAddr) {
    let bank_addr = free_port();
    let bank = pinned(
        "0",
        Path::new(BIN),
        &[
            "sim",
            "bank",
            "--listen",
            &bank_addr.to_string(),
            "--dialect",
            "iso87binary",
            "--framing",
            "binary2",
        ],
    );
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

/// Starts a switch on CPU 1 with the given journal durability, warms it
/// up, runs the throughput run and the fixed-rate runs against it, then
/// stops it.
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
    wait_listening(switch_addr);
    // Warm up (and wait for the bank links to sign on).
    let since = Instant::now();
    while !pos(switch_addr, &["--count".into(), "200".into()]).ok {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "switch never served"
        );
    }
    let (run, cpu) = load.throughput(switch_addr, Some(switch.id()));
    let rates: Vec<(Run, Inside)> = RATES
        .iter()
        .map(|rate| {
            let before = switch_added(admin, &token);
            let run = load.at_rate(switch_addr, *rate);
            (run, inside(&before, &switch_added(admin, &token)))
        })
        .collect();
    // `taskset` execs the switch: its pid is the switch's.
    let rss_mib = daemon::rss_mib(switch.id());
    let _ = switch.kill();
    let _ = switch.wait();
    SwitchRun {
        durability,
        run,
        cpu,
        rates,
        rss_mib,
    }
}

fn run_benchmark() {
    let load = Load::from_env();
    let dir = std::env::temp_dir().join(format!("cardswitch-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let (mut bank, bank_addr) = start_bank();
    let (mut relay_child, relay_addr) = start_relay(bank_addr);

    pos(relay_addr, &["--count".into(), "200".into()]);
    let (direct, _) = load.throughput(bank_addr, None);
    let (relayed, relay_cpu) = load.throughput(relay_addr, Some(relay_child.id()));

    // The switch twice, one after the other on the same core: journal
    // synced with fdatasync (the default), then not synced.
    let switches: Vec<SwitchRun> = ["fsync", "none"]
        .into_iter()
        .map(|durability| bench_switch(&dir, bank_addr, durability, load))
        .collect();

    let rates: Vec<(u64, Run, Run)> = RATES
        .iter()
        .map(|rate| {
            (
                *rate,
                load.at_rate(bank_addr, *rate),
                load.at_rate(relay_addr, *rate),
            )
        })
        .collect();

    for child in [&mut relay_child, &mut bank] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);

    print_throughput(load.count, &direct, &relayed, relay_cpu, &switches);
    print_latency(&rates, &switches);
}

/// The throughput table: direct, relay and each switch.
fn print_throughput(
    count: u64,
    direct: &Run,
    relayed: &Run,
    relay_cpu: Option<f64>,
    switches: &[SwitchRun],
) {
    println!(
        "\n## End-to-end ({CONNECTIONS} connections × {PIPELINE} in flight, {count} transactions; pos+bank on CPU 0, switch/relay on CPU 1)\n"
    );
    println!(
        "| path | throughput (tx/s) | p50 µs | p99 µs | max µs | CPU µs/tx | all checked out |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let row = |name: &str, r: &Run, cpu: Option<f64>| {
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} |",
            r.throughput,
            r.p50,
            r.p99,
            r.max,
            cpu.map(|c| format!("{c:.2}")).unwrap_or_default(),
            r.ok
        );
    };
    row("pos → bank (direct)", direct, None);
    row("pos → relay → bank", relayed, relay_cpu);
    for s in switches {
        row(
            &format!("pos → switch → bank, journal {}", s.durability),
            &s.run,
            s.cpu,
        );
    }
    if let [synced, unsynced] = switches {
        println!(
            "\nswitch (fsync) / relay: {:.0}%; switch fsync / switch none: {:.0}%\n",
            100.0 * synced.run.throughput / relayed.throughput.max(1.0),
            100.0 * synced.run.throughput / unsynced.run.throughput.max(1.0)
        );
    }
}

/// The fixed-rate table: per rate, direct, relay and each switch, with
/// the latency each adds over the direct path.
fn print_latency(rates: &[(u64, Run, Run)], switches: &[SwitchRun]) {
    println!(
        "| rate | path | p50 µs | p99 µs | max µs | added p99 µs (vs direct) | inside the switch: ≤ 5 ms | inside: p99 ≤ |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (i, (rate, d, r)) in rates.iter().enumerate() {
        println!(
            "| {rate}/s | direct | {} | {} | {} | | | |",
            d.p50, d.p99, d.max
        );
        println!(
            "| {rate}/s | relay | {} | {} | {} | {} | | |",
            r.p50,
            r.p99,
            r.max,
            r.p99.saturating_sub(d.p99)
        );
        for switch in switches {
            if let Some((s, inner)) = switch.rates.get(i) {
                println!(
                    "| {rate}/s | switch, journal {} | {} | {} | {} | {} | {:.2}% | {} ms |",
                    switch.durability,
                    s.p50,
                    s.p99,
                    s.max,
                    s.p99.saturating_sub(d.p99),
                    100.0 * inner.within_5ms,
                    inner.p99_bound_ms
                );
            }
        }
    }
    for switch in switches {
        println!(
            "\nswitch, journal {}: resident memory after its runs {} MiB",
            switch.durability,
            switch.rss_mib.map_or("?".into(), |m| m.to_string())
        );
    }
}
