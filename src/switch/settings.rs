//! `[switch]` in the config file: the acquirer's identities, the default
//! time a destination has to answer, the shutdown grace and the size of the
//! recent-transaction cache.
//!
//! ```toml
//! [switch]
//! acquirer_id = "12345678901"   # 1 to 11 digits, field 32
//! forwarding_id = "1234"        # optional, field 33
//! timeout_ms = 5000             # default destination timeout
//! shutdown_grace_ms = 5000      # how long shutdown waits for requests
//! recent_cache = 100000         # transactions kept in memory
//! ```

use std::time::Duration;

use crate::translate::Institution;

use serde::Deserialize;

/// `[switch]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSwitch {
    acquirer_id: String,
    #[serde(default)]
    forwarding_id: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_grace_ms")]
    shutdown_grace_ms: u64,
    #[serde(default = "default_recent_cache")]
    recent_cache: usize,
}

fn default_recent_cache() -> usize {
    100_000
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_grace_ms() -> u64 {
    5000
}

fn valid_institution(id: &str) -> bool {
    (1..=11).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

impl RawSwitch {
    /// What is wrong with the section, each problem as (key, reason), in
    /// the order the keys are written above.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !valid_institution(&self.acquirer_id) {
            problems.push(("switch.acquirer_id".into(), "must be 1 to 11 digits".into()));
        }
        if self
            .forwarding_id
            .as_deref()
            .is_some_and(|f| !valid_institution(f))
        {
            problems.push((
                "switch.forwarding_id".into(),
                "must be 1 to 11 digits".into(),
            ));
        }
        if self.recent_cache == 0 {
            problems.push(("switch.recent_cache".into(), "must be more than 0".into()));
        }
        if self.timeout_ms == 0 {
            problems.push(("switch.timeout_ms".into(), "must be more than 0".into()));
        }
        problems
    }

    /// The default destination timeout, in milliseconds as written.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// The settings (meaningful once [`RawSwitch::problems`] is empty).
    pub fn settings(&self) -> SwitchSettings {
        SwitchSettings {
            institution: Institution {
                acquirer_id: self.acquirer_id.clone(),
                forwarding_id: self.forwarding_id.clone(),
            },
            timeout: Duration::from_millis(self.timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            recent_cache: self.recent_cache,
        }
    }
}

/// Switch-wide settings.
#[derive(Debug, Clone)]
pub struct SwitchSettings {
    /// The switch's institution ids (fields 32 and 33).
    pub institution: Institution,
    /// Default time a destination has to answer.
    pub timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How many recent transactions are kept in memory in front of the
    /// journal index (retransmissions and reversals of older ones are found
    /// in the index).
    pub recent_cache: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawSwitch {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_problems() {
        let s = parse(r#"acquirer_id = "123456""#);
        assert!(s.problems().is_empty());
        let settings = s.settings();
        assert_eq!(settings.timeout, Duration::from_millis(5000));
        assert_eq!(settings.shutdown_grace, Duration::from_millis(5000));
        assert_eq!(settings.recent_cache, 100_000);
        let bad = parse(
            r#"acquirer_id = "12a"
forwarding_id = "123456789012"
recent_cache = 0
timeout_ms = 0"#,
        );
        let keys: Vec<String> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "switch.acquirer_id",
                "switch.forwarding_id",
                "switch.recent_cache",
                "switch.timeout_ms"
            ]
        );
        assert!(toml::from_str::<RawSwitch>("acquirer_id = \"1\"\nextra = 1").is_err());
    }
}
