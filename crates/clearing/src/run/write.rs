//! The writing half of a run: the day's items streamed into one clearing
//! file per destination and the settlement, each file hashed as it is
//! written and put in place only when all are complete.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base::files::AtomicFile;
use sha2::{Digest, Sha256};

use super::{Batch, BatchFile, ClearingError, CurrencyTotals, Run, io};
use crate::csv::CsvWriter;
use crate::ipm::{FileInfo, IpmWriter};
use crate::select::{self, DayItem, Presenting};
use crate::settings::Format;
use crate::settlement::{Settlement, SettlementReport};

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
                    source: e,
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
        let p = match item {
            DayItem::Reversed(r) => {
                return self
                    .settlement
                    .add_reversal(&r)
                    .map_err(ClearingError::from);
            }
            DayItem::Presented(p) => p,
        };
        self.settlement
            .add_presentment(&p)
            .map_err(ClearingError::from)?;
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
                source: e,
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
            .ok_or_else(|| ClearingError::TotalsOverflow {
                currency: p.currency.clone(),
            })?;
        Ok(())
    }

    /// Ends every file and makes it durable under its name; the settlement
    /// report last.
    fn commit(
        self,
        recorded: Option<&Batch>,
    ) -> Result<(Vec<BatchFile>, SettlementReport), ClearingError> {
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
                            source: e,
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
pub(super) fn write_files(
    job: &Run<'_>,
    survey: &select::Survey,
    recorded: Option<&Batch>,
    progress: &mut dyn FnMut(f64),
) -> Result<(Vec<BatchFile>, SettlementReport), ClearingError> {
    let sinks = Sinks {
        job,
        date: survey.date().to_string(),
        open: BTreeMap::new(),
        settlement: Settlement::new(job.clearing.pricing.clone()),
    };
    let expected = survey.received().max(1) as f64;
    let with = Presenting {
        journal: job.journal,
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
pub(super) struct Hashing<W: Write> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub(super) fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    pub(super) fn finish(self) -> (W, String, u64) {
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
