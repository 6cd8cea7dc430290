//! The config file as written: serde shapes, before validation.

use std::path::PathBuf;

use serde::Deserialize;

use super::LogSettings;
use crate::iso8583::framing::LengthPrefix;
use crate::journal::Durability;
use crate::registry::TerminalEntry;
use crate::risk::RiskConfig;
use crate::route::RouteEntry;
use crate::security::profile::ProtectionEntry;
use crate::switch::settings::RawSwitch;

/// Top-level config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) switch: RawSwitch,
    pub(super) journal: RawJournal,
    #[serde(default, rename = "listener")]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default, rename = "destination")]
    pub(super) destinations: Vec<RawDestination>,
    #[serde(default)]
    pub(super) terminals_file: Option<PathBuf>,
    #[serde(default, rename = "terminal")]
    pub(super) terminals: Vec<TerminalEntry>,
    #[serde(default)]
    pub(super) routes_file: Option<PathBuf>,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<RouteEntry>,
    #[serde(default)]
    pub(super) security: RawSecurity,
    #[serde(default)]
    pub(super) log: LogSettings,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) risk: RiskConfig,
    #[serde(default)]
    pub(super) clearing: Option<crate::clearing::settings::RawClearing>,
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default = "default_admin_address")]
    pub(super) address: String,
    pub(super) tokens_file: PathBuf,
    pub(super) audit_log: PathBuf,
    #[serde(default)]
    pub(super) tls: Option<RawServerTls>,
}

fn default_admin_address() -> String {
    "127.0.0.1:9180".into()
}

/// `[security]`: where the key store is and how to find its master key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurity {
    #[serde(default)]
    pub(super) key_store: Option<PathBuf>,
    #[serde(default)]
    pub(super) master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) dir: PathBuf,
    #[serde(default)]
    pub(super) data_key_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) data_key: Option<String>,
    #[serde(default)]
    pub(super) durability: Durability,
    #[serde(default = "default_segment_mb")]
    pub(super) segment_mb: u64,
    #[serde(default = "default_cutover")]
    pub(super) cutover: String,
    #[serde(default = "default_time_zone")]
    pub(super) time_zone: String,
    #[serde(default = "default_saf_retry_min_ms")]
    pub(super) saf_retry_min_ms: u64,
    #[serde(default = "default_saf_retry_max_ms")]
    pub(super) saf_retry_max_ms: u64,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) dialect: String,
    #[serde(default)]
    pub(super) framing: LengthPrefix,
    #[serde(default)]
    pub(super) header: usize,
    #[serde(default = "default_max_frame")]
    pub(super) max_frame: usize,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: usize,
    #[serde(default = "default_idle_s")]
    pub(super) idle_timeout_s: u64,
    #[serde(default)]
    pub(super) tls: Option<RawServerTls>,
}

/// `tls = { cert, key, client_ca }` of a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerTls {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    #[serde(default)]
    pub(super) client_ca: Option<PathBuf>,
}

/// `tls = { ca, server_name, cert, key }` of a destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientTls {
    pub(super) ca: PathBuf,
    pub(super) server_name: String,
    #[serde(default)]
    pub(super) cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) dialect: String,
    #[serde(default)]
    pub(super) framing: LengthPrefix,
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default = "default_max_frame")]
    pub(super) max_frame: usize,
    #[serde(default = "default_links")]
    pub(super) links: usize,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default = "default_echo_s")]
    pub(super) echo_interval_s: u64,
    #[serde(default = "default_echo_misses")]
    pub(super) echo_misses: u32,
    #[serde(default = "default_true")]
    pub(super) sign_on: bool,
    #[serde(default)]
    pub(super) fallback: Option<String>,
    #[serde(default = "default_backoff_min_ms")]
    pub(super) reconnect_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub(super) reconnect_max_ms: u64,
    #[serde(default)]
    pub(super) security: ProtectionEntry,
    #[serde(default)]
    pub(super) tls: Option<RawClientTls>,
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
