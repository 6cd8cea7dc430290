//! The business-day cutover: the local time, in a configured time zone, at
//! which one business date ends and the next begins.
//!
//! The business date of an instant is the local calendar date (in the
//! zone) of that instant moved back by the cutover time: a business date
//! starts at the cutover on its own calendar day. With a cutover at 02:00
//! in Europe/London, 01:59 London time on 26 November is still business
//! date 25 November and 02:00 starts business date 26 November.
//! Daylight-saving changes move the cutover with the local clock.
//!
//! An operator may also close a business date on demand (`cardswitch ctl
//! cutover`): the next date then starts at once, before its scheduled
//! time, and runs to its own scheduled end. Such early starts are kept in
//! `JOURNAL/cutovers.json` (written atomically before they take effect), so
//! every process that reads the journal — the daemon after a restart,
//! `clearing run`, `journal export` — sees the same dates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// The file, in the journal directory, of the business dates started
/// early by an operator.
pub const EARLY_FILE: &str = "cutovers.json";

/// A business date started by an operator before its scheduled cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStart {
    /// When it started, microseconds since the Unix epoch.
    pub at_micros: u64,
    /// The business date that started (`YYYYMMDD`).
    pub date: String,
}

/// Why an early cutover could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CutoverError {
    /// The file of early starts could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file of early starts is not what the switch writes.
    #[error("{path}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        reason: Damage,
    },
    /// The current business date already started early: the next one
    /// starts at its scheduled time.
    #[error(
        "business date {date} already started early (its scheduled start is later); the next cutover is the scheduled one"
    )]
    AlreadyEarly {
        /// The current business date.
        date: String,
    },
    /// The time zone is not in the system's time zone database.
    #[error("time zone `{zone}`: {source}")]
    UnknownZone {
        /// The zone's name as given.
        zone: String,
        /// Why it was not found.
        source: jiff::Error,
    },
}

/// What is wrong with the file of early starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// It is not the JSON the switch writes, or it could not be written as
    /// JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A start's date is not a date.
    #[error("`{0}` is not a YYYYMMDD date")]
    NotADate(String),
    /// The calendar has no date after this one.
    #[error("no date follows `{0}`")]
    LastDate(String),
}

/// A cutover time in a time zone, with the business dates an operator
/// started early.
#[derive(Debug, Clone)]
pub struct Cutover {
    secs: u32,
    zone: TimeZone,
    name: String,
    /// Shared by every clone, so that an early start made by the daemon
    /// is seen by the journal writer, the index and the switch at once.
    early: Arc<RwLock<Vec<EarlyStart>>>,
    /// Held while an early start is made and written.
    making: Arc<Mutex<()>>,
}

impl PartialEq for Cutover {
    fn eq(&self, other: &Cutover) -> bool {
        self.secs == other.secs && self.name == other.name
    }
}

/// Business dates are written `YYYYMMDD`; clearing reads them the same way.
pub use ::clearing::dates::{civil_date, compact};

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
            early: Arc::default(),
            making: Arc::default(),
        }
    }

    /// A cutover `secs` seconds after local midnight in the IANA time zone
    /// `zone` (e.g. `Europe/London`, read from the system's time zone
    /// database). The error says why the zone is not known.
    pub fn new(secs: u32, zone: &str) -> Result<Cutover, CutoverError> {
        let found = TimeZone::get(zone).map_err(|source| CutoverError::UnknownZone {
            zone: zone.to_string(),
            source,
        })?;
        Ok(Cutover {
            secs: secs % 86_400,
            zone: found,
            name: zone.to_string(),
            early: Arc::default(),
            making: Arc::default(),
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
    /// since the Unix epoch: the scheduled one, or a later one an operator
    /// started early at or before that instant.
    pub fn date(&self, micros: u64) -> String {
        let scheduled = self.scheduled(micros);
        let early = self.early.read().unwrap_or_else(|p| p.into_inner());
        early
            .iter()
            .filter(|e| e.at_micros <= micros && e.date > scheduled)
            .map(|e| e.date.clone())
            .max()
            .unwrap_or(scheduled)
    }

    /// The business date of an instant by the scheduled cutover alone. An
    /// early start only moves dates forward, so windows counted back from
    /// this date (the previous business date for retransmissions and for
    /// the clearing timer) never skip a date an early start cut short.
    pub fn scheduled(&self, micros: u64) -> String {
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

    /// Reads the early starts kept in the journal directory `dir` (none if
    /// the file does not exist).
    pub fn load_early(&self, dir: &Path) -> Result<(), CutoverError> {
        let path = dir.join(EARLY_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CutoverError::Io { path, source }),
        };
        let starts: Vec<EarlyStart> =
            serde_json::from_slice(&text).map_err(|e| CutoverError::Damaged {
                path: path.clone(),
                reason: e.into(),
            })?;
        if let Some(bad) = starts.iter().find(|e| civil_date(&e.date).is_none()) {
            return Err(CutoverError::Damaged {
                path,
                reason: Damage::NotADate(bad.date.clone()),
            });
        }
        *self.early.write().unwrap_or_else(|p| p.into_inner()) = starts;
        Ok(())
    }

    /// Closes the current business date at `now` (microseconds since the
    /// epoch): the next calendar date starts at once. Durable (written to
    /// `dir` atomically) before it takes effect. Refused when the current
    /// date itself started early, so that a repeated command does not close
    /// a second day.
    pub fn start_next(&self, dir: &Path, now: u64) -> Result<EarlyStart, CutoverError> {
        // One cutover at a time; the dates themselves stay readable (by the
        // journal writer, the index, the switch) while the file is synced.
        let _one = self.making.lock().unwrap_or_else(|p| p.into_inner());
        let early = self.early.read().unwrap_or_else(|p| p.into_inner()).clone();
        let scheduled = self.scheduled(now);
        let current = early
            .iter()
            .filter(|e| e.at_micros <= now && e.date > scheduled)
            .map(|e| e.date.clone())
            .max()
            .unwrap_or_else(|| scheduled.clone());
        if current != scheduled {
            return Err(CutoverError::AlreadyEarly { date: current });
        }
        let next = civil_date(&current)
            .and_then(|d| d.tomorrow().ok())
            .map(compact)
            .ok_or_else(|| CutoverError::Damaged {
                path: dir.join(EARLY_FILE),
                reason: Damage::LastDate(current.clone()),
            })?;
        let start = EarlyStart {
            at_micros: now,
            date: next,
        };
        let mut starts = early.clone();
        starts.push(start.clone());
        let path = dir.join(EARLY_FILE);
        let bytes = serde_json::to_vec_pretty(&starts).map_err(|e| CutoverError::Damaged {
            path: path.clone(),
            reason: e.into(),
        })?;
        crate::files::write_atomically(&path, &bytes)
            .map_err(|source| CutoverError::Io { path, source })?;
        *self.early.write().unwrap_or_else(|p| p.into_inner()) = starts;
        Ok(start)
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

    /// An early start moves the date forward from its instant on, once;
    /// it is kept in the journal directory and read back.
    #[test]
    fn an_operator_starts_the_next_date_early() {
        let dir = tempfile::tempdir().unwrap();
        let cutover = Cutover::utc(0);
        // 21:00Z on 25 November, three hours before the scheduled cutover.
        let at = T - 2 * HOUR;
        assert_eq!(cutover.date(at), "20261125");
        let start = cutover.start_next(dir.path(), at).unwrap();
        assert_eq!(
            start,
            EarlyStart {
                at_micros: at,
                date: "20261126".into()
            }
        );
        assert_eq!(cutover.date(at - 1), "20261125");
        assert_eq!(cutover.date(at), "20261126");
        assert_eq!(cutover.date(at + 2 * HOUR), "20261126");
        // The early date runs to its own scheduled end.
        assert_eq!(cutover.date(T + 24 * HOUR), "20261126");
        assert_eq!(cutover.date(T + 26 * HOUR), "20261127");
        assert!(matches!(
            cutover.start_next(dir.path(), at + HOUR),
            Err(CutoverError::AlreadyEarly { date }) if date == "20261126"
        ));
        // Once it is the scheduled date, it can be closed early in turn.
        assert_eq!(
            cutover
                .start_next(dir.path(), T + 2 * HOUR)
                .map(|s| s.date)
                .ok()
                .as_deref(),
            Some("20261127")
        );
        let fresh = Cutover::utc(0);
        fresh.load_early(dir.path()).unwrap();
        assert_eq!(fresh.date(at - 1), "20261125");
        assert_eq!(fresh.date(at + HOUR), "20261126");
        assert_eq!(fresh.date(T + 3 * HOUR), "20261127");

        std::fs::write(
            dir.path().join(EARLY_FILE),
            "[{\"at_micros\": 1, \"date\": \"2026\"}]",
        )
        .unwrap();
        let e = Cutover::utc(0).load_early(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("`2026` is not a YYYYMMDD date"),
            "{e}"
        );
    }

    /// The scheduled cutover starts the next date, and an operator closes
    /// that one five minutes later: the effective date jumps two days, the
    /// scheduled one only one, so windows counted back from it (previous
    /// business date) still hold the date before.
    #[test]
    fn the_scheduled_date_never_skips_a_date_an_early_start_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let cutover = Cutover::utc(0);
        let midnight = T + HOUR;
        let five_past = midnight + 5 * 60 * 1_000_000;
        assert_eq!(cutover.date(midnight), "20261126");
        cutover.start_next(dir.path(), five_past).unwrap();
        assert_eq!(cutover.date(five_past + 1), "20261127");
        assert_eq!(cutover.scheduled(five_past + 1), "20261126");
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(
            Cutover::new(0, "Mars/Olympus")
                .unwrap_err()
                .to_string()
                .contains("Mars/Olympus")
        );
    }
}
