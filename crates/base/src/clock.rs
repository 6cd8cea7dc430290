//! UTC wall-clock fields as ISO 8583 writes them (field 7 `MMDDhhmmss`,
//! 1993 field 12 `YYMMDDhhmmss` …), without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2025.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31.
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
    /// Minute, 0..=59.
    pub minute: u32,
    /// Second, 0..=59.
    pub second: u32,
}

impl DateTime {
    /// The current time (the epoch if the system clock is before it).
    pub fn now() -> DateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        DateTime::from_unix(secs)
    }

    /// The date and time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> DateTime {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rest = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (rest / 3600) as u32,
            minute: (rest / 60 % 60) as u32,
            second: (rest % 60) as u32,
        }
    }

    /// Field 7, transmission date and time: `MMDDhhmmss`.
    pub fn mmddhhmmss(&self) -> String {
        format!(
            "{:02}{:02}{:02}{:02}{:02}",
            self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// RFC 3339 in UTC: `YYYY-MM-DDThh:mm:ssZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Field 12 in 1987: `hhmmss`.
    pub fn hhmmss(&self) -> String {
        format!("{:02}{:02}{:02}", self.hour, self.minute, self.second)
    }

    /// Field 12 in 1993: `YYMMDDhhmmss`.
    pub fn yymmddhhmmss(&self) -> String {
        format!(
            "{:02}{:02}{:02}{}",
            self.year.rem_euclid(100),
            self.month,
            self.day,
            self.hhmmss()
        )
    }

    /// Two-digit year.
    pub fn yy(&self) -> String {
        format!("{:02}", self.year.rem_euclid(100))
    }

    /// Field 13 in 1987: `MMDD`.
    pub fn mmdd(&self) -> String {
        format!("{:02}{:02}", self.month, self.day)
    }

    /// An expiry date (`YYMM`) `years` years ahead.
    pub fn expiry(&self, years: i64) -> String {
        format!(
            "{:02}{:02}",
            (self.year + years).rem_euclid(100),
            self.month
        )
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let t = DateTime::from_unix(0);
        assert_eq!((t.year, t.month, t.day), (1970, 1, 1));
        // 2024-02-29T23:59:58Z, a leap day.
        let t = DateTime::from_unix(1_709_251_198);
        assert_eq!((t.year, t.month, t.day), (2024, 2, 29));
        assert_eq!(t.mmddhhmmss(), "0229235958");
        assert_eq!(t.yymmddhhmmss(), "240229235958");
        assert_eq!(t.mmdd(), "0229");
        assert_eq!(t.expiry(3), "2702");
        // 2000-03-01T00:00:00Z.
        let t = DateTime::from_unix(951_868_800);
        assert_eq!((t.year, t.month, t.day, t.hour), (2000, 3, 1, 0));
    }
}
