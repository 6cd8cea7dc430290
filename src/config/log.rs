//! `[log]`: how the daemon logs.

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, parse, read};

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
        let only: OnlyLog =
            toml::Value::Table(raw)
                .try_into()
                .map_err(|source| ConfigError::Shape {
                    file: path.display().to_string(),
                    source,
                })?;
        Ok(only.log)
    }
}
