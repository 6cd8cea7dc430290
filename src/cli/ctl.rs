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

/// Where the API is.
struct Target {
    tls: bool,
    host: String,
    port: u16,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("--url {url}: must start with http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("--url {url}: needs a port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("--url {url}: bad port `{port}`"))?;
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
                    .map_err(|e| format!("{}: {e}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("CARDSWITCH_TOKEN").ok(),
        };
        let target = parse_url(&self.url)?;
        let tls = match (&target.tls, &self.ca) {
            (true, Some(ca)) => Some(connector(ca)?),
            (true, None) => return Err("an https --url needs --ca".into()),
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

fn connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls::pki_types::CertificateDer<'static> =
            cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
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
    async fn call(&self, method: Method, path: &str) -> Result<Reply, String> {
        let address = if self.target.host.contains(':') {
            format!("[{}]:{}", self.target.host, self.target.port)
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| format!("cannot reach the admin API at {address}: {e}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &address);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        match &self.tls {
            None => send(TokioIo::new(stream), request).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.target.host.clone())
                    .map_err(|e| format!("{}: {e}", self.target.host))?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS with {address}: {e}"))?;
                send(TokioIo::new(stream), request).await
            }
        }
    }
}

async fn send<T>(io: TokioIo<T>, request: Request<Empty<Bytes>>) -> Result<Reply, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
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
                    .ok_or_else(|| format!("link `{id}`: write it as destination/index"))?;
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
                    _ => return Err("give --rrn, or --terminal and --stan".into()),
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
