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

/// The calendar date of a `YYYYMMDD` text; `None` unless it is one.
pub(crate) fn civil_date(text: &str) -> Option<jiff::civil::Date> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    jiff::civil::Date::new(
        text.get(..4)?.parse().ok()?,
        text.get(4..6)?.parse().ok()?,
        text.get(6..8)?.parse().ok()?,
    )
    .ok()
}

/// `YYYYMMDD` of a calendar date.
pub(crate) fn compact(date: jiff::civil::Date) -> String {
    format!("{:04}{:02}{:02}", date.year(), date.month(), date.day())
}
