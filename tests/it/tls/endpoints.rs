//! The TLS acceptor and connector of the security crate over real
//! sockets, with certificates from the test CA: handshakes, mutual TLS,
//! refusals, reloads, and load errors that name the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cardswitch::security::tls::{
    ClientTlsFiles, ServerTlsFiles, TlsAcceptor, TlsConnector, TlsError,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::common::ca::{self, Ca};

const WAIT: Duration = Duration::from_secs(10);

/// Writes a test file readable by its owner only (private keys must be).
fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    cardswitch::files::write_private_atomically(&path, contents.as_bytes()).unwrap();
    path
}

/// Writes a CA file and a server leaf; returns the listener's files and
/// the CA file.
fn server_files(dir: &Path, ca: &Ca) -> (ServerTlsFiles, PathBuf) {
    let (cert, key) = ca.leaf("localhost", true);
    let files = ServerTlsFiles {
        cert: write(dir, "server.crt", &cert),
        key: write(dir, "server.key", &key),
        client_ca: None,
    };
    (files, write(dir, "ca.crt", ca.pem()))
}

fn client_files(ca: &Path) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: ca.to_path_buf(),
        server_name: "localhost".to_owned(),
        cert: None,
        key: None,
    }
}

/// Serves TLS echo on a local port; reports each handshake's outcome.
async fn serve(
    acceptor: Arc<TlsAcceptor>,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<Result<(), String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = acceptor.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tls.accept(tcp).await {
                    Ok(mut stream) => {
                        let _ = tx.send(Ok(()));
                        let mut buf = [0u8; 1024];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                    let _ = stream.flush().await;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<ClientStream> {
    let tcp = TcpStream::connect(addr).await?;
    timeout(
        WAIT,
        connector.connector().connect(connector.server_name(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Sends `msg` and reads the echo.
async fn echo(stream: &mut ClientStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(msg).await?;
    stream.flush().await?;
    let mut buf = vec![0u8; msg.len()];
    timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("echo timed out"))??;
    Ok(buf)
}

async fn next_outcome(rx: &mut mpsc::UnboundedReceiver<Result<(), String>>) -> Result<(), String> {
    timeout(WAIT, rx.recv())
        .await
        .expect("server outcome timed out")
        .expect("server stopped")
}

#[tokio::test]
async fn handshake_and_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let (files, ca_file) = server_files(dir.path(), &ca);
    let acceptor = Arc::new(TlsAcceptor::load(files).unwrap());
    let (addr, mut rx) = serve(acceptor).await;

    let connector = TlsConnector::load(client_files(&ca_file)).unwrap();
    let mut stream = connect(&connector, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(
        echo(&mut stream, b"0200 hello").await.unwrap(),
        b"0200 hello"
    );
    assert_eq!(echo(&mut stream, b"again").await.unwrap(), b"again");
}

#[tokio::test]
async fn mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let (mut files, ca_file) = server_files(dir.path(), &server_ca);
    files.client_ca = Some(write(dir.path(), "client-ca.crt", client_ca.pem()));
    let acceptor = Arc::new(TlsAcceptor::load(files).unwrap());
    let (addr, mut rx) = serve(acceptor).await;

    // A client certificate signed by the client CA is accepted.
    let (cert, key) = client_ca.leaf("terminal-1", false);
    let good = TlsConnector::load(ClientTlsFiles {
        cert: Some(write(dir.path(), "good.crt", &cert)),
        key: Some(write(dir.path(), "good.key", &key)),
        ..client_files(&ca_file)
    })
    .unwrap();
    let mut stream = connect(&good, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut stream, b"mtls").await.unwrap(), b"mtls");

    // A self-signed client certificate is refused.
    let (cert, key) = ca::self_signed_client("rogue");
    let rogue = TlsConnector::load(ClientTlsFiles {
        cert: Some(write(dir.path(), "rogue.crt", &cert)),
        key: Some(write(dir.path(), "rogue.key", &key)),
        ..client_files(&ca_file)
    })
    .unwrap();
    let client = connect(&rogue, addr).await;
    let err = next_outcome(&mut rx).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    // With TLS 1.3 the client may finish its side first; either way it
    // cannot exchange data.
    if let Ok(mut stream) = client {
        assert!(echo(&mut stream, b"x").await.is_err());
    }

    // A certificate from another CA (the server's) is refused too.
    let (cert, key) = server_ca.leaf("wrong-ca", false);
    let wrong = TlsConnector::load(ClientTlsFiles {
        cert: Some(write(dir.path(), "wrong.crt", &cert)),
        key: Some(write(dir.path(), "wrong.key", &key)),
        ..client_files(&ca_file)
    })
    .unwrap();
    let client = connect(&wrong, addr).await;
    assert!(next_outcome(&mut rx).await.is_err());
    if let Ok(mut stream) = client {
        assert!(echo(&mut stream, b"x").await.is_err());
    }

    // No client certificate at all is refused.
    let anonymous = TlsConnector::load(client_files(&ca_file)).unwrap();
    let client = connect(&anonymous, addr).await;
    let err = next_outcome(&mut rx).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    if let Ok(mut stream) = client {
        assert!(echo(&mut stream, b"x").await.is_err());
    }

    // The authorised client still works.
    let mut stream = connect(&good, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut stream, b"still").await.unwrap(), b"still");
}

#[tokio::test]
async fn plaintext_client_is_refused_and_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let (files, ca_file) = server_files(dir.path(), &ca);
    let acceptor = Arc::new(TlsAcceptor::load(files).unwrap());
    let (addr, mut rx) = serve(acceptor).await;

    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"0200\x72\x3a\x44\x81 plaintext ISO 8583\r\n")
        .await
        .unwrap();
    let err = next_outcome(&mut rx).await.unwrap_err();
    assert!(!err.is_empty());
    // The server closes the plaintext connection (possibly after an alert).
    let mut sink = Vec::new();
    let _ = timeout(WAIT, plain.read_to_end(&mut sink)).await.unwrap();

    let connector = TlsConnector::load(client_files(&ca_file)).unwrap();
    let mut stream = connect(&connector, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut stream, b"after").await.unwrap(), b"after");
}

#[tokio::test]
async fn reload_rotates_certificates_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old ca");
    let (files, old_ca_file) = server_files(dir.path(), &old_ca);
    let acceptor = Arc::new(TlsAcceptor::load(files.clone()).unwrap());
    let (addr, mut rx) = serve(acceptor.clone()).await;

    let old_client = TlsConnector::load(client_files(&old_ca_file)).unwrap();
    let mut established = connect(&old_client, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut established, b"before").await.unwrap(), b"before");

    // Rotate to a certificate from a new CA.
    let new_ca = Ca::new("new ca");
    let (cert, key) = new_ca.leaf("localhost", true);
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    acceptor.reload().unwrap();

    // New handshakes present the new certificate: a client trusting only
    // the old CA now fails, one trusting the new CA succeeds.
    let refused = connect(&old_client, addr).await;
    assert!(refused.is_err());
    assert!(next_outcome(&mut rx).await.is_err());

    let new_ca_file = write(dir.path(), "new-ca.crt", new_ca.pem());
    let new_client = TlsConnector::load(client_files(&new_ca_file)).unwrap();
    let mut fresh = connect(&new_client, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut fresh, b"new").await.unwrap(), b"new");

    // The connection made before the reload still works.
    assert_eq!(echo(&mut established, b"after").await.unwrap(), b"after");

    // The connector reloads its CA file too.
    std::fs::write(&old_ca_file, new_ca.pem()).unwrap();
    old_client.reload().unwrap();
    let mut stream = connect(&old_client, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut stream, b"ok").await.unwrap(), b"ok");

    // A broken key file: reload fails naming it, the config stays.
    std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nnot base64!\n").unwrap();
    let err = acceptor.reload().unwrap_err().to_string();
    assert!(err.contains(&files.key.display().to_string()), "{err}");
    assert!(!err.contains("not base64"), "{err}");
    let mut stream = connect(&new_client, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut stream, b"kept").await.unwrap(), b"kept");

    // A broken CA file: the connector keeps its config too.
    std::fs::write(&old_ca_file, "garbage").unwrap();
    let err = old_client.reload().unwrap_err().to_string();
    assert!(err.contains(&old_ca_file.display().to_string()), "{err}");
    let mut stream = connect(&old_client, addr).await.unwrap();
    assert_eq!(next_outcome(&mut rx).await, Ok(()));
    assert_eq!(echo(&mut stream, b"kept").await.unwrap(), b"kept");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let (files, ca_file) = server_files(dir.path(), &ca);
    let not_pem = write(dir.path(), "notes.txt", "this is not a certificate\n");

    // A private key others may read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let open_key = dir.path().join("open.key");
        std::fs::copy(&files.key, &open_key).unwrap();
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TlsAcceptor::load(ServerTlsFiles {
            key: open_key,
            ..files.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("open.key") && err.contains("chmod 600"),
            "{err}"
        );
    }

    // Missing certificate file.
    let missing = dir.path().join("missing.crt");
    let err = TlsAcceptor::load(ServerTlsFiles {
        cert: missing.clone(),
        ..files.clone()
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    // Certificate file without a certificate.
    let err = TlsAcceptor::load(ServerTlsFiles {
        cert: not_pem.clone(),
        ..files.clone()
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&not_pem.display().to_string()) && msg.contains("no certificate"),
        "{msg}"
    );

    // Key file without a key (a certificate in its place).
    let err = TlsAcceptor::load(ServerTlsFiles {
        key: files.cert.clone(),
        ..files.clone()
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&files.cert.display().to_string()) && msg.contains("no private key"),
        "{msg}"
    );

    // Key not matching the certificate.
    let (_, other_key) = ca.leaf("localhost", true);
    let other_key = write(dir.path(), "other.key", &other_key);
    let err = TlsAcceptor::load(ServerTlsFiles {
        key: other_key.clone(),
        ..files.clone()
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::CertifiedKey { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&other_key.display().to_string()),
        "{err}"
    );

    // Client CA file without a certificate.
    let err = TlsAcceptor::load(ServerTlsFiles {
        client_ca: Some(not_pem.clone()),
        ..files.clone()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains(&not_pem.display().to_string()),
        "{err}"
    );

    // Connector: missing CA file, CA file without certificates.
    let err = TlsConnector::load(client_files(&missing)).unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    let err = TlsConnector::load(client_files(&not_pem)).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");

    // Connector: client key file without a key.
    let (cert, _) = ca.leaf("t", false);
    let cert = write(dir.path(), "client.crt", &cert);
    let err = TlsConnector::load(ClientTlsFiles {
        cert: Some(cert.clone()),
        key: Some(not_pem.clone()),
        ..client_files(&ca_file)
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&not_pem.display().to_string()),
        "{err}"
    );

    // Connector: certificate without key.
    let err = TlsConnector::load(ClientTlsFiles {
        cert: Some(cert.clone()),
        ..client_files(&ca_file)
    })
    .unwrap_err();
    assert!(
        matches!(err, TlsError::IncompleteClientCert { .. }),
        "{err:?}"
    );

    // Connector: invalid server name.
    let err = TlsConnector::load(ClientTlsFiles {
        server_name: "not a host name!".to_owned(),
        ..client_files(&ca_file)
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::ServerName { .. }), "{err:?}");
    assert!(err.to_string().contains("not a host name!"), "{err}");

    // IP addresses are valid server names.
    let ip = TlsConnector::load(ClientTlsFiles {
        server_name: "127.0.0.1".to_owned(),
        ..client_files(&ca_file)
    })
    .unwrap();
    assert!(matches!(ip.server_name(), ServerName::IpAddress(_)));
}
