//! How many modules compile or run at once: `--jobs` of them. With a remote cache more
//! tasks than that are in flight (their lookups wait on the network, not the CPU:
//! [`super::REMOTE_LOOKUPS`]), and a task that misses waits here for a slot before its
//! module starts. Waiting tasks get slots in canonical order (EXEC-004), whatever
//! order their lookups ended in.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

pub struct Slots {
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    free: usize,
    total: usize,
    /// The canonical positions of the tasks waiting for a slot.
    waiting: BTreeSet<usize>,
}

/// A slot held; given back when dropped.
pub struct Slot<'s> {
    slots: &'s Slots,
}

impl Slots {
    /// No limit until [`Slots::set`] gives one (what runs outside the scheduler, such
    /// as an audit's own runs, is not held back).
    pub fn unlimited() -> Slots {
        Slots {
            state: Mutex::new(State {
                free: usize::MAX,
                total: usize::MAX,
                waiting: BTreeSet::new(),
            }),
            freed: Condvar::new(),
        }
    }

    /// `n` slots from now on (none may be held: set before a run starts).
    pub fn set(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        (state.free, state.total) = (n, n);
    }

    /// Waits for a free slot, and for every task before `position` in canonical order
    /// that is waiting too to have had one.
    pub fn acquire(&self, position: usize) -> Slot<'_> {
        let mut state = self.state.lock().unwrap();
        state.waiting.insert(position);
        while state.free == 0 || state.waiting.first() != Some(&position) {
            state = self.freed.wait(state).unwrap();
        }
        state.waiting.remove(&position);
        state.free -= 1;
        // The next in line may find a slot free too.
        self.freed.notify_all();
        Slot { slots: self }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.slots.state.lock().unwrap();
        state.free = (state.free + 1).min(state.total);
        self.slots.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// However many threads ask, no more than the slots hold one at once, and all get
    /// one in the end.
    #[test]
    fn no_more_than_the_slots_at_once() {
        let slots = Slots::unlimited();
        slots.set(2);
        let (now, most, done) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|s| {
            for position in 0..16 {
                let (slots, now, most, done) = (&slots, &now, &most, &done);
                s.spawn(move || {
                    let _slot = slots.acquire(position);
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::yield_now();
                    now.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(done.load(Ordering::SeqCst), 16);
    }

    /// With one slot held, tasks that come to wait in any order get it in canonical
    /// order.
    #[test]
    fn waiting_tasks_get_slots_in_canonical_order() {
        let slots = Slots::unlimited();
        slots.set(1);
        let order = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let held = slots.acquire(0);
            for position in [5, 2, 9, 1, 7] {
                let (slots, order) = (&slots, &order);
                s.spawn(move || {
                    let _slot = slots.acquire(position);
                    order.lock().unwrap().push(position);
                });
            }
            // Every one of them waiting before the slot is given back.
            while slots.state.lock().unwrap().waiting.len() < 5 {
                std::thread::yield_now();
            }
            drop(held);
        });
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 5, 7, 9]);
    }
}
