//! When the writer is woken for a new record.
//!
//! Woken at every append, the writer (a thread of normal priority that
//! sleeps most of the time) preempts the appending thread at once when both
//! share a core, and commits a group of one or two records: measured on one
//! core at saturation, 306,000 records in 192,000 groups and two context
//! switches per transaction. A tokio worker thread therefore defers the
//! wake-up until it is about to park — when every task it could run has run
//! and what they appended is waiting — and the writer commits all of it as
//! one group. A thread defers once it has parked once (only a runtime's
//! workers park: a blocking-pool thread or a plain thread wakes the writer
//! at once), and a group that grows past [`EAGER_BYTES`] wakes it at once
//! whoever appends.

use std::cell::RefCell;
use std::sync::Arc;

use super::Shared;

/// A buffer this large wakes the writer without waiting for the appending
/// thread to park (a worker that never runs dry must not hold records back).
pub(super) const EAGER_BYTES: usize = 256 * 1024;

thread_local! {
    /// The writers this thread appended to since it last parked; `None`
    /// until it first parks.
    static DEFERRED: RefCell<Option<Vec<Arc<Shared>>>> = const { RefCell::new(None) };
}

/// After an append of `buffered` bytes pending in all: wakes the writer now,
/// or leaves it to the calling thread's next park.
pub(super) fn after_append(shared: &Arc<Shared>, buffered: usize) {
    let deferred = buffered < EAGER_BYTES
        && DEFERRED.with(|cell| match cell.borrow_mut().as_mut() {
            Some(list) => {
                if !list.iter().any(|s| Arc::ptr_eq(s, shared)) {
                    list.push(Arc::clone(shared));
                }
                true
            }
            None => false,
        });
    if !deferred {
        shared.wake.notify_one();
    }
}

/// Wakes every writer the calling thread appended to since it last parked,
/// and makes its later appends wait for its next park. For a runtime's
/// `on_thread_park` hook: install it only where every thread that parks
/// parks again soon after it runs (a tokio runtime's worker threads).
pub fn on_thread_park() {
    DEFERRED.with(|cell| {
        let mut cell = cell.borrow_mut();
        match cell.as_mut() {
            Some(list) => {
                for shared in list.drain(..) {
                    shared.wake.notify_one();
                }
            }
            None => *cell = Some(Vec::new()),
        }
    });
}
