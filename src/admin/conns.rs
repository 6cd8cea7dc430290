//! Which admin API connections are served: at most [`MAX_CONNECTIONS`] in
//! all and [`MAX_PER_CLIENT`] from one client address, and never a wait in
//! the accept loop.
//!
//! A connection is *busy* while a request of it is being answered, *idle*
//! otherwise: still sending its request head (or TLS handshake), or kept
//! alive between requests. When a new connection would pass a bound, the
//! oldest idle connection within that bound is closed to make room (of the
//! same client when the client is at its bound, of any client when the
//! total is); when every connection within the bound is busy, the new one
//! is closed at once. So:
//!
//! - idle or half-sent connections cannot starve the API: a real request
//!   (a health check, a scrape) gets a connection at once and is answered
//!   as soon as its head arrives, which takes far less time than opening
//!   the connections needed to push it out again;
//! - one client address can only push out its own connections, never
//!   another client's, until the total bound is reached;
//! - what is left idle is closed anyway after the header read timeout.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Connections served at once, from all clients.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections served at once from one client address.
pub const MAX_PER_CLIENT: usize = 16;

/// One admitted connection, as the registry sees it.
#[derive(Debug)]
struct Open {
    client: IpAddr,
    busy: Arc<AtomicBool>,
    close: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// By admission order: the first idle one is the oldest.
    open: BTreeMap<u64, Open>,
    per_client: HashMap<IpAddr, usize>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&open.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&open.client);
            }
        }
        Some(open)
    }

    /// Closes the oldest idle connection (of `client` if given).
    fn evict(&mut self, client: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, o)| client.is_none_or(|c| o.client == c) && !o.busy.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.remove(id)) {
            Some(open) => {
                open.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// The registry of admitted connections.
#[derive(Debug)]
pub struct Admission {
    state: Mutex<State>,
    max_total: usize,
    max_per_client: usize,
}

/// An admitted connection: its place is freed when this is dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    admission: Arc<Admission>,
    /// Set while a request is being answered.
    pub busy: Arc<AtomicBool>,
    /// Cancelled when the connection is pushed out for a newer one.
    pub close: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.remove(self.id);
    }
}

/// Marks a connection busy until dropped.
#[derive(Debug)]
pub struct Busy(Arc<AtomicBool>);

impl Busy {
    /// Marks `flag` busy.
    pub fn new(flag: &Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::Release);
        Busy(Arc::clone(flag))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Admission {
    /// A registry with these bounds.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Admission> {
        Arc::new(Admission {
            state: Mutex::new(State::default()),
            max_total,
            max_per_client,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `client`, pushing out the oldest idle one
    /// if a bound is reached; `None` if every connection within the bound
    /// is busy.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let mut state = self.lock();
        let of_client = state.per_client.get(&client).copied().unwrap_or(0);
        if of_client >= self.max_per_client && !state.evict(Some(client)) {
            return None;
        }
        if state.open.len() >= self.max_total && !state.evict(None) {
            return None;
        }
        let id = state.next;
        state.next += 1;
        let busy = Arc::new(AtomicBool::new(false));
        let close = CancellationToken::new();
        state.open.insert(
            id,
            Open {
                client,
                busy: Arc::clone(&busy),
                close: close.clone(),
            },
        );
        *state.per_client.entry(client).or_insert(0) += 1;
        Some(Slot {
            id,
            admission: Arc::clone(self),
            busy,
            close,
        })
    }

    /// Connections admitted now.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_at_its_bound_pushes_out_its_own_oldest_idle_connection() {
        let admission = Admission::new(8, 3);
        let a = ip("10.0.0.1");
        let first: Vec<Slot> = (0..3).map(|_| admission.admit(a).unwrap()).collect();
        let other = admission.admit(ip("10.0.0.2")).unwrap();
        let fourth = admission.admit(a).unwrap();
        assert!(first[0].close.is_cancelled(), "the oldest went");
        assert!(!first[1].close.is_cancelled() && !other.close.is_cancelled());
        assert_eq!(admission.len(), 4);
        // Busy connections stay.
        let _b1 = Busy::new(&first[1].busy);
        let _b2 = Busy::new(&first[2].busy);
        let _b4 = Busy::new(&fourth.busy);
        assert!(admission.admit(a).is_none(), "all of a's are busy");
        assert!(!other.close.is_cancelled());
        drop(first);
        assert_eq!(admission.len(), 2);
    }

    #[test]
    fn the_total_bound_pushes_out_the_oldest_idle_connection_of_anyone() {
        let admission = Admission::new(4, 4);
        let slots: Vec<Slot> = (1..=4)
            .map(|n| admission.admit(ip(&format!("10.0.0.{n}"))).unwrap())
            .collect();
        let _busy = Busy::new(&slots[0].busy);
        let newer = admission.admit(ip("10.0.0.9")).unwrap();
        assert!(!slots[0].close.is_cancelled(), "busy: kept");
        assert!(slots[1].close.is_cancelled(), "oldest idle: closed");
        assert_eq!(admission.len(), 4);
        drop(newer);
        drop(slots);
        assert!(admission.is_empty());
        assert!(admission.lock().per_client.is_empty());
    }
}
