//! Deadlines on a traffic worker, without a timer in tokio's wheel for each request.
//!
//! Every request arms two deadlines: hyper's header-read timeout (for the connection's
//! next request) and its upstream attempt's timeout; almost none ever fires. In tokio's
//! timer wheel each costs a registration and a removal (the driver's lock, the wheel's
//! levels). Here a deadline is an entry in its worker's slab: an insert and a removal,
//! no lock, nothing shared between threads. One tokio sleep per worker ([`drive`]) is
//! armed for the earliest entry it knows of; when it fires, the entries due are woken
//! and it is armed again for the earliest left. Entries removed before their time may
//! leave it armed too early: it then finds nothing due, about once per the shortest
//! timeout in use. A deadline earlier than the armed one re-arms it at once.
//!
//! A deadline fires no earlier than its instant, and as late as tokio's sleep would.
//!
//! The wheel is the thread's, and a deadline belongs to the wheel it was made on
//! (worker tasks are `spawn_local`: they never change threads). A deadline made where no
//! wheel runs (tests, the admin thread), or polled where its wheel is not, is a plain
//! tokio sleep.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

thread_local! {
    static WHEEL: RefCell<Option<Wheel>> = const { RefCell::new(None) };
}

/// Tells wheels apart: a thread may run one again after the last one ended.
static WHEELS: AtomicU64 = AtomicU64::new(1);

/// A thread's deadlines.
struct Wheel {
    id: u64,
    entries: Slab<Entry>,
    /// The instant the worker's sleep is armed for; `None` while nothing waits.
    armed: Option<Instant>,
    /// The task of [`drive`], woken when an earlier deadline arrives.
    driver: Option<Waker>,
}

/// One armed deadline.
struct Entry {
    at: Instant,
    waker: Waker,
    fired: bool,
}

impl Wheel {
    /// Polls the deadline at `at`, registered under `key` once polled. What it returns
    /// besides is a waker to drop once the wheel is no longer borrowed: dropping a
    /// task's last waker drops its future, and with it maybe other deadlines.
    fn poll(
        &mut self,
        at: Instant,
        key: &mut Option<usize>,
        cx: &mut Context<'_>,
    ) -> (Poll<()>, Option<Waker>) {
        let Some(k) = *key else {
            *key = Some(self.entries.insert(Entry {
                at,
                waker: cx.waker().clone(),
                fired: false,
            }));
            if self.armed.is_none_or(|armed| at < armed) {
                self.armed = Some(at);
                if let Some(driver) = &self.driver {
                    driver.wake_by_ref();
                }
            }
            return (Poll::Pending, None);
        };
        let entry = &mut self.entries[k];
        if entry.fired {
            *key = None;
            return (Poll::Ready(()), Some(self.entries.remove(k).waker));
        }
        if entry.waker.will_wake(cx.waker()) {
            return (Poll::Pending, None);
        }
        let old = std::mem::replace(&mut entry.waker, cx.waker().clone());
        (Poll::Pending, Some(old))
    }

    /// Wakes the entries due at `now`; the earliest of the others.
    fn fire(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (_, entry) in self.entries.iter_mut().filter(|(_, e)| !e.fired) {
            if entry.at <= now {
                entry.fired = true;
                entry.waker.wake_by_ref();
            } else {
                next = Some(next.map_or(entry.at, |n| n.min(entry.at)));
            }
        }
        next
    }
}

/// Runs the calling thread's wheel for as long as it is polled: a traffic worker spawns
/// it on its `LocalSet` when it starts.
pub(crate) async fn drive() {
    struct Installed;
    impl Drop for Installed {
        fn drop(&mut self) {
            // Dropped once the wheel is no longer borrowed (see `Wheel::poll`).
            let wheel = WHEEL.with_borrow_mut(Option::take);
            drop(wheel);
        }
    }
    WHEEL.with_borrow_mut(|w| {
        *w = Some(Wheel {
            id: WHEELS.fetch_add(1, Ordering::Relaxed),
            entries: Slab::new(),
            armed: None,
            driver: None,
        });
    });
    let _installed = Installed;
    // Armed far ahead until a deadline arrives; reset to each new earliest.
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let mut sleep = std::pin::pin!(tokio::time::sleep_until(far()));
    std::future::poll_fn(|cx| {
        let mut old = None;
        let polled = WHEEL.with_borrow_mut(|w| {
            let Some(w) = w.as_mut() else {
                return Poll::Ready(());
            };
            if !w.driver.as_ref().is_some_and(|d| d.will_wake(cx.waker())) {
                old = w.driver.replace(cx.waker().clone());
            }
            loop {
                let Some(at) = w.armed else {
                    return Poll::Pending;
                };
                let at_tokio = tokio::time::Instant::from_std(at);
                if sleep.deadline() != at_tokio {
                    sleep.as_mut().reset(at_tokio);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                w.armed = w.fire(Instant::now());
            }
        });
        drop(old);
        polled
    })
    .await;
}

/// A future that is ready at an instant: on the thread's wheel when it has one.
pub(crate) struct Deadline(Inner);

enum Inner {
    Wheel {
        at: Instant,
        wheel: u64,
        key: Option<usize>,
    },
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Deadline {
    /// Ready at `at`.
    pub fn at(at: Instant) -> Deadline {
        match WHEEL.with_borrow(|w| w.as_ref().map(|w| w.id)) {
            Some(wheel) => Deadline(Inner::Wheel {
                at,
                wheel,
                key: None,
            }),
            None => Deadline(Inner::Tokio(tokio_sleep(at))),
        }
    }
}

fn tokio_sleep(at: Instant) -> Pin<Box<tokio::time::Sleep>> {
    Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(at)))
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (at, wheel, key) = match &mut self.0 {
            Inner::Tokio(sleep) => return sleep.as_mut().poll(cx),
            Inner::Wheel { at, wheel, key } => (*at, *wheel, key),
        };
        let polled = WHEEL.with_borrow_mut(|w| match w {
            Some(w) if w.id == wheel => Some(w.poll(at, key, cx)),
            _ => None,
        });
        match polled {
            Some((p, old)) => {
                drop(old);
                p
            }
            // Not on its wheel's thread, or that wheel has stopped.
            None => {
                let mut sleep = tokio_sleep(at);
                let p = sleep.as_mut().poll(cx);
                self.0 = Inner::Tokio(sleep);
                p
            }
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Inner::Wheel {
            wheel,
            key: Some(k),
            ..
        } = self.0
        {
            // Dropped once the wheel is no longer borrowed (see `Wheel::poll`). No
            // waker is dropped while it is, so no deadline either; were one to be,
            // its entry would stay behind.
            let gone = WHEEL.with(|w| {
                let mut w = w.try_borrow_mut().ok()?;
                w.as_mut()
                    .filter(|w| w.id == wheel)
                    .and_then(|w| w.entries.try_remove(k))
            });
            drop(gone);
        }
    }
}

impl hyper::rt::Sleep for Deadline {}

/// hyper's timer on a traffic worker: [`Deadline`]s.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(deadline))
    }
}

/// The deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

pin_project_lite::pin_project! {
    /// `future` unless the deadline passes first ([`timeout_at`]).
    pub(crate) struct Timeout<F> {
        #[pin]
        future: F,
        deadline: Deadline,
    }
}

/// `future`'s output, or [`TimedOut`] once `at` has passed first.
pub(crate) fn timeout_at<F: Future>(at: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        deadline: Deadline::at(at),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        Pin::new(this.deadline).poll(cx).map(|()| Err(TimedOut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` on a current-thread runtime's `LocalSet`, with the wheel driven when
    /// `wheel` is set.
    fn on_worker<F: Future<Output = ()> + 'static>(wheel: bool, test: F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            if wheel {
                tokio::task::spawn_local(drive());
                tokio::task::yield_now().await;
            }
            test.await;
        });
    }

    fn on_wheel(d: &Deadline) -> bool {
        matches!(d.0, Inner::Wheel { .. })
    }

    #[test]
    fn deadlines_fire_at_their_instant_in_any_order() {
        for wheel in [true, false] {
            on_worker(wheel, async move {
                let start = Instant::now();
                let later = Deadline::at(start + Duration::from_millis(60));
                let sooner = Deadline::at(start + Duration::from_millis(20));
                assert_eq!(on_wheel(&later), wheel);
                let first = tokio::select! {
                    () = later => "later",
                    () = sooner => "sooner",
                };
                assert_eq!(first, "sooner");
                assert!(start.elapsed() >= Duration::from_millis(20));
                // One armed far away, then one nearer: the nearer re-arms the wheel.
                let start = Instant::now();
                let _far =
                    tokio::task::spawn_local(Deadline::at(start + Duration::from_secs(3600)));
                tokio::task::yield_now().await;
                Deadline::at(start + Duration::from_millis(10)).await;
                assert!(start.elapsed() >= Duration::from_millis(10));
            });
        }
    }

    #[test]
    fn a_future_that_ends_first_is_not_timed_out_and_its_deadline_is_removed() {
        on_worker(true, async {
            let soon = Instant::now() + Duration::from_millis(30);
            let out = timeout_at(soon + Duration::from_secs(60), async { 7 }).await;
            assert_eq!(out, Ok(7));
            let never = std::future::pending::<()>();
            assert_eq!(timeout_at(soon, never).await, Err(TimedOut));
            assert!(Instant::now() >= soon);
            // Many deadlines armed and dropped unfired leave nothing behind.
            for i in 0..100 {
                let fast = async { tokio::task::yield_now().await };
                let at = Instant::now() + Duration::from_secs(10 + i);
                assert_eq!(timeout_at(at, fast).await, Ok(()));
            }
            WHEEL.with_borrow(|w| {
                assert_eq!(w.as_ref().map(|w| w.entries.len()), Some(0));
            });
        });
    }

    #[test]
    fn a_deadline_outliving_its_wheel_still_fires() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let driver = tokio::task::spawn_local(drive());
            tokio::task::yield_now().await;
            let start = Instant::now();
            let mut d = Deadline::at(start + Duration::from_millis(20));
            assert!(on_wheel(&d));
            // Registered on the wheel, which then stops.
            let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut d).poll(cx))).await;
            assert!(first.is_pending());
            driver.abort();
            let _ = driver.await;
            d.await;
            assert!(start.elapsed() >= Duration::from_millis(20));
        });
    }
}
