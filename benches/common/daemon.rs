//! The switch process as the end-to-end benches see it: a viewer token made
//! with the real binary, one scrape of its admin API's `/metrics`, and its
//! resident memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Adds a viewer token named `bench` to the token file `tokens` with
/// `cardswitch tokens add` (the binary `bin`) and returns the token.
fn viewer_token(bin: &str, tokens: &Path) -> String {
    let made = Command::new(bin)
        .arg("tokens")
        .arg("--file")
        .arg(tokens)
        .args(["add", "bench", "--role", "viewer"])
        .output()
        .expect("cardswitch tokens add");
    String::from_utf8_lossy(&made.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The body of one `GET /metrics` (with its status line and headers), or
/// `None` when the admin API does not answer.
pub fn scrape(admin: SocketAddr, token: &str) -> Option<String> {
    let mut stream = TcpStream::connect(admin).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The resident memory (`VmRSS`) of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// The head of a bench switch's config, with its files made in `dir`: the
/// journal (a new data key, `durability`), the acquirer, and an admin API on
/// `admin` with a new viewer token, which is returned beside the text.
pub fn head(bin: &str, dir: &Path, admin: SocketAddr, durability: &str) -> (String, String) {
    let key = dir.join("data.key");
    cardswitch::journal::generate_data_key(&key).expect("data key");
    let tokens = dir.join("tokens.toml");
    let token = viewer_token(bin, &tokens);
    let text = format!(
        r#"[journal]
dir = "{journal}"
data_key_file = "{key}"
durability = "{durability}"
[switch]
acquirer_id = "4123456"
[admin]
address = "{admin}"
tokens_file = "{tokens}"
audit_log = "{audit}"
"#,
        journal = dir.join("journal").display(),
        key = key.display(),
        tokens = tokens.display(),
        audit = dir.join("audit.log").display(),
    );
    (text, token)
}
