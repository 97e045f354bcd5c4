//! A sliding window of counts shared by the workers, without locks: `N` buckets of
//! atomics, each counting one period; a bucket is reset by the first count that finds
//! it holding an older period. Used by the circuit breaker (requests and failures) and
//! the retry budget (requests and retries). Under races a count may land in a bucket
//! just before its reset: the sums are approximate, never blocking.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One period's counts: a total, and how many of them were marked.
#[derive(Debug, Default)]
pub struct Bucket {
    period: AtomicU64,
    /// Everything counted in the period.
    pub total: AtomicU32,
    /// The marked part (failures, retries).
    pub marked: AtomicU32,
}

impl Bucket {
    fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.marked.store(0, Ordering::Relaxed);
    }
}

/// `N` buckets of one period each.
#[derive(Debug)]
pub struct Window<const N: usize> {
    buckets: [Bucket; N],
}

impl<const N: usize> Default for Window<N> {
    fn default() -> Window<N> {
        Window {
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }
}

impl<const N: usize> Window<N> {
    /// The bucket of `period`, reset first when it held an older one.
    pub fn bucket(&self, period: u64) -> &Bucket {
        let b = &self.buckets[(period % N as u64) as usize];
        let seen = b.period.load(Ordering::Relaxed);
        if seen != period
            && b.period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            b.reset();
        }
        b
    }

    /// (total, marked) over the `N` periods up to `period`.
    pub fn sums(&self, period: u64) -> (u64, u64) {
        let (mut total, mut marked) = (0, 0);
        for b in &self.buckets {
            if period.saturating_sub(b.period.load(Ordering::Relaxed)) < N as u64 {
                total += u64::from(b.total.load(Ordering::Relaxed));
                marked += u64::from(b.marked.load(Ordering::Relaxed));
            }
        }
        (total, marked)
    }

    /// Forgets every count.
    pub fn clear(&self) {
        for b in &self.buckets {
            b.reset();
        }
    }
}
