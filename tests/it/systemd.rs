//! The systemd units and the daemon's side of `Type=notify`: the unit
//! passes `systemd-analyze verify` and keeps a low exposure score, and the
//! real daemon reports READY=1, feeds the watchdog, and announces reloads
//! and its stop on $NOTIFY_SOCKET.

use crate::common::daemon::{Daemon, Destination, Listener};

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::FrameCodec;
use cardswitch::sim::{BankSim, Rules};
use tokio::net::{TcpListener, UnixDatagram};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/cardswitch.service");

/// Copies the named units of `systemd/` to `dir` with ExecStart pointing at
/// the binary under test (verify checks that the command exists).
fn units_under_test(dir: &Path, names: &[&str]) -> Vec<std::path::PathBuf> {
    names
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(format!("{}/systemd/{name}", env!("CARGO_MANIFEST_DIR")))
                    .unwrap()
                    .replace("/usr/bin/cardswitch", env!("CARGO_BIN_EXE_cardswitch"));
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Whether `systemd-analyze` can be run here (it says so when not).
fn systemd_analyze_present() -> bool {
    let present = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !present {
        println!("skipped: systemd-analyze is not installed (Debian package `systemd`)");
    }
    present
}

/// Runs `systemd-analyze verify` on `units` (it must say nothing) and
/// returns the offline exposure score of `units[0]`, a service.
fn verified_exposure(units: &[std::path::PathBuf]) -> f64 {
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let service = &units[0];
    let name = service.file_name().unwrap().to_string_lossy().to_string();
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(service)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    report
        .lines()
        .find_map(|l| l.split(&format!("{name}: ")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"))
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    if !systemd_analyze_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units_under_test(dir.path(), &["cardswitch.service"]);
    let score = verified_exposure(&units);
    assert!(score <= 1.2, "exposure {score}");

    let text = std::fs::read_to_string(UNIT).unwrap();
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=cardswitch",
        "StateDirectory=cardswitch",
        "LogsDirectory=cardswitch",
        "ConfigurationDirectory=cardswitch",
        "LoadCredential=cardswitch-master-key:",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "\nCapabilityBoundingSet=\n",
        "MemoryDenyWriteExecute=yes",
        "LimitNOFILE=",
        // A core dump would hold clear keys.
        "\nLimitCORE=0\n",
        "\nPrivateMounts=yes\n",
    ] {
        assert!(text.contains(directive), "missing {directive:?}");
    }
    let sysusers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/cardswitch.sysusers"
    ))
    .unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u cardswitch ")));
}

#[test]
fn the_clearing_service_and_timer_verify_and_are_hardened() {
    if !systemd_analyze_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units_under_test(
        dir.path(),
        &["cardswitch-clearing.service", "cardswitch-clearing.timer"],
    );
    let score = verified_exposure(&units);
    assert!(score <= 0.3, "exposure {score}");
    let (service, timer) = (&units[0], &units[1]);

    let text = std::fs::read_to_string(service).unwrap();
    for directive in [
        "Type=oneshot",
        "clearing run --config /etc/cardswitch/cardswitch.toml --date previous",
        "RestartPreventExitStatus=1 65",
        "User=cardswitch",
        "PrivateNetwork=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
        "\nLimitCORE=0\n",
        "\nPrivateMounts=yes\n",
    ] {
        assert!(text.contains(directive), "missing {directive:?}");
    }
    let timer_text = std::fs::read_to_string(timer).unwrap();
    assert!(timer_text.contains("OnCalendar=") && timer_text.contains("Persistent=true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_notifies_ready_watchdog_reload_and_stop() {
    let bank = Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::default(),
        Rules::default(),
    ))
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut daemon = Daemon::new(dir.path())
        .listener(Listener::new("pos", "iso87ascii"))
        .destination(Destination::new("bank", bank.addr(), "iso87binary"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .spawn();
    let mut buf = vec![0u8; 4096];
    let mut next = async || -> String {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
            .await
            .expect("a notification")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next().await;
    assert_eq!(first.trim(), "READY=1", "ready first, once the link is up");
    assert!(
        bank.stats().snapshot().network >= 1,
        "signed on before READY"
    );
    let since = Instant::now();
    let mut feeds = 0;
    while feeds < 3 {
        if next().await.trim() == "WATCHDOG=1" {
            feeds += 1;
        }
    }
    assert!(since.elapsed() < Duration::from_secs(2), "fed every 100 ms");

    let signal = |s: &str| daemon.signal(s);
    signal("-HUP");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.trim() == "READY=1") {
        let m = next().await;
        if m.trim() != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert!(
        seen[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{seen:?}"
    );
    signal("-TERM");
    loop {
        if next().await.trim() == "STOPPING=1" {
            break;
        }
    }
    let status = daemon.wait().await;
    assert!(status.success());
    bank.stop().await;
}
