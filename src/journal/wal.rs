//! The write-ahead log: append-only segment files of framed records, written
//! by one thread that commits groups with a single `fdatasync`.
//!
//! # Segment files
//!
//! `DIR/YYYYMMDD-SSSSSSSSSSSSSSSSSSSS.wal`: the business date of its records
//! and the sequence number of its first record. A segment starts with the
//! 8-byte magic `CSWAL001` and is followed by records:
//!
//! ```text
//! +---------+---------+------+---------+---------+-----------------+
//! | len u32 | crc u32 | kind | seq u64 | ts u64  | payload         |
//! |  LE     |  LE     |  u8  |  LE     | LE, µs  | len - 17 bytes  |
//! +---------+---------+------+---------+---------+-----------------+
//!            crc = CRC32C(len bytes ‖ kind ‖ seq ‖ ts ‖ payload)
//! ```
//!
//! A segment is closed (never written again) when it reaches the configured
//! size or when the business date changes at cutover, so a past day is read
//! from immutable files.
//!
//! # Group commit
//!
//! Appenders serialise their record, take the queue lock, get the next
//! sequence number and copy the frame into the pending buffer. The writer
//! thread swaps the buffer out, writes it with one `write`, calls
//! `fdatasync` once for the whole group and only then wakes the appenders
//! that wait for durability, then advances the [`DurableMark`] (the last
//! durable sequence number). A failed write or sync poisons the log: every
//! later append fails, because after a failed `fsync` the kernel may have
//! dropped the dirty pages and a retry would report success for lost data;
//! the group's bytes are cut off the file (best effort) so that they cannot
//! read back as records.
//!
//! # Following
//!
//! A [`Follower`] reads the segments as they grow (the index does), from a
//! sequence number, never past the durable mark, checking that sequence
//! numbers follow one another.
//!
//! # Reading after a crash
//!
//! A record cut short at the end of the last segment (the crash interrupted
//! its write: it reaches past the end of the file, or its bytes are zeros or
//! fail the CRC, with no whole record after it) is *torn*: it is dropped and
//! the file truncated before it, and the open reports it. A bad record
//! anywhere else is corruption: the open fails naming the segment and
//! offset. Nothing is silently skipped. A last segment with no record (the
//! crash came right after it was created) is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::cutover::Cutover;
use super::record::{self, Record, RecordKind};
use crate::metrics::Latency;

mod follow;
mod read;
mod wake;
pub use wake::on_thread_park;

pub use follow::Follower;
pub use read::{
    Entry, Segment, SegmentScan, business_date, now_micros, scan, scan_bytes, segments,
};
use read::{Frame, parse, put};

/// Bytes at the start of every segment.
pub const MAGIC: &[u8; 8] = b"CSWAL001";
/// Frame header: length, CRC, kind, sequence, timestamp.
pub const HEADER: usize = 4 + 4 + 1 + 8 + 8;
/// Largest record accepted when reading (a bigger length is corruption).
pub const MAX_RECORD: usize = 1 << 20;

/// What a log failure was. Cloned to every waiter of a failed group
/// commit, so the OS error is shared.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed.
    #[error("journal {path}: {action}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
    /// The index's thread ended before it said whether the index opened.
    #[error("journal {path}: open the index: the indexer thread ended")]
    IndexerEnded {
        /// The index directory.
        path: String,
    },
    /// A record that is not the torn tail of the last segment is bad.
    #[error("journal segment {segment}: corrupt record at offset {offset}: {reason}")]
    Corrupt {
        /// Segment file.
        segment: String,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        #[source]
        reason: Corruption,
    },
    /// A durable record is in no segment of the log (the log is empty).
    #[error("journal {dir}: durable record {seq} not found: the log has no segment")]
    Missing {
        /// The log directory.
        dir: String,
        /// The record's sequence number.
        seq: u64,
    },
    /// An earlier write or sync failed; the log takes no more records.
    #[error("journal unavailable after an earlier failure: {0}")]
    Poisoned(#[source] Box<WalError>),
    /// The log was closed.
    #[error("journal closed")]
    Closed,
}

/// What is wrong with a record (or the place of one) in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The file does not start with the segment magic.
    #[error("not a cardswitch journal segment")]
    NotASegment,
    /// A frame's length is outside what a record can be.
    #[error("record length {0} out of range")]
    Length(usize),
    /// A frame's CRC does not match its bytes.
    #[error("CRC mismatch")]
    Crc,
    /// A frame's record kind is none the switch writes.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// A frame ends beyond the data, and more of the log follows.
    #[error("record cut short")]
    CutShort,
    /// A sequence number not above the one before it.
    #[error("sequence {0} out of order")]
    OutOfOrder(u64),
    /// A sequence number other than the next one expected.
    #[error("sequence {found} where {expected} was expected")]
    Unexpected {
        /// The record's sequence number.
        found: u64,
        /// The one expected.
        expected: u64,
    },
    /// A durable record is older than the oldest segment.
    #[error("durable record {seq} not found: the oldest segment starts at record {oldest}")]
    BeforeOldest {
        /// The record looked for.
        seq: u64,
        /// The oldest segment's first record.
        oldest: u64,
    },
    /// A segment ends before a durable record, and the next one starts
    /// later.
    #[error(
        "durable record {seq} not found: the segment ends here and the next one starts at record {next}"
    )]
    Gap {
        /// The record looked for.
        seq: u64,
        /// The next segment's first record.
        next: u64,
    },
    /// A record passes its CRC but does not decode.
    #[error("record {0} passes its CRC but does not decode")]
    Undecodable(u64),
    /// A record does not decode (found replaying the log).
    #[error("record {0} does not decode")]
    NotARecord(u64),
}

fn io_error(path: &Path, action: &'static str, e: std::io::Error) -> WalError {
    WalError::Io {
        path: path.display().to_string(),
        action,
        source: Arc::new(e),
    }
}

/// When an append counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After `fdatasync` of its group (the default; survives power loss).
    #[default]
    Fsync,
    /// After `write` only (benchmarks; lost with the machine, not with the
    /// process).
    None,
}

/// Settings of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// Size at which a segment is closed.
    pub segment_bytes: u64,
    /// See [`Durability`].
    pub durability: Durability,
    /// Business-day cutover, seconds after 00:00 UTC.
    pub cutover: Cutover,
}

/// Capacity of a group buffer the writer keeps for reuse.
const KEPT_BUFFER: usize = 1 << 20;

/// What opening the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The next sequence number.
    pub next_seq: u64,
    /// A torn record dropped from the end: segment, offset, bytes dropped.
    pub torn: Option<(String, u64, u64)>,
}

struct Pending {
    buf: Vec<u8>,
    first_seq: u64,
    next_seq: u64,
    waiters: Vec<oneshot::Sender<Result<(), WalError>>>,
    closed: bool,
    failed: Option<WalError>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    groups: AtomicU64,
    records: AtomicU64,
    sync_micros: AtomicU64,
    sync_latency: Latency,
    durable: Arc<AtomicU64>,
}

/// Counters of the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Groups committed.
    pub groups: u64,
    /// Records committed.
    pub records: u64,
    /// Total time spent in `fdatasync`, µs.
    pub sync_micros: u64,
}

/// The open log. Dropping it (or [`Wal::close`]) writes what is pending and
/// stops the writer.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// The sequence number of the last durable record, as the writer advances
/// it (readers that follow the log never read past it).
#[derive(Debug, Clone)]
pub struct DurableMark(Arc<AtomicU64>);

impl DurableMark {
    /// The last durable sequence number (0 for none).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").finish_non_exhaustive()
    }
}

/// Waits until an append is durable.
#[derive(Debug)]
pub struct Durable(oneshot::Receiver<Result<(), WalError>>);

impl Durable {
    /// Resolves when the record's group is on disk.
    pub async fn wait(self) -> Result<(), WalError> {
        self.0.await.unwrap_or(Err(WalError::Closed))
    }

    /// The same, blocking the thread (for tools, not for async code).
    pub fn wait_blocking(self) -> Result<(), WalError> {
        self.0.blocking_recv().unwrap_or(Err(WalError::Closed))
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Pending> {
    match shared.pending.lock() {
        Ok(p) => p,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "sync directory", e))
}

/// The segment being written.
struct Active {
    file: File,
    path: PathBuf,
    date: String,
    size: u64,
}

fn create_segment(dir: &Path, date: &str, first_seq: u64) -> Result<Active, WalError> {
    let path = dir.join(format!("{date}-{first_seq:020}.wal"));
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, "create", e))?;
    file.write_all(MAGIC)
        .and_then(|_| file.sync_all())
        .map_err(|e| io_error(&path, "write", e))?;
    sync_dir(dir)?;
    Ok(Active {
        file,
        path,
        date: date.to_string(),
        size: MAGIC.len() as u64,
    })
}

/// Opens the last segment for appending: drops a torn tail, finds the next
/// sequence number.
fn recover_tail(config: &WalConfig) -> Result<(Option<Active>, Opened), WalError> {
    let all = segments(&config.dir)?;
    let Some(last) = all.last() else {
        return Ok((
            None,
            Opened {
                next_seq: 1,
                torn: None,
            },
        ));
    };
    let data = fs::read(&last.path).map_err(|e| io_error(&last.path, "read", e))?;
    let name = last.path.display().to_string();
    let scan = scan_bytes(&data, &name, true, |_| Ok(()))?;
    let mut torn = None;
    if scan.tail > 0 || scan.end == 0 {
        let file = OpenOptions::new()
            .write(true)
            .open(&last.path)
            .map_err(|e| io_error(&last.path, "open", e))?;
        if scan.end == 0 {
            // The crash came while the segment's magic was being written.
            file.set_len(0)
                .and_then(|_| file.sync_all())
                .map_err(|e| io_error(&last.path, "truncate", e))?;
            drop(file);
            fs::remove_file(&last.path).map_err(|e| io_error(&last.path, "remove", e))?;
            sync_dir(&config.dir)?;
            return recover_tail(config);
        }
        file.set_len(scan.end)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_error(&last.path, "truncate", e))?;
        warn!(segment = %name, offset = scan.end, bytes = scan.tail, "journal: dropped a torn record at the end of the last segment");
        torn = Some((name, scan.end, scan.tail));
    }
    if scan.records == 0 {
        // A segment created just before a stop, with no record: removed, so
        // that the next segment (perhaps of another date) can take its
        // first sequence number without two files claiming it.
        fs::remove_file(&last.path).map_err(|e| io_error(&last.path, "remove", e))?;
        sync_dir(&config.dir)?;
        return Ok((
            None,
            Opened {
                next_seq: last.first_seq,
                torn,
            },
        ));
    }
    let file = OpenOptions::new()
        .append(true)
        .open(&last.path)
        .map_err(|e| io_error(&last.path, "open", e))?;
    let next_seq = scan.last_seq.map_or(last.first_seq, |s| s + 1);
    Ok((
        Some(Active {
            file,
            path: last.path.clone(),
            date: last.date.clone(),
            size: scan.end,
        }),
        Opened { next_seq, torn },
    ))
}

impl Wal {
    /// Opens (or creates) the log in `config.dir` and starts the writer.
    pub fn open(config: WalConfig) -> Result<(Wal, Opened), WalError> {
        fs::create_dir_all(&config.dir).map_err(|e| io_error(&config.dir, "create", e))?;
        let (active, opened) = recover_tail(&config)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(1 << 16),
                first_seq: opened.next_seq,
                next_seq: opened.next_seq,
                waiters: Vec::new(),
                closed: false,
                failed: None,
            }),
            wake: Condvar::new(),
            groups: AtomicU64::new(0),
            records: AtomicU64::new(0),
            sync_micros: AtomicU64::new(0),
            sync_latency: Latency::default(),
            durable: Arc::new(AtomicU64::new(opened.next_seq - 1)),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || write_loop(&shared, config, active))
                .map_err(|e| WalError::Io {
                    path: String::new(),
                    action: "start the writer thread",
                    source: Arc::new(e),
                })?
        };
        Ok((
            Wal {
                shared,
                writer: Some(writer),
            },
            opened,
        ))
    }

    fn enqueue(&self, record: &Record, durable: bool) -> Result<(u64, Option<Durable>), WalError> {
        let payload = record::encode(record);
        let ts = now_micros();
        let mut p = lock(&self.shared);
        if let Some(reason) = &p.failed {
            return Err(WalError::Poisoned(Box::new(reason.clone())));
        }
        if p.closed {
            return Err(WalError::Closed);
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        if p.buf.is_empty() {
            p.first_seq = seq;
        }
        put(&mut p.buf, seq, ts, record.kind(), &payload);
        let waiter = durable.then(|| {
            let (tx, rx) = oneshot::channel();
            p.waiters.push(tx);
            Durable(rx)
        });
        let buffered = p.buf.len();
        drop(p);
        wake::after_append(&self.shared, buffered);
        Ok((seq, waiter))
    }

    /// Appends a record; returns its sequence number at once. It becomes
    /// durable with its group; use [`Wal::append_durable`] to wait for that.
    pub fn append(&self, record: &Record) -> Result<u64, WalError> {
        self.enqueue(record, false).map(|(seq, _)| seq)
    }

    /// Appends a record and returns its sequence number and a handle that
    /// resolves once its group is durable.
    pub fn append_durable(&self, record: &Record) -> Result<(u64, Durable), WalError> {
        let (seq, waiter) = self.enqueue(record, true)?;
        Ok((seq, waiter.ok_or(WalError::Closed)?))
    }

    /// The last durable sequence number, kept current by the writer.
    pub fn durable_mark(&self) -> DurableMark {
        DurableMark(Arc::clone(&self.shared.durable))
    }

    /// Counters of the writer.
    pub fn stats(&self) -> WalStats {
        WalStats {
            groups: self.shared.groups.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            sync_micros: self.shared.sync_micros.load(Ordering::Relaxed),
        }
    }

    /// Time of each group's write and `fdatasync`.
    pub fn sync_latency(&self) -> &Latency {
        &self.shared.sync_latency
    }

    /// Why the log takes no more records, if a write or sync failed.
    pub fn failed(&self) -> Option<WalError> {
        lock(&self.shared).failed.clone()
    }

    /// Writes what is pending and stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            error!("journal writer thread panicked");
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(shared: &Shared, config: WalConfig, mut active: Option<Active>) {
    let mut spare = Vec::new();
    loop {
        let (mut group, first_seq, last_seq, waiters) = {
            let mut p = lock(shared);
            while p.buf.is_empty() && !p.closed {
                p = match shared.wake.wait(p) {
                    Ok(p) => p,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            if p.buf.is_empty() {
                return;
            }
            let group = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
            (
                group,
                p.first_seq,
                p.next_seq - 1,
                std::mem::take(&mut p.waiters),
            )
        };
        let result = commit(shared, &config, &mut active, &group, (first_seq, last_seq));
        if let Err(e) = &result {
            error!(error = %e, "journal write failed; the journal takes no more records");
            let mut p = lock(shared);
            p.failed = Some(e.clone());
            p.buf.clear();
            for waiter in p.waiters.drain(..) {
                let _ = waiter.send(Err(e.clone()));
            }
        } else {
            shared.durable.store(last_seq, Ordering::Release);
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        if result.is_err() {
            return;
        }
        group.clear();
        // Keep the buffer for the next group unless a burst made it large.
        group.shrink_to(KEPT_BUFFER);
        spare = group;
    }
}

fn commit(
    shared: &Shared,
    config: &WalConfig,
    active: &mut Option<Active>,
    group: &[u8],
    seqs: (u64, u64),
) -> Result<(), WalError> {
    let (first_seq, last_seq) = seqs;
    let date = business_date(now_micros(), &config.cutover);
    let roll = match active {
        Some(a) => a.date != date || a.size >= config.segment_bytes,
        None => true,
    };
    if roll {
        *active = Some(create_segment(&config.dir, &date, first_seq)?);
    }
    let Some(a) = active.as_mut() else {
        return Err(WalError::Closed);
    };
    let started = Instant::now();
    let written = a
        .file
        .write_all(group)
        .map_err(|e| ("write", e))
        .and_then(|()| match config.durability {
            Durability::Fsync => a.file.sync_data().map_err(|e| ("fdatasync", e)),
            Durability::None => Ok(()),
        });
    if let Err((action, e)) = written {
        // What reached the page cache may read back whole after a failed
        // sync although it never reached the disk: cut it off (best effort;
        // the writer takes no more records either way).
        let _ = a.file.set_len(a.size);
        return Err(io_error(&a.path, action, e));
    }
    a.size += group.len() as u64;
    if config.durability == Durability::Fsync {
        let took = started.elapsed();
        shared
            .sync_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        shared.sync_latency.record(took);
    }
    shared.groups.fetch_add(1, Ordering::Relaxed);
    shared
        .records
        .fetch_add(last_seq + 1 - first_seq, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests;
