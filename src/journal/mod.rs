//! The write-ahead journal: every transaction is recorded before it leaves
//! the switch, and everything owed after a timeout or a crash (reversals) is
//! kept until the destination acknowledges it.
//!
//! - [`wal`]: the log itself, append-only segments with group commit. It is
//!   the truth.
//! - [`index`]: sled state derived from the log (by id, by terminal+STAN, by
//!   RRN, by date, in flight, store-and-forward queue). A cache: it is
//!   replayed from the log at start and can be rebuilt from scratch.
//! - [`vault`]: PANs sealed at rest.
//! - [`saf`]: store-and-forward of reversals to destinations.
//! - [`recovery`]: what a restart does with transactions a crash left open.
//!
//! See docs/architecture.md → Durability for the contract as operators read it.

pub mod clearing_source;
pub mod cutover;
pub mod index;
pub mod record;
pub mod vault;
pub mod view;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

pub use cutover::Cutover;
use index::{Flush, Held};
pub use index::{Index, IndexError, Phase, TxnState};
pub use record::{Record, TxnId};
pub use vault::{Vault, VaultError};
pub use wal::{Durability, DurableMark, Follower, Wal, WalConfig, WalError};

/// The journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The data key could not be read.
    #[error("journal data key {path}: {reason}")]
    DataKey {
        /// The key file.
        path: String,
        /// Why.
        #[source]
        reason: DataKeyError,
    },
}

/// Why the journal's data key could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataKeyError {
    /// The key store's key given as the data key is not an AES-256 key.
    #[error("the data key must be an aes256 key")]
    NotAes256,
    /// The key file could not be read, or others may read it.
    #[error(transparent)]
    File(#[from] crate::files::PrivateFileError),
    /// The key file does not hold a key.
    #[error(transparent)]
    Key(#[from] VaultError),
    /// A new key file could not be created.
    #[error("cannot create: {0}")]
    Create(#[source] std::io::Error),
    /// A new key file could not be written.
    #[error("cannot write: {0}")]
    Write(#[source] std::io::Error),
}

/// Journal settings (`[journal]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory of the log segments; the index lives in `DIR/index`.
    pub dir: PathBuf,
    /// When an append counts as done.
    pub durability: Durability,
    /// Size at which a segment is closed.
    pub segment_bytes: u64,
    /// Business-day cutover.
    pub cutover: Cutover,
    /// Where the 256-bit data key that seals PANs comes from.
    pub data_key: DataKey,
    /// First delay before a store-and-forward retry.
    pub saf_retry_min: std::time::Duration,
    /// Longest delay between store-and-forward retries.
    pub saf_retry_max: std::time::Duration,
}

/// The source of the journal's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataKey {
    /// A file of 64 hex characters, mode 0600 (`journal keygen`).
    File(PathBuf),
    /// A `data` key (AES-256) from the key store.
    Stored(crate::security::SecretKey),
}

impl JournalConfig {
    /// The log's own settings.
    pub fn wal(&self) -> WalConfig {
        WalConfig {
            dir: self.dir.clone(),
            segment_bytes: self.segment_bytes,
            durability: self.durability,
            cutover: self.cutover.clone(),
        }
    }

    /// The vault under the configured data key (file or key store).
    pub fn vault(&self) -> Result<Vault, JournalError> {
        match &self.data_key {
            DataKey::File(path) => read_data_key(path),
            DataKey::Stored(key) => {
                let bytes: &[u8; vault::KEY_LEN] =
                    key.expose().try_into().map_err(|_| JournalError::DataKey {
                        path: "key store".into(),
                        reason: DataKeyError::NotAes256,
                    })?;
                Ok(Vault::new(bytes))
            }
        }
    }

    /// Where the index lives.
    pub fn index_dir(&self) -> PathBuf {
        self.dir.join("index")
    }
}

/// Reads the data key file: 64 hex characters, not readable by group or
/// others.
pub fn read_data_key(path: &Path) -> Result<Vault, JournalError> {
    let failure = |reason: DataKeyError| JournalError::DataKey {
        path: path.display().to_string(),
        reason,
    };
    let text = crate::files::read_private_file(path).map_err(|e| failure(e.into()))?;
    Vault::from_hex(&text).map_err(|e| failure(e.into()))
}

/// Writes a new random 256-bit data key (64 hex characters) to `path`,
/// readable by its owner only. Refuses to overwrite an existing key: the
/// journal's PANs can only be opened with the key they were sealed under.
pub fn generate_data_key(path: &Path) -> Result<(), JournalError> {
    use aes_gcm::Aes256Gcm;
    use aes_gcm::aead::{Generate, Key};
    let failure = |reason: DataKeyError| JournalError::DataKey {
        path: path.display().to_string(),
        reason,
    };
    let key = Key::<Aes256Gcm>::generate();
    let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.as_slice())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| failure(DataKeyError::Create(e)))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| failure(DataKeyError::Write(e)))
}

pub use crate::files::write_atomically;

/// What opening the journal found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Next log sequence.
    pub next_seq: u64,
    /// A torn record dropped from the end of the log.
    pub torn: Option<(String, u64, u64)>,
    /// Records replayed into the index.
    pub replayed: u64,
}

/// The open journal: log, index and vault.
#[derive(Debug)]
pub struct Journal {
    wal: Option<Wal>,
    index: Index,
    vault: Vault,
    config: JournalConfig,
    indexer: Option<JoinHandle<()>>,
    indexer_shared: Arc<IndexerShared>,
}

impl Journal {
    /// Opens the log (dropping a torn tail), replays it into the index and
    /// starts the writer and the indexer.
    pub fn open(config: JournalConfig) -> Result<(Journal, OpenReport), JournalError> {
        let vault = config.vault()?;
        Journal::open_with(config, vault)
    }

    /// [`Journal::open`] with a vault already at hand.
    pub fn open_with(
        config: JournalConfig,
        vault: Vault,
    ) -> Result<(Journal, OpenReport), JournalError> {
        if config.durability == Durability::None {
            warn!(
                "JOURNAL DURABILITY IS OFF (durability = \"none\"): records are not synced; a machine crash loses them. For benchmarks only."
            );
        }
        let (wal, opened) = Wal::open(config.wal())?;
        let shared = Arc::new(IndexerShared {
            mark: wal.durable_mark(),
            applied: AtomicU64::new(0),
            current_at: AtomicU64::new(wal::now_micros()),
            stop: AtomicBool::new(false),
        });
        let (index, replayed, indexer) = start_indexer(&config, Arc::clone(&shared))?;
        info!(dir = %config.dir.display(), next_seq = opened.next_seq, replayed, "journal open");
        Ok((
            Journal {
                wal: Some(wal),
                index,
                vault,
                config,
                indexer: Some(indexer),
                indexer_shared: shared,
            },
            OpenReport {
                next_seq: opened.next_seq,
                torn: opened.torn,
                replayed,
            },
        ))
    }

    fn wal(&self) -> Result<&Wal, WalError> {
        self.wal.as_ref().ok_or(WalError::Closed)
    }

    /// Appends a record without waiting for it to be durable.
    pub fn append(&self, record: &Record) -> Result<u64, WalError> {
        self.wal()?.append(record)
    }

    /// Appends a record and waits until it is durable.
    pub async fn commit(&self, record: &Record) -> Result<u64, WalError> {
        let (seq, durable) = self.wal()?.append_durable(record)?;
        durable.wait().await?;
        Ok(seq)
    }

    /// Waits until the index has applied the log up to `seq` (bounded: the
    /// index is a cache, a slow one only delays this).
    pub async fn indexed(&self, seq: u64) {
        let since = Instant::now();
        while self.indexer_shared.applied.load(Ordering::Acquire) < seq
            && since.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The last log sequence the index has applied: every transaction whose
    /// id is at most this is in the index.
    pub fn indexed_through(&self) -> u64 {
        self.indexer_shared.applied.load(Ordering::Acquire)
    }

    /// How far the index is behind the log: durable records it has not
    /// applied, and for how long it has not held everything durable (zero
    /// when it does) — an upper bound on the age of the oldest record it
    /// lacks.
    pub fn index_lag(&self) -> IndexLag {
        let shared = &self.indexer_shared;
        let records = shared
            .mark
            .get()
            .saturating_sub(shared.applied.load(Ordering::Acquire));
        let behind = if records == 0 {
            Duration::ZERO
        } else {
            let since = shared.current_at.load(Ordering::Acquire);
            Duration::from_micros(wal::now_micros().saturating_sub(since))
        };
        IndexLag { records, behind }
    }

    /// Waits until the index holds everything durable so far (see
    /// [`Journal::indexed`]).
    pub async fn index_current(&self) {
        self.indexed(self.indexer_shared.mark.get()).await;
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The vault sealing PANs.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Settings.
    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    /// Writer counters.
    pub fn stats(&self) -> wal::WalStats {
        self.wal.as_ref().map(Wal::stats).unwrap_or_default()
    }

    /// Time of each group commit (write and `fdatasync`).
    pub fn sync_latency(&self) -> &crate::metrics::Latency {
        static NONE: std::sync::LazyLock<crate::metrics::Latency> =
            std::sync::LazyLock::new(crate::metrics::Latency::default);
        self.wal.as_ref().map_or(&NONE, |w| w.sync_latency())
    }

    /// Why the journal takes no more records (a failed write or sync, or
    /// closed); `None` while it works.
    pub fn failed(&self) -> Option<String> {
        match &self.wal {
            Some(wal) => wal.failed().map(|e| e.to_string()),
            None => Some("closed".into()),
        }
    }

    /// Writes what is pending, lets the index catch up and closes.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(wal) = self.wal.take() {
            wal.close();
        }
        self.indexer_shared.stop.store(true, Ordering::Release);
        if let Some(indexer) = self.indexer.take()
            && indexer.join().is_err()
        {
            error!("journal indexer thread panicked");
        }
        if let Err(e) = self.index.flush() {
            warn!(error = %e, "journal index flush failed (it is rebuilt from the log at next start)");
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often the indexer looks for new durable records.
const INDEX_POLL: Duration = Duration::from_millis(20);

/// Most records the indexer applies in one sled batch (sled holds a lock
/// over the tree for a batch: index reads wait for it).
const INDEX_BATCH: usize = 512;

/// How long the indexer keeps applying after the journal closes.
const INDEX_DRAIN: Duration = Duration::from_secs(5);

/// How long the indexer waits after a failure before reading the log again
/// from the index's mark.
const INDEX_RETRY: Duration = Duration::from_secs(5);

/// Starts the indexer thread: it lowers its own scheduling priority, opens
/// the index, replays the log into it, hands it back, then follows the log
/// (see [`run_indexer`]). sled's threads are started from it and inherit its
/// priority.
fn start_indexer(
    config: &JournalConfig,
    shared: Arc<IndexerShared>,
) -> Result<(Index, u64, JoinHandle<()>), JournalError> {
    let (ready, opened) = mpsc::sync_channel(1);
    let index_dir = config.index_dir();
    let log_dir = config.dir.clone();
    let cutover = config.cutover.clone();
    let indexer = std::thread::Builder::new()
        .name("journal-index".into())
        .spawn(move || {
            lower_priority();
            let started = Index::open(&index_dir, cutover).and_then(|index| {
                let replayed = index.catch_up(&log_dir, |_| {})?;
                shared.applied.store(index.applied()?, Ordering::Release);
                Ok((index, replayed))
            });
            let index = started.as_ref().ok().map(|(index, _)| index.clone());
            if ready.send(started).is_err() {
                return;
            }
            if let Some(index) = index {
                run_indexer(&index, &log_dir, &shared);
            }
        })
        .map_err(|e| WalError::Io {
            path: String::new(),
            action: "start the indexer thread",
            source: Arc::new(e),
        })?;
    let started = opened.recv().map_err(|_| WalError::IndexerEnded {
        path: config.index_dir().display().to_string(),
    })?;
    let (index, replayed) = started?;
    Ok((index, replayed, indexer))
}

/// Puts the calling thread in the idle scheduling class (`SCHED_IDLE`,
/// lowest nice as well): index work runs only on CPU time the request path
/// leaves over, and a request-path thread that wakes takes the CPU from it at
/// the next preemption point (at once while it runs in user space). At nice
/// 19 in the normal class it held the core for up to 3 ms at a time before a
/// woken request thread ran (`perf sched`, 5,000 requests/s on one core).
/// Falls back to nice 19 where the idle class is refused.
fn lower_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let lowest = |policy| {
        set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(policy),
        )
    };
    if let Err(e) = lowest(NormalThreadSchedulePolicy::Idle)
        .or_else(|_| lowest(NormalThreadSchedulePolicy::Other))
    {
        warn!(error = ?e, "journal index: could not lower the indexer's priority");
    }
}

/// Follows the log into the index: every [`INDEX_POLL`] it applies what
/// became durable since, in batches of [`INDEX_BATCH`], holding each new
/// transaction in memory until it ends (at most [`index::staged::HOLD`]) so
/// that it is written once; the shared `applied` mark stays before the
/// oldest one held. The writer never
/// waits for it (they share only the durable mark), so a slow index lags
/// rather than holding requests back; the request path reads the index only
/// for the original of a reversal that has left memory, and then first
/// waits for it to be current ([`Journal::index_current`]). A restart
/// replays the log from the index's mark. After a failure it starts again
/// from the mark. Once told to stop it applies what is left (for up to
/// [`INDEX_DRAIN`]) and ends.
fn run_indexer(index: &Index, log: &Path, shared: &IndexerShared) {
    let from_mark = || loop {
        match index
            .applied()
            .and_then(|applied| Ok((applied, Held::load(index)?)))
        {
            Ok((applied, held)) => return (Follower::new(log, applied + 1), held),
            Err(e) => {
                error!(error = %e, "journal index: cannot read its mark; retrying");
                std::thread::sleep(INDEX_RETRY);
            }
        }
    };
    let (mut follower, mut held) = from_mark();
    let mut deadline = None;
    loop {
        if deadline.is_none() && shared.stop.load(Ordering::Acquire) {
            deadline = Some(Instant::now() + INDEX_DRAIN);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            warn!(
                behind = shared.mark.get().saturating_sub(follower.next() - 1),
                "journal index stopped behind the log; it is replayed at the next start"
            );
            return;
        }
        let durable = shared.mark.get();
        let mut entries = Vec::new();
        let polled = follower.poll(durable, INDEX_BATCH, |e| {
            if let Some(record) = e.record() {
                entries.push((e.seq, e.ts, record));
            }
        });
        // Held transactions age by the log's clock while the indexer reads
        // behind it (a backlog must not make everything look overdue), by
        // the wall clock once it has read everything.
        let flush = match (deadline, entries.last()) {
            (Some(_), _) => Flush::All,
            (None, Some((_, ts, _))) => Flush::Expired(*ts),
            (None, None) => Flush::Expired(wal::now_micros()),
        };
        let applied = polled.map_err(IndexError::from).and_then(|visited| {
            if visited == 0 && held.is_empty() {
                return Ok(None);
            }
            let mark = index.apply_held(&mut held, entries, follower.next() - 1, flush)?;
            Ok(Some((visited, mark)))
        });
        match applied {
            Ok(Some((visited, mark))) => {
                shared.applied.store(mark, Ordering::Release);
                if follower.next() > durable {
                    // Read up to the durable mark: the index lacks only what
                    // it holds.
                    let since = held.oldest_received().unwrap_or_else(wal::now_micros);
                    shared.current_at.store(since, Ordering::Release);
                }
                if visited == 0 {
                    if deadline.is_some() {
                        return;
                    }
                    std::thread::sleep(INDEX_POLL);
                }
            }
            Ok(None) if deadline.is_some() => return,
            Ok(None) => {
                shared
                    .current_at
                    .store(wal::now_micros(), Ordering::Release);
                std::thread::sleep(INDEX_POLL);
            }
            Err(e) => {
                error!(error = %e, "journal index update failed; retrying from the index's mark (or rebuild it with `cardswitch journal reindex`)");
                if deadline.is_some() {
                    return;
                }
                std::thread::sleep(INDEX_RETRY);
                (follower, held) = from_mark();
            }
        }
    }
}

/// How far the index is behind the log ([`Journal::index_lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLag {
    /// Durable records not yet applied to the index.
    pub records: u64,
    /// How long the index has not held everything durable.
    pub behind: Duration,
}

/// What the indexer thread shares with the journal.
#[derive(Debug)]
struct IndexerShared {
    /// The writer's durable mark: the indexer never reads past it.
    mark: DurableMark,
    /// Last log sequence the index has applied.
    applied: AtomicU64,
    /// When (µs since the epoch) the index last held everything durable.
    current_at: AtomicU64,
    /// Set at close: apply what is left (for up to [`INDEX_DRAIN`]) and end.
    stop: AtomicBool,
}
