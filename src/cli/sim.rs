//! `cardswitch sim bank|pos`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use cardswitch::iso8583::Dialect;
use cardswitch::iso8583::framing::{FrameCodec, LengthPrefix};
use cardswitch::security::keys::{KeyStore, MasterKey};
use cardswitch::security::mac::MacAlgorithm;
use cardswitch::security::pin::PinFormat;
use cardswitch::security::profile::{Protection, ProtectionEntry, Side};
use cardswitch::security::tls::{ServerTlsFiles, TlsAcceptor};
use cardswitch::sim::ledger::Breaks;
use cardswitch::sim::{BankSim, PosConfig, Rules, Scenario};

/// Why a simulator could not start or finish.
#[derive(Debug, thiserror::Error)]
enum SimError {
    /// `--mac-key` or `--pin-key` without `--key-store`.
    #[error("--mac-key and --pin-key need --key-store")]
    NoKeyStore,
    /// Keys given on the command line that do not resolve, each as
    /// (option, reason).
    #[error("{}", keys_text(.0))]
    Keys(Vec<(String, String)>),
    /// A duration that is not a positive number of seconds.
    #[error("--{0} must be a positive number of seconds")]
    Seconds(&'static str),
    /// An address that could not be looked up.
    #[error("{address}: {source}")]
    Lookup {
        /// The address as given.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// An address that names no host.
    #[error("{0}: no address")]
    NoAddress(String),
    /// The bank could not listen.
    #[error("{address}: {source}")]
    Listen {
        /// The address as given.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// An output file could not be written.
    #[error("{}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One line per key problem, named by its command-line option.
fn keys_text(problems: &[(String, String)]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|(key, reason)| format!("--{}: {reason}", key.replace('_', "-")))
        .collect();
    lines.join("\n")
}

/// What is wrong with `--breaks`.
#[derive(Debug, thiserror::Error)]
enum BreaksError {
    /// A part without `=`.
    #[error("`{0}` is not KIND=COUNT")]
    NotPair(String),
    /// A count that is not a number.
    #[error("`{text}` is not a count")]
    Count {
        /// The count as given.
        text: String,
        /// Why it does not parse.
        source: std::num::ParseIntError,
    },
    /// A kind of break the ledger cannot put in.
    #[error("unknown break `{0}` (drop, unknown, amount, currency, seed)")]
    Kind(String),
}

/// `cardswitch sim …`: the bank and POS simulators.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// A bank host simulator: approves by default, follows a rules file
    /// (decline, delay, never answer, close), answers 0800 echo and sign-on.
    /// Runs until Ctrl-C or SIGTERM.
    Bank {
        /// Address to listen on, e.g. 127.0.0.1:9100 (port 0 picks one; the
        /// address is printed on stderr).
        #[arg(long)]
        listen: String,
        #[command(flatten)]
        wire: SimWire,
        /// Rules file (TOML, `[[rule]]` tables); default: approve everything.
        #[arg(long, conflicts_with = "demo_rules")]
        rules: Option<PathBuf>,
        /// Use the demo's built-in rules (51.00 → 51, 55.00 → 55, 91.00 →
        /// no answer, BIN 455599 → 20 ms delay).
        #[arg(long)]
        demo_rules: bool,
        #[command(flatten)]
        keys: SimKeys,
        /// Decline with 55 a PIN block that does not hold this PIN.
        #[arg(long)]
        expect_pin: Option<String>,
        /// Serve TLS with this certificate (PEM)…
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// … and this private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require client certificates signed by this CA (mutual TLS).
        #[arg(long, requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// On stopping, write the bank's settlement file (CSV, what it
        /// approved less what was reversed; see `cardswitch recon`) here.
        #[arg(long)]
        settlement_file: Option<PathBuf>,
        /// Breaks to put into the settlement file on purpose, e.g.
        /// `drop=1,unknown=1,amount=1,currency=1` (seeded: the same ledger
        /// gives the same breaks).
        #[arg(long, requires = "settlement_file", value_parser = parse_breaks)]
        breaks: Option<Breaks>,
    },
    /// A POS terminal load generator: pipelined requests on many
    /// connections, every response verified; prints a summary and a final
    /// JSON line. Exits 0 only if every response checked out.
    Pos {
        /// Address to connect to.
        #[arg(long)]
        connect: String,
        #[command(flatten)]
        wire: SimWire,
        /// Transactions to send [default: 1000, or unlimited with --duration].
        #[arg(long)]
        count: Option<u64>,
        /// Connections, one terminal (TERM0001, TERM0002 …) each.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        /// Total transactions per second, paced over all connections.
        #[arg(long)]
        rate: Option<u64>,
        /// Stop sending after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// Card BINs (PAN prefixes), comma-separated; purchases cycle over them.
        #[arg(long, value_delimiter = ',', default_value = "476173")]
        bins: Vec<String>,
        /// Amount of each purchase, in minor units.
        #[arg(long, default_value_t = 1000)]
        amount: u64,
        /// Expected response code (field 39, 1987 form); `any` accepts every code.
        #[arg(long, default_value = "00")]
        expect: String,
        /// Seconds to wait for each response.
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
        timeout: f64,
        /// Write the report as JSON to this file too.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// No progress bar or progress lines.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        keys: SimKeys,
        /// PIN to send in field 52, enciphered under --pin-key.
        #[arg(long, requires = "pin_key")]
        pin: Option<String>,
    },
}

/// Keys of a simulator, from a key store (the bank plays a destination:
/// ZAK and ZPK; the terminals play terminals: TAK and TPK).
#[derive(Debug, Args)]
pub struct SimKeys {
    /// Key store file.
    #[arg(long)]
    key_store: Option<PathBuf>,
    /// Master key file of the key store (else $CARDSWITCH_MASTER_KEY).
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// MAC algorithm: retail, cbc-des, aes-cmac or sm4.
    #[arg(long, requires = "mac_key")]
    mac: Option<MacAlgorithm>,
    /// MAC key id in the store.
    #[arg(long, requires = "mac")]
    mac_key: Option<String>,
    /// PIN key id in the store.
    #[arg(long)]
    pin_key: Option<String>,
    /// PIN block format: iso0, iso1, iso3 or iso4.
    #[arg(long, requires = "pin_key")]
    pin_format: Option<PinFormat>,
}

impl SimKeys {
    fn resolve(&self, side: Side) -> Result<Protection, Box<dyn std::error::Error>> {
        let entry = ProtectionEntry {
            mac: self.mac,
            mac_key: self.mac_key.clone(),
            pin_key: self.pin_key.clone(),
            pin_format: self.pin_format,
            ..ProtectionEntry::default()
        };
        if entry.is_empty() {
            return Ok(Protection::default());
        }
        let path = self.key_store.as_ref().ok_or(SimError::NoKeyStore)?;
        let store = KeyStore::open(path, MasterKey::locate(self.master_key_file.as_deref())?)?;
        Ok(entry
            .resolve(side, None, Some(&store))
            .map_err(SimError::Keys)?)
    }
}

/// Dialect and framing a simulator speaks.
#[derive(Debug, Args)]
pub struct SimWire {
    /// Built-in dialect name (iso87ascii, iso87binary, iso93binary) or a .toml path.
    #[arg(long, short)]
    dialect: String,
    /// Length prefix: binary2, ascii4 or bcd2.
    #[arg(long, default_value = "binary2")]
    framing: LengthPrefix,
    /// Bytes of header (e.g. a 5-byte TPDU) after each length prefix.
    #[arg(long, default_value_t = 0)]
    header: usize,
}

impl SimWire {
    fn resolve(&self) -> Result<(Arc<Dialect>, FrameCodec), Box<dyn std::error::Error>> {
        let dialect = Dialect::resolve(&self.dialect)?;
        Ok((
            dialect,
            FrameCodec::new(self.framing).with_header(self.header),
        ))
    }
}

fn seconds(value: f64, what: &'static str) -> Result<Duration, SimError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or(SimError::Seconds(what))
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

impl SimCommand {
    /// Runs the subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        super::serve::init_logging("warn");
        match self {
            SimCommand::Bank {
                listen,
                wire,
                rules,
                demo_rules,
                keys,
                expect_pin,
                tls_cert,
                tls_key,
                tls_client_ca,
                settlement_file,
                breaks,
            } => {
                let (dialect, codec) = wire.resolve()?;
                let rules = match (rules, demo_rules) {
                    (Some(path), _) => Rules::load(&path)?,
                    (None, true) => Rules::builtin_demo(),
                    (None, false) => Rules::default(),
                };
                let mut sim = BankSim::new(dialect, codec, rules)
                    .with_security(keys.resolve(Side::Destination)?, expect_pin.as_deref());
                if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                    sim = sim.with_tls(Arc::new(TlsAcceptor::load(ServerTlsFiles {
                        cert,
                        key,
                        client_ca: tls_client_ca,
                    })?));
                }
                let settlement = settlement_file.map(|path| (path, breaks.unwrap_or_default()));
                runtime()?.block_on(bank(listen, sim, settlement))
            }
            SimCommand::Pos {
                connect,
                wire,
                count,
                connections,
                pipeline,
                rate,
                duration,
                bins,
                amount,
                expect,
                timeout,
                json,
                quiet,
                keys,
                pin,
            } => {
                let (dialect, codec) = wire.resolve()?;
                let expected = (expect != "any").then_some(expect.as_str());
                let scenario = Scenario::new(
                    bins.iter()
                        .map(|bin| {
                            cardswitch::sim::TxnTemplate::purchase(
                                &format!("purchase-{bin}"),
                                bin,
                                amount,
                            )
                            .expecting(expected)
                        })
                        .collect(),
                )?;
                let duration = duration.map(|d| seconds(d, "duration")).transpose()?;
                let timeout = seconds(timeout, "timeout")?;
                let rt = runtime()?;
                let addr = rt.block_on(resolve(&connect))?;
                let mut cfg = PosConfig::new(addr, dialect, codec, scenario);
                cfg.count = count.unwrap_or(if duration.is_some() { u64::MAX } else { 1000 });
                cfg.connections = connections;
                cfg.pipeline = pipeline;
                cfg.rate = rate;
                cfg.duration = duration;
                cfg.timeout = timeout;
                cfg.progress = !quiet;
                cfg.security = keys.resolve(Side::Terminal)?;
                cfg.pin = pin;
                let report = rt.block_on(cardswitch::sim::run(cfg))?;
                super::say(&report.to_string())?;
                let line = report.to_json();
                if let Some(path) = json {
                    std::fs::write(&path, format!("{line}\n"))
                        .map_err(|source| SimError::Write { path, source })?;
                }
                super::say(&line)?;
                Ok(if report.all_checked_out() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, SimError> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|source| SimError::Lookup {
            address: addr.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| SimError::NoAddress(addr.to_string()))
}

/// `--breaks`: `kind=count` pairs separated by commas.
fn parse_breaks(text: &str) -> Result<Breaks, BreaksError> {
    let mut breaks = Breaks::default();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (kind, count) = pair
            .split_once('=')
            .ok_or_else(|| BreaksError::NotPair(pair.to_string()))?;
        let count: usize = count.parse().map_err(|source| BreaksError::Count {
            text: count.to_string(),
            source,
        })?;
        match kind {
            "drop" => breaks.drop = count,
            "unknown" => breaks.unknown = count,
            "amount" => breaks.amount = count,
            "currency" => breaks.currency = count,
            "seed" => breaks.seed = count as u64,
            _ => return Err(BreaksError::Kind(kind.to_string())),
        }
    }
    Ok(breaks)
}

async fn bank(
    listen: String,
    sim: BankSim,
    settlement: Option<(PathBuf, Breaks)>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|source| SimError::Listen {
            address: listen.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    eprintln!(
        "cardswitch sim bank: listening on {addr} ({})",
        sim.describe()
    );
    let sim = Arc::new(sim);
    let stats = Arc::clone(sim.stats());
    let ledger = Arc::clone(sim.ledger());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(sim.serve(listener, shutdown.clone()));
    wait_for_signal().await?;
    eprintln!("cardswitch sim bank: stopping");
    shutdown.cancel();
    server.await?;
    if let Some((path, breaks)) = settlement {
        let mut text = Vec::new();
        let broken = ledger.settlement_csv(&breaks, &mut text)?;
        cardswitch::files::write_atomically(&path, &text).map_err(|source| SimError::Write {
            path: path.clone(),
            source,
        })?;
        eprintln!(
            "cardswitch sim bank: settlement file {} ({} breaks put in)",
            path.display(),
            broken.all().len()
        );
    }
    super::say(&serde_json::to_string(&stats.snapshot())?)?;
    Ok(ExitCode::SUCCESS)
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
