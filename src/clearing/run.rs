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
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::csv::CsvWriter;
use super::ipm::{FileInfo, IpmWriter};
use super::select::{self, DayItem, Presenting, SelectError};
use super::settings::{ClearingConfig, Format};
use super::settlement::Settlement;
use crate::files::AtomicFile;
use crate::journal::{JournalConfig, Vault, wal};

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
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An IPM file could not be written.
    #[error("{path}: {reason}")]
    Ipm {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The settlement report could not be computed.
    #[error("settlement: {0}")]
    Settlement(String),
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
    #[error("batch record {path}: {reason}")]
    Batch {
        /// The file.
        path: String,
        /// Why.
        reason: String,
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
    Cleared(Batch, super::settlement::SettlementReport),
    /// The date was cleared before; the files on disk are the recorded
    /// ones.
    AlreadyCleared(Batch),
    /// The files were rewritten from the recorded batch.
    Reissued(Batch, super::settlement::SettlementReport),
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
    pub journal: &'a JournalConfig,
    /// Opens the journal's PANs.
    pub vault: &'a Vault,
    /// Clearing settings.
    pub clearing: &'a ClearingConfig,
    /// The acquiring institution id (IPM DE 32).
    pub acquiring_institution: &'a str,
    /// The forwarding institution id (IPM DE 33 and DE 94).
    pub forwarding_institution: &'a str,
}

/// `YYYYMMDD` of a date given as `YYYY-MM-DD`, or as `previous`: the
/// business date before the current scheduled one.
pub fn resolve_date(
    date: &str,
    cutover: &crate::journal::Cutover,
) -> Result<String, ClearingError> {
    if date == "previous" {
        // The calendar day before the current scheduled business date (not
        // the date 24 hours ago: a business day is 23 or 25 hours long when
        // the clocks change; and not the day before a date an operator
        // started early, which would skip the date the early one followed).
        let today = cutover.scheduled(wal::now_micros());
        return day_before(&today).ok_or(ClearingError::BadDate(today));
    }
    compact_date(date)
}

/// The `YYYYMMDD` before a `YYYYMMDD` date.
fn day_before(date: &str) -> Option<String> {
    Some(super::compact(super::civil_date(date)?.yesterday().ok()?))
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
    super::civil_date(&compacted).ok_or_else(bad)?;
    Ok(compacted)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClearingError + '_ {
    move |e| ClearingError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Where a date's batch record lives.
pub fn batch_path(journal: &JournalConfig, date: &str) -> PathBuf {
    journal.dir.join("clearing").join(format!("{date}.json"))
}

/// Reads a date's batch record, if the date was cleared.
pub fn read_batch(journal: &JournalConfig, date: &str) -> Result<Option<Batch>, ClearingError> {
    Ok(read_recorded(journal, date)?.map(|(batch, _)| batch))
}

/// A date's batch record and its bytes (the manifest's bytes), if the date
/// was cleared.
fn read_recorded(
    journal: &JournalConfig,
    date: &str,
) -> Result<Option<(Batch, Vec<u8>)>, ClearingError> {
    let path = batch_path(journal, date);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(|batch| Some((batch, bytes)))
            .map_err(|e| ClearingError::Batch {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The business date of the journal's first segment; `None` when it has
/// none (or its directory does not exist yet: the daemon never ran).
fn first_business_date(journal: &JournalConfig) -> Result<Option<String>, ClearingError> {
    if !journal.dir.exists() {
        return Ok(None);
    }
    Ok(wal::segments(&journal.dir)
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
    let date = resolve_date(job.date, &job.journal.cutover)?;
    let today = wal::business_date(wal::now_micros(), &job.journal.cutover);
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
    let records = job.journal.dir.join("clearing");
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
    let survey = select::survey(&job.journal.dir, &date, cutoff)?;
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
    crate::files::write_atomically(&record, &batch.to_json()).map_err(io(&record))?;
    write_manifest(job.out_dir, &batch)?;
    Ok(Outcome::Cleared(batch, report))
}

/// Hands `visit` every presentment of a cleared date's batch, as the batch
/// holds them (for reconciliation).
pub fn cleared(
    journal: &JournalConfig,
    vault: &Vault,
    clearing: &ClearingConfig,
    date: &str,
    mut visit: impl FnMut(&super::item::Presentment),
) -> Result<u64, ClearingError> {
    let batch = read_batch(journal, date)?.ok_or_else(|| ClearingError::NoBatch(date.into()))?;
    let survey = select::survey(&journal.dir, date, Some(batch.cutoff))?;
    let with = Presenting {
        log: &journal.dir,
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
    crate::files::write_atomically(&path, &batch.to_json()).map_err(io(&path))
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
            crate::files::write_atomically(&path, recorded).map_err(io(&path))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// A clearing file being written.
enum Writer {
    Csv(Box<CsvWriter<Hashing<AtomicFile>>>),
    Ipm(Box<IpmWriter<Hashing<AtomicFile>>>),
}

/// One destination's file in progress.
struct Open {
    path: PathBuf,
    format: Format,
    writer: Writer,
    records: u64,
    totals: BTreeMap<String, CurrencyTotals>,
}

/// Clearing files hold full PANs (the bank needs them): owner-only.
const FILE_MODE: u32 = 0o600;

fn open_file(job: &Run<'_>, date: &str, destination: &str) -> Result<Open, ClearingError> {
    let spec = job.clearing.file_spec(destination);
    let path = job
        .out_dir
        .join(format!("{destination}-{date}.{}", spec.format.extension()));
    let out = Hashing::new(AtomicFile::create(&path, FILE_MODE).map_err(io(&path))?);
    let writer = match spec.format {
        Format::Csv => Writer::Csv(Box::new(CsvWriter::new(out).map_err(io(&path))?)),
        Format::Ipm => {
            let info = FileInfo {
                date: date.to_string(),
                processor_id: job.clearing.processor_id.clone(),
                sequence: 1,
                acquiring_institution: job.acquiring_institution.to_string(),
                forwarding_institution: job.forwarding_institution.to_string(),
                blocked: spec.blocked,
            };
            Writer::Ipm(Box::new(IpmWriter::new(out, &info).map_err(|e| {
                ClearingError::Ipm {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }
            })?))
        }
    };
    Ok(Open {
        path,
        format: spec.format,
        writer,
        records: 0,
        totals: BTreeMap::new(),
    })
}

/// The day's files being written: one per destination with activity, and
/// the settlement.
struct Sinks<'a> {
    job: &'a Run<'a>,
    date: String,
    open: BTreeMap<String, Open>,
    settlement: Settlement,
}

impl Sinks<'_> {
    /// Takes one item of the day.
    fn take(&mut self, item: DayItem) -> Result<(), ClearingError> {
        let settlement =
            |e: super::settlement::SettlementError| ClearingError::Settlement(e.to_string());
        let p = match item {
            DayItem::Reversed(r) => return self.settlement.add_reversal(&r).map_err(settlement),
            DayItem::Presented(p) => p,
        };
        self.settlement.add_presentment(&p).map_err(settlement)?;
        if !self.open.contains_key(&p.destination) {
            let file = open_file(self.job, &self.date, &p.destination)?;
            self.open.insert(p.destination.clone(), file);
        }
        let Some(file) = self.open.get_mut(&p.destination) else {
            return Ok(());
        };
        let path = &file.path;
        match &mut file.writer {
            Writer::Csv(w) => w.push(&p).map_err(io(path))?,
            Writer::Ipm(w) => w.push(&p).map_err(|e| ClearingError::Ipm {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        }
        file.records += 1;
        let totals = file.totals.entry(p.currency.clone()).or_default();
        totals.count += 1;
        let sum = if p.kind.is_credit() {
            &mut totals.credits
        } else {
            &mut totals.debits
        };
        *sum = sum
            .checked_add(p.amount)
            .ok_or_else(|| ClearingError::Settlement(format!("{} totals overflow", p.currency)))?;
        Ok(())
    }

    /// Ends every file and makes it durable under its name; the settlement
    /// report last.
    fn commit(
        self,
        recorded: Option<&Batch>,
    ) -> Result<(Vec<BatchFile>, super::settlement::SettlementReport), ClearingError> {
        // Every file is finished under its temporary name first; they are
        // renamed into place only when all are written (and, for a reissue,
        // identical to the recorded ones). A failure before drops them all.
        let mut finished = Vec::new();
        for (destination, file) in self.open {
            let path = file.path;
            let hashing = match file.writer {
                Writer::Csv(w) => w.finish().map_err(io(&path))?,
                Writer::Ipm(w) => {
                    w.finish()
                        .map_err(|e| ClearingError::Ipm {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?
                        .0
                }
            };
            let (atomic, sha256, bytes) = hashing.finish();
            let entry = BatchFile {
                name: file_name(&path),
                destination,
                format: file.format.extension().to_string(),
                records: file.records,
                totals: file.totals,
                bytes,
                sha256,
            };
            finished.push((atomic, path, entry));
        }
        let report = self.settlement.report();
        let path = self
            .job
            .out_dir
            .join(format!("settlement-{}.csv", self.date));
        let mut out = Hashing::new(AtomicFile::create(&path, 0o640).map_err(io(&path))?);
        report.write_csv(&mut out).map_err(io(&path))?;
        let (atomic, sha256, bytes) = out.finish();
        let entry = BatchFile {
            name: file_name(&path),
            destination: String::new(),
            format: "settlement".into(),
            records: finished.iter().map(|(_, _, f)| f.records).sum(),
            totals: BTreeMap::new(),
            bytes,
            sha256,
        };
        finished.push((atomic, path, entry));
        if let Some(recorded) = recorded {
            let differs = finished.len() != recorded.files.len()
                || finished
                    .iter()
                    .zip(&recorded.files)
                    .any(|((_, _, new), old)| new != old);
            if differs {
                let file = finished
                    .iter()
                    .zip(&recorded.files)
                    .find(|((_, _, new), old)| new != *old)
                    .map_or_else(
                        || "(the list of files)".into(),
                        |((_, _, new), _)| new.name.clone(),
                    );
                return Err(ClearingError::ReissueDiffers {
                    date: self.date,
                    file,
                });
            }
        }
        // The settlement report is put in place first: the clearing files,
        // which hold PANs, only once everything else has worked.
        let mut files = Vec::new();
        let mut placing: Vec<_> = finished.into_iter().collect();
        if let Some(report_file) = placing.pop() {
            placing.insert(0, report_file);
        }
        for (atomic, path, entry) in placing {
            atomic.commit().map_err(io(&path))?;
            files.push(entry);
        }
        // Back to the recorded order: clearing files, then the report.
        files.rotate_left(1);
        Ok((files, report))
    }
}

/// Items handed from the reading thread to the writing thread at once.
const BATCH: usize = 1024;

/// Pass 2: streams the day's presentments into the destinations' files and
/// the settlement, then commits the files. Two threads: this one reads the
/// log and builds the items, a second one writes them (encoding, hashing,
/// settlement), joined by a bounded channel. Nothing is committed unless
/// both finished without error.
fn write_files(
    job: &Run<'_>,
    survey: &select::Survey,
    recorded: Option<&Batch>,
    progress: &mut dyn FnMut(f64),
) -> Result<(Vec<BatchFile>, super::settlement::SettlementReport), ClearingError> {
    let sinks = Sinks {
        job,
        date: survey.date().to_string(),
        open: BTreeMap::new(),
        settlement: Settlement::new(job.clearing.pricing.clone()),
    };
    let expected = survey.received().max(1) as f64;
    let with = Presenting {
        log: &job.journal.dir,
        vault: job.vault,
        acquirer_bin: &job.clearing.acquirer_bin,
    };
    let (sinks, produced) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<DayItem>>(16);
        let writer = scope.spawn(move || -> Result<Sinks<'_>, ClearingError> {
            let mut sinks = sinks;
            for batch in rx {
                for item in batch {
                    sinks.take(item)?;
                }
            }
            Ok(sinks)
        });
        let mut batch = Vec::with_capacity(BATCH);
        let mut sent = 0u64;
        let mut produced = select::present(survey, with, |item| -> Result<(), ClearingError> {
            batch.push(item);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.send(full).map_err(|_| ClearingError::WriterStopped)?;
                sent += BATCH as u64;
                if sent.is_multiple_of(64 * BATCH as u64) {
                    progress(0.3 + 0.65 * (sent as f64 / expected).min(1.0));
                }
            }
            Ok(())
        });
        if produced.is_ok() && !batch.is_empty() && tx.send(batch).is_err() {
            produced = Err(ClearingError::WriterStopped);
        }
        drop(tx);
        let sinks = writer.join().unwrap_or(Err(ClearingError::WriterStopped));
        (sinks, produced)
    });
    // The writer's own error says why it stopped; the reader's follows.
    let sinks = sinks?;
    produced?;
    let committed = sinks.commit(recorded)?;
    progress(1.0);
    Ok(committed)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A writer that hashes (SHA-256) and counts what passes through it.
struct Hashing<W: Write> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.sha.finalize()), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or_default();
        self.sha.update(written);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
