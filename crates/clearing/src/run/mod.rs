//! `cardswitch clearing run`: one business date's clearing files, settlement
//! report and manifest, exactly once.
//!
//! Order of writes, each atomic (temporary file, fsync, rename, fsync of
//! the directory):
//!
//! 1. one clearing file per destination with activity, and the settlement
//!    report, in the output directory;
//! 2. the **batch record** in the journal directory
//!    (`JOURNAL/clearing/YYYYMMDD.json`): the log's cutoff sequence, and each
//!    file's name, counts, totals and SHA-256 — from then on the date is
//!    cleared;
//! 3. the manifest (`manifest-YYYYMMDD.json`, the same bytes as the batch
//!    record) in the output directory: file transfer picks files up once it
//!    exists.
//!
//! A crash before step 2 leaves nothing cleared (the next run starts over);
//! after it, the next run finds the batch. A run for a cleared date writes
//! nothing and checks that the files on disk are the recorded ones: every
//! file of the date keeps its bytes, inode and modification time (a
//! transfer agent that watches for manifests must not send the batch
//! again); only a manifest missing after a crash between steps 2 and 3 is
//! written. `--reissue` rewrites them from the recorded cutoff, byte for
//! byte.
//!
//! `--date previous` for a date before the journal's first business date
//! (the first night after installation, or a journal with no segment yet)
//! has nothing to clear: [`Outcome::NothingToClear`], a success, and nothing
//! is written. The same date given explicitly is refused
//! ([`ClearingError::BeforeJournal`]): an operator who names a date expects
//! it to hold transactions, and a typo must not pass as an empty day.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipm::IpmError;
use crate::select::{self, DayItem, Presenting, SelectError};
use crate::settings::ClearingConfig;
use crate::settlement::{SettlementError, SettlementReport};
use write::{Hashing, write_files};

mod write;
use crate::journal::{Journal, PanVault};

/// Why clearing did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClearingError {
    /// The date is not `YYYY-MM-DD`.
    #[error("`{0}` is not a date (YYYY-MM-DD)")]
    BadDate(String),
    /// The business date has not ended yet.
    #[error(
        "business date {date} has not ended (the current business date is {today}); clear it after cutover"
    )]
    NotClosed {
        /// The date asked for.
        date: String,
        /// The current business date.
        today: String,
    },
    /// Transactions of the day are still in flight.
    #[error(
        "{count} transactions of {date} are still in flight (first: {first}); retry once they end"
    )]
    InFlight {
        /// The date.
        date: String,
        /// How many.
        count: usize,
        /// The first one's id.
        first: u64,
    },
    /// The journal could not be read.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An IPM file could not be written.
    #[error("{path}: {source}")]
    Ipm {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: IpmError,
    },
    /// The settlement report could not be computed.
    #[error("settlement: {0}")]
    Settlement(#[from] SettlementError),
    /// A file's totals of a currency overflow.
    #[error("settlement: {currency} totals overflow")]
    TotalsOverflow {
        /// The currency (ISO 4217 numeric).
        currency: String,
    },
    /// The date was cleared, and a file in the output directory is not the
    /// one recorded.
    #[error(
        "{date} was cleared already; {file} is missing or differs from the recorded batch (run with --reissue to rewrite the files)"
    )]
    FilesDiffer {
        /// The date.
        date: String,
        /// The file.
        file: String,
    },
    /// A reissue produced a file other than the recorded one (the log
    /// changed under the recorded cutoff).
    #[error(
        "reissue of {date}: {file} differs from the recorded batch (check the journal with `cardswitch journal verify`)"
    )]
    ReissueDiffers {
        /// The date.
        date: String,
        /// The file.
        file: String,
    },
    /// The date is before the journal's first record.
    #[error("{date} is before the journal's first business date ({first}): nothing to clear")]
    BeforeJournal {
        /// The date asked for.
        date: String,
        /// The journal's first business date.
        first: String,
    },
    /// Another clearing run holds the lock.
    #[error("another clearing run is under way (it holds {0}); try again when it ends")]
    Busy(String),
    /// The thread writing the files stopped (its own error is reported
    /// instead when it has one).
    #[error("the clearing file writer stopped")]
    WriterStopped,
    /// `--reissue` of a date never cleared.
    #[error("{0} has no recorded clearing batch to reissue")]
    NoBatch(String),
    /// The batch record cannot be read.
    #[error("batch record {path}: {source}")]
    Batch {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl ClearingError {
    /// The process exit status for this error, for systemd and scripts:
    /// 75 (`EX_TEMPFAIL`) when trying again later will do (day not ended,
    /// transactions in flight, another run under way), 65 (`EX_DATAERR`) when the files or the
    /// journal disagree with the batch record, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClearingError::NotClosed { .. }
            | ClearingError::InFlight { .. }
            | ClearingError::Busy(_) => 75,
            ClearingError::FilesDiffer { .. } | ClearingError::ReissueDiffers { .. } => 65,
            _ => 1,
        }
    }
}

/// Totals of one currency in one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotals {
    /// Presentments.
    pub count: u64,
    /// Sum of debits (purchases, completions), minor units.
    pub debits: u64,
    /// Sum of credits (refunds), minor units.
    pub credits: u64,
}

/// One file of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFile {
    /// File name in the output directory.
    pub name: String,
    /// The destination it is for (empty for the settlement report).
    pub destination: String,
    /// `ipm`, `csv` or `settlement`.
    pub format: String,
    /// Presentments in it.
    pub records: u64,
    /// Totals per ISO 4217 numeric currency.
    pub totals: BTreeMap<String, CurrencyTotals>,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// A business date's clearing batch: the batch record and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Business date, `YYYYMMDD`.
    pub date: String,
    /// Batch id.
    pub batch: String,
    /// Last log sequence the selection took into account.
    pub cutoff: u64,
    /// Requests of the date in the journal.
    pub received: u64,
    /// Files, clearing files first (by destination), then the settlement
    /// report.
    pub files: Vec<BatchFile>,
}

impl Batch {
    fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }
}

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    /// The date was cleared now.
    Cleared(Batch, SettlementReport),
    /// The date was cleared before; the files on disk are the recorded
    /// ones.
    AlreadyCleared(Batch),
    /// The files were rewritten from the recorded batch.
    Reissued(Batch, SettlementReport),
    /// `--date previous` named a date before the journal's first business
    /// date: there is nothing to clear and nothing was written.
    NothingToClear {
        /// The date (`YYYYMMDD`).
        date: String,
        /// The journal's first business date; `None` when the journal has
        /// no segment yet.
        first: Option<String>,
    },
}

/// What to clear.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// Business date, `YYYY-MM-DD` or `previous`.
    pub date: &'a str,
    /// Output directory (default: the configured one).
    pub out_dir: &'a Path,
    /// Rewrite the files of a cleared date from its batch record.
    pub reissue: bool,
    /// The journal.
    pub journal: &'a dyn Journal,
    /// Opens the journal's PANs.
    pub vault: &'a dyn PanVault,
    /// Clearing settings.
    pub clearing: &'a ClearingConfig,
    /// The acquiring institution id (IPM DE 32).
    pub acquiring_institution: &'a str,
    /// The forwarding institution id (IPM DE 33 and DE 94).
    pub forwarding_institution: &'a str,
}

/// `YYYYMMDD` of a date given as `YYYY-MM-DD`, or as `previous`: the
/// business date before the current scheduled one.
pub fn resolve_date(date: &str, journal: &dyn Journal) -> Result<String, ClearingError> {
    if date == "previous" {
        // The calendar day before the current scheduled business date (not
        // the date 24 hours ago: a business day is 23 or 25 hours long when
        // the clocks change; and not the day before a date an operator
        // started early, which would skip the date the early one followed).
        let today = journal.scheduled_date();
        return day_before(&today).ok_or(ClearingError::BadDate(today));
    }
    compact_date(date)
}

/// The `YYYYMMDD` before a `YYYYMMDD` date.
fn day_before(date: &str) -> Option<String> {
    Some(crate::dates::compact(
        crate::dates::civil_date(date)?.yesterday().ok()?,
    ))
}

/// `YYYYMMDD` of a `YYYY-MM-DD` date.
pub fn compact_date(date: &str) -> Result<String, ClearingError> {
    let bad = || ClearingError::BadDate(date.to_string());
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let compacted = format!("{y}{m}{d}");
    crate::dates::civil_date(&compacted).ok_or_else(bad)?;
    Ok(compacted)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClearingError + '_ {
    move |source| ClearingError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where a date's batch record lives.
pub fn batch_path(journal: &dyn Journal, date: &str) -> PathBuf {
    journal.dir().join("clearing").join(format!("{date}.json"))
}

/// Reads a date's batch record, if the date was cleared.
pub fn read_batch(journal: &dyn Journal, date: &str) -> Result<Option<Batch>, ClearingError> {
    Ok(read_recorded(journal, date)?.map(|(batch, _)| batch))
}

/// A date's batch record and its bytes (the manifest's bytes), if the date
/// was cleared.
fn read_recorded(
    journal: &dyn Journal,
    date: &str,
) -> Result<Option<(Batch, Vec<u8>)>, ClearingError> {
    let path = batch_path(journal, date);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(|batch| Some((batch, bytes)))
            .map_err(|source| ClearingError::Batch {
                path: path.display().to_string(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The business date of the journal's first segment; `None` when it has
/// none (or its directory does not exist yet: the daemon never ran).
fn first_business_date(journal: &dyn Journal) -> Result<Option<String>, ClearingError> {
    if !journal.dir().exists() {
        return Ok(None);
    }
    Ok(journal
        .segments()
        .map_err(SelectError::from)?
        .first()
        .map(|s| s.date.clone()))
}

/// The SHA-256 (hex) and size of a file, `None` if it does not exist.
fn file_digest(path: &Path) -> Result<Option<(String, u64)>, ClearingError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut hashing = Hashing::new(std::io::sink());
    std::io::copy(&mut file, &mut hashing).map_err(io(path))?;
    let (_, sha256, bytes) = hashing.finish();
    Ok(Some((sha256, bytes)))
}

/// Clears one business date (see the module documentation).
/// `progress` is called now and then with the fraction of the work done.
pub fn run(job: &Run<'_>, progress: &mut dyn FnMut(f64)) -> Result<Outcome, ClearingError> {
    let date = resolve_date(job.date, job.journal)?;
    let today = job.journal.business_date();
    if date >= today {
        return Err(ClearingError::NotClosed { date, today });
    }
    // A date before the journal's first (the timer's first night, a typo,
    // or segments removed) is never recorded as an empty day; this is
    // decided before anything is created. No run records a batch for such
    // a date, so its batch record is read without the lock.
    let first = first_business_date(job.journal)?;
    if first.as_ref().is_none_or(|f| date < *f) && read_batch(job.journal, &date)?.is_none() {
        if job.reissue {
            return Err(ClearingError::NoBatch(date));
        }
        if job.date == "previous" {
            return Ok(Outcome::NothingToClear { date, first });
        }
        return Err(ClearingError::BeforeJournal {
            date,
            first: first.unwrap_or_else(|| "(no segments)".into()),
        });
    }
    // One run at a time (the timer and an operator): the lock is held until
    // the run ends, and the batch record is read under it.
    let records = job.journal.dir().join("clearing");
    create_dir_durably(&records)?;
    let lock_path = records.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(ClearingError::Busy(lock_path.display().to_string()));
    }
    let recorded = read_recorded(job.journal, &date)?;
    if let (Some((batch, bytes)), false) = (&recorded, job.reissue) {
        for file in &batch.files {
            let path = job.out_dir.join(&file.name);
            if file_digest(&path)?.as_ref().map(|(sha, _)| sha) != Some(&file.sha256) {
                return Err(ClearingError::FilesDiffer {
                    date,
                    file: path.display().to_string(),
                });
            }
        }
        keep_manifest(job.out_dir, &date, bytes)?;
        return Ok(Outcome::AlreadyCleared(batch.clone()));
    }
    let recorded = recorded.map(|(batch, _)| batch);
    if job.reissue && recorded.is_none() {
        return Err(ClearingError::NoBatch(date));
    }
    let cutoff = recorded.as_ref().map(|b| b.cutoff);
    let survey = select::survey(job.journal, &date, cutoff)?;
    progress(0.3);
    let in_flight = survey.in_flight();
    if let (Some(first), None) = (in_flight.first(), &recorded) {
        return Err(ClearingError::InFlight {
            date,
            count: in_flight.len(),
            first: *first,
        });
    }
    create_dir_durably(job.out_dir)?;
    let (files, report) = write_files(job, &survey, recorded.as_ref(), progress)?;
    let batch = Batch {
        date: date.clone(),
        batch: format!("{date}-1"),
        cutoff: survey.cutoff(),
        received: survey.received(),
        files,
    };
    if let Some(recorded) = recorded {
        // `write_files` renamed the files into place only once each was the
        // recorded one, byte for byte.
        write_manifest(job.out_dir, &recorded)?;
        return Ok(Outcome::Reissued(recorded, report));
    }
    let record = batch_path(job.journal, &date);
    base::files::write_atomically(&record, &batch.to_json()).map_err(io(&record))?;
    write_manifest(job.out_dir, &batch)?;
    Ok(Outcome::Cleared(batch, report))
}

/// Hands `visit` every presentment of a cleared date's batch, as the batch
/// holds them (for reconciliation).
pub fn cleared(
    journal: &dyn Journal,
    vault: &dyn PanVault,
    clearing: &ClearingConfig,
    date: &str,
    mut visit: impl FnMut(&crate::item::Presentment),
) -> Result<u64, ClearingError> {
    let batch = read_batch(journal, date)?.ok_or_else(|| ClearingError::NoBatch(date.into()))?;
    let survey = select::survey(journal, date, Some(batch.cutoff))?;
    let with = Presenting {
        journal,
        vault,
        acquirer_bin: &clearing.acquirer_bin,
    };
    select::present(&survey, with, |item| -> Result<(), ClearingError> {
        if let DayItem::Presented(p) = item {
            visit(&p);
        }
        Ok(())
    })
}

/// Creates a directory (and its parents) and syncs its parent, so that the
/// directory itself survives a power loss.
fn create_dir_durably(dir: &Path) -> Result<(), ClearingError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))
}

/// Where a date's manifest goes.
fn manifest_path(out_dir: &Path, date: &str) -> PathBuf {
    out_dir.join(format!("manifest-{date}.json"))
}

fn write_manifest(out_dir: &Path, batch: &Batch) -> Result<(), ClearingError> {
    let path = manifest_path(out_dir, &batch.date);
    base::files::write_atomically(&path, &batch.to_json()).map_err(io(&path))
}

/// The manifest of a date cleared before: left untouched (bytes, inode and
/// time) when it holds the batch record's bytes; written from them when it
/// is missing (a run stopped after recording the batch); a manifest that
/// differs is reported like any other file that is not the recorded one.
fn keep_manifest(out_dir: &Path, date: &str, recorded: &[u8]) -> Result<(), ClearingError> {
    let path = manifest_path(out_dir, date);
    match std::fs::read(&path) {
        Ok(bytes) if bytes == recorded => Ok(()),
        Ok(_) => Err(ClearingError::FilesDiffer {
            date: date.to_string(),
            file: path.display().to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            base::files::write_atomically(&path, recorded).map_err(io(&path))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_before_crosses_months_years_and_leap_days() {
        assert_eq!(day_before("20261126").unwrap(), "20261125");
        assert_eq!(day_before("20260301").unwrap(), "20260228");
        assert_eq!(day_before("20240301").unwrap(), "20240229");
        assert_eq!(day_before("20260101").unwrap(), "20251231");
        assert_eq!(day_before("2026x101"), None);
    }

    #[test]
    fn dates_are_checked() {
        assert_eq!(compact_date("2026-11-26").unwrap(), "20261126");
        for bad in [
            "2026-11-26x",
            "20261126",
            "2026-13-01",
            "2026-1-01",
            "x-y-z",
        ] {
            assert!(compact_date(bad).is_err(), "{bad}");
        }
    }
}
