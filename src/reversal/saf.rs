//! Store-and-forward: reversals owed to destinations, sent in order until
//! acknowledged.
//!
//! One worker per destination keeps its queue in memory, seeded at start
//! from the journal index (the queue *lives* in the journal: every entry is a
//! durable `ReversalQueued` record and leaves only with a
//! `ReversalAcknowledged` one). While the destination has a link up, the
//! worker sends the head of the queue — `0420` the first time, `0421` on
//! every repeat (`1420`/`1421` to 1993 hosts) — records each attempt, and
//! waits for the answer. Any answer other than "system error" / "issuer
//! unavailable" acknowledges it; otherwise it retries with capped exponential
//! backoff. Entries are never dropped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::adapter::Destination;
use crate::clock::DateTime;
use crate::iso8583::{ErrorKind, Message, Mti};
use crate::journal::Journal;
use crate::journal::index::TxnState;
use crate::journal::record::{Forwarded, Received, Record, TxnId};
use crate::journal::vault::VaultError;
use crate::registry::Terminal;
use crate::translate::{self, OriginalRef, Outgoing};
use crate::txn::TxnKind;

/// A reversal waiting to be delivered.
#[derive(Debug, Clone)]
pub struct SafItem {
    /// The transaction reversed.
    pub txn: TxnId,
    /// Its request.
    pub request: Arc<Received>,
    /// Where it went (the reversal goes to the same place).
    pub forwarded: Forwarded,
    /// Amount that stands after a partial reversal.
    pub replacement: Option<u64>,
    /// Attempts made so far.
    pub attempts: u32,
}

impl SafItem {
    /// The queue entry of a transaction with a reversal pending.
    pub fn from_state(state: &TxnState) -> Option<SafItem> {
        let reversal = state
            .reversal
            .as_ref()
            .filter(|_| state.reversal_pending())?;
        Some(SafItem {
            txn: state.id,
            request: Arc::new(state.request.clone()),
            forwarded: state.forwarded.clone()?,
            replacement: reversal.replacement,
            attempts: reversal.attempts,
        })
    }
}

/// Handles to the workers: where new reversals are queued.
#[derive(Debug, Default)]
pub struct Saf {
    queues: HashMap<String, mpsc::UnboundedSender<SafItem>>,
    depth: Arc<AtomicU64>,
}

impl Saf {
    /// Hands a reversal (already durable in the journal) to its
    /// destination's worker.
    pub fn push(&self, item: SafItem) {
        match self.queues.get(&item.forwarded.destination) {
            Some(queue) => {
                self.depth.fetch_add(1, Ordering::Relaxed);
                if queue.send(item).is_err() {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                }
            }
            None => error!(
                destination = %item.forwarded.destination,
                txn = item.txn,
                "reversal for a destination that is not configured; it stays queued in the journal"
            ),
        }
    }

    /// Reversals queued and not yet acknowledged.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}

/// Everything a worker needs.
#[derive(Debug, Clone)]
pub struct SafContext {
    /// The journal.
    pub journal: Arc<Journal>,
    /// The switch's institution ids.
    pub institution: translate::Institution,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// Starts one worker per destination with its initial queue.
pub fn start(
    context: &SafContext,
    destinations: &[Arc<Destination>],
    initial: Vec<SafItem>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Saf {
    let mut saf = Saf::default();
    let mut seeded: HashMap<String, VecDeque<SafItem>> = HashMap::new();
    for item in initial {
        seeded
            .entry(item.forwarded.destination.clone())
            .or_default()
            .push_back(item);
    }
    for destination in destinations {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = seeded.remove(destination.name()).unwrap_or_default();
        saf.depth.fetch_add(queue.len() as u64, Ordering::Relaxed);
        if !queue.is_empty() {
            info!(
                destination = destination.name(),
                queued = queue.len(),
                "store-and-forward queue loaded"
            );
        }
        saf.queues.insert(destination.name().to_string(), tx);
        tasks.spawn(run(
            context.clone(),
            Arc::clone(destination),
            rx,
            queue,
            Arc::clone(&saf.depth),
            shutdown.clone(),
        ));
    }
    for (name, queue) in seeded {
        error!(destination = %name, queued = queue.len(), "reversals owed to a destination that is no longer configured; they stay in the journal");
    }
    saf
}

async fn run(
    context: SafContext,
    destination: Arc<Destination>,
    mut incoming: mpsc::UnboundedReceiver<SafItem>,
    mut queue: VecDeque<SafItem>,
    depth: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut delay = context.retry_min;
    loop {
        while let Ok(item) = incoming.try_recv() {
            queue.push_back(item);
        }
        let Some(item) = queue.front_mut() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = incoming.recv() => match next {
                    Some(item) => queue.push_back(item),
                    None => return,
                },
            }
            continue;
        };
        if destination.links_up() == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(context.retry_min) => {}
            }
            continue;
        }
        item.attempts += 1;
        let message = match reversal_message(&context, &destination, item) {
            Ok(message) => message,
            Err(reason) => {
                error!(txn = item.txn, destination = destination.name(), %reason, "cannot build the reversal; it stays queued in the journal");
                queue.pop_front();
                depth.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
        };
        let attempt = item.attempts;
        let txn = item.txn;
        let sent = Record::ReversalSent { txn, attempt };
        let result = destination
            .request(message, |_| async {
                context.journal.commit(&sent).await.is_ok()
            })
            .await;
        let version = destination.config().dialect.version();
        let acknowledged = match &result {
            Ok(exchange) => {
                // An answer without a readable code acknowledges nothing.
                translate::answer_from(version, &exchange.response)
                    .ok()
                    .map(|a| a.code)
                    .filter(|code| !matches!(code.as_str(), "91" | "96"))
            }
            Err(_) => None,
        };
        match acknowledged {
            Some(code) => {
                let record = Record::ReversalAcknowledged {
                    txn,
                    code: code.clone(),
                };
                if let Err(e) = context.journal.commit(&record).await {
                    error!(txn, error = %e, "cannot record a reversal acknowledgement; it will be repeated");
                }
                info!(
                    txn,
                    destination = destination.name(),
                    attempt,
                    code,
                    "reversal acknowledged"
                );
                queue.pop_front();
                depth.fetch_sub(1, Ordering::Relaxed);
                delay = context.retry_min;
            }
            None => {
                warn!(txn, destination = destination.name(), attempt, outcome = ?result.map(|_| "declined with a system error"), "reversal not acknowledged; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(context.retry_max);
            }
        }
    }
}

/// Why a reversal advice could not be built from its stored request.
#[derive(Debug, thiserror::Error)]
enum ReversalError {
    /// The stored PAN does not open under the journal's data key.
    #[error(transparent)]
    Pan(#[from] VaultError),
    /// The stored request's MTI is not four digits.
    #[error(transparent)]
    Mti(#[from] ErrorKind),
}

/// The reversal advice of a stored transaction, in the destination's
/// dialect: 0420 on the first attempt, 0421 on repeats, with the original's
/// PAN, amounts and original data elements (90, or 56 for 1993 hosts).
fn reversal_message(
    context: &SafContext,
    destination: &Destination,
    item: &SafItem,
) -> Result<Message, ReversalError> {
    let r = &item.request;
    let pan = context.journal.vault().open(&r.pan)?;
    let mti = if item.attempts > 1 {
        Mti::from_static("0421")
    } else {
        Mti::from_static("0420")
    };
    let mut m = Message::new(mti);
    m.set(2, pan.as_str().to_string())
        .set(3, r.processing_code.clone())
        .set(4, format!("{:012}", r.amount))
        .set(11, r.stan.clone())
        .set(37, r.rrn.clone())
        .set(41, r.terminal.clone())
        .set(49, r.currency.clone());
    for (field, value) in [
        (12, &r.local_time),
        (13, &r.local_date),
        (22, &r.entry_mode),
        (25, &r.condition),
    ] {
        if let Some(value) = value {
            m.set(field, value.clone());
        }
    }
    if let Some(standing) = item.replacement {
        m.set(
            95,
            format!("{standing:012}{standing:012}C00000000C00000000"),
        );
    }
    let merchant = r
        .merchant
        .clone()
        .unwrap_or(crate::journal::record::Merchant {
            id: String::new(),
            mcc: String::new(),
            name_location: String::new(),
        });
    let terminal = Terminal {
        id: r.terminal.clone(),
        merchant_id: merchant.id,
        name_location: merchant.name_location,
        mcc: merchant.mcc,
        currency: r.currency.clone(),
        allowed: BTreeSet::new(),
        enabled: true,
        protection: Arc::default(),
    };
    let original = OriginalRef {
        destination: Arc::from(item.forwarded.destination.as_str()),
        mti: Mti::parse(&r.mti)?,
        switch_stan: item.forwarded.switch_stan,
        transmission: item.forwarded.transmission.clone(),
        local_93: item.forwarded.local_93.clone(),
    };
    let outgoing = Outgoing {
        kind: TxnKind::Reversal,
        request: &m,
        terminal: &terminal,
        institution: &context.institution,
        original: Some(&original),
        rrn: None,
        now: DateTime::now(),
    };
    Ok(translate::request_for(
        &destination.config().dialect,
        &outgoing,
    ))
}
