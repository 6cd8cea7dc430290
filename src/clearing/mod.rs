//! End-of-day clearing: which transactions of a business date clear, the
//! clearing files for each destination (IPM or CSV), the settlement report
//! and the reconciliation against a bank's settlement file.

pub mod item;

pub use item::{ClearedKind, Presentment, Reversed};
