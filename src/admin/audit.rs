//! The audit log: one JSON line per operator action (and per refused
//! attempt at one by a valid token): who, what, when, from where, and the
//! result. Each line is synced before the answer goes out, so an action the
//! API confirmed is on record. A reload reopens the file, so logrotate can
//! move it away and then reload the daemon.
//!
//! **Nothing here blocks the runtime.** Lines are written and synced by a
//! dedicated thread (`audit-writer`); a request hands its line over and
//! awaits the sync. Lines waiting for the writer are bounded
//! ([`QUEUED_LINES`]): past that, a request waits for room (asynchronously)
//! instead of growing a queue. The writer syncs once per batch of the
//! lines waiting, so a burst costs one `fdatasync`, not one per line.
//!
//! **A client without a valid token cannot make lines.** Requests refused
//! for a missing or unknown token are counted (the
//! `admin_auth_failures_total` metric, by reason) and summarised: at most
//! one line per [`SUMMARY_INTERVAL`], written only when there were any,
//! with their count, the count by reason (a closed set:
//! [`AuthFailure`]), the last client address and the start of the
//! interval:
//!
//! ```json
//! {"time":"…","who":"-","role":"-","remote":"203.0.113.9","action":"failed authentication",
//!  "status":401,"result":"aggregated","count":5500,
//!  "reasons":{"missing":5000,"scheme":0,"unknown_token":500},"since":"…"}
//! ```
//!
//! Refusing a request costs two counter increments and a short lock, so a
//! flood of them writes one line in ten seconds, whatever its rate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::warn;

use super::auth::AuthFailure;

/// Lines handed to the writer and not yet synced, at most.
pub const QUEUED_LINES: usize = 1024;

/// Failed authentications are summarised in at most one line per interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Lines the writer takes in one batch (one sync) at most.
const BATCH: usize = 256;

/// One audited action.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry<'a> {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The token's name, or `-` when none was valid.
    pub who: &'a str,
    /// The token's role, or `-`.
    pub role: &'a str,
    /// The client's address.
    pub remote: String,
    /// Method and path.
    pub action: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// `ok`, `denied`, or what went wrong.
    pub result: String,
}

/// The summary of the failed authentications of one interval.
#[derive(Debug, Serialize)]
struct Summary {
    time: String,
    who: &'static str,
    role: &'static str,
    remote: String,
    action: &'static str,
    status: u16,
    result: &'static str,
    count: u64,
    reasons: serde_json::Map<String, serde_json::Value>,
    since: String,
}

/// Why an entry is not on record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The entry could not be encoded.
    #[error("audit entry not encodable: {0}")]
    Encode(#[from] serde_json::Error),
    /// Writing or syncing the file failed.
    #[error("audit log write failed: {0}")]
    Io(#[from] std::io::Error),
    /// The writer thread has stopped (the daemon is stopping).
    #[error("audit log writer stopped")]
    Closed,
}

/// What the writer thread is asked to do.
enum Command {
    /// Append a line; answer once it is synced.
    Line {
        line: Vec<u8>,
        done: oneshot::Sender<Result<(), std::io::Error>>,
        _room: OwnedSemaphorePermit,
    },
    /// Write to this file from now on (opened by the caller).
    Reopen(File),
    /// Write the pending summary now; answer when done.
    Flush(oneshot::Sender<()>),
}

/// Failed authentications not yet summarised.
#[derive(Debug, Default)]
struct Refused {
    counts: [AtomicU64; 3],
    last_remote: Mutex<Option<IpAddr>>,
}

/// The append-only audit file and its writer thread.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    room: Arc<Semaphore>,
    refused: Arc<Refused>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Line { .. } => "Line",
            Command::Reopen(_) => "Reopen",
            Command::Flush(_) => "Flush",
        })
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the audit file for appending and
    /// starts its writer thread.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        AuditLog::with_interval(path, SUMMARY_INTERVAL)
    }

    /// [`AuditLog::open`] with another summary interval.
    pub fn with_interval(path: &Path, interval: Duration) -> std::io::Result<AuditLog> {
        let file = open_append(path)?;
        let (commands, queue) = mpsc::channel();
        let refused = Arc::new(Refused::default());
        let writer = Writer {
            file,
            refused: Arc::clone(&refused),
            interval,
            since: crate::clock::DateTime::now().rfc3339(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(&queue))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            commands,
            room: Arc::new(Semaphore::new(QUEUED_LINES)),
            refused,
        })
    }

    /// Reopens the file by its name (after a log rotation moved it): lines
    /// handed over from now on go to the new file.
    pub fn reopen(&self) -> std::io::Result<()> {
        let file = open_append(&self.path)?;
        self.commands
            .send(Command::Reopen(file))
            .map_err(|_| std::io::Error::other("audit log writer stopped"))
    }

    /// Appends one entry and returns once it is synced. Waits
    /// (asynchronously) while [`QUEUED_LINES`] lines are ahead of it.
    pub async fn write(&self, entry: &AuditEntry<'_>) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let room = Arc::clone(&self.room)
            .acquire_owned()
            .await
            .map_err(|_| AuditError::Closed)?;
        let (done, synced) = oneshot::channel();
        self.commands
            .send(Command::Line {
                line,
                done,
                _room: room,
            })
            .map_err(|_| AuditError::Closed)?;
        synced.await.map_err(|_| AuditError::Closed)??;
        Ok(())
    }

    /// Counts a request refused for want of a valid token, for the next
    /// summary line. Never writes anything itself.
    pub fn refused(&self, reason: AuthFailure, remote: IpAddr) {
        self.refused.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
        *self
            .refused
            .last_remote
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(remote);
    }

    /// Writes the pending summary now (at shutdown) and waits for it.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// The writer thread's state.
struct Writer {
    file: File,
    refused: Arc<Refused>,
    interval: Duration,
    /// Start of the current summary interval, RFC 3339.
    since: String,
}

impl Writer {
    fn run(mut self, queue: &mpsc::Receiver<Command>) {
        let mut next_summary = Instant::now() + self.interval;
        loop {
            let wait = next_summary.saturating_duration_since(Instant::now());
            match queue.recv_timeout(wait) {
                Ok(first) => {
                    let batch: Vec<Command> = std::iter::once(first)
                        .chain(queue.try_iter().take(BATCH - 1))
                        .collect();
                    self.apply(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.summarise();
                    return;
                }
            }
            if Instant::now() >= next_summary {
                self.summarise();
                next_summary = Instant::now() + self.interval;
            }
        }
    }

    /// Writes a batch's lines with one sync, then answers them.
    fn apply(&mut self, batch: Vec<Command>) {
        let mut bytes = Vec::new();
        let mut waiting = Vec::new();
        for command in batch {
            match command {
                Command::Line {
                    line,
                    done,
                    _room: room,
                } => {
                    bytes.extend_from_slice(&line);
                    waiting.push((done, room));
                }
                Command::Reopen(file) => {
                    // Lines handed over before the reopen go to the old file.
                    let outcome = self.append(&bytes);
                    answer(std::mem::take(&mut waiting), &outcome);
                    bytes.clear();
                    self.file = file;
                }
                Command::Flush(done) => {
                    self.summarise();
                    let _ = done.send(());
                }
            }
        }
        let outcome = self.append(&bytes);
        answer(waiting, &outcome);
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.file.sync_data()
    }

    /// The summary line of the failed authentications since the last one,
    /// if there were any.
    fn summarise(&mut self) {
        let now = crate::clock::DateTime::now().rfc3339();
        let since = std::mem::replace(&mut self.since, now.clone());
        let counts =
            AuthFailure::ALL.map(|r| self.refused.counts[r.index()].swap(0, Ordering::Relaxed));
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return;
        }
        let remote = self
            .refused
            .last_remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or_else(|| "-".to_string(), |ip| ip.to_string());
        let reasons = AuthFailure::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), counts[r.index()].into()))
            .collect();
        let summary = Summary {
            time: now,
            who: "-",
            role: "-",
            remote,
            action: "failed authentication",
            status: 401,
            result: "aggregated",
            count,
            reasons,
            since,
        };
        warn!(
            count,
            "admin API: requests refused for a missing or invalid token"
        );
        let written = serde_json::to_vec(&summary)
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                line.push(b'\n');
                self.append(&line)
            });
        if let Err(e) = written {
            warn!(error = %e, "audit log: summary of failed authentications not written");
        }
    }
}

type Waiting = Vec<(
    oneshot::Sender<Result<(), std::io::Error>>,
    OwnedSemaphorePermit,
)>;

/// Tells each waiting request how its line fared (and frees its room).
fn answer(waiting: Waiting, outcome: &std::io::Result<()>) {
    for (done, room) in waiting {
        let result = match outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        let _ = done.send(result);
        drop(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: u16) -> AuditEntry<'static> {
        AuditEntry {
            time: "2026-11-26T05:00:00Z".into(),
            who: "otto",
            role: "operator",
            remote: "127.0.0.1:1".into(),
            action: "POST /v1/reload".into(),
            status,
            result: "ok".into(),
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn entries_are_json_lines_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for status in [200, 403] {
            log.write(&entry(status)).await.unwrap();
        }
        let written = lines(&path);
        assert_eq!(written.len(), 2);
        assert_eq!(written[1]["status"], 403);
        assert_eq!(written[0]["who"], "otto");
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(&entry(200)).await.unwrap();
        assert_eq!(lines(&path).len(), 1);
    }

    #[tokio::test]
    async fn many_writers_are_all_synced_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..(QUEUED_LINES * 2) {
            let log = Arc::clone(&log);
            tasks.spawn(async move { log.write(&entry(200)).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(lines(&path).len(), QUEUED_LINES * 2);
    }

    #[tokio::test]
    async fn failed_authentications_make_one_summary_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::with_interval(&path, Duration::from_millis(300)).unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..10_000 {
            log.refused(AuthFailure::Missing, remote);
        }
        for _ in 0..5 {
            log.refused(AuthFailure::UnknownToken, remote);
        }
        assert!(lines(&path).is_empty(), "nothing written per request");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let written = lines(&path);
        assert_eq!(written.len(), 1, "{written:?}");
        let summary = &written[0];
        assert_eq!(summary["count"], 10_005);
        assert_eq!(summary["reasons"]["missing"], 10_000);
        assert_eq!(summary["reasons"]["scheme"], 0);
        assert_eq!(summary["reasons"]["unknown_token"], 5);
        assert_eq!(summary["remote"], "192.0.2.7");
        assert_eq!(summary["status"], 401);
        assert!(summary["since"].is_string() && summary["time"].is_string());
        // Nothing refused: no line; more refused: flushed on demand.
        log.refused(AuthFailure::Scheme, remote);
        log.flush().await;
        let written = lines(&path);
        assert_eq!(written.len(), 2);
        assert_eq!(written[1]["reasons"]["scheme"], 1);
        log.flush().await;
        assert_eq!(lines(&path).len(), 2);
    }
}
