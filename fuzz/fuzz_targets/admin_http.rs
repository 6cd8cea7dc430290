//! The admin API's request handling (`admin/mod.rs`): the real switch is
//! started once in this process (`server::start`, admin API on 127.0.0.1
//! with a viewer and an operator token, a simulated bank behind one
//! destination), and each input is sent as the raw bytes of one admin
//! connection: hyper's HTTP/1 parsing, the `Authorization` header, the
//! roles, the path routing, the query strings of `/v1/transactions`, the
//! link actions, `/v1/reload`, the audit log. The write side is closed after
//! the input and the answer read to the end. Never panic (a panic in any
//! thread aborts the fuzzer); the API still answers `/health/live` after
//! every input.
//!
//! Tokens for seeds: viewer `b` × 64, operator `a` × 64.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cardswitch::config::Config;
use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::sim::bank::BankSim;
use cardswitch::sim::rules::Rules;
use libfuzzer_sys::fuzz_target;

/// SHA-256 of 64 × `a` (operator) and 64 × `b` (viewer).
const TOKENS: &str = r#"[[token]]
name = "otto"
role = "operator"
sha256 = "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"

[[token]]
name = "vera"
role = "viewer"
sha256 = "a0fab1377f49a759b57f63318262ebe89fabfc990e8e93ceac2984561482b9d4"
"#;

struct Switch {
    admin: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn switch() -> &'static Switch {
    static S: OnceLock<Switch> = OnceLock::new();
    S.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = PathBuf::from(base).join(format!("cardswitch-fuzz-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();
        let key = dir.join("data.key");
        cardswitch::journal::generate_data_key(&key).unwrap();
        let admin = runtime.block_on(async {
            let bank = Arc::new(BankSim::new(
                Dialect::builtin("iso87binary").unwrap().unwrap(),
                FrameCodec::new(LengthPrefix::Binary2),
                Rules::default(),
            ))
            .start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
            .unwrap();
            let text = format!(
                r#"[journal]
dir = "{journal}"
data_key_file = "{key}"
durability = "none"
[switch]
acquirer_id = "4123456"
timeout_ms = 2000
[admin]
address = "127.0.0.1:0"
tokens_file = "tokens.toml"
audit_log = "audit.log"
[[listener]]
name = "pos"
address = "127.0.0.1:0"
dialect = "iso87ascii"
[[destination]]
name = "bank"
address = "{bank}"
dialect = "iso87binary"
links = 2
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
                journal = dir.join("journal").display(),
                key = key.display(),
                bank = bank.addr(),
            );
            let path = dir.join("cardswitch.toml");
            std::fs::write(&path, &text).unwrap();
            let config = Config::from_toml(&text, &path).expect("the fuzz config loads");
            let running = cardswitch::server::start(config)
                .await
                .expect("the switch starts");
            let admin = running.admin_address().expect("the admin API runs");
            // Both live as long as the process.
            std::mem::forget(running);
            std::mem::forget(bank);
            admin
        });
        Switch {
            admin,
            _runtime: runtime,
        }
    })
}

/// Sends `request` on a new connection and reads until the server closes
/// it; `close_write` closes our side after the request (for inputs, which
/// may leave a request unfinished).
fn exchange(admin: SocketAddr, request: &[u8], close_write: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(admin).expect("the admin API accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.set_nodelay(true);
    let _ = stream.write_all(request);
    if close_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

fuzz_target!(|data: &[u8]| {
    let s = switch();
    let answer = exchange(s.admin, data, true);
    // Whatever it answered starts as an HTTP/1 status line.
    if !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1."),
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(64)])
        );
    }
    let live = exchange(
        s.admin,
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        false,
    );
    assert!(
        live.starts_with(b"HTTP/1.1 200"),
        "health/live not answered after an input: {:?}",
        String::from_utf8_lossy(&live)
    );
});
