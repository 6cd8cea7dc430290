//! The daemon's configuration: TOML, validated at load with precise errors.
//!
//! Every problem names the file, the key and the reason, e.g.
//! `cardswitch.toml: destination[1].dialect: unknown dialect `iso99``.
//! `cardswitch config check FILE` runs exactly this validation. The format is
//! documented key by key in `docs/configuration.md`; `fixtures/cardswitch.toml` is a
//! complete example.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::adapter::DestinationConfig;
use crate::admin::AdminConfig;
use crate::clearing::settings::ClearingConfig;
use crate::iso8583::Dialect;
use crate::journal::JournalConfig;
use crate::registry::Terminals;
use crate::risk::RuleSet;
use crate::route::RouteTable;
use crate::security::keys::{KeyStore, KeyStoreError, MasterKey};
use crate::security::profile::NO_KEY_STORE;
use crate::switch::settings::SwitchSettings;
use crate::terminal::ListenerConfig;
use raw::{RawConfig, RawSecurity};

mod destinations;
mod journal;
mod listeners;
mod log;
mod raw;
mod tables;

pub use log::{LogFormat, LogSettings};

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
    /// Syntax or shape error, as reported by the TOML parser (with line;
    /// its lines after the first indented).
    #[error("{file}: {}", indented(.source))]
    Syntax {
        /// The file.
        file: String,
        /// Parser error.
        source: toml::de::Error,
    },
    /// A section read on its own (`[log]` before the rest) has the wrong
    /// shape, as reported by the TOML deserializer.
    #[error("{file}: {source}")]
    Shape {
        /// The file.
        file: String,
        /// Deserializer error.
        source: toml::de::Error,
    },
    /// One or more values are invalid.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
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
    pub clearing: Option<ClearingConfig>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.display().to_string(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Syntax {
        file: path.display().to_string(),
        source,
    })
}

/// A parser message under its file name: trailing white space dropped,
/// lines after the first indented.
fn indented(e: &toml::de::Error) -> String {
    e.to_string().trim_end().replace('\n', "\n    ")
}

/// What validation found wrong, each as `file: key: reason`, in the order
/// found.
#[derive(Debug)]
struct Problems {
    file: String,
    found: Vec<String>,
}

impl Problems {
    fn new(file: &str) -> Problems {
        Problems {
            file: file.to_string(),
            found: Vec::new(),
        }
    }

    /// A problem with `key`.
    fn add(&mut self, key: impl fmt::Display, reason: impl fmt::Display) {
        self.found.push(format!("{}: {key}: {reason}", self.file));
    }

    /// Problems already written out in full.
    fn extend(&mut self, lines: impl IntoIterator<Item = String>) {
        self.found.extend(lines);
    }
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
        let mut problems = Problems::new(&file);

        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            problems.add("log.level", format!("`{}`: {e}", raw.log.level));
        }
        for (key, reason) in raw.switch.problems() {
            problems.add(key, reason);
        }
        let switch = raw.switch.settings();
        let opened = open_store(&raw.security, base);
        // A store that does not open (a wrong master key, say) is reported
        // once: what needs its keys does not ask for one to be configured.
        let store_failed = opened.is_err();
        let store = opened
            .map_err(|reason| problems.add("security.key_store", reason))
            .ok()
            .flatten();
        let journal = journal::journal(&raw.journal, base, store.as_ref(), &mut problems);
        let mut bound = listeners::Bound::new();
        let listeners = listeners::listeners(&raw.listeners, base, &mut bound, &mut problems);
        let destinations = destinations::destinations(
            &raw.destinations,
            base,
            store.as_ref(),
            raw.switch.timeout_ms(),
            &mut problems,
        );
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| listeners::admin(a, base, &bound, &mut problems));
        let risk = RuleSet::build(&raw.risk)
            .map_err(|e| problems.add("risk", e))
            .ok();
        let dest_names: BTreeSet<String> =
            raw.destinations.iter().map(|d| d.name.clone()).collect();
        let (terminals, routes) =
            match tables::load_tables(&raw, base, &file, &dest_names, store.as_ref()) {
                Ok(t) => t,
                Err(more) => {
                    problems.extend(more);
                    (Terminals::default(), RouteTable::default())
                }
            };
        let clearing = clearing(&raw, base, &mut problems);
        problems.extend(tables::ipm_name_problems(
            clearing.as_ref(),
            &terminals,
            &file,
        ));
        let mut problems = problems.found;
        if store_failed {
            problems.retain(|p| !p.ends_with(NO_KEY_STORE));
        }
        let Some(risk) = risk.filter(|_| problems.is_empty()) else {
            return Err(ConfigError::Invalid(problems));
        };
        Ok(Config {
            path: path.to_path_buf(),
            switch,
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
        let (terminals, routes) = tables::load_tables(&raw, base, &file, &names, store.as_ref())
            .map_err(ConfigError::Invalid)?;
        let problems = tables::ipm_name_problems(self.clearing.as_ref(), &terminals, &file);
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

/// `[clearing]`, validated against the destinations, when it is there.
fn clearing(raw: &RawConfig, base: &Path, problems: &mut Problems) -> Option<ClearingConfig> {
    let names: Vec<String> = raw.destinations.iter().map(|d| d.name.clone()).collect();
    match raw.clearing.as_ref()?.validate(base, &names) {
        Ok(c) => Some(c),
        Err(found) => {
            for (key, reason) in found {
                problems.add(key, reason);
            }
            None
        }
    }
}

/// Opens the key store named in `[security]`, if any, with the master key
/// from `master_key_file` or the other places [`MasterKey::locate`] looks.
fn open_store(security: &RawSecurity, base: &Path) -> Result<Option<KeyStore>, KeyStoreError> {
    let Some(path) = &security.key_store else {
        return Ok(None);
    };
    let master_file = security.master_key_file.as_ref().map(|f| base.join(f));
    let master = MasterKey::locate(master_file.as_deref())?;
    KeyStore::open(&base.join(path), master).map(Some)
}

/// A built-in dialect name, or a dialect file relative to the config file.
fn resolve_dialect(name: &str, base: &Path) -> Result<Arc<Dialect>, crate::iso8583::SpecError> {
    if Dialect::builtin(name).is_some() || Path::new(name).is_absolute() {
        return Dialect::resolve(name);
    }
    Dialect::resolve(&base.join(name).to_string_lossy())
}
