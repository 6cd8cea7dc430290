//! Reading segments: listing them, and the records of one, with torn tails
//! told apart from corruption.

use super::*;

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
pub(super) enum Frame<'a> {
    Whole(Entry<'a>, usize),
    /// Ends beyond the data: a write cut short.
    Short,
    Bad(Corruption),
}

pub(super) fn parse(data: &[u8], offset: u64) -> Frame<'_> {
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
        return Frame::Bad(Corruption::Length(len));
    }
    let Some(body) = data.get(8..8 + len) else {
        return Frame::Short;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..4]), body);
    if crc != word(4) {
        return Frame::Bad(Corruption::Crc);
    }
    let Some(kind) = RecordKind::from_byte(head[8]) else {
        return Frame::Bad(Corruption::Kind(head[8]));
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

pub(super) fn put(buf: &mut Vec<u8>, seq: u64, ts: u64, kind: RecordKind, payload: &[u8]) {
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
    let listing = fs::read_dir(dir).map_err(|e| io_error(dir, "list", e))?;
    let mut found = Vec::new();
    for item in listing {
        let item = item.map_err(|e| io_error(dir, "list", e))?;
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
    let corrupt = |offset: usize, reason: Corruption| WalError::Corrupt {
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
        return Err(corrupt(0, Corruption::NotASegment));
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
                    return Err(corrupt(at, Corruption::OutOfOrder(entry.seq)));
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
            Frame::Short => return Err(corrupt(at, Corruption::CutShort)),
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
        let data = fs::read(&segment.path).map_err(|e| io_error(&segment.path, "read", e))?;
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
