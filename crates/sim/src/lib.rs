//! cardswitch's simulators: a bank host that answers what a switch forwards, and a fleet
//! of POS terminals that load a switch (or a bank) and check every answer.
//!
//! * [`bank`] — [`BankSim`]: approves by default, follows [`Rules`] keyed on
//!   amount, PAN prefix, terminal or MTI (decline, delay, never answer,
//!   close the link), answers network management.
//! * [`ledger`] — [`Ledger`]: what the bank approved and what was reversed.
//! * [`rules`] — the rules file format and [`Rules::builtin_demo`].
//! * [`pos`] — [`run`] a [`PosConfig`]: pipelined requests on
//!   many connections, Luhn-valid PANs on configurable BINs, verification,
//!   latency histogram, [`PosReport`].
//! * [`scenario`] — [`Scenario`] and [`TxnTemplate`]: what the terminals send.
//! * [`report`] — [`PosReport`]: counts, codes, latency; human and JSON forms.
//!
//! Both simulators speak any dialect: against a dialect whose field 39 holds
//! three characters (`iso93binary`) they use 1993 MTIs (`1200`) and action
//! codes ([`codes`](iso8583::codes)).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bank;
mod encode;
pub mod ledger;
pub mod pos;
pub mod report;
pub mod rules;
pub mod scenario;

pub use bank::{BankHandle, BankSim, BankStats, BankStatsSnapshot};
pub use ledger::{Approval, Ledger};
pub use pos::{ConfigProblem, PosConfig, PosError, run};
pub use report::{Latency, PosReport};
pub use rules::{Action, Match, Rule, RuleError, Rules, RulesError};
pub use scenario::{Scenario, ScenarioError, TemplateError, TxnTemplate};
