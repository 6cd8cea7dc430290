//! Business dates as the journal writes them, `YYYYMMDD`.

/// The calendar date of a `YYYYMMDD` text; `None` unless it is one.
pub fn civil_date(text: &str) -> Option<jiff::civil::Date> {
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
pub fn compact(date: jiff::civil::Date) -> String {
    format!("{:04}{:02}{:02}", date.year(), date.month(), date.day())
}
