//! `cardswitch ctl …`: the operator's command line over the admin API.
//!
//! The token comes from `--token-file` or `$CARDSWITCH_TOKEN`, never from
//! the command line (where `ps` would show it). Exit status: 0 when the API
//! said yes, 1 when it said no (the answer is printed; for `reload`, also
//! when a part of the reload kept its old version), 2 when it could not be
//! reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Arguments of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The admin API: `http://HOST:PORT` or `https://HOST:PORT`.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9180")]
    url: String,
    /// File holding the bearer token (else `$CARDSWITCH_TOKEN`).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an `https` URL.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Readiness and destinations at a glance.
    Status,
    /// Every link: up or down, in rotation or not.
    Links,
    /// Take a link out of rotation or put it back (`ID` is `destination/index`).
    Link {
        /// `disable` or `enable`.
        #[arg(value_parser = ["disable", "enable"])]
        action: String,
        /// The link, e.g. `bank-a/0`.
        id: String,
    },
    /// Reload terminals, routes, risk rules, certificates and tokens.
    Reload,
    /// Close the current business date now: the next one starts at once,
    /// so the closed date can be cleared (operator role; audited).
    Cutover,
    /// A transaction's life, by RRN or by terminal and STAN.
    Txn {
        /// Retrieval reference number.
        #[arg(long, conflicts_with_all = ["terminal", "stan"])]
        rrn: Option<String>,
        /// Terminal id (with --stan).
        #[arg(long, requires = "stan")]
        terminal: Option<String>,
        /// Terminal STAN (with --terminal).
        #[arg(long, requires = "terminal")]
        stan: Option<String>,
    },
    /// Reversals owed (store-and-forward queue).
    Saf,
    /// The Prometheus metrics, as scraped.
    Metrics,
}

/// Why `ctl` could not ask the admin API, or could not understand its
/// own arguments.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    /// The URL has another scheme.
    #[error("--url {0}: must start with http:// or https://")]
    Scheme(String),
    /// The URL has no port.
    #[error("--url {0}: needs a port")]
    NoPort(String),
    /// The URL's port is not a port number.
    #[error("--url {url}: bad port `{port}`")]
    Port {
        /// The URL.
        url: String,
        /// Its port as written.
        port: String,
        /// Why it does not parse.
        source: std::num::ParseIntError,
    },
    /// The token file could not be read.
    #[error("{}: {source}", .path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An `https` URL without `--ca`.
    #[error("an https --url needs --ca")]
    NoCa,
    /// The CA file could not be read.
    #[error("{}: {source}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file holds a PEM section that does not parse.
    #[error("{}: {source}", .path.display())]
    CaPem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds a certificate that cannot be a trust anchor.
    #[error("{}: {source}", .path.display())]
    CaCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The TLS client configuration could not be built.
    #[error(transparent)]
    Tls(rustls::Error),
    /// The API's host is no valid TLS server name.
    #[error("{host}: {source}")]
    ServerName {
        /// The host.
        host: String,
        /// Why.
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// No connection to the API.
    #[error("cannot reach the admin API at {address}: {source}")]
    Connect {
        /// `HOST:PORT`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake with the API failed.
    #[error("TLS with {address}: {source}")]
    Handshake {
        /// `HOST:PORT`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The request could not be built (a header value it cannot carry).
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// A link id without `/`.
    #[error("link `{0}`: write it as destination/index")]
    LinkId(String),
    /// `ctl txn` without a key to look the transaction up by.
    #[error("give --rrn, or --terminal and --stan")]
    TxnKey,
}

/// Where the API is.
struct Target {
    tls: bool,
    host: String,
    port: u16,
}

fn parse_url(url: &str) -> Result<Target, CtlError> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(CtlError::Scheme(url.to_string()));
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| CtlError::NoPort(url.to_string()))?;
    let port = port.parse().map_err(|source| CtlError::Port {
        url: url.to_string(),
        port: port.to_string(),
        source,
    })?;
    Ok(Target {
        tls,
        host: host.trim_matches(['[', ']']).to_string(),
        port,
    })
}

impl CtlArgs {
    /// Runs the command.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        let token = match &self.token_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|source| CtlError::TokenFile {
                        path: file.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("CARDSWITCH_TOKEN").ok(),
        };
        let target = parse_url(&self.url)?;
        let tls = match (&target.tls, &self.ca) {
            (true, Some(ca)) => Some(connector(ca)?),
            (true, None) => return Err(CtlError::NoCa.into()),
            (false, _) => None,
        };
        let client = Client { target, token, tls };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match runtime.block_on(self.command.run(&client)) {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("cardswitch ctl: {e}");
                Ok(ExitCode::from(2))
            }
        }
    }
}

fn connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, CtlError> {
    let pem = std::fs::read(ca).map_err(|source| CtlError::CaFile {
        path: ca.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls::pki_types::CertificateDer<'static> =
            cert.map_err(|source| CtlError::CaPem {
                path: ca.to_path_buf(),
                source,
            })?;
        roots.add(cert).map_err(|source| CtlError::CaCertificate {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(CtlError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

struct Client {
    target: Target,
    token: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
}

/// An answer: status and body.
type Reply = (StatusCode, Bytes);

impl Client {
    async fn call(&self, method: Method, path: &str) -> Result<Reply, CtlError> {
        let address = if self.target.host.contains(':') {
            format!("[{}]:{}", self.target.host, self.target.port)
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|source| CtlError::Connect {
                address: address.clone(),
                source,
            })?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &address);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::<Bytes>::new())?;
        match &self.tls {
            None => send(TokioIo::new(stream), request).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.target.host.clone())
                    .map_err(|source| CtlError::ServerName {
                        host: self.target.host.clone(),
                        source,
                    })?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|source| CtlError::Handshake { address, source })?;
                send(TokioIo::new(stream), request).await
            }
        }
    }
}

async fn send<T>(io: TokioIo<T>, request: Request<Empty<Bytes>>) -> Result<Reply, CtlError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// Prints an answer as it came (pretty JSON when it is JSON) and maps its
/// status to the exit status.
fn print(reply: &Reply) -> std::io::Result<ExitCode> {
    let (status, body) = reply;
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => super::say(&serde_json::to_string_pretty(&v).unwrap_or_default())?,
        Err(_) => super::say(String::from_utf8_lossy(body).trim_end())?,
    }
    Ok(outcome(*status))
}

fn outcome(status: StatusCode) -> ExitCode {
    if status.is_success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("cardswitch ctl: the admin API answered {status}");
        ExitCode::from(1)
    }
}

impl CtlCommand {
    async fn run(self, client: &Client) -> Result<ExitCode, Box<dyn std::error::Error>> {
        let reply = match self {
            CtlCommand::Status => return status(client).await,
            CtlCommand::Links => {
                let reply = client.call(Method::GET, "/v1/links").await?;
                if !reply.0.is_success() {
                    return Ok(print(&reply)?);
                }
                super::say(&format!("{:<24} {:<5} {:<8}", "LINK", "UP", "ENABLED"))?;
                for link in json(&reply.1)["links"].as_array().into_iter().flatten() {
                    super::say(&format!(
                        "{:<24} {:<5} {:<8}",
                        link["id"].as_str().unwrap_or_default(),
                        link["up"].as_bool().unwrap_or_default(),
                        link["enabled"].as_bool().unwrap_or_default()
                    ))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            CtlCommand::Link { action, id } => {
                let (destination, index) = id
                    .rsplit_once('/')
                    .ok_or_else(|| CtlError::LinkId(id.clone()))?;
                client
                    .call(
                        Method::POST,
                        &format!("/v1/links/{destination}/{index}/{action}"),
                    )
                    .await?
            }
            CtlCommand::Reload => {
                let reply = client.call(Method::POST, "/v1/reload").await?;
                let code = print(&reply)?;
                if reply.0.is_success() && json(&reply.1)["complete"] == Value::Bool(false) {
                    eprintln!("cardswitch ctl: the reload was partial; see the problems above");
                    return Ok(ExitCode::from(1));
                }
                return Ok(code);
            }
            CtlCommand::Txn {
                rrn,
                terminal,
                stan,
            } => {
                let query = match (rrn, terminal, stan) {
                    (Some(rrn), _, _) => format!("rrn={rrn}"),
                    (None, Some(t), Some(s)) => format!("terminal={t}&stan={s}"),
                    _ => return Err(CtlError::TxnKey.into()),
                };
                client
                    .call(Method::GET, &format!("/v1/transactions?{query}"))
                    .await?
            }
            CtlCommand::Cutover => client.call(Method::POST, "/v1/cutover").await?,
            CtlCommand::Saf => client.call(Method::GET, "/v1/saf").await?,
            CtlCommand::Metrics => client.call(Method::GET, "/metrics").await?,
        };
        Ok(print(&reply)?)
    }
}

/// `ctl status`: readiness, then one line per destination.
async fn status(client: &Client) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (ready_status, ready) = client.call(Method::GET, "/health/ready").await?;
    let ready = json(&ready);
    super::say(&format!(
        "ready: {}",
        if ready_status.is_success() {
            "yes"
        } else {
            "no"
        }
    ))?;
    for problem in ready["problems"].as_array().into_iter().flatten() {
        super::say(&format!("  {}", problem.as_str().unwrap_or_default()))?;
    }
    let reply = client.call(Method::GET, "/v1/destinations").await?;
    if !reply.0.is_success() {
        return Ok(print(&reply)?);
    }
    super::say(&format!(
        "{:<16} {:<22} {:>8} {:>10} {:>9} {:>12}",
        "DESTINATION", "ADDRESS", "LINKS UP", "SENT", "TIMEOUTS", "P99 µs"
    ))?;
    for d in json(&reply.1)["destinations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        super::say(&format!(
            "{:<16} {:<22} {:>5}/{:<2} {:>10} {:>9} {:>12}",
            d["name"].as_str().unwrap_or_default(),
            d["address"].as_str().unwrap_or_default(),
            d["links_up"].as_u64().unwrap_or_default(),
            d["links"].as_u64().unwrap_or_default(),
            d["sent"].as_u64().unwrap_or_default(),
            d["timeouts"].as_u64().unwrap_or_default(),
            d["latency_p99_us"].as_u64().unwrap_or_default(),
        ))?;
    }
    Ok(outcome(ready_status))
}
