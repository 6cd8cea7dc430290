//! Reconnection storm: after a restart every terminal reconnects at once.
//! `STORM_CONNECTIONS` (default 10,000) connections are opened at once,
//! `STORM_PARALLEL` (default 256) under way at any moment, against the real `cardswitch serve` and, in the same run, against
//! two bare tokio accept loops — one on `TcpListener::bind` (tokio's
//! default accept queue), one on the switch's own `listener::bind` (its
//! accept queue, so the loops differ only in what they do per
//! connection); the time until the last one is accepted is reported (for
//! the switch: until its `cardswitch_terminal_connections` gauge, read from
//! the admin API, shows them all), with the slowest single connect — a
//! handshake the kernel dropped shows up as a connect of a second or more
//! (the SYN retry). A connection the client thinks open may never reach a
//! full accept queue at all (its final ACK dropped, a SYN cookie answered):
//! then the run reports how many were accepted after [`LIMIT`].
//!
//! Run: `cargo bench --bench storm`. The process needs about twice
//! `STORM_CONNECTIONS` open files (`ulimit -n`); everything is on loopback.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

#[path = "common/daemon.rs"]
mod daemon;

const BIN: &str = env!("CARGO_BIN_EXE_cardswitch");

/// How long a storm may take before the bench gives up on it.
const LIMIT: Duration = Duration::from_secs(10);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = std::env::var("STORM_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");

    let mut switch = Switch::start(dir.path(), count);
    let idle_rss = switch.rss_mib();
    let (switched, held_rss) = runtime.block_on(async {
        let result = storm_streams(switch.listen, count, || switch.accepted()).await;
        (result, switch.rss_mib())
    });
    switch.stop();
    let switched = switched.map(|(storm, _)| storm);
    let bare_default = runtime.block_on(bare_loop(count, false));
    let bare_sized = runtime.block_on(bare_loop(count, true));

    println!(
        "\n## Reconnection storm ({count} connections, {} under way at once, loopback)\n",
        parallel()
    );
    println!("| listener | all accepted after | slowest connect | connects over 1 s |");
    println!("|---|---:|---:|---:|");
    for (name, result) in [
        ("bare tokio accept loop, `TcpListener::bind`", &bare_default),
        (
            "bare tokio accept loop, the switch's `listener::bind`",
            &bare_sized,
        ),
        ("cardswitch serve", &switched),
    ] {
        match result {
            Ok(r) => println!(
                "| {name} | {:.3} s | {:.0} ms | {} |",
                r.accepted.as_secs_f64(),
                r.slowest.as_secs_f64() * 1000.0,
                r.retried
            ),
            Err(e) => println!("| {name} | failed: {e} | | |"),
        }
    }
    println!(
        "\nswitch resident memory: {} MiB started, {} MiB holding the {count} connections",
        idle_rss.map_or("?".into(), |m| m.to_string()),
        held_rss.map_or("?".into(), |m| m.to_string()),
    );
}

/// What one storm measured.
struct Storm {
    /// From the first connect until the listener held every connection.
    accepted: Duration,
    /// The slowest single connect.
    slowest: Duration,
    /// Connects that took over a second (a dropped handshake, retried).
    retried: usize,
}

/// A bare accept loop on a thread and runtime of its own (as the switch is
/// a process of its own), under the same storm: on tokio's
/// `TcpListener::bind`, or (`sized`) on the switch's `listener::bind`.
async fn bare_loop(count: usize, sized: bool) -> Result<Storm, String> {
    let any: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "address")?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let (bound, address) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = if sized {
                cardswitch::terminal::listener::bind(any, count)
            } else {
                TcpListener::bind(any).await
            };
            let listener = match listener {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = bound.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = bound.send(listener.local_addr().map_err(|e| e.to_string()));
            // Accepted and closed at once: the bench holds the clients' ends,
            // and both ends in one process would double its open files.
            let accept = async {
                while let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stopped => {}
            }
        });
    });
    let address = address.recv().map_err(|e| e.to_string())??;
    let result = storm(address, count, || Some(accepted.load(Ordering::Relaxed))).await;
    let _ = stop.send(());
    let _ = server.join();
    result
}

/// Opens `count` connections at once and waits until `accepted` says the
/// listener holds them all; the connections are closed afterwards.
async fn storm(
    address: SocketAddr,
    count: usize,
    accepted: impl Fn() -> Option<usize>,
) -> Result<Storm, String> {
    storm_streams(address, count, accepted)
        .await
        .map(|(storm, _)| storm)
}

/// The storm itself: the measurement, and the connections still open (so
/// that the switch's memory can be read while it holds them).
async fn storm_streams(
    address: SocketAddr,
    count: usize,
    accepted: impl Fn() -> Option<usize>,
) -> Result<(Storm, Vec<TcpStream>), String> {
    let started = Instant::now();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(parallel()));
    let connects: Vec<_> = (0..count)
        .map(|_| {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move {
                let _slot = in_flight.acquire_owned().await;
                let began = Instant::now();
                let stream = TcpStream::connect(address).await;
                (stream, began.elapsed())
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(count);
    let mut slowest = Duration::ZERO;
    let mut retried = 0;
    for connect in connects {
        let (stream, took) = connect.await.map_err(|e| e.to_string())?;
        streams.push(stream.map_err(|e| format!("connect: {e} (raise `ulimit -n`?)"))?);
        slowest = slowest.max(took);
        retried += usize::from(took > Duration::from_secs(1));
    }
    loop {
        if accepted().is_some_and(|n| n >= count) {
            break;
        }
        if started.elapsed() > LIMIT {
            return Err(format!(
                "{} of {count} accepted after {} s",
                accepted().unwrap_or(0),
                LIMIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((
        Storm {
            accepted: started.elapsed(),
            slowest,
            retried,
        },
        streams,
    ))
}

/// The real daemon, with a listener that takes every connection of the
/// storm and an admin API whose gauge says how many it holds.
struct Switch {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    token: String,
}

impl Switch {
    fn start(dir: &Path, count: usize) -> Switch {
        let listen = free_addr();
        let admin = free_addr();
        let (mut config, token) = daemon::head(BIN, dir, admin, "none");
        config.push_str(&format!(
            r#"[[listener]]
name = "pos"
address = "{listen}"
dialect = "iso87binary"
max_connections = {max}
[[destination]]
name = "bank"
address = "{bank}"
dialect = "iso87binary"
[[route]]
prefix = "476173"
destination = "bank"
"#,
            max = count + 16,
            bank = free_addr(),
        ));
        let path = dir.join("storm.toml");
        std::fs::write(&path, config).expect("write config");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cardswitch serve");
        let switch = Switch {
            child,
            listen,
            admin,
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while switch.accepted().is_none() {
            assert!(Instant::now() < deadline, "the switch did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        switch
    }

    /// The open connections of listener `pos`, from `/metrics`.
    fn accepted(&self) -> Option<usize> {
        let body = daemon::scrape(self.admin, &self.token)?;
        if !body.starts_with("HTTP/1.1 200") {
            return None;
        }
        let gauge = body.lines().find_map(|line| {
            line.strip_prefix("cardswitch_terminal_connections{listener=\"pos\"} ")
        });
        Some(gauge.and_then(|n| n.trim().parse().ok()).unwrap_or(0))
    }

    /// The daemon's resident memory, in MiB.
    fn rss_mib(&self) -> Option<u64> {
        daemon::rss_mib(self.child.id())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many connects are under way at any moment (`STORM_PARALLEL`, default
/// 256): terminals reconnecting "at once" still arrive spread over a few
/// milliseconds, and no accept loop keeps ahead of 10,000 handshakes the
/// kernel completes in the same instant once they exceed its accept queue
/// (`net.core.somaxconn`, 4,096 here).
fn parallel() -> usize {
    std::env::var("STORM_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        .max(1)
}

/// A loopback address nothing listens on (bound, then released).
fn free_addr() -> SocketAddr {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}
