//! End-of-day clearing: which transactions of a business date clear, the
//! clearing files for each destination (IPM or CSV), the settlement report
//! and the reconciliation against a bank's settlement file.

pub mod ard;
pub mod csv;
pub mod currency;
pub mod ipm;
pub mod item;
pub mod recon;
pub mod run;
pub mod select;
pub mod settings;
pub mod settlement;

pub use item::{ClearedKind, Presentment, Reversed};

/// `YYYYMMDD` dates, as the journal's business dates are written.
pub(crate) use crate::journal::cutover::{civil_date, compact};
