//! End-of-day clearing for cardswitch: which transactions of a business
//! date clear ([`select`]), the clearing files for each destination (IPM,
//! a dialect of `iso8583`, or CSV), the settlement report ([`settlement`])
//! and the reconciliation against a bank's settlement file ([`recon`]).
//!
//! It reads the switch's journal through the narrow reader API of
//! [`journal`], which the daemon implements; [`run`] clears one date
//! exactly once.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ard;
pub mod csv;
pub mod currency;
pub mod dates;
pub mod ipm;
pub mod item;
pub mod journal;
pub mod recon;
pub mod run;
pub mod select;
pub mod settings;
pub mod settlement;

pub use item::{ClearedKind, Presentment, Reversed};
pub use journal::TxnId;
