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

/// Bytes at the start of every segment.
pub const MAGIC: &[u8; 8] = b"CSWAL001";
/// Frame header: length, CRC, kind, sequence, timestamp.
pub const HEADER: usize = 4 + 4 + 1 + 8 + 8;
/// Largest record accepted when reading (a bigger length is corruption).
pub const MAX_RECORD: usize = 1 << 20;

/// What a log failure was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed.
    #[error("journal {path}: {action}: {reason}")]
    Io {
        /// File or directory.
        path: String,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        reason: String,
    },
    /// A record that is not the torn tail of the last segment is bad.
    #[error("journal segment {segment}: corrupt record at offset {offset}: {reason}")]
    Corrupt {
        /// Segment file.
        segment: String,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A durable record is in no segment of the log (the log is empty).
    #[error("journal {dir}: durable record {seq} not found: {reason}")]
    Missing {
        /// The log directory.
        dir: String,
        /// The record's sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// An earlier write or sync failed; the log takes no more records.
    #[error("journal unavailable after an earlier failure: {0}")]
    Poisoned(String),
    /// The log was closed.
    #[error("journal closed")]
    Closed,
}

fn io_error(path: &Path, action: &'static str, e: &std::io::Error) -> WalError {
    WalError::Io {
        path: path.display().to_string(),
        action,
        reason: e.to_string(),
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

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// Business date of its records (`YYYYMMDD`).
    pub date: String,
    /// Sequence number of its first record.
    pub first_seq: u64,
}

/// A record read from the log.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Microseconds since the Unix epoch when appended.
    pub ts: u64,
    /// Record kind.
    pub kind: RecordKind,
    /// Serialised record.
    pub payload: &'a [u8],
    /// Byte offset in its segment.
    pub offset: u64,
}

impl Entry<'_> {
    /// The record, decoded.
    pub fn record(&self) -> Option<Record> {
        record::decode(self.payload).filter(|r| r.kind() == self.kind)
    }
}

/// How a frame at some offset reads.
enum Frame<'a> {
    Whole(Entry<'a>, usize),
    /// Ends beyond the data: a write cut short.
    Short,
    Bad(String),
}

fn parse(data: &[u8], offset: u64) -> Frame<'_> {
    let Some(head) = data.get(..HEADER) else {
        return Frame::Short;
    };
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&head[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let len = word(0) as usize;
    if !(HEADER - 8..=MAX_RECORD).contains(&len) {
        return Frame::Bad(format!("record length {len} out of range"));
    }
    let Some(body) = data.get(8..8 + len) else {
        return Frame::Short;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..4]), body);
    if crc != word(4) {
        return Frame::Bad("CRC mismatch".into());
    }
    let Some(kind) = RecordKind::from_byte(head[8]) else {
        return Frame::Bad(format!("unknown record kind {}", head[8]));
    };
    let entry = Entry {
        seq: long(9),
        ts: long(17),
        kind,
        payload: &body[HEADER - 8..],
        offset,
    };
    Frame::Whole(entry, 8 + len)
}

fn put(buf: &mut Vec<u8>, seq: u64, ts: u64, kind: RecordKind, payload: &[u8]) {
    let len = ((HEADER - 8 + payload.len()) as u32).to_le_bytes();
    let start = buf.len();
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind as u8);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&ts.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The business date (`YYYYMMDD`) of a time, given the cutover.
pub fn business_date(micros: u64, cutover: &Cutover) -> String {
    cutover.date(micros)
}

/// The segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let listing = fs::read_dir(dir).map_err(|e| io_error(dir, "list", &e))?;
    let mut found = Vec::new();
    for item in listing {
        let item = item.map_err(|e| io_error(dir, "list", &e))?;
        let name = item.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        let Some((date, seq)) = stem.split_once('-') else {
            continue;
        };
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(first_seq) = seq.parse() else {
            continue;
        };
        found.push(Segment {
            path: item.path(),
            date: date.to_string(),
            first_seq,
        });
    }
    found.sort_by_key(|s| s.first_seq);
    Ok(found)
}

/// The records of one segment's bytes.
#[derive(Debug)]
pub struct SegmentScan {
    /// Records read.
    pub records: u64,
    /// Last sequence number read.
    pub last_seq: Option<u64>,
    /// Offset after the last whole record.
    pub end: u64,
    /// Bytes after `end` that form no whole record.
    pub tail: u64,
}

/// Reads the records of a segment's bytes in order. A record cut short at
/// the very end is reported as `tail` when `tail_allowed`, else as
/// corruption; any other bad record is corruption.
pub fn scan_bytes(
    data: &[u8],
    name: &str,
    tail_allowed: bool,
    mut visit: impl FnMut(&Entry<'_>) -> Result<(), WalError>,
) -> Result<SegmentScan, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        segment: name.to_string(),
        offset: offset as u64,
        reason,
    };
    if data.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
        if tail_allowed && data.len() < MAGIC.len() && MAGIC.starts_with(data) {
            return Ok(SegmentScan {
                records: 0,
                last_seq: None,
                end: 0,
                tail: data.len() as u64,
            });
        }
        return Err(corrupt(0, "not a cardswitch journal segment".into()));
    }
    let mut at = MAGIC.len();
    let mut scan = SegmentScan {
        records: 0,
        last_seq: None,
        end: at as u64,
        tail: 0,
    };
    while at < data.len() {
        let rest = &data[at..];
        match parse(rest, at as u64) {
            Frame::Whole(entry, size) => {
                if scan.last_seq.is_some_and(|last| entry.seq <= last) {
                    return Err(corrupt(at, format!("sequence {} out of order", entry.seq)));
                }
                visit(&entry)?;
                scan.records += 1;
                scan.last_seq = Some(entry.seq);
                at += size;
                scan.end = at as u64;
            }
            // A write cut short by a crash: the record ends beyond the file,
            // or its bytes never reached the disk (zeros, or garbage that
            // fails the CRC with nothing whole after it).
            Frame::Short | Frame::Bad(_) if tail_allowed && is_torn_tail(rest) => break,
            Frame::Short => return Err(corrupt(at, "record cut short".into())),
            Frame::Bad(reason) => return Err(corrupt(at, reason)),
        }
    }
    scan.tail = data.len() as u64 - scan.end;
    Ok(scan)
}

/// Whether bad bytes at the end of the last segment are an interrupted
/// write: all zeros, or a frame whose declared end is the end of the file or
/// beyond (its CRC failed because part of it never reached the disk) with no
/// whole record anywhere after its start. A whole record after it means the
/// bad frame is damage in the middle of the log, never a torn write.
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.iter().all(|b| *b == 0) {
        return true;
    }
    let Some(len) = rest.get(..4) else {
        return true;
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    len <= MAX_RECORD
        && 8 + len >= rest.len()
        && !(1..rest.len()).any(|at| {
            rest.get(at..)
                .is_some_and(|tail| matches!(parse(tail, 0), Frame::Whole(..)))
        })
}

/// Reads every record with sequence ≥ `from` in order, checking CRCs. The
/// last segment may end in a record being written (or torn): it is not an
/// error here.
pub fn scan(
    dir: &Path,
    from: u64,
    mut visit: impl FnMut(&Segment, &Entry<'_>) -> Result<(), WalError>,
) -> Result<u64, WalError> {
    let all = segments(dir)?;
    let start = all.iter().rposition(|s| s.first_seq <= from).unwrap_or(0);
    let mut count = 0;
    let last = all.len().saturating_sub(1);
    for (i, segment) in all.iter().enumerate().skip(start) {
        let data = fs::read(&segment.path).map_err(|e| io_error(&segment.path, "read", &e))?;
        let name = segment.path.display().to_string();
        scan_bytes(&data, &name, i == last, |entry| {
            if entry.seq >= from {
                count += 1;
                visit(segment, entry)?;
            }
            Ok(())
        })?;
    }
    Ok(count)
}

/// Capacity of a group buffer the writer keeps for reuse.
const KEPT_BUFFER: usize = 1 << 20;

/// Bytes a [`Follower`] reads at once (more than the largest record).
const FOLLOW_CHUNK: u64 = 4 << 20;

/// Reads the log as it grows: each [`Follower::poll`] visits the records
/// appended since the last one, in order, up to a durable sequence number.
/// It remembers its segment and offset, so a poll reads only new bytes.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    /// The segment being read, its first sequence number and its business
    /// date.
    segment: Option<(PathBuf, u64, String)>,
    /// Where the next unread frame starts in it.
    offset: u64,
    /// The next sequence number wanted.
    next: u64,
    buf: Vec<u8>,
}

impl Follower {
    /// A follower that starts at sequence number `from`.
    pub fn new(dir: &Path, from: u64) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            segment: None,
            offset: 0,
            next: from.max(1),
            buf: Vec::new(),
        }
    }

    /// Visits the records from the next wanted one up to `limit` (at most
    /// `max` of them) and returns how many it visited. Bytes still being
    /// written (a frame cut short at the end of the newest segment) wait for
    /// the next poll. A bad frame, a gap in the sequence numbers or a
    /// durable record that cannot be found is an error.
    pub fn poll(
        &mut self,
        limit: u64,
        max: usize,
        mut visit: impl FnMut(&Entry<'_>),
    ) -> Result<usize, WalError> {
        self.poll_dated(limit, max, |_, entry| visit(entry))
    }

    /// [`Follower::poll`], telling `visit` also the business date of the
    /// segment each record is in (the date the writer filed it under).
    pub fn poll_dated(
        &mut self,
        limit: u64,
        max: usize,
        mut visit: impl FnMut(&str, &Entry<'_>),
    ) -> Result<usize, WalError> {
        let mut visited = 0;
        while self.next <= limit && visited < max {
            let Some((path, first_seq, date)) = self.segment.clone() else {
                let all = segments(&self.dir)?;
                let Some(at) = all.iter().rposition(|s| s.first_seq <= self.next) else {
                    return Err(match all.first() {
                        Some(oldest) => WalError::Corrupt {
                            segment: oldest.path.display().to_string(),
                            offset: MAGIC.len() as u64,
                            reason: format!(
                                "durable record {} not found: the oldest segment starts at record {}",
                                self.next, oldest.first_seq
                            ),
                        },
                        None => self.missing("the log has no segment"),
                    });
                };
                self.open(&all[at]);
                continue;
            };
            let mut file = File::open(&path).map_err(|e| io_error(&path, "open", &e))?;
            self.buf.clear();
            file.seek(SeekFrom::Start(self.offset))
                .and_then(|_| (&mut file).take(FOLLOW_CHUNK).read_to_end(&mut self.buf))
                .map_err(|e| io_error(&path, "read", &e))?;
            let corrupt = |offset: u64, reason: String| WalError::Corrupt {
                segment: path.display().to_string(),
                offset,
                reason,
            };
            let mut at = 0;
            while self.next <= limit && visited < max {
                match self.buf.get(at..).map(|rest| parse(rest, self.offset)) {
                    Some(Frame::Whole(entry, size)) => {
                        if entry.seq > self.next {
                            return Err(corrupt(
                                self.offset,
                                format!("sequence {} where {} was expected", entry.seq, self.next),
                            ));
                        }
                        if entry.seq == self.next {
                            visit(&date, &entry);
                            visited += 1;
                            self.next += 1;
                        }
                        at += size;
                        self.offset += size as u64;
                    }
                    Some(Frame::Bad(reason)) => return Err(corrupt(self.offset, reason)),
                    Some(Frame::Short) | None => break,
                }
            }
            if self.next > limit || visited >= max {
                return Ok(visited);
            }
            if self.buf.len() as u64 == FOLLOW_CHUNK {
                continue;
            }
            // Everything whole here is read and more is durable: it starts
            // the next segment, unless this one is still being written.
            let all = segments(&self.dir)?;
            match all.iter().find(|s| s.first_seq == self.next) {
                Some(next) if at == self.buf.len() => self.open(next),
                Some(_) => {
                    return Err(corrupt(self.offset, "record cut short".into()));
                }
                None => {
                    if let Some(later) = all.iter().find(|s| s.first_seq > first_seq) {
                        // A segment cut short: its cut record, as `journal
                        // verify` names it, or the end of its last whole
                        // record.
                        let reason = if at < self.buf.len() {
                            "record cut short".to_string()
                        } else {
                            format!(
                                "durable record {} not found: the segment ends here and the next one starts at record {}",
                                self.next, later.first_seq
                            )
                        };
                        return Err(corrupt(self.offset, reason));
                    }
                    return Ok(visited);
                }
            }
        }
        Ok(visited)
    }

    /// The next sequence number it will visit.
    pub fn next(&self) -> u64 {
        self.next
    }

    fn missing(&self, why: &str) -> WalError {
        WalError::Missing {
            dir: self.dir.display().to_string(),
            seq: self.next,
            reason: why.to_string(),
        }
    }

    fn open(&mut self, segment: &Segment) {
        self.segment = Some((
            segment.path.clone(),
            segment.first_seq,
            segment.date.clone(),
        ));
        self.offset = MAGIC.len() as u64;
    }
}

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
    failed: Option<String>,
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
        .map_err(|e| io_error(dir, "sync directory", &e))
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
        .map_err(|e| io_error(&path, "create", &e))?;
    file.write_all(MAGIC)
        .and_then(|_| file.sync_all())
        .map_err(|e| io_error(&path, "write", &e))?;
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
    let data = fs::read(&last.path).map_err(|e| io_error(&last.path, "read", &e))?;
    let name = last.path.display().to_string();
    let scan = scan_bytes(&data, &name, true, |_| Ok(()))?;
    let mut torn = None;
    if scan.tail > 0 || scan.end == 0 {
        let file = OpenOptions::new()
            .write(true)
            .open(&last.path)
            .map_err(|e| io_error(&last.path, "open", &e))?;
        if scan.end == 0 {
            // The crash came while the segment's magic was being written.
            file.set_len(0)
                .and_then(|_| file.sync_all())
                .map_err(|e| io_error(&last.path, "truncate", &e))?;
            drop(file);
            fs::remove_file(&last.path).map_err(|e| io_error(&last.path, "remove", &e))?;
            sync_dir(&config.dir)?;
            return recover_tail(config);
        }
        file.set_len(scan.end)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_error(&last.path, "truncate", &e))?;
        warn!(segment = %name, offset = scan.end, bytes = scan.tail, "journal: dropped a torn record at the end of the last segment");
        torn = Some((name, scan.end, scan.tail));
    }
    if scan.records == 0 {
        // A segment created just before a stop, with no record: removed, so
        // that the next segment (perhaps of another date) can take its
        // first sequence number without two files claiming it.
        fs::remove_file(&last.path).map_err(|e| io_error(&last.path, "remove", &e))?;
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
        .map_err(|e| io_error(&last.path, "open", &e))?;
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
        fs::create_dir_all(&config.dir).map_err(|e| io_error(&config.dir, "create", &e))?;
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
                    reason: e.to_string(),
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
            return Err(WalError::Poisoned(reason.clone()));
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
        drop(p);
        self.shared.wake.notify_one();
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
    pub fn failed(&self) -> Option<String> {
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
            p.failed = Some(e.to_string());
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
        return Err(io_error(&a.path, action, &e));
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
mod tests {
    use super::*;
    use crate::journal::record::Source;

    fn config(dir: &Path) -> WalConfig {
        WalConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 64 << 20,
            durability: Durability::Fsync,
            cutover: Cutover::default(),
        }
    }

    fn responded(txn: u64) -> Record {
        Record::Responded {
            txn,
            code: "00".into(),
            auth_id: Some("A1B2C3".into()),
            source: Source::Destination,
        }
    }

    /// A log in a new directory whose segments roll after `bytes`.
    fn small_segments(bytes: u64) -> (tempfile::TempDir, WalConfig, Wal) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.segment_bytes = bytes;
        let (wal, _) = Wal::open(c.clone()).unwrap();
        (dir, c, wal)
    }

    /// Appends `responded(txn)` and waits until it is durable.
    fn durable(wal: &Wal, txn: u64) {
        wal.append_durable(&responded(txn))
            .unwrap()
            .1
            .wait_blocking()
            .unwrap();
    }

    fn read_all(dir: &Path) -> Vec<(u64, Record)> {
        let mut out = Vec::new();
        scan(dir, 0, |_, e| {
            out.push((e.seq, e.record().unwrap()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn appends_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, opened) = Wal::open(config(dir.path())).unwrap();
        assert_eq!(opened.next_seq, 1);
        for i in 0..100 {
            let (seq, durable) = wal.append_durable(&responded(i)).unwrap();
            assert_eq!(seq, i + 1);
            durable.wait_blocking().unwrap();
        }
        wal.close();
        let (wal, opened) = Wal::open(config(dir.path())).unwrap();
        assert_eq!(
            opened,
            Opened {
                next_seq: 101,
                torn: None
            }
        );
        assert_eq!(wal.append(&responded(100)).unwrap(), 101);
        wal.close();
        let records = read_all(dir.path());
        assert_eq!(records.len(), 101);
        assert_eq!(records[7], (8, responded(7)));
    }

    #[test]
    fn segments_roll_by_size() {
        let (dir, c, wal) = small_segments(200);
        for i in 0..20 {
            durable(&wal, i);
        }
        wal.close();
        assert!(segments(dir.path()).unwrap().len() > 3);
        assert_eq!(read_all(dir.path()).len(), 20);
        let (_, opened) = Wal::open(c).unwrap();
        assert_eq!(opened.next_seq, 21);
    }

    /// A log of five durable records in one segment, and that segment.
    fn five_records() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(config(dir.path())).unwrap();
        for i in 0..5 {
            durable(&wal, i);
        }
        wal.close();
        let segment = segments(dir.path()).unwrap().remove(0).path;
        (dir, segment)
    }

    /// Truncating the last segment at every byte offset inside its last
    /// record: the log opens, drops exactly that record, and says so.
    #[test]
    fn torn_last_record_is_dropped_at_every_offset() {
        let (dir, segment) = five_records();
        let whole = fs::read(&segment).unwrap();
        let mut ends = Vec::new();
        scan_bytes(&whole, "s", false, |e| {
            ends.push(e.offset);
            Ok(())
        })
        .unwrap();
        let last_start = *ends.last().unwrap() as usize;
        for cut in last_start + 1..whole.len() {
            fs::write(&segment, &whole[..cut]).unwrap();
            let (wal, opened) = Wal::open(config(dir.path())).unwrap();
            wal.close();
            assert_eq!(opened.next_seq, 5, "cut at {cut}");
            let torn = opened.torn.expect("torn record reported");
            assert_eq!(
                (torn.1, torn.2),
                (last_start as u64, (cut - last_start) as u64)
            );
            assert_eq!(read_all(dir.path()).len(), 4);
        }
        // Zeros where the last record should be (data blocks never written).
        let mut zeroed = whole.clone();
        zeroed[last_start..].fill(0);
        fs::write(&segment, &zeroed).unwrap();
        let (_, opened) = Wal::open(config(dir.path())).unwrap();
        assert_eq!(opened.next_seq, 5);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error_naming_the_offset() {
        let (dir, segment) = five_records();
        let mut data = fs::read(&segment).unwrap();
        let second = MAGIC.len() + (data.len() - MAGIC.len()) / 5;
        data[second + 20] ^= 0x40;
        fs::write(&segment, &data).unwrap();
        match Wal::open(config(dir.path())) {
            Err(WalError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, second as u64);
                assert!(reason.contains("CRC"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// A bad length in the last-but-one record reaching past the end is
    /// damage, not a torn write: a whole record still follows it.
    #[test]
    fn bad_frame_with_a_whole_record_after_it_is_corruption() {
        let (dir, segment) = five_records();
        let mut data = fs::read(&segment).unwrap();
        let size = (data.len() - MAGIC.len()) / 5;
        let fourth = MAGIC.len() + 3 * size;
        data[fourth..fourth + 4].copy_from_slice(&((2 * size) as u32).to_le_bytes());
        fs::write(&segment, &data).unwrap();
        assert!(matches!(
            Wal::open(config(dir.path())),
            Err(WalError::Corrupt { offset, .. }) if offset == fourth as u64
        ));
    }

    /// A segment created just before a stop, with no record, is removed at
    /// open; the next segment takes its sequence number alone.
    #[test]
    fn record_less_last_segment_is_removed() {
        let (dir, _) = five_records();
        let empty = dir.path().join(format!("20991231-{:020}.wal", 6));
        fs::write(&empty, MAGIC).unwrap();
        let (wal, opened) = Wal::open(config(dir.path())).unwrap();
        assert_eq!(opened.next_seq, 6);
        assert!(!empty.exists());
        durable(&wal, 5);
        wal.close();
        let all = segments(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].first_seq, 6);
        assert_eq!(read_all(dir.path()).len(), 6);
    }

    /// The follower reads across segments, never past the limit, and picks
    /// up a record whose bytes were incomplete at the last poll.
    #[test]
    fn follower_reads_new_records_up_to_the_limit() {
        let (dir, _, wal) = small_segments(100);
        let mut follower = Follower::new(dir.path(), 1);
        let mut seen = Vec::new();
        assert_eq!(
            follower
                .poll(wal.durable_mark().get(), 100, |e| seen.push(e.seq))
                .unwrap(),
            0
        );
        for i in 0..12 {
            durable(&wal, i);
        }
        assert_eq!(wal.durable_mark().get(), 12);
        assert!(segments(dir.path()).unwrap().len() > 2);
        follower.poll(5, 100, |e| seen.push(e.seq)).unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        follower.poll(12, 3, |e| seen.push(e.seq)).unwrap();
        assert_eq!(seen.len(), 8);
        follower.poll(12, 100, |e| seen.push(e.seq)).unwrap();
        assert_eq!(seen, (1..=12).collect::<Vec<_>>());
        wal.close();
        // Half a record at the end (a write in progress), then the rest.
        let last = segments(dir.path()).unwrap().pop().unwrap().path;
        let whole = fs::read(&last).unwrap();
        let mut frame = Vec::new();
        put(
            &mut frame,
            13,
            now_micros(),
            RecordKind::Responded,
            &record::encode(&responded(12)),
        );
        let mut partial = whole.clone();
        partial.extend_from_slice(&frame[..frame.len() / 2]);
        fs::write(&last, &partial).unwrap();
        assert_eq!(follower.poll(13, 100, |e| seen.push(e.seq)).unwrap(), 0);
        partial.extend_from_slice(&frame[frame.len() / 2..]);
        fs::write(&last, &partial).unwrap();
        assert_eq!(follower.poll(13, 100, |e| seen.push(e.seq)).unwrap(), 1);
        assert_eq!(seen.last(), Some(&13));
    }

    #[test]
    fn business_date_follows_the_cutover() {
        // 2026-11-25 22:30 UTC.
        let t = 1_795_646_000 * 1_000_000;
        assert_eq!(business_date(t, &Cutover::utc(0)), "20261125");
        assert_eq!(
            business_date(t + 2 * 3_600_000_000, &Cutover::utc(0)),
            "20261126"
        );
        assert_eq!(
            business_date(t + 2 * 3_600_000_000, &Cutover::utc(3 * 3600)),
            "20261125"
        );
    }
}
