//! The admin API of the real `cardswitch serve` process, over HTTP on
//! 127.0.0.1: token roles (401/403), the audit log, metrics that move with
//! traffic, links taken out of rotation steering traffic to the fallback,
//! transaction look-ups with masked PANs, and `cardswitch ctl`; and what a
//! hostile client can and cannot do: floods of unauthenticated requests are
//! counted and summarised, not written each (#16.16); idle and half-sent
//! connections do not block health (#16.17); MTIs and codes from the wire
//! do not create metric series (#16.18); the bearer scheme is
//! case-insensitive (#16.19).

mod api;
mod hostile;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::common;
use crate::common::http::{request as http, with_headers as http_with};
use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::{BankHandle, BankSim};
use cardswitch::sim::rules::Rules;
use tokio::net::TcpListener;

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

/// A bank simulator (iso87binary) answering by `rules`.
async fn bank_with(rules: Rules) -> BankHandle {
    Arc::new(BankSim::new(
        Dialect::builtin("iso87binary").unwrap().unwrap(),
        FrameCodec::new(LengthPrefix::Binary2),
        rules,
    ))
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap()
}

async fn bank() -> BankHandle {
    bank_with(Rules::default()).await
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
