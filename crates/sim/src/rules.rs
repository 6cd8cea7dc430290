//! Fault-injection rules of the bank simulator.
//!
//! The simulator approves every request unless a rule says otherwise. Rules
//! are read from TOML, one `[[rule]]` table each, and tried in file order:
//! the **first** rule whose match keys all hold decides.
//!
//! ```toml
//! [[rule]]                 # insufficient funds for 51.00
//! amount = 5100
//! decline = "51"
//!
//! [[rule]]                 # a slow issuer: every card of this BIN waits 200 ms, then is approved
//! pan_prefix = "476199"
//! delay_ms = 200
//!
//! [[rule]]                 # slow and declined
//! amount_min = 100000
//! delay_ms = 50
//! decline = "61"
//!
//! [[rule]]                 # the bank never answers (the switch times out)
//! amount = 9100
//! no_answer = true
//!
//! [[rule]]                 # the bank drops the link when this terminal sends anything
//! terminal = "TERM0666"
//! close = true
//! ```
//!
//! Match keys (all optional; a rule without any matches every request):
//!
//! | key | matches |
//! |-----|---------|
//! | `amount` | field 4 equals this many minor units |
//! | `amount_min`, `amount_max` | field 4 within these bounds (inclusive) |
//! | `pan_prefix` | the PAN (field 2, else the PAN in track 2, field 35) starts with these digits |
//! | `terminal` | field 41 equals this (trailing spaces ignored) |
//! | `mti` | the request MTI, e.g. `"0200"` or `"0800"` |
//!
//! Actions, exactly one of: `decline = "CODE"` (a 1987 response code such as
//! `"51"`, or a 1993 action code such as `"116"`; the simulator converts it to
//! the style of its dialect with [`codes::in_style`](iso8583::codes::in_style)),
//! `delay_ms = N` (answer after N ms; approve unless `decline` is also given),
//! `no_answer = true`, `close = true`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use iso8583::{Message, Mti};

/// A PAN prefix that [`Rules::builtin_demo`] answers slowly (20 ms).
pub const DEMO_SLOW_BIN: &str = "455599";
/// Amount (minor units) that [`Rules::builtin_demo`] declines with `51`.
pub const DEMO_AMOUNT_INSUFFICIENT_FUNDS: u64 = 5100;
/// Amount (minor units) that [`Rules::builtin_demo`] declines with `55`.
pub const DEMO_AMOUNT_INCORRECT_PIN: u64 = 5500;
/// Amount (minor units) that [`Rules::builtin_demo`] never answers.
pub const DEMO_AMOUNT_NO_ANSWER: u64 = 9100;

/// A rules file could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML, or has keys other than `[[rule]]` tables.
    #[error("{file}: {}", .source.to_string().trim_end())]
    Syntax {
        /// The file.
        file: String,
        /// Parser error, with line and column.
        source: toml::de::Error,
    },
    /// One rule is not valid.
    #[error("{file}: rule {index}: {reason}")]
    Rule {
        /// The file.
        file: String,
        /// Position of the `[[rule]]` table in the file, from 1.
        index: usize,
        /// What is wrong with it.
        #[source]
        reason: RuleError,
    },
}

/// What is wrong with one rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A value has the wrong type or an unknown key (the TOML message).
    #[error("{}", .0.message().trim_end())]
    Value(#[source] toml::de::Error),
    /// `amount_min` is above `amount_max`.
    #[error("amount_min {min} is above amount_max {max}")]
    AmountRange {
        /// `amount_min`.
        min: u64,
        /// `amount_max`.
        max: u64,
    },
    /// `amount` given with `amount_min` or `amount_max`.
    #[error("give `amount` or `amount_min`/`amount_max`, not both")]
    AmountBoth,
    /// A bad `pan_prefix`.
    #[error("pan_prefix {0:?} must be 1 to 19 digits")]
    PanPrefix(String),
    /// A bad `terminal`.
    #[error("terminal {0:?} must be 1 to 8 printable characters")]
    Terminal(String),
    /// A bad `mti`.
    #[error("mti {0:?} is not a request MTI such as \"0200\"")]
    Mti(String),
    /// A bad `decline`.
    #[error(
        "decline {0:?} is not a response code (two characters such as \"51\", or three digits such as \"116\")"
    )]
    Decline(String),
    /// No action given.
    #[error("no action: give one of `decline`, `delay_ms`, `no_answer = true`, `close = true`")]
    NoAction,
    /// Actions that exclude each other.
    #[error(
        "`no_answer` and `close` cannot be combined with each other or with `decline`/`delay_ms`"
    )]
    Combined,
}

/// When a rule applies. Every key given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Field 4 equals this many minor units.
    pub amount: Option<u64>,
    /// Field 4 is at least this.
    pub amount_min: Option<u64>,
    /// Field 4 is at most this.
    pub amount_max: Option<u64>,
    /// The PAN starts with these digits.
    pub pan_prefix: Option<String>,
    /// Field 41 equals this, trailing spaces ignored.
    pub terminal: Option<String>,
    /// The request MTI.
    pub mti: Option<Mti>,
}

impl Match {
    /// Whether every key of the match holds for `request`.
    pub fn matches(&self, request: &Message) -> bool {
        if let Some(mti) = self.mti
            && request.mti() != mti
        {
            return false;
        }
        if self.amount.is_some() || self.amount_min.is_some() || self.amount_max.is_some() {
            let Some(amount) = request.amount() else {
                return false;
            };
            let fails = self.amount.is_some_and(|a| a != amount)
                || self.amount_min.is_some_and(|a| amount < a)
                || self.amount_max.is_some_and(|a| amount > a);
            if fails {
                return false;
            }
        }
        if let Some(prefix) = &self.pan_prefix {
            let pan = request
                .pan()
                .or_else(|| request.track2().map(|t| t.pan()))
                .map(|p| p.expose());
            if !pan.is_some_and(|p| p.starts_with(prefix.as_str())) {
                return false;
            }
        }
        if let Some(terminal) = &self.terminal {
            let got = request.terminal_id().map(|t| t.trim_end());
            if got != Some(terminal.as_str()) {
                return false;
            }
        }
        true
    }
}

/// What the simulator does with a request a rule matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer, after `delay`, approving unless `decline` holds a code.
    Respond {
        /// How long to wait before answering (other requests on the same
        /// link are answered meanwhile).
        delay: Duration,
        /// Response code to decline with (1987 or 1993 style).
        decline: Option<String>,
    },
    /// Never answer.
    NoAnswer,
    /// Close the connection without answering.
    Close,
}

/// One rule: a match and an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// When the rule applies.
    pub when: Match,
    /// What to do then.
    pub action: Action,
}

/// An ordered list of rules; the first match wins, no match approves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    amount: Option<u64>,
    amount_min: Option<u64>,
    amount_max: Option<u64>,
    pan_prefix: Option<String>,
    terminal: Option<String>,
    mti: Option<String>,
    decline: Option<String>,
    delay_ms: Option<u64>,
    #[serde(default)]
    no_answer: bool,
    #[serde(default)]
    close: bool,
}

impl Rules {
    /// Rules in the given order.
    pub fn new(rules: Vec<Rule>) -> Rules {
        Rules { rules }
    }

    /// Parses and validates rules from TOML text; `file` names the source in
    /// every error.
    pub fn from_toml(text: &str, file: &str) -> Result<Rules, RulesError> {
        let raw: RawFile = toml::from_str(text).map_err(|source| RulesError::Syntax {
            file: file.to_string(),
            source,
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (i, value) in raw.rule.into_iter().enumerate() {
            let fail = |reason: RuleError| RulesError::Rule {
                file: file.to_string(),
                index: i + 1,
                reason,
            };
            let raw: RawRule = value
                .try_into()
                .map_err(|e: toml::de::Error| fail(RuleError::Value(e)))?;
            rules.push(raw.validate().map_err(fail)?);
        }
        Ok(Rules { rules })
    }

    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            file: file.clone(),
            source,
        })?;
        Rules::from_toml(&text, &file)
    }

    /// The rules `cardswitch demo` gives its banks: amount
    /// [`DEMO_AMOUNT_INSUFFICIENT_FUNDS`] → `51`, [`DEMO_AMOUNT_INCORRECT_PIN`]
    /// → `55`, [`DEMO_AMOUNT_NO_ANSWER`] → no answer, PANs starting with
    /// [`DEMO_SLOW_BIN`] → approved after 20 ms.
    pub fn builtin_demo() -> Rules {
        let decline = |amount, code: &str| Rule {
            when: Match {
                amount: Some(amount),
                ..Match::default()
            },
            action: Action::Respond {
                delay: Duration::ZERO,
                decline: Some(code.to_string()),
            },
        };
        Rules::new(vec![
            decline(DEMO_AMOUNT_INSUFFICIENT_FUNDS, "51"),
            decline(DEMO_AMOUNT_INCORRECT_PIN, "55"),
            Rule {
                when: Match {
                    amount: Some(DEMO_AMOUNT_NO_ANSWER),
                    ..Match::default()
                },
                action: Action::NoAnswer,
            },
            Rule {
                when: Match {
                    pan_prefix: Some(DEMO_SLOW_BIN.to_string()),
                    ..Match::default()
                },
                action: Action::Respond {
                    delay: Duration::from_millis(20),
                    decline: None,
                },
            },
        ])
    }

    /// The action of the first rule matching `request`; `None` means
    /// approve at once.
    pub fn decide(&self, request: &Message) -> Option<&Action> {
        self.rules
            .iter()
            .find(|r| r.when.matches(request))
            .map(|r| &r.action)
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (approve everything).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Whether `code` can be a response code: two letters or digits (1987), or
/// three digits (1993 action code).
pub(crate) fn is_response_code(code: &str) -> bool {
    match code.len() {
        2 => code.bytes().all(|b| b.is_ascii_alphanumeric()),
        3 => code.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

impl RawRule {
    fn validate(self) -> Result<Rule, RuleError> {
        if let (Some(min), Some(max)) = (self.amount_min, self.amount_max)
            && min > max
        {
            return Err(RuleError::AmountRange { min, max });
        }
        if self.amount.is_some() && (self.amount_min.is_some() || self.amount_max.is_some()) {
            return Err(RuleError::AmountBoth);
        }
        if let Some(prefix) = &self.pan_prefix
            && (prefix.is_empty()
                || prefix.len() > 19
                || !prefix.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(RuleError::PanPrefix(prefix.clone()));
        }
        if let Some(terminal) = &self.terminal
            && (terminal.trim_end().is_empty()
                || terminal.trim_end().len() > 8
                || !terminal.bytes().all(|b| (0x20..=0x7E).contains(&b)))
        {
            return Err(RuleError::Terminal(terminal.clone()));
        }
        let mti = match &self.mti {
            Some(text) => Some(
                Mti::parse(text)
                    .ok()
                    .filter(Mti::is_request)
                    .ok_or_else(|| RuleError::Mti(text.clone()))?,
            ),
            None => None,
        };
        if let Some(code) = &self.decline
            && !is_response_code(code)
        {
            return Err(RuleError::Decline(code.clone()));
        }
        let action = match (self.decline, self.delay_ms, self.no_answer, self.close) {
            (None, None, false, false) => {
                return Err(RuleError::NoAction);
            }
            (decline, delay, false, false) => Action::Respond {
                delay: Duration::from_millis(delay.unwrap_or(0)),
                decline,
            },
            (None, None, true, false) => Action::NoAnswer,
            (None, None, false, true) => Action::Close,
            _ => {
                return Err(RuleError::Combined);
            }
        };
        Ok(Rule {
            when: Match {
                amount: self.amount,
                amount_min: self.amount_min,
                amount_max: self.amount_max,
                pan_prefix: self.pan_prefix,
                terminal: self.terminal.map(|t| t.trim_end().to_string()),
                mti,
            },
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Rules::from_toml(text, "bank.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_full_file_parses_in_order() {
        let rules = Rules::from_toml(
            r#"
            [[rule]]
            amount = 5100
            decline = "51"
            [[rule]]
            pan_prefix = "476199"
            delay_ms = 200
            [[rule]]
            amount_min = 100000
            amount_max = 200000
            delay_ms = 50
            decline = "116"
            [[rule]]
            mti = "0200"
            terminal = "TERM0666"
            close = true
            [[rule]]
            no_answer = true
            "#,
            "bank.toml",
        )
        .unwrap();
        assert_eq!(rules.len(), 5);
        let actions: Vec<_> = rules.rules().iter().map(|r| r.action.clone()).collect();
        assert_eq!(
            actions,
            [
                Action::Respond {
                    delay: Duration::ZERO,
                    decline: Some("51".into())
                },
                Action::Respond {
                    delay: Duration::from_millis(200),
                    decline: None
                },
                Action::Respond {
                    delay: Duration::from_millis(50),
                    decline: Some("116".into())
                },
                Action::Close,
                Action::NoAnswer,
            ]
        );
        assert!(Rules::from_toml("", "empty.toml").unwrap().is_empty());
    }

    #[test]
    fn errors_name_file_rule_and_reason() {
        let e = error("[[rule]]\namount = 1\ndecline = \"51\"\n[[rule]]\namount = 2\n");
        assert!(e.starts_with("bank.toml: rule 2: no action"), "{e}");
        let e = error("[[rule]]\namount = 1\ncolour = \"red\"\ndecline = \"05\"\n");
        assert!(
            e.starts_with("bank.toml: rule 1: unknown field `colour`"),
            "{e}"
        );
        let e = error("[[rule]]\nclose = true\ndecline = \"05\"\n");
        assert!(e.contains("rule 1: `no_answer` and `close` cannot"), "{e}");
        let e = error("[[rule]]\nno_answer = true\nclose = true\n");
        assert!(e.contains("rule 1: `no_answer` and `close` cannot"), "{e}");
        let e = error("[[rule]]\ndecline = \"5\"\n");
        assert!(
            e.contains("rule 1: decline \"5\" is not a response code"),
            "{e}"
        );
        let e = error("[[rule]]\namount_min = 9\namount_max = 1\nclose = true\n");
        assert!(
            e.contains("rule 1: amount_min 9 is above amount_max 1"),
            "{e}"
        );
        let e = error("[[rule]]\npan_prefix = \"47x\"\nclose = true\n");
        assert!(e.contains("rule 1: pan_prefix \"47x\" must be"), "{e}");
        let e = error("[[rule]]\nmti = \"0210\"\nclose = true\n");
        assert!(e.contains("rule 1: mti \"0210\" is not a request"), "{e}");
        let e = error("[[rule]]\nterminal = \"TERMINAL9\"\nclose = true\n");
        assert!(e.contains("rule 1: terminal \"TERMINAL9\" must be"), "{e}");
        let e = error("[[rule]]\namount = -5\nclose = true\n");
        assert!(e.starts_with("bank.toml: rule 1: "), "{e}");
        let e = error("[[rules]]\nclose = true\n");
        assert!(e.starts_with("bank.toml: ") && e.contains("rules"), "{e}");
        let e = error("[[rule]\n");
        assert!(e.starts_with("bank.toml: "), "{e}");
        let e = Rules::load(Path::new("/nonexistent/bank.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/bank.toml: cannot read"), "{e}");
    }

    #[test]
    fn first_match_wins_and_keys_combine() {
        let mut m = Message::new(Mti::parse("0200").unwrap());
        m.set(2, "4555990000000001")
            .set(4, "000000005100")
            .set(41, "TERM0001");
        let demo = Rules::builtin_demo();
        assert_eq!(
            demo.decide(&m),
            Some(&Action::Respond {
                delay: Duration::ZERO,
                decline: Some("51".into())
            }),
            "the amount rule comes before the slow BIN"
        );
        m.set(4, "000000001000");
        assert!(matches!(
            demo.decide(&m),
            Some(Action::Respond { delay, decline: None }) if *delay == Duration::from_millis(20)
        ));
        m.set(2, "4761730000000001");
        assert_eq!(demo.decide(&m), None);

        let rules = Rules::from_toml(
            "[[rule]]\nterminal = \"TERM0001\"\nmti = \"0100\"\nclose = true\n\
             [[rule]]\nterminal = \"TERM0001  \"\namount_max = 1000\nno_answer = true\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(rules.decide(&m), Some(&Action::NoAnswer));
        m.set_mti(Mti::parse("0100").unwrap());
        assert_eq!(rules.decide(&m), Some(&Action::Close));
        m.remove(4);
        m.set_mti(Mti::parse("0200").unwrap());
        assert_eq!(
            rules.decide(&m),
            None,
            "no amount never matches an amount key"
        );
    }
}
