//! The daemon's configuration: TOML, validated at load with precise errors.
//!
//! Every problem names the file, the key and the reason, e.g.
//! `cardswitch.toml: destination[1].dialect: unknown dialect `iso99``.
//! `cardswitch config check FILE` runs exactly this validation. The format is
//! documented key by key in `docs/configuration.md`; `fixtures/cardswitch.toml` is a
//! complete example.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::admin::AdminConfig;
use crate::iso8583::Dialect;
use crate::iso8583::framing::{FrameCodec, LengthPrefix};
use crate::journal::{Cutover, DataKey, Durability, JournalConfig};
use crate::registry::{TerminalEntry, Terminals};
use crate::risk::{RiskConfig, RuleSet};
use crate::route::{RouteEntry, RouteTable};
use crate::security::KeyAlgorithm;
use crate::security::keys::{KeyStore, KeyType, MasterKey};
use crate::security::profile::{NO_KEY_STORE, Protection, ProtectionEntry, Side};
use crate::security::tls::{ClientTlsFiles, ServerTlsFiles, TlsAcceptor, TlsConnector};
use crate::switch::settings::{RawSwitch, SwitchSettings};

/// A configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Syntax or shape error, as reported by the TOML parser (with line).
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// Parser message.
        message: String,
    },
    /// One or more values are invalid.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// Top-level config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    switch: RawSwitch,
    journal: RawJournal,
    #[serde(default, rename = "listener")]
    listeners: Vec<RawListener>,
    #[serde(default, rename = "destination")]
    destinations: Vec<RawDestination>,
    #[serde(default)]
    terminals_file: Option<PathBuf>,
    #[serde(default, rename = "terminal")]
    terminals: Vec<TerminalEntry>,
    #[serde(default)]
    routes_file: Option<PathBuf>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteEntry>,
    #[serde(default)]
    security: RawSecurity,
    #[serde(default)]
    log: LogSettings,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    risk: RiskConfig,
    #[serde(default)]
    clearing: Option<crate::clearing::settings::RawClearing>,
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin_address")]
    address: String,
    tokens_file: PathBuf,
    audit_log: PathBuf,
    #[serde(default)]
    tls: Option<RawServerTls>,
}

fn default_admin_address() -> String {
    "127.0.0.1:9180".into()
}

/// What a reload re-reads from the config file.
#[derive(Debug)]
pub struct Reloaded {
    /// Terminal registry.
    pub terminals: Terminals,
    /// BIN routes.
    pub routes: RouteTable,
    /// Risk rules.
    pub risk: RuleSet,
}

/// `[log]`: how the daemon logs. The level is re-read on `SIGHUP`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (readable, for a terminal) or `json` (one object per line, for
    /// log shippers).
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `warn`, `cardswitch=debug,info` …
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogSettings {
    /// Reads only the `[log]` section of a config file (for a reload).
    pub fn load(path: &Path) -> Result<LogSettings, ConfigError> {
        #[derive(Deserialize)]
        struct OnlyLog {
            #[serde(default)]
            log: LogSettings,
        }
        let text = read(path)?;
        let raw: toml::Table = parse(&text, path)?;
        let only: OnlyLog = toml::Value::Table(raw)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(only.log)
    }
}

/// `[security]`: where the key store is and how to find its master key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    #[serde(default)]
    key_store: Option<PathBuf>,
    #[serde(default)]
    master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    dir: PathBuf,
    #[serde(default)]
    data_key_file: Option<PathBuf>,
    #[serde(default)]
    data_key: Option<String>,
    #[serde(default)]
    durability: Durability,
    #[serde(default = "default_segment_mb")]
    segment_mb: u64,
    #[serde(default = "default_cutover")]
    cutover: String,
    #[serde(default = "default_time_zone")]
    time_zone: String,
    #[serde(default = "default_saf_retry_min_ms")]
    saf_retry_min_ms: u64,
    #[serde(default = "default_saf_retry_max_ms")]
    saf_retry_max_ms: u64,
}

fn default_segment_mb() -> u64 {
    64
}
fn default_cutover() -> String {
    "00:00".into()
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_saf_retry_min_ms() -> u64 {
    500
}
fn default_saf_retry_max_ms() -> u64 {
    30_000
}

/// `HH:MM` as seconds after midnight.
fn parse_cutover(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(h * 3600 + m * 60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: String,
    address: String,
    dialect: String,
    #[serde(default)]
    framing: LengthPrefix,
    #[serde(default)]
    header: usize,
    #[serde(default = "default_max_frame")]
    max_frame: usize,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_idle_s")]
    idle_timeout_s: u64,
    #[serde(default)]
    tls: Option<RawServerTls>,
}

/// `tls = { cert, key, client_ca }` of a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    client_ca: Option<PathBuf>,
}

/// `tls = { ca, server_name, cert, key }` of a destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientTls {
    ca: PathBuf,
    server_name: String,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    name: String,
    address: String,
    dialect: String,
    #[serde(default)]
    framing: LengthPrefix,
    #[serde(default)]
    header: Option<String>,
    #[serde(default = "default_max_frame")]
    max_frame: usize,
    #[serde(default = "default_links")]
    links: usize,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default = "default_echo_s")]
    echo_interval_s: u64,
    #[serde(default = "default_echo_misses")]
    echo_misses: u32,
    #[serde(default = "default_true")]
    sign_on: bool,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default = "default_backoff_min_ms")]
    reconnect_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    reconnect_max_ms: u64,
    #[serde(default)]
    security: ProtectionEntry,
    #[serde(default)]
    tls: Option<RawClientTls>,
}

fn default_max_frame() -> usize {
    crate::iso8583::framing::DEFAULT_MAX_FRAME
}
fn default_max_connections() -> usize {
    1024
}
fn default_idle_s() -> u64 {
    300
}
fn default_links() -> usize {
    2
}
fn default_echo_s() -> u64 {
    30
}
fn default_echo_misses() -> u32 {
    3
}
fn default_true() -> bool {
    true
}
fn default_backoff_min_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    10_000
}

/// A terminal-facing listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Address to bind.
    pub address: SocketAddr,
    /// Terminal dialect.
    pub dialect: Arc<Dialect>,
    /// Framing.
    pub codec: FrameCodec,
    /// Connections beyond this are refused.
    pub max_connections: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// TLS (mutual TLS with a client CA); plain TCP when `None`.
    pub tls: Option<Arc<TlsAcceptor>>,
}

/// A bank host or channel the switch connects out to.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    /// Name used by routes and logs.
    pub name: String,
    /// Host address.
    pub address: SocketAddr,
    /// The host's dialect.
    pub dialect: Arc<Dialect>,
    /// Framing on its links.
    pub codec: FrameCodec,
    /// Header bytes sent with every frame (e.g. a TPDU).
    pub header: bytes::Bytes,
    /// Persistent links to keep open.
    pub links: usize,
    /// Time the host has to answer.
    pub timeout: Duration,
    /// Echo test interval.
    pub echo_interval: Duration,
    /// Consecutive missed echoes after which a link is closed.
    pub echo_misses: u32,
    /// Send a sign-on (0800, 70=001) when a link connects.
    pub sign_on: bool,
    /// Destination to use while this one has no link up.
    pub fallback: Option<String>,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// MAC and PIN keys of this destination.
    pub protection: Arc<Protection>,
    /// TLS on its links (with a client certificate for mutual TLS); plain
    /// TCP when `None`.
    pub tls: Option<Arc<TlsConnector>>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was loaded from (for reloads).
    pub path: PathBuf,
    /// Switch-wide settings.
    pub switch: SwitchSettings,
    /// The write-ahead journal.
    pub journal: JournalConfig,
    /// Terminal listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Destinations by name, in file order.
    pub destinations: Vec<DestinationConfig>,
    /// Terminal registry.
    pub terminals: Terminals,
    /// BIN routes.
    pub routes: RouteTable,
    /// Logging.
    pub log: LogSettings,
    /// The admin API, when configured.
    pub admin: Option<AdminConfig>,
    /// Risk rules.
    pub risk: RuleSet,
    /// End-of-day clearing, when configured.
    pub clearing: Option<crate::clearing::settings::ClearingConfig>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.display().to_string(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: path.display().to_string(),
        message: e.to_string().trim_end().replace('\n', "\n    "),
    })
}

/// A file of `[[terminal]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminalFile {
    #[serde(default, rename = "terminal")]
    terminals: Vec<TerminalEntry>,
}

/// A file of `[[route]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    #[serde(default, rename = "route")]
    routes: Vec<RouteEntry>,
}

impl Config {
    /// Loads and validates a config file (and the terminal and route files
    /// it names, relative to its directory).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_toml(&read(path)?, path)
    }

    /// Validates config text; `path` is used for messages and to resolve the
    /// terminal and route files.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse(text, path)?;
        let file = path.display().to_string();
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        let mut problem =
            |key: String, reason: String| problems.push(format!("{file}: {key}: {reason}"));

        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            problem("log.level".into(), format!("`{}`: {e}", raw.log.level));
        }
        let sw = &raw.switch;
        for (key, reason) in sw.problems() {
            problem(key, reason);
        }

        let opened = open_store(&raw.security, base);
        // A store that does not open (a wrong master key, say) is reported
        // once: what needs its keys does not ask for one to be configured.
        let store_failed = opened.is_err();
        let store = opened
            .map_err(|reason| problem("security.key_store".into(), reason))
            .ok()
            .flatten();

        let j = &raw.journal;
        let data_key = match (&j.data_key_file, &j.data_key) {
            (Some(file), None) => {
                // Read now, as the journal will at start: a key that is
                // missing or readable by others is refused here too.
                let path = base.join(file);
                if let Err(e) = crate::journal::read_data_key(&path) {
                    problem("journal.data_key_file".into(), e.to_string());
                }
                Some(DataKey::File(path))
            }
            (None, Some(id)) => match store.as_ref().map(|s| s.get(id, KeyType::Data)) {
                Some(Ok(key)) if key.algorithm() == KeyAlgorithm::Aes256 => {
                    Some(DataKey::Stored(key))
                }
                Some(Ok(_)) => {
                    problem(
                        "journal.data_key".into(),
                        format!("key `{id}` must be aes256"),
                    );
                    None
                }
                Some(Err(e)) => {
                    problem("journal.data_key".into(), e.to_string());
                    None
                }
                None => {
                    problem("journal.data_key".into(), NO_KEY_STORE.into());
                    None
                }
            },
            _ => {
                problem(
                    "journal.data_key_file".into(),
                    "give exactly one of `data_key_file` and `data_key` (a key store id)".into(),
                );
                None
            }
        };
        let cutover_secs = parse_cutover(&j.cutover).unwrap_or_else(|| {
            problem(
                "journal.cutover".into(),
                format!("`{}` is not HH:MM", j.cutover),
            );
            0
        });
        let cutover = Cutover::new(cutover_secs, &j.time_zone).unwrap_or_else(|reason| {
            problem("journal.time_zone".into(), reason);
            Cutover::default()
        });
        // Business dates an operator started early (`ctl cutover`).
        if let Err(e) = cutover.load_early(&base.join(&j.dir)) {
            problem("journal.dir".into(), e.to_string());
        }
        if !(1..=1024).contains(&j.segment_mb) {
            problem(
                "journal.segment_mb".into(),
                "must be between 1 and 1024".into(),
            );
        }
        if j.saf_retry_min_ms == 0 || j.saf_retry_max_ms < j.saf_retry_min_ms {
            problem(
                "journal.saf_retry_min_ms".into(),
                "must be more than 0 and at most saf_retry_max_ms".into(),
            );
        }
        let journal = JournalConfig {
            dir: base.join(&j.dir),
            durability: j.durability,
            segment_bytes: j.segment_mb << 20,
            cutover,
            data_key: data_key.unwrap_or(DataKey::File(PathBuf::new())),
            saf_retry_min: Duration::from_millis(j.saf_retry_min_ms),
            saf_retry_max: Duration::from_millis(j.saf_retry_max_ms),
        };

        let mut listeners = Vec::new();
        let mut names = BTreeSet::new();
        // Addresses with a fixed port, and who listens there.
        let mut bound: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            let key = |k: &str| format!("listener[{i}].{k}");
            if !names.insert(l.name.clone()) {
                problem(key("name"), format!("`{}` is used twice", l.name));
            }
            let address = l
                .address
                .parse::<SocketAddr>()
                .map_err(|e| problem(key("address"), format!("`{}`: {e}", l.address)))
                .ok();
            if let Some(address) = address.filter(|a| a.port() != 0) {
                if let Some(other) = clash(&bound, address) {
                    problem(
                        key("address"),
                        format!("`{address}` is also {other}: one socket per address"),
                    );
                }
                bound.insert(address, key("address"));
            }
            let dialect = resolve_dialect(&l.dialect, base)
                .map_err(|e| problem(key("dialect"), e.to_string()))
                .ok();
            if dialect
                .as_ref()
                .is_some_and(|d| d.version() != crate::iso8583::spec::IsoVersion::Iso1987)
            {
                problem(key("dialect"), "terminals must speak a 1987 dialect".into());
            }
            if !(1..=MAX_CONNECTIONS).contains(&l.max_connections) {
                problem(
                    key("max_connections"),
                    format!("must be between 1 and {MAX_CONNECTIONS}"),
                );
            }
            if l.max_frame < MIN_FRAME || l.header >= l.max_frame {
                problem(
                    key("max_frame"),
                    format!("must be at least {MIN_FRAME} and more than `header`"),
                );
            }
            if l.idle_timeout_s == 0 {
                problem(key("idle_timeout_s"), "must be more than 0".into());
            }
            let tls = server_tls(l.tls.as_ref(), base)
                .map_err(|e| problem(key("tls"), e))
                .ok();
            if let (Some(address), Some(dialect), Some(tls)) = (address, dialect, tls) {
                listeners.push(ListenerConfig {
                    name: l.name.clone(),
                    address,
                    dialect,
                    codec: FrameCodec::new(l.framing)
                        .with_header(l.header)
                        .with_max_frame(l.max_frame),
                    max_connections: l.max_connections,
                    idle_timeout: Duration::from_secs(l.idle_timeout_s),
                    tls,
                });
            }
        }
        if raw.listeners.is_empty() {
            problem(
                "listener".into(),
                "at least one [[listener]] is needed".into(),
            );
        }

        let mut destinations = Vec::new();
        let dest_names: BTreeSet<String> =
            raw.destinations.iter().map(|d| d.name.clone()).collect();
        let mut seen = BTreeSet::new();
        for (i, d) in raw.destinations.iter().enumerate() {
            let key = |k: &str| format!("destination[{i}].{k}");
            if !seen.insert(d.name.clone()) {
                problem(key("name"), format!("`{}` is used twice", d.name));
            }
            let address = d
                .address
                .parse::<SocketAddr>()
                .map_err(|e| problem(key("address"), format!("`{}`: {e}", d.address)))
                .ok();
            let dialect = resolve_dialect(&d.dialect, base)
                .map_err(|e| problem(key("dialect"), e.to_string()))
                .ok();
            let header = match d.header.as_deref().map(hex::decode) {
                None => Some(Vec::new()),
                Some(Ok(bytes)) => Some(bytes),
                Some(Err(e)) => {
                    problem(key("header"), format!("not hex: {e}"));
                    None
                }
            };
            if !(1..=MAX_LINKS).contains(&d.links) {
                problem(key("links"), format!("must be between 1 and {MAX_LINKS}"));
            }
            if !(1..=86_400).contains(&d.echo_interval_s) {
                problem(key("echo_interval_s"), "must be between 1 and 86400".into());
            }
            if d.echo_misses == 0 {
                problem(key("echo_misses"), "must be at least 1".into());
            }
            if d.timeout_ms == Some(0) {
                problem(key("timeout_ms"), "must be more than 0".into());
            }
            if d.max_frame < MIN_FRAME {
                problem(key("max_frame"), format!("must be at least {MIN_FRAME}"));
            }
            if d.reconnect_min_ms == 0 || d.reconnect_min_ms > d.reconnect_max_ms {
                problem(
                    key("reconnect_min_ms"),
                    "must be more than 0 and at most reconnect_max_ms".into(),
                );
            }
            if let Some(fallback) = &d.fallback {
                if !dest_names.contains(fallback) {
                    problem(
                        key("fallback"),
                        format!("no destination named `{fallback}`"),
                    );
                } else if *fallback == d.name {
                    problem(
                        key("fallback"),
                        "a destination cannot fall back to itself".into(),
                    );
                }
            }
            let protection = d
                .security
                .resolve(Side::Destination, dialect.as_deref(), store.as_ref())
                .map_err(|errors| {
                    for (k, reason) in errors {
                        problem(key(&format!("security.{k}")), reason);
                    }
                })
                .ok();
            let tls = match &d.tls {
                None => Some(None),
                Some(t) => TlsConnector::load(ClientTlsFiles {
                    ca: base.join(&t.ca),
                    server_name: t.server_name.clone(),
                    cert: t.cert.as_ref().map(|c| base.join(c)),
                    key: t.key.as_ref().map(|k| base.join(k)),
                })
                .map(|c| Some(Arc::new(c)))
                .map_err(|e| problem(key("tls"), e.to_string()))
                .ok(),
            };
            if let (Some(address), Some(dialect), Some(header), Some(protection), Some(tls)) =
                (address, dialect, header, protection, tls)
            {
                destinations.push(DestinationConfig {
                    name: d.name.clone(),
                    address,
                    dialect,
                    codec: FrameCodec::new(d.framing)
                        .with_header(header.len())
                        .with_max_frame(d.max_frame),
                    header: header.into(),
                    links: d.links,
                    timeout: Duration::from_millis(d.timeout_ms.unwrap_or(sw.timeout_ms())),
                    echo_interval: Duration::from_secs(d.echo_interval_s),
                    echo_misses: d.echo_misses,
                    sign_on: d.sign_on,
                    fallback: d.fallback.clone(),
                    reconnect_min: Duration::from_millis(d.reconnect_min_ms),
                    reconnect_max: Duration::from_millis(d.reconnect_max_ms),
                    protection: Arc::new(protection),
                    tls,
                });
            }
        }

        let admin = raw.admin.as_ref().and_then(|a| {
            let address = a
                .address
                .parse::<SocketAddr>()
                .map_err(|e| problem("admin.address".into(), format!("`{}`: {e}", a.address)))
                .ok();
            if let Some(other) = address.and_then(|a| clash(&bound, a)) {
                problem(
                    "admin.address".into(),
                    format!("`{}` is also {other}: one socket per address", a.address),
                );
            }
            let tokens_file = base.join(&a.tokens_file);
            if let Err(e) = crate::admin::auth::Tokens::load(&tokens_file) {
                problem("admin.tokens_file".into(), e.to_string());
            }
            let tls = server_tls(a.tls.as_ref(), base)
                .map_err(|e| problem("admin.tls".into(), e))
                .ok();
            Some(AdminConfig {
                address: address?,
                tokens_file,
                audit_log: base.join(&a.audit_log),
                tls: tls?,
            })
        });
        let risk = RuleSet::build(&raw.risk)
            .map_err(|e| problem("risk".into(), e.to_string()))
            .ok();

        let tables = load_tables(&raw, base, &file, &dest_names, store.as_ref());
        let (terminals, routes) = match tables {
            Ok(t) => t,
            Err(mut more) => {
                problems.append(&mut more);
                (Terminals::default(), RouteTable::default())
            }
        };
        let names: Vec<String> = raw.destinations.iter().map(|d| d.name.clone()).collect();
        let clearing = raw
            .clearing
            .as_ref()
            .and_then(|c| match c.validate(base, &names) {
                Ok(c) => Some(c),
                Err(found) => {
                    problems.extend(
                        found
                            .into_iter()
                            .map(|(key, reason)| format!("{file}: {key}: {reason}")),
                    );
                    None
                }
            });
        problems.extend(ipm_name_problems(clearing.as_ref(), &terminals, &file));
        if store_failed {
            problems.retain(|p| !p.ends_with(NO_KEY_STORE));
        }
        let Some(risk) = risk.filter(|_| problems.is_empty()) else {
            return Err(ConfigError::Invalid(problems));
        };
        Ok(Config {
            path: path.to_path_buf(),
            switch: sw.settings(),
            journal,
            listeners,
            destinations,
            terminals,
            routes,
            log: raw.log.clone(),
            admin,
            risk,
            clearing,
        })
    }

    /// Re-reads the terminal registry, the routes and the risk rules from
    /// the config file (for SIGHUP), and the terminals' keys from the key
    /// store (so a rotated key takes effect). Destinations must be unchanged for routes to
    /// validate against them.
    pub fn reload_tables(&self) -> Result<Reloaded, ConfigError> {
        let text = read(&self.path)?;
        let raw: RawConfig = parse(&text, &self.path)?;
        let file = self.path.display().to_string();
        // The file is taken whole or not at all: a bad level refuses the
        // tables too (and the level stays).
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            return Err(ConfigError::Invalid(vec![format!(
                "{file}: log.level: `{}`: {e}",
                raw.log.level
            )]));
        }
        let names = self.destinations.iter().map(|d| d.name.clone()).collect();
        let base = self.path.parent().unwrap_or(Path::new("."));
        let store = open_store(&raw.security, base).map_err(|reason| {
            ConfigError::Invalid(vec![format!("{file}: security.key_store: {reason}")])
        })?;
        let risk = RuleSet::build(&raw.risk)
            .map_err(|e| ConfigError::Invalid(vec![format!("{file}: risk: {e}")]))?;
        let (terminals, routes) =
            load_tables(&raw, base, &file, &names, store.as_ref()).map_err(ConfigError::Invalid)?;
        let problems = ipm_name_problems(self.clearing.as_ref(), &terminals, &file);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(Reloaded {
            terminals,
            routes,
            risk,
        })
    }
}

/// When some destination takes IPM clearing files, every terminal's
/// `name_location` must fit IPM DE 43 (name, city, country code at
/// positions 38–40): found now rather than by the night's clearing run.
fn ipm_name_problems(
    clearing: Option<&crate::clearing::settings::ClearingConfig>,
    terminals: &Terminals,
    file: &str,
) -> Vec<String> {
    let takes_ipm = clearing.is_some_and(|c| {
        c.format.format == crate::clearing::settings::Format::Ipm
            || c.destinations
                .values()
                .any(|d| d.format == crate::clearing::settings::Format::Ipm)
    });
    if !takes_ipm {
        return Vec::new();
    }
    let mut problems: Vec<String> = terminals
        .iter()
        .filter_map(|t| {
            crate::clearing::ipm::check_name_location(&t.name_location)
                .err()
                .map(|reason| {
                    format!(
                        "{file}: terminal {}: name_location: {reason} (IPM clearing needs name, city and a country code at positions 38-40)",
                        t.id.trim_end()
                    )
                })
        })
        .collect();
    problems.sort();
    problems
}

/// Loads the TLS files of a listener or of the admin API, if it has any.
fn server_tls(tls: Option<&RawServerTls>, base: &Path) -> Result<Option<Arc<TlsAcceptor>>, String> {
    tls.map(|t| {
        TlsAcceptor::load(ServerTlsFiles {
            cert: base.join(&t.cert),
            key: base.join(&t.key),
            client_ca: t.client_ca.as_ref().map(|c| base.join(c)),
        })
        .map(Arc::new)
        .map_err(|e| e.to_string())
    })
    .transpose()
}

/// Who already listens where `address` would: the same port on the same
/// address, or on any address when either is unspecified (`0.0.0.0`, `[::]`
/// take every address of the port, IPv4 and IPv6 alike on Linux). A port of
/// 0 (any free port) never clashes.
fn clash(bound: &BTreeMap<SocketAddr, String>, address: SocketAddr) -> Option<&String> {
    if address.port() == 0 {
        return None;
    }
    bound
        .iter()
        .find(|(other, _)| {
            other.port() == address.port()
                && (other.ip() == address.ip()
                    || other.ip().is_unspecified()
                    || address.ip().is_unspecified())
        })
        .map(|(_, who)| who)
}

/// Opens the key store named in `[security]`, if any, with the master key
/// from `master_key_file` or the other places [`MasterKey::locate`] looks.
fn open_store(security: &RawSecurity, base: &Path) -> Result<Option<KeyStore>, String> {
    let Some(path) = &security.key_store else {
        return Ok(None);
    };
    let master_file = security.master_key_file.as_ref().map(|f| base.join(f));
    let master = MasterKey::locate(master_file.as_deref()).map_err(|e| e.to_string())?;
    KeyStore::open(&base.join(path), master)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Largest `max_connections` of a listener.
const MAX_CONNECTIONS: usize = 1_000_000;
/// Largest `links` of a destination.
const MAX_LINKS: usize = 64;
/// Smallest `max_frame`: room for an MTI, a bitmap and a few fields.
const MIN_FRAME: usize = 64;

/// A built-in dialect name, or a dialect file relative to the config file.
fn resolve_dialect(name: &str, base: &Path) -> Result<Arc<Dialect>, crate::iso8583::SpecError> {
    if Dialect::builtin(name).is_some() || Path::new(name).is_absolute() {
        return Dialect::resolve(name);
    }
    Dialect::resolve(&base.join(name).to_string_lossy())
}

/// Inline entries, then those of the named file, each labelled with where it
/// was written (`file: terminal[3]`) for error messages.
fn entries<T: Clone, F: serde::de::DeserializeOwned>(
    inline: &[T],
    file: &str,
    extra: Option<&Path>,
    kind: &str,
    from_file: impl Fn(F) -> Vec<T>,
    problems: &mut Vec<String>,
) -> Vec<(String, T)> {
    let mut all: Vec<(String, T)> = inline
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{file}: {kind}[{i}]"), t.clone()))
        .collect();
    if let Some(path) = extra {
        match read(path).and_then(|t| parse::<F>(&t, path)) {
            Ok(f) => all.extend(
                from_file(f)
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (format!("{}: {kind}[{i}]", path.display()), t)),
            ),
            Err(e) => problems.push(e.to_string()),
        }
    }
    all
}

/// Builds the terminal registry and route table from the inline entries and
/// the named files.
fn load_tables(
    raw: &RawConfig,
    base: &Path,
    file: &str,
    destinations: &BTreeSet<String>,
    store: Option<&KeyStore>,
) -> Result<(Terminals, RouteTable), Vec<String>> {
    let mut problems = Vec::new();
    let terminals_path = raw.terminals_file.as_ref().map(|n| base.join(n));
    let terminal_entries = entries(
        &raw.terminals,
        file,
        terminals_path.as_deref(),
        "terminal",
        |f: TerminalFile| f.terminals,
        &mut problems,
    );
    let routes_path = raw.routes_file.as_ref().map(|n| base.join(n));
    let route_entries = entries(
        &raw.routes,
        file,
        routes_path.as_deref(),
        "route",
        |f: RouteFile| f.routes,
        &mut problems,
    );
    let terminals =
        Terminals::build(terminal_entries, store).map_err(|mut p| problems.append(&mut p));
    let routes =
        RouteTable::build(route_entries, destinations).map_err(|mut p| problems.append(&mut p));
    match (terminals, routes) {
        (Ok(t), Ok(r)) if problems.is_empty() => Ok((t, r)),
        _ => Err(problems),
    }
}
