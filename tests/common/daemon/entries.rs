//! The entries of the configuration: listeners, destinations, terminals.

use std::net::SocketAddr;
use std::path::Path;

use super::{q, qp};

/// A `[[listener]]`: terminals connect here.
#[derive(Clone, Debug)]
pub struct Listener {
    pub(super) name: String,
    dialect: String,
    pub(super) address: Option<SocketAddr>,
    lines: Vec<String>,
}

impl Listener {
    /// Listener `name` speaking `dialect` (a built-in name or a file),
    /// 2-byte binary length prefix.
    pub fn new(name: &str, dialect: impl AsRef<str>) -> Listener {
        Listener {
            name: name.to_string(),
            dialect: dialect.as_ref().to_string(),
            address: None,
            lines: Vec::new(),
        }
    }

    /// A fixed address (kept across restarts of a spawned daemon).
    pub fn address(mut self, address: SocketAddr) -> Listener {
        self.address = Some(address);
        self
    }

    /// The length prefix: `binary2`, `ascii4` or `bcd2`.
    pub fn framing(self, framing: &str) -> Listener {
        self.line(&format!("framing = {}", q(framing)))
    }

    /// A fixed header after the length prefix (5: a NAC TPDU).
    pub fn header(self, bytes: usize) -> Listener {
        self.line(&format!("header = {bytes}"))
    }

    /// Connections beyond this are closed at once.
    pub fn max_connections(self, n: usize) -> Listener {
        self.line(&format!("max_connections = {n}"))
    }

    /// A connection silent this long is closed.
    pub fn idle_timeout_s(self, secs: u64) -> Listener {
        self.line(&format!("idle_timeout_s = {secs}"))
    }

    /// TLS with this certificate and key; with `client_ca`, mutual TLS.
    pub fn tls(self, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Listener {
        let ca = client_ca
            .map(|ca| format!(", client_ca = {}", qp(ca)))
            .unwrap_or_default();
        self.line(&format!(
            "tls = {{ cert = {}, key = {}{ca} }}",
            qp(cert),
            qp(key)
        ))
    }

    /// Any other `key = value` line of the entry.
    pub fn line(mut self, line: &str) -> Listener {
        self.lines.push(line.to_string());
        self
    }

    pub(super) fn render(&self, address: Option<SocketAddr>) -> String {
        let address = address.map_or("127.0.0.1:0".to_string(), |a| a.to_string());
        let mut text = format!(
            "[[listener]]\nname = {}\naddress = {}\ndialect = {}\n",
            q(&self.name),
            q(address),
            q(&self.dialect)
        );
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// A `[[destination]]`: a bank (simulator) the switch connects out to.
#[derive(Clone, Debug)]
pub struct Destination {
    pub(super) name: String,
    address: SocketAddr,
    dialect: String,
    links: u32,
    lines: Vec<String>,
}

impl Destination {
    /// Destination `name` at `address` speaking `dialect`, with one link
    /// (unless [`Destination::links`]).
    pub fn new(name: &str, address: SocketAddr, dialect: impl AsRef<str>) -> Destination {
        Destination {
            name: name.to_string(),
            address,
            dialect: dialect.as_ref().to_string(),
            links: 1,
            lines: Vec::new(),
        }
    }

    /// Persistent links to the host.
    pub fn links(mut self, links: u32) -> Destination {
        self.links = links;
        self
    }

    /// The length prefix: `binary2`, `ascii4` or `bcd2`.
    pub fn framing(self, framing: &str) -> Destination {
        self.line(&format!("framing = {}", q(framing)))
    }

    /// Used for new requests while this destination has no link up.
    pub fn fallback(self, destination: &str) -> Destination {
        self.line(&format!("fallback = {}", q(destination)))
    }

    /// The time the host has to answer (instead of `switch.timeout_ms`).
    pub fn timeout_ms(self, ms: u64) -> Destination {
        self.line(&format!("timeout_ms = {ms}"))
    }

    /// First and longest reconnect delay.
    pub fn reconnect_ms(self, min: u64, max: u64) -> Destination {
        self.line(&format!(
            "reconnect_min_ms = {min}\nreconnect_max_ms = {max}"
        ))
    }

    /// Echo test period per link.
    pub fn echo_interval_s(self, secs: u64) -> Destination {
        self.line(&format!("echo_interval_s = {secs}"))
    }

    /// The destination's MAC and PIN keys, the inside of the inline table,
    /// e.g. `pin_key = "zpk"`.
    pub fn security(self, table: &str) -> Destination {
        self.line(&format!("security = {{ {table} }}"))
    }

    /// TLS to the host: trust anchors `ca`, the name its certificate
    /// carries, and the switch's client certificate for mutual TLS.
    pub fn tls(self, ca: &Path, server_name: &str, client: Option<(&Path, &Path)>) -> Destination {
        let client = client
            .map(|(cert, key)| format!(", cert = {}, key = {}", qp(cert), qp(key)))
            .unwrap_or_default();
        self.line(&format!(
            "tls = {{ ca = {}, server_name = {}{client} }}",
            qp(ca),
            q(server_name)
        ))
    }

    /// Any other `key = value` line of the entry.
    pub fn line(mut self, line: &str) -> Destination {
        self.lines.push(line.to_string());
        self
    }

    pub(super) fn render(&self) -> String {
        let mut text = format!(
            "[[destination]]\nname = {}\naddress = {}\ndialect = {}\nlinks = {}\n",
            q(&self.name),
            q(self.address.to_string()),
            q(&self.dialect),
            self.links
        );
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// A `[[terminal]]` of the registry.
#[derive(Clone, Debug)]
pub struct Terminal {
    id: String,
    merchant_id: String,
    name_location: String,
    mcc: String,
    currency: String,
    lines: Vec<String>,
}

impl Terminal {
    /// Terminal `id` of merchant `merchant_id`: "SHOP", MCC 5411, euros
    /// (978) unless set otherwise.
    pub fn new(id: &str, merchant_id: &str) -> Terminal {
        Terminal {
            id: id.to_string(),
            merchant_id: merchant_id.to_string(),
            name_location: "SHOP".to_string(),
            mcc: "5411".to_string(),
            currency: "978".to_string(),
            lines: Vec::new(),
        }
    }

    /// Field 43 sent to destinations.
    pub fn name_location(mut self, name_location: &str) -> Terminal {
        self.name_location = name_location.to_string();
        self
    }

    /// The merchant category code.
    pub fn mcc(mut self, mcc: &str) -> Terminal {
        self.mcc = mcc.to_string();
        self
    }

    /// ISO 4217 numeric currency.
    pub fn currency(mut self, currency: &str) -> Terminal {
        self.currency = currency.to_string();
        self
    }

    /// A disabled terminal is declined locally.
    pub fn enabled(self, enabled: bool) -> Terminal {
        self.line(&format!("enabled = {enabled}"))
    }

    /// The transaction kinds the terminal may do.
    pub fn allowed(self, kinds: &[&str]) -> Terminal {
        let kinds: Vec<String> = kinds.iter().map(q).collect();
        self.line(&format!("allowed = [{}]", kinds.join(", ")))
    }

    /// The terminal's MAC and PIN keys, the inside of the inline table,
    /// e.g. `mac = "retail", mac_key = "tak"`.
    pub fn security(self, table: &str) -> Terminal {
        self.line(&format!("security = {{ {table} }}"))
    }

    /// Any other `key = value` line of the entry.
    pub fn line(mut self, line: &str) -> Terminal {
        self.lines.push(line.to_string());
        self
    }

    pub(super) fn render(&self) -> String {
        let mut text = format!(
            "[[terminal]]\nid = {}\nmerchant_id = {}\nname_location = {}\nmcc = {}\ncurrency = {}\n",
            q(&self.id),
            q(&self.merchant_id),
            q(&self.name_location),
            q(&self.mcc),
            q(&self.currency)
        );
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}
