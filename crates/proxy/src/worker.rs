//! Worker identity and per-worker counters.
//!
//! Each traffic worker (`listener/`) takes a slot number when it starts. A
//! [`WorkerCounter`] has one cache-line-sized slot per worker: a worker only ever
//! writes its own, so round-robin positions cost no write to a line another core
//! reads. Threads that are not workers (tests, the admin listener) share slot 0, and
//! with more workers than cores two workers share a slot; a lost increment there only
//! repeats a pick.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread the worker of slot `index`.
pub(crate) fn enter(index: usize) {
    SLOT.with(|s| s.set(index));
}

/// Slots per counter: the cores, asked once (on Linux the answer reads cgroup files, too
/// slow to repeat for every upstream and rule a table prepares).
fn slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// One counter's slot, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicUsize);

/// A counter each worker advances on its own.
#[derive(Debug)]
pub struct WorkerCounter {
    slots: Box<[Slot]>,
}

impl Default for WorkerCounter {
    fn default() -> WorkerCounter {
        WorkerCounter {
            slots: (0..slots()).map(|_| Slot::default()).collect(),
        }
    }
}

impl WorkerCounter {
    /// This worker's next position (0, 1, 2, ...).
    pub fn next(&self) -> usize {
        let slot = &self.slots[SLOT.with(Cell::get) % self.slots.len()].0;
        // Only this worker writes its slot: a load and a store, no locked instruction.
        let n = slot.load(Ordering::Relaxed);
        slot.store(n.wrapping_add(1), Ordering::Relaxed);
        n
    }

    /// Whether this worker's next turn is one of `part` in every `whole`: the chosen
    /// turns are spread evenly (Bresenham: the count chosen rises by `part` per `whole`
    /// turns), not the first `part` of each `whole`. Never with 0, always with `whole`.
    pub fn spread(&self, part: u64, whole: u64) -> bool {
        if part == 0 {
            return false;
        }
        if part >= whole {
            return true;
        }
        let n = self.next() as u64;
        (n * part) / whole != ((n + 1) * part) / whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_counts_on_its_own() {
        let c = std::sync::Arc::new(WorkerCounter::default());
        assert_eq!((c.next(), c.next()), (0, 1));
        if c.slots.len() > 1 {
            let other = c.clone();
            let seen = std::thread::spawn(move || {
                enter(1);
                (other.next(), other.next())
            })
            .join()
            .expect("thread");
            assert_eq!(seen, (0, 1), "a second worker starts from its own 0");
        }
        assert_eq!(c.next(), 2, "the first worker's position is its own");
    }
}
