//! The state of the stateful rules: velocity windows per card and daily
//! totals per merchant.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::key::BuildKeyHasher;
use super::rules::Velocity;

/// Shards per velocity table; a card's shard is chosen by the last byte of
/// its digest.
const SHARDS: usize = 64;

/// A full shard sweeps at most this often (or once per window, if that is
/// shorter), so a flood of new cards into a full table costs one scan per
/// second, not one per transaction.
const FULL_SWEEP_MS: u64 = 1_000;

/// Response code: exceeds withdrawal frequency limit.
pub(super) const CODE_COUNT: &str = "65";
/// Response code: exceeds withdrawal amount limit.
pub(super) const CODE_AMOUNT: &str = "61";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A transaction in a window: (time in ms, amount).
type Event = (u64, u64);

/// Events kept in the map's own slot: a card seen at most this often in the
/// window costs one cache line, without a pointer to chase.
const INLINE: usize = 4;

/// One card's transactions inside the window, oldest first.
#[derive(Debug)]
enum Window {
    /// Up to [`INLINE`] events, each stored as (ms after `base`, amount) in
    /// 32 bits each; `base` is the oldest event's time.
    Inline {
        base: u64,
        len: u8,
        events: [(u32, u32); INLINE],
    },
    /// More events, or ones that do not fit in 32 bits.
    Heap(VecDeque<Event>),
}

impl Window {
    fn new(event: Event) -> Window {
        Window::pack(&[event]).unwrap_or_else(|| Window::Heap(VecDeque::from([event])))
    }

    /// The inline form of `events` (oldest first), if they fit.
    fn pack(events: &[Event]) -> Option<Window> {
        let base = events.first().map_or(0, |&(at, _)| at);
        let mut packed = [(0, 0); INLINE];
        if events.len() > INLINE {
            return None;
        }
        for (slot, &(at, amount)) in packed.iter_mut().zip(events) {
            *slot = (
                u32::try_from(at.checked_sub(base)?).ok()?,
                u32::try_from(amount).ok()?,
            );
        }
        Some(Window::Inline {
            base,
            len: events.len() as u8,
            events: packed,
        })
    }

    /// The events of an inline window, decoded.
    fn unpack(base: u64, len: u8, events: &[(u32, u32); INLINE]) -> impl Iterator<Item = Event> {
        events
            .iter()
            .take(usize::from(len))
            .map(move |&(offset, amount)| (base + u64::from(offset), u64::from(amount)))
    }

    fn len(&self) -> usize {
        match self {
            Window::Inline { len, .. } => usize::from(*len),
            Window::Heap(events) => events.len(),
        }
    }

    /// Sum of the amounts (u128: cannot overflow).
    fn total(&self) -> u128 {
        match self {
            Window::Inline { len, events, .. } => events
                .iter()
                .take(usize::from(*len))
                .map(|&(_, amount)| u128::from(amount))
                .sum(),
            Window::Heap(events) => events.iter().map(|&(_, amount)| u128::from(amount)).sum(),
        }
    }

    fn newest(&self) -> Option<u64> {
        match self {
            Window::Inline { base, len, events } => usize::from(*len)
                .checked_sub(1)
                .and_then(|last| events.get(last))
                .map(|&(offset, _)| base + u64::from(offset)),
            Window::Heap(events) => events.back().map(|&(at, _)| at),
        }
    }

    /// Drops the events that left the window.
    fn expire(&mut self, now_ms: u64, window_ms: u64) {
        let gone = |at: u64| at.saturating_add(window_ms) <= now_ms;
        match self {
            Window::Inline { base, len, events } => {
                let n = usize::from(*len);
                let expired = events
                    .iter()
                    .take(n)
                    .take_while(|&&(offset, _)| gone(*base + u64::from(offset)))
                    .count();
                if expired > 0 {
                    events.rotate_left(expired);
                    *len -= expired as u8;
                    // Rebase on the new oldest event.
                    let shift = events.first().map_or(0, |&(offset, _)| offset);
                    *base += u64::from(shift);
                    for (offset, _) in events.iter_mut() {
                        *offset = offset.saturating_sub(shift);
                    }
                }
            }
            Window::Heap(queue) => {
                while queue.front().is_some_and(|&(at, _)| gone(at)) {
                    queue.pop_front();
                }
                if queue.len() <= INLINE {
                    let packed = Window::pack(queue.make_contiguous());
                    if let Some(packed) = packed {
                        *self = packed;
                    }
                }
            }
        }
    }

    fn live(&self, now_ms: u64, window_ms: u64) -> bool {
        self.newest()
            .is_some_and(|at| at.saturating_add(window_ms) > now_ms)
    }

    fn record(&mut self, now_ms: u64, amount: u64) {
        // Callers' clocks may interleave slightly out of order; keeping the
        // events sorted (a late stamp moves up to the newest) keeps expiry a
        // pop from the front, and only ever keeps an event a little longer.
        let at = self.newest().map_or(now_ms, |last| last.max(now_ms));
        match self {
            Window::Inline { base, len, events } => {
                if *len == 0 {
                    *base = at;
                }
                let packed = u32::try_from(at - *base)
                    .ok()
                    .zip(u32::try_from(amount).ok());
                match (events.get_mut(usize::from(*len)), packed) {
                    (Some(slot), Some(event)) => {
                        *slot = event;
                        *len += 1;
                    }
                    _ => {
                        let mut queue = VecDeque::with_capacity(2 * INLINE);
                        queue.extend(Window::unpack(*base, *len, events));
                        queue.push_back((at, amount));
                        *self = Window::Heap(queue);
                    }
                }
            }
            Window::Heap(queue) => queue.push_back((at, amount)),
        }
    }
}

/// The verdict of a velocity rule on a transaction of `amount` for a card
/// with this window (`None`: no history).
fn verdict(rule: &Velocity, window: Option<&Window>, amount: u64) -> Option<&'static str> {
    let count = window.map_or(0, Window::len);
    if count >= rule.max_count as usize {
        return Some(CODE_COUNT);
    }
    let max = rule.max_amount?;
    let total = window.map_or(0, Window::total) + u128::from(amount);
    (total > u128::from(max)).then_some(CODE_AMOUNT)
}

#[derive(Debug)]
struct Shard {
    cards: HashMap<u128, Window, BuildKeyHasher>,
    /// This shard's share of `max_cards`.
    cap: usize,
    /// When the shard last dropped its idle cards.
    last_sweep: u64,
}

impl Shard {
    fn sweep(&mut self, now_ms: u64, window_ms: u64) {
        self.cards.retain(|_, w| w.live(now_ms, window_ms));
        self.last_sweep = now_ms;
    }
}

/// A shard on its own cache line, so two cores working on neighbouring
/// shards do not contend.
#[derive(Debug)]
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// Shard `i`'s share of `max_cards`: the shares add up to `max_cards`.
fn share(max_cards: usize, i: usize) -> usize {
    max_cards / SHARDS + usize::from(i < max_cards % SHARDS)
}

/// The windows of one velocity rule.
#[derive(Debug)]
pub(super) struct VelocityTable {
    shards: [Padded; SHARDS],
}

impl VelocityTable {
    pub(super) fn new(max_cards: usize) -> VelocityTable {
        VelocityTable {
            shards: std::array::from_fn(|i| {
                Padded(Mutex::new(Shard {
                    cards: HashMap::default(),
                    cap: share(max_cards, i),
                    last_sweep: 0,
                }))
            }),
        }
    }

    /// Applies a new `max_cards` to a table kept across a reload. A lowered
    /// bound stops new cards at once; the cards over it leave as their
    /// windows empty.
    pub(super) fn set_max_cards(&self, max_cards: usize) {
        for (i, shard) in self.shards.iter().enumerate() {
            lock(&shard.0).cap = share(max_cards, i);
        }
    }

    /// Cards tracked.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).cards.len()).sum()
    }

    /// Checks the card against the rule and, when it passes, records the
    /// transaction; both under the shard's lock. Returns the response code
    /// of a hit.
    pub(super) fn check_and_record(
        &self,
        rule: &Velocity,
        card: &[u8; 32],
        amount: u64,
        now_ms: u64,
        untracked: &AtomicU64,
    ) -> Option<&'static str> {
        let key = card
            .first_chunk::<16>()
            .map_or(0, |k| u128::from_le_bytes(*k));
        let index = card.last().map_or(0, |&b| usize::from(b) % SHARDS);
        let shard = self.shards.get(index)?;
        let mut shard = lock(&shard.0);
        let window_ms = rule.window_ms;
        if now_ms >= shard.last_sweep.saturating_add(window_ms) {
            shard.sweep(now_ms, window_ms);
        }
        if let Some(w) = shard.cards.get_mut(&key) {
            w.expire(now_ms, window_ms);
            let hit = verdict(rule, Some(w), amount);
            if hit.is_none() {
                w.record(now_ms, amount);
            }
            return hit;
        }
        let hit = verdict(rule, None, amount);
        if hit.is_some() {
            return hit;
        }
        if shard.cards.len() >= shard.cap
            && now_ms
                >= shard
                    .last_sweep
                    .saturating_add(window_ms.min(FULL_SWEEP_MS))
        {
            shard.sweep(now_ms, window_ms);
        }
        if shard.cards.len() < shard.cap {
            shard.cards.insert(key, Window::new((now_ms, amount)));
        } else {
            untracked.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

/// A merchant's total on one business date.
#[derive(Debug)]
struct Day {
    /// The business date's [`key`](super::key::key).
    date: u128,
    total: u64,
}

/// The totals of one merchant-daily rule, one entry per merchant, keyed by
/// the merchant id's [`key`](super::key::key).
#[derive(Debug, Default)]
pub(super) struct DailyTable {
    merchants: Mutex<HashMap<u128, Day, BuildKeyHasher>>,
}

impl DailyTable {
    /// Checks the merchant's total with this amount against `max_amount`
    /// and, when it passes, adds the amount; a new business date starts
    /// from 0. Returns true on a hit.
    pub(super) fn check_and_record(
        &self,
        max_amount: u64,
        merchant: u128,
        date: u128,
        amount: u64,
    ) -> bool {
        let mut merchants = lock(&self.merchants);
        let day = merchants.entry(merchant).or_insert(Day { date, total: 0 });
        if day.date != date {
            *day = Day { date, total: 0 };
        }
        match day.total.checked_add(amount) {
            Some(total) if total <= max_amount => {
                day.total = total;
                false
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<(u128, Window)>(), 64);
    }

    fn events(w: &Window) -> Vec<Event> {
        match w {
            Window::Inline { base, len, events } => Window::unpack(*base, *len, events).collect(),
            Window::Heap(q) => q.iter().copied().collect(),
        }
    }

    #[test]
    fn window_moves_to_the_heap_and_back() {
        let mut w = Window::new((100, 1));
        for (at, amount) in [(110, 2), (105, 4), (120, 8)] {
            w.record(at, amount);
        }
        assert!(matches!(
            w,
            Window::Inline {
                base: 100,
                len: 4,
                ..
            }
        ));
        // The late stamp 105 was moved up to the newest, 110.
        assert_eq!(events(&w), [(100, 1), (110, 2), (110, 4), (120, 8)]);
        w.record(130, 16);
        assert!(matches!(&w, Window::Heap(q) if q.len() == 5));
        assert_eq!((w.total(), w.newest()), (31, Some(130)));
        w.expire(200, 100);
        assert!(matches!(
            w,
            Window::Inline {
                base: 110,
                len: 4,
                ..
            }
        ));
        assert_eq!(events(&w), [(110, 2), (110, 4), (120, 8), (130, 16)]);
        w.expire(215, 100);
        assert!(matches!(
            w,
            Window::Inline {
                base: 120,
                len: 2,
                ..
            }
        ));
        assert_eq!((w.len(), w.total()), (2, 24));
        w.expire(230, 100);
        assert_eq!((w.len(), w.total(), w.newest()), (0, 0, None));
        assert!(!w.live(230, 100));
        w.record(5000, 3);
        assert_eq!(events(&w), [(5000, 3)]);
        assert!(w.live(5099, 100));
    }

    #[test]
    fn window_keeps_what_does_not_fit_32_bits_on_the_heap() {
        let big = u64::from(u32::MAX) + 1;
        let w = Window::new((0, big));
        assert!(matches!(w, Window::Heap(_)));
        assert_eq!(w.total(), u128::from(big));
        let mut w = Window::new((0, 1));
        w.record(big, 1);
        assert!(matches!(w, Window::Heap(_)));
        assert_eq!(events(&w), [(0, 1), (big, 1)]);
        // Once the old event leaves, the rest fits inline again.
        w.expire(big + 1, big);
        assert!(matches!(w, Window::Inline { len: 1, .. }));
        assert_eq!(events(&w), [(big, 1)]);
    }
}
