//! A per-worker memory of values the native rules found clean, so that a value seen
//! again (the same `User-Agent`, `Referer`, cookie or search term, request after
//! request) is not decoded and tested again: real traffic repeats its header values far
//! more than it varies them, and libinjection costs microseconds per value.
//!
//! Bounded ([`SLOTS`] values of at most [`MAX_LEN`] bytes per worker thread), each value
//! in one of two slots its hash picks, so two values that keep coming do not keep
//! evicting each other; a new value takes an empty slot, else one not hit since the last
//! insert there. A slot holds the value itself, compared byte for byte, so a hash
//! collision only costs a test. Only clean verdicts are kept: a match is always tested, counted
//! and logged. The verdict depends on the value and on how it is tested (the families,
//! the part, whether `+` is a space, which anomalies count): all of that is in the key.

use std::cell::RefCell;
use std::hash::Hasher;

/// Values remembered per worker.
const SLOTS: usize = 1024;
/// Longer values are tested every time (bodies, mostly).
const MAX_LEN: usize = 512;
/// Shorter values are cheaper to test than to look up.
const MIN_LEN: usize = 8;

struct Slot {
    hash: u64,
    tag: u32,
    value: Box<[u8]>,
    /// Hit since the last insert into one of its slots.
    recent: bool,
}

thread_local! {
    static CLEAN: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// `test(value)`, unless `value` was found clean before under the same `tag` on this
/// thread; a clean result (`None`) is remembered.
pub(crate) fn unless_clean<T>(
    tag: u32,
    value: &[u8],
    test: impl FnOnce() -> Option<T>,
) -> Option<T> {
    if value.len() < MIN_LEN || value.len() > MAX_LEN {
        return test();
    }
    let mut h = rustc_hash::FxHasher::default();
    h.write_u32(tag);
    h.write(value);
    let hash = h.finish();
    let candidates = [(hash as usize) % SLOTS, ((hash >> 32) as usize) % SLOTS];
    let known = CLEAN.with(|c| {
        let mut slots = c.borrow_mut();
        candidates
            .iter()
            .any(|&i| match slots.get_mut(i).and_then(Option::as_mut) {
                Some(s) if s.hash == hash && s.tag == tag && *s.value == *value => {
                    s.recent = true;
                    true
                }
                _ => false,
            })
    });
    if known {
        return None;
    }
    let found = test();
    if found.is_none() {
        CLEAN.with(|c| {
            let mut slots = c.borrow_mut();
            if slots.is_empty() {
                slots.resize_with(SLOTS, || None);
            }
            let free = candidates
                .iter()
                .copied()
                .find(|&i| slots[i].is_none())
                .or_else(|| {
                    candidates
                        .iter()
                        .copied()
                        .find(|&i| slots[i].as_ref().is_some_and(|s| !s.recent))
                })
                .unwrap_or(candidates[0]);
            for &i in &candidates {
                if let Some(s) = slots[i].as_mut() {
                    s.recent = false;
                }
            }
            slots[free] = Some(Slot {
                hash,
                tag,
                value: value.into(),
                recent: true,
            });
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_clean_value_is_tested_once_per_tag_and_a_match_every_time() {
        let tests = Cell::new(0);
        let clean = || {
            tests.set(tests.get() + 1);
            None::<()>
        };
        let value = b"Mozilla/5.0 (X11; Linux x86_64)";
        unless_clean(1, value, clean);
        unless_clean(1, value, clean);
        assert_eq!(tests.get(), 1);
        unless_clean(2, value, clean);
        assert_eq!(tests.get(), 2);
        let hits = Cell::new(0);
        for _ in 0..3 {
            let found = unless_clean(1, b"1' OR '1'='1 --", || {
                hits.set(hits.get() + 1);
                Some(())
            });
            assert!(found.is_some());
        }
        assert_eq!(hits.get(), 3);
        // Short and long values are not remembered.
        unless_clean(1, b"short", clean);
        unless_clean(1, b"short", clean);
        assert_eq!(tests.get(), 4);
    }

    #[test]
    fn values_that_keep_coming_stay_remembered() {
        // Many values, each asked for again and again: once the cache holds them, no
        // test runs (two slots per value: a few collisions do not evict them).
        let values: Vec<Vec<u8>> = (0..64)
            .map(|i| format!("value number {i}").into_bytes())
            .collect();
        let tests = Cell::new(0);
        for _ in 0..3 {
            for v in &values {
                unless_clean(7, v, || {
                    tests.set(tests.get() + 1);
                    None::<()>
                });
            }
        }
        assert_eq!(tests.get(), values.len());
    }
}
