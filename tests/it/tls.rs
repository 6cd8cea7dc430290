//! TLS end to end over 127.0.0.1, with certificates made by rcgen at test
//! time: a TLS terminal (client certificate required) → the switch →
//! a bank simulator that requires the switch's client certificate (mutual
//! TLS). An untrusted client certificate and a plaintext client are refused
//! without harming the sessions already open, and a reload picks up a new
//! listener certificate while established sessions carry on. The admin API
//! over TLS, driven by `cardswitch ctl --ca`.

mod endpoints;

use crate::common::ca::Ca;
use crate::common::daemon::{Daemon, Destination, Listener, Terminal};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cardswitch::iso8583::framing::{Frame, FrameCodec};
use cardswitch::iso8583::{Dialect, Message, Mti};
use cardswitch::security::tls::{ClientTlsFiles, ServerTlsFiles, TlsAcceptor, TlsConnector};
use cardswitch::sim::{BankSim, Rules};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// Financial approvals at the bank (its sign-on and echoes excluded).
fn approvals(bank: &cardswitch::sim::BankHandle) -> u64 {
    let s = bank.stats().snapshot();
    s.approved - s.network
}

fn ascii() -> Arc<Dialect> {
    Dialect::builtin("iso87ascii").unwrap().unwrap()
}

fn purchase(stan: u32) -> Message {
    let mut m = Message::new(Mti::parse("0200").unwrap());
    m.set(2, "4761739001010119")
        .set(3, "000000")
        .set(4, "000000001000")
        .set(7, "1126120000")
        .set(11, format!("{stan:06}"))
        .set(41, "TERM0001")
        .set(49, "978");
    m
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Framed<S, FrameCodec>,
    stan: u32,
) -> Option<String> {
    conn.send(Frame {
        header: Bytes::new(),
        message: purchase(stan).to_bytes(&ascii()).unwrap(),
    })
    .await
    .ok()?;
    let frame = tokio::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .ok()??
        .ok()?;
    Message::decode(&ascii(), frame.message)
        .ok()?
        .response_code()
        .map(String::from)
}

/// A terminal's TLS connection: `cert` is `(cert, key)` of its client
/// certificate.
async fn terminal(
    addr: std::net::SocketAddr,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
) -> std::io::Result<Framed<tokio_rustls::client::TlsStream<TcpStream>, FrameCodec>> {
    let connector = TlsConnector::load(ClientTlsFiles {
        ca: ca.to_path_buf(),
        server_name: "localhost".into(),
        cert: cert.map(|c| c.0.to_path_buf()),
        key: cert.map(|c| c.1.to_path_buf()),
    })
    .unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector
        .connector()
        .connect(connector.server_name(), tcp)
        .await?;
    Ok(Framed::new(tls, FrameCodec::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminal_to_switch_to_mutual_tls_bank() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (switch_ca, terminal_ca, bank_ca, links_ca) = (
        Ca::new("switch CA"),
        Ca::new("terminal CA"),
        Ca::new("bank CA"),
        Ca::new("switch links CA"),
    );
    let (listener_cert, listener_key, listener_ca) = switch_ca.issue(d, "listener", true);
    let (term_cert, term_key, term_ca) = terminal_ca.issue(d, "term", false);
    let (bank_cert, bank_key, bank_ca_file) = bank_ca.issue(d, "bank", true);
    let (link_cert, link_key, link_ca) = links_ca.issue(d, "link", false);

    // The bank requires the switch's client certificate.
    let bank = Arc::new(
        BankSim::new(
            Dialect::builtin("iso87binary").unwrap().unwrap(),
            FrameCodec::default(),
            Rules::default(),
        )
        .with_tls(Arc::new(
            TlsAcceptor::load(ServerTlsFiles {
                cert: bank_cert,
                key: bank_key,
                client_ca: Some(link_ca),
            })
            .unwrap(),
        )),
    )
    .start(TcpListener::bind("127.0.0.1:0").await.unwrap())
    .unwrap();

    let running = Daemon::new(d)
        .listener(Listener::new("pos", "iso87ascii").tls(
            &listener_cert,
            &listener_key,
            Some(&term_ca),
        ))
        .destination(Destination::new("bank", bank.addr(), "iso87binary").tls(
            &bank_ca_file,
            "localhost",
            Some((&link_cert, &link_key)),
        ))
        .route("476173", "bank")
        .terminal(Terminal::new("TERM0001", "M1"))
        // Waits for the mutual TLS link to the bank.
        .start_in_process()
        .await;
    let addr = running.address("pos").unwrap();

    let mut good = terminal(addr, &listener_ca, Some((&term_cert, &term_key)))
        .await
        .unwrap();
    assert_eq!(exchange(&mut good, 1).await.as_deref(), Some("00"));
    assert_eq!(approvals(&bank), 1);

    // A client certificate from another CA: refused. With TLS 1.3 the
    // client may finish its side first; it never gets an answer.
    let rogue_ca = Ca::new("rogue CA");
    let (rogue_cert, rogue_key, _) = rogue_ca.issue(d, "rogue", false);
    if let Ok(mut rogue) = terminal(addr, &listener_ca, Some((&rogue_cert, &rogue_key))).await {
        assert_eq!(exchange(&mut rogue, 2).await, None);
    }
    // No client certificate at all: refused the same way.
    if let Ok(mut anonymous) = terminal(addr, &listener_ca, None).await {
        assert_eq!(exchange(&mut anonymous, 3).await, None);
    }
    // Plaintext ISO 8583 on the TLS port: the connection is closed.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let frame = purchase(4).to_bytes(&ascii()).unwrap();
    let mut bytes = (frame.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    plain.write_all(&bytes).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut buf))
        .await
        .expect("closed, not left hanging");
    assert!(
        matches!(read, Ok(0) | Err(_)) || buf[0] == 0x15,
        "no ISO answer"
    );
    // The session opened first is unharmed.
    assert_eq!(exchange(&mut good, 5).await.as_deref(), Some("00"));
    let stats = running.listener_stats("pos").unwrap();
    let since = Instant::now();
    while stats.tls_failures.load(Ordering::Relaxed) < 3 {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "3 failed handshakes counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(approvals(&bank), 2);

    // Certificate rotation: the listener gets a certificate from a new CA;
    // after the reload new terminals must trust the new CA, and the
    // session opened before the reload carries on.
    let new_ca = Ca::new("switch CA 2");
    let (new_cert, new_key, new_ca_file) = new_ca.issue(d, "listener-new", true);
    std::fs::copy(&new_cert, &listener_cert).unwrap();
    std::fs::copy(&new_key, &listener_key).unwrap();
    running.reload().unwrap();
    let mut fresh = terminal(addr, &new_ca_file, Some((&term_cert, &term_key)))
        .await
        .unwrap();
    assert_eq!(exchange(&mut fresh, 6).await.as_deref(), Some("00"));
    assert!(
        terminal(addr, &listener_ca, Some((&term_cert, &term_key)))
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    assert_eq!(exchange(&mut good, 7).await.as_deref(), Some("00"));

    running.shutdown().await;
    bank.stop().await;
}

/// The admin API over TLS, as `cardswitch ctl` uses it with the CA file;
/// the token comes from `$CARDSWITCH_TOKEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_tls_with_ctl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("admin CA");
    let (cert, key, ca_file) = ca.issue(d, "admin", true);
    let tokens = d.join("tokens.toml");
    let token =
        cardswitch::admin::auth::add(&tokens, "otto", cardswitch::admin::auth::Role::Operator)
            .unwrap();
    let running = Daemon::new(d)
        .admin_tls(&cert, &key)
        .listener(Listener::new("pos", "iso87ascii"))
        .start_in_process()
        .await;
    let port = running.admin_address().unwrap().port();
    let ctl = move |url: String, args: &'static [&'static str]| {
        let ca_file = ca_file.clone();
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_cardswitch"))
                .args(["ctl", "--url", &url, "--ca"])
                .arg(&ca_file)
                .args(args)
                .env("CARDSWITCH_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let out = ctl(format!("https://localhost:{port}"), &["reload"])
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"reloaded\": true"));
    // Plain HTTP to the TLS port gets no answer.
    let out = ctl(format!("http://127.0.0.1:{port}"), &["reload"])
        .await
        .unwrap();
    assert!(!out.status.success());
    let audit = std::fs::read_to_string(d.join("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(audit.contains("\"who\":\"otto\""));
    running.shutdown().await;
}
