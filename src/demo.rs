//! `cardswitch demo`: the whole switch in one process on loopback, with no
//! configuration and no external server.
//!
//! Two simulated banks (bank_a speaks `iso87binary` with 2-byte binary
//! lengths, bank_b `iso87ascii` with 4-digit ASCII lengths) follow the demo
//! rules; the switch listens for `iso87ascii` terminals; a POS load of mixed
//! transactions runs through it: approvals on both banks, declines, an
//! unknown BIN, a bad check digit, a disabled terminal's request and a request
//! the bank never answers. Every response is checked against the code it must
//! carry.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::config::Config;
use crate::iso8583::Dialect;
use crate::iso8583::framing::{FrameCodec, LengthPrefix};
use crate::server;
use crate::sim::bank::{BankHandle, BankSim};
use crate::sim::pos::{self, PosConfig};
use crate::sim::report::PosReport;
use crate::sim::rules::{self, Rules};
use crate::sim::scenario::{Scenario, TxnTemplate};

/// Options of `cardswitch demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Transactions to run.
    pub count: u64,
    /// Terminal connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// The demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Binding a loopback port failed.
    #[error("cannot bind a loopback port: {0}")]
    Bind(#[from] std::io::Error),
    /// The embedded configuration was refused (a bug).
    #[error("embedded configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The switch did not start.
    #[error("switch: {0}")]
    Serve(#[from] crate::server::ServeError),
    /// The bank links did not come up.
    #[error("bank links did not come up within {0:?}")]
    LinksDown(Duration),
    /// The switch's terminal listener is missing (a bug).
    #[error("the demo switch has no terminal listener")]
    NoListener,
    /// The POS load failed.
    #[error("POS simulator: {0}")]
    Pos(#[from] crate::sim::pos::PosError),
    /// The demo scenario was refused (a bug).
    #[error("scenario: {0}")]
    Scenario(#[from] crate::sim::scenario::ScenarioError),
    /// A built-in dialect failed to load (a bug).
    #[error("dialect: {0}")]
    Dialect(#[from] crate::iso8583::SpecError),
    /// The demo's journal could not be set up.
    #[error("journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
}

/// What the demo measured.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The POS simulator's report on the mixed load.
    pub report: PosReport,
    /// The report on the disabled terminal's request (declined locally).
    pub local: PosReport,
    /// Requests each bank received: (name, count).
    pub banks: Vec<(String, u64)>,
}

const BANK_A_BIN: &str = "476173";
const BANK_B_BIN: &str = "543210";
const UNKNOWN_BIN: &str = "601100";
const DISABLED_TERMINAL: &str = "TERM9999";
/// The bank's silence is noticed after this long (1 s instead of the usual
/// 5 s, to keep the demo short).
const DEMO_TIMEOUT_MS: u64 = 1000;

fn dialect(name: &str) -> Result<Arc<Dialect>, DemoError> {
    match Dialect::builtin(name) {
        Some(d) => Ok(d?),
        None => Err(DemoError::Dialect(crate::iso8583::SpecError::Unknown(
            name.into(),
        ))),
    }
}

async fn bank(dialect_name: &str, prefix: LengthPrefix) -> Result<BankHandle, DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let sim = BankSim::new(
        dialect(dialect_name)?,
        FrameCodec::new(prefix),
        Rules::builtin_demo(),
    );
    Ok(Arc::new(sim).start(listener)?)
}

fn config_text(bank_a: SocketAddr, bank_b: SocketAddr, connections: usize, dir: &Path) -> String {
    let mut text = format!(
        r#"
[journal]
dir = "{journal}"
data_key_file = "{key}"
saf_retry_min_ms = 100

[switch]
acquirer_id = "4123456"
timeout_ms = {DEMO_TIMEOUT_MS}
shutdown_grace_ms = 3000

[[listener]]
name = "pos"
address = "127.0.0.1:0"
dialect = "iso87ascii"
framing = "binary2"
max_connections = {max}

[[destination]]
name = "bank_a"
address = "{bank_a}"
dialect = "iso87binary"
framing = "binary2"
links = 2

[[destination]]
name = "bank_b"
address = "{bank_b}"
dialect = "iso87ascii"
framing = "ascii4"
links = 2

[[route]]
prefix = "{BANK_A_BIN}"
destination = "bank_a"

[[route]]
prefix = "{slow}"
destination = "bank_a"

[[route]]
range = ["{BANK_B_BIN}", "{BANK_B_BIN}"]
destination = "bank_b"

[[terminal]]
id = "{DISABLED_TERMINAL}"
merchant_id = "MERCHANT9999999"
name_location = "CLOSED STORE           LONDON        GBR"
mcc = "5999"
currency = "826"
enabled = false
"#,
        max = connections + 16,
        journal = dir.join("journal").display(),
        key = dir.join("data.key").display(),
        slow = rules::DEMO_SLOW_BIN,
    );
    for i in 0..connections {
        text.push_str(&format!(
            "\n[[terminal]]\nid = \"{}\"\nmerchant_id = \"MERCHANT{:07}\"\nname_location = \"DEMO STORE {:<12}LONDON        GBR\"\nmcc = \"5411\"\ncurrency = \"826\"\n",
            pos::default_terminal(i),
            i + 1,
            i + 1,
        ));
    }
    text
}

fn scenario() -> Result<Scenario, crate::sim::scenario::ScenarioError> {
    Scenario::new(vec![
        TxnTemplate::purchase("purchase bank_a (binary)", BANK_A_BIN, 1250).weight(300),
        TxnTemplate::purchase("purchase bank_b (ascii)", BANK_B_BIN, 4599).weight(250),
        TxnTemplate::purchase("authorisation bank_a", BANK_A_BIN, 10_000)
            .authorisation()
            .weight(100),
        TxnTemplate::purchase("slow bank_a (20 ms)", rules::DEMO_SLOW_BIN, 800).weight(60),
        TxnTemplate::purchase("refund bank_b", BANK_B_BIN, 2000)
            .refund()
            .weight(40),
        TxnTemplate::purchase(
            "insufficient funds",
            BANK_B_BIN,
            rules::DEMO_AMOUNT_INSUFFICIENT_FUNDS,
        )
        .expecting(Some("51"))
        .weight(60),
        TxnTemplate::purchase(
            "incorrect PIN",
            BANK_A_BIN,
            rules::DEMO_AMOUNT_INCORRECT_PIN,
        )
        .expecting(Some("55"))
        .weight(40),
        TxnTemplate::purchase("unknown BIN", UNKNOWN_BIN, 1000)
            .expecting(Some("15"))
            .weight(40),
        TxnTemplate::purchase("bad check digit", BANK_A_BIN, 1000)
            .bad_luhn()
            .expecting(Some("14"))
            .weight(30),
        TxnTemplate::purchase(
            "bank never answers",
            BANK_A_BIN,
            rules::DEMO_AMOUNT_NO_ANSWER,
        )
        .expecting(Some("91"))
        .weight(3),
    ])
}

/// Runs the demo and returns what it measured.
pub async fn run(options: &DemoOptions) -> Result<DemoOutcome, DemoError> {
    let bank_a = bank("iso87binary", LengthPrefix::Binary2).await?;
    let bank_b = bank("iso87ascii", LengthPrefix::Ascii4).await?;
    let dir = std::env::temp_dir().join(format!("cardswitch-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    crate::journal::generate_data_key(&dir.join("data.key"))?;
    let text = config_text(bank_a.addr(), bank_b.addr(), options.connections, &dir);
    let config = Config::from_toml(&text, Path::new("<demo>"))?;
    let running = server::start(config).await?;
    let switch = Arc::clone(running.switch());

    let wait = Duration::from_secs(5);
    let since = Instant::now();
    while ["bank_a", "bank_b"]
        .iter()
        .any(|d| switch.destination(d).is_none_or(|d| d.links_up() == 0))
    {
        if since.elapsed() > wait {
            return Err(DemoError::LinksDown(wait));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let address = running.address("pos").ok_or(DemoError::NoListener)?;
    let mut pos = PosConfig::new(
        address,
        dialect("iso87ascii")?,
        FrameCodec::new(LengthPrefix::Binary2),
        scenario()?,
    );
    pos.count = options.count;
    pos.connections = options.connections;
    pos.pipeline = options.pipeline;
    pos.progress = options.progress;
    pos.timeout = Duration::from_millis(DEMO_TIMEOUT_MS * 3);
    let report = pos::run(pos).await?;

    // One request from a disabled terminal, declined by the switch (58).
    let mut disabled = PosConfig::new(
        address,
        dialect("iso87ascii")?,
        FrameCodec::new(LengthPrefix::Binary2),
        Scenario::new(vec![
            TxnTemplate::purchase("disabled terminal", BANK_A_BIN, 1000).expecting(Some("58")),
        ])?,
    );
    disabled.count = 1;
    disabled.terminals = vec![DISABLED_TERMINAL.to_string()];
    let local = pos::run(disabled).await?;

    let banks = vec![
        ("bank_a".to_string(), bank_a.stats().snapshot().requests),
        ("bank_b".to_string(), bank_b.stats().snapshot().requests),
    ];
    running.shutdown().await;
    bank_a.stop().await;
    bank_b.stop().await;
    Ok(DemoOutcome {
        report,
        local,
        banks,
    })
}

impl DemoOutcome {
    /// Whether every response carried the code it had to.
    pub fn all_checked_out(&self) -> bool {
        self.report.all_checked_out() && self.local.all_checked_out()
    }
}
