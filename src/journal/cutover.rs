//! The business-day cutover: the local time, in a configured time zone, at
//! which one business date ends and the next begins.
//!
//! The business date of an instant is the local calendar date (in the
//! zone) of that instant moved back by the cutover time: a business date
//! starts at the cutover on its own calendar day. With a cutover at 02:00
//! in Europe/London, 01:59 London time on 26 November is still business
//! date 25 November and 02:00 starts business date 26 November.
//! Daylight-saving changes move the cutover with the local clock.

use jiff::tz::TimeZone;

/// A cutover time in a time zone.
#[derive(Debug, Clone)]
pub struct Cutover {
    secs: u32,
    zone: TimeZone,
    name: String,
}

impl PartialEq for Cutover {
    fn eq(&self, other: &Cutover) -> bool {
        self.secs == other.secs && self.name == other.name
    }
}

impl Eq for Cutover {}

impl Default for Cutover {
    fn default() -> Cutover {
        Cutover::utc(0)
    }
}

impl Cutover {
    /// A cutover `secs` seconds after midnight UTC.
    pub fn utc(secs: u32) -> Cutover {
        Cutover {
            secs: secs % 86_400,
            zone: TimeZone::UTC,
            name: "UTC".into(),
        }
    }

    /// A cutover `secs` seconds after local midnight in the IANA time zone
    /// `zone` (e.g. `Europe/London`, read from the system's time zone
    /// database). The error says why the zone is not known.
    pub fn new(secs: u32, zone: &str) -> Result<Cutover, String> {
        let found = TimeZone::get(zone).map_err(|e| format!("time zone `{zone}`: {e}"))?;
        Ok(Cutover {
            secs: secs % 86_400,
            zone: found,
            name: zone.to_string(),
        })
    }

    /// Seconds after local midnight.
    pub fn secs(&self) -> u32 {
        self.secs
    }

    /// The time zone's name.
    pub fn zone(&self) -> &str {
        &self.name
    }

    /// The business date (`YYYYMMDD`) of an instant given in microseconds
    /// since the Unix epoch.
    pub fn date(&self, micros: u64) -> String {
        let local = i64::try_from(micros)
            .ok()
            .and_then(|m| jiff::Timestamp::from_microsecond(m).ok())
            .map(|t| self.zone.to_datetime(t))
            .and_then(|dt| {
                dt.checked_sub(jiff::SignedDuration::from_secs(i64::from(self.secs)))
                    .ok()
            });
        match local {
            Some(dt) => format!("{:04}{:02}{:02}", dt.year(), dt.month(), dt.day()),
            None => "00000000".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-25T23:00:00Z.
    const T: u64 = 1_795_647_600_000_000;
    const HOUR: u64 = 3_600_000_000;

    #[test]
    fn utc_cutover() {
        assert_eq!(Cutover::utc(0).date(T), "20261125");
        assert_eq!(Cutover::utc(0).date(T + 2 * HOUR), "20261126");
        assert_eq!(Cutover::utc(3 * 3600).date(T + 2 * HOUR), "20261125");
    }

    #[test]
    fn a_time_zone_moves_the_day() {
        // 23:00Z is 08:00 the next day in Tokyo.
        let tokyo = Cutover::new(0, "Asia/Tokyo").unwrap();
        assert_eq!(tokyo.date(T), "20261126");
        // Cutover 02:00 New York (UTC-5 in November): 23:00Z is 18:00 on the
        // 25th local; 06:59:59Z the next day is 01:59:59 local, still the
        // 25th; 07:00Z is 02:00 local, the 26th.
        let ny = Cutover::new(2 * 3600, "America/New_York").unwrap();
        assert_eq!(ny.date(T), "20261125");
        assert_eq!(ny.date(T + 8 * HOUR - 1), "20261125");
        assert_eq!(ny.date(T + 8 * HOUR), "20261126");
    }

    #[test]
    fn summer_time_moves_the_cutover_with_the_local_clock() {
        // Cutover 22:00 London: 2026-07-01T21:30Z is 22:30 BST, past the
        // cutover (business date 1 July, which runs to 22:00 on 2 July) …
        let london = Cutover::new(22 * 3600, "Europe/London").unwrap();
        let july = 1_782_941_400_000_000;
        assert_eq!(london.date(july), "20260701");
        // … while the same UTC time of day in November is 21:30 GMT, before
        // it: still the business date that started on 24 November.
        let november = T - 90 * 60 * 1_000_000;
        assert_eq!(london.date(november), "20261124");
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(
            Cutover::new(0, "Mars/Olympus")
                .unwrap_err()
                .contains("Mars/Olympus")
        );
    }
}
