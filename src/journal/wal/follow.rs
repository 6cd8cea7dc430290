//! Following the log as it grows, up to the durable mark.

use super::*;

/// Bytes a [`Follower`] reads at once to begin with: more than an index
/// batch of records needs; doubled while a record does not fit (up to one
/// more than the largest record).
const FOLLOW_CHUNK: usize = 256 << 10;

/// Bytes per `read` call: a read is one stretch of kernel time that the
/// thread sharing the follower's core waits out (4 MiB reads held a
/// request-path thread for milliseconds).
const READ_PIECE: usize = 64 << 10;

/// Reads up to `chunk` bytes from `file`'s position into `buf` (emptied
/// first), [`READ_PIECE`] bytes per call, stopping at its end.
fn read_chunk(file: &mut File, buf: &mut Vec<u8>, chunk: usize) -> std::io::Result<()> {
    buf.clear();
    buf.resize(chunk, 0);
    let mut filled = 0;
    while filled < chunk {
        let end = (filled + READ_PIECE).min(chunk);
        match file.read(&mut buf[filled..end]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

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
        let mut chunk = FOLLOW_CHUNK;
        while self.next <= limit && visited < max {
            let Some((path, first_seq, date)) = self.segment.clone() else {
                let all = segments(&self.dir)?;
                let Some(at) = all.iter().rposition(|s| s.first_seq <= self.next) else {
                    return Err(match all.first() {
                        Some(oldest) => WalError::Corrupt {
                            segment: oldest.path.display().to_string(),
                            offset: MAGIC.len() as u64,
                            reason: Corruption::BeforeOldest {
                                seq: self.next,
                                oldest: oldest.first_seq,
                            },
                        },
                        None => self.missing(),
                    });
                };
                self.open(&all[at]);
                continue;
            };
            let mut file = File::open(&path).map_err(|e| io_error(&path, "open", e))?;
            file.seek(SeekFrom::Start(self.offset))
                .and_then(|_| read_chunk(&mut file, &mut self.buf, chunk))
                .map_err(|e| io_error(&path, "read", e))?;
            let corrupt = |offset: u64, reason: Corruption| WalError::Corrupt {
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
                                Corruption::Unexpected {
                                    found: entry.seq,
                                    expected: self.next,
                                },
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
            if self.buf.len() == chunk {
                if at == 0 {
                    // One record larger than the chunk.
                    chunk = (chunk * 2).min(2 * MAX_RECORD);
                }
                continue;
            }
            // Everything whole here is read and more is durable: it starts
            // the next segment, unless this one is still being written.
            let all = segments(&self.dir)?;
            match all.iter().find(|s| s.first_seq == self.next) {
                Some(next) if at == self.buf.len() => self.open(next),
                Some(_) => {
                    return Err(corrupt(self.offset, Corruption::CutShort));
                }
                None => {
                    if let Some(later) = all.iter().find(|s| s.first_seq > first_seq) {
                        // A segment cut short: its cut record, as `journal
                        // verify` names it, or the end of its last whole
                        // record.
                        let reason = if at < self.buf.len() {
                            Corruption::CutShort
                        } else {
                            Corruption::Gap {
                                seq: self.next,
                                next: later.first_seq,
                            }
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

    fn missing(&self) -> WalError {
        WalError::Missing {
            dir: self.dir.display().to_string(),
            seq: self.next,
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
