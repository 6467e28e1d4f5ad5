//! Injected time and randomness.
//!
//! The decisions in this crate never read a clock or a random source
//! themselves: they take `now` as `u64` milliseconds and random draws as
//! `u64`. The routing layer's adapters (`mnemo-router`'s executor and
//! router) read time and sleep only through a [`Clock`]: deadlines, attempt
//! timeouts, backoff, hedge delays and latency samples all come from the one
//! injected clock.
//!
//! A running node uses `mnemo_router::clock::TokioClock`; [`ManualClock`]
//! moves only when told to, for tests that drive deadlines by hand and for
//! benchmarks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A future that completes at a point of a [`Clock`]'s time.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A monotonic clock, time measured from an arbitrary origin.
pub trait Clock: Send + Sync + 'static {
    /// Time since the clock's origin; never decreases.
    fn now(&self) -> Duration;

    /// Completes once [`now`](Self::now) reads `at` or later.
    fn sleep_until(&self, at: Duration) -> Sleep;

    /// [`now`](Self::now) in whole milliseconds (what the core takes).
    fn now_millis(&self) -> u64 {
        u64::try_from(self.now().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock moved by hand (tests and benchmarks): its sleeps complete when
/// [`advance`](Self::advance) moves it past their time.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::Arc<Manual>);

#[derive(Debug, Default)]
struct Manual {
    nanos: AtomicU64,
    /// Sleeps not yet due, by id: when each is due, and who to wake.
    sleepers: Mutex<Sleepers>,
}

#[derive(Debug, Default)]
struct Sleepers {
    next_id: u64,
    waiting: Vec<(u64, Duration, Waker)>,
}

impl Manual {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl ManualClock {
    /// A clock at `millis`.
    pub fn new(millis: u64) -> Self {
        let clock = Self::default();
        clock
            .0
            .nanos
            .store(millis.saturating_mul(1_000_000), Ordering::SeqCst);
        clock
    }

    /// Moves the clock forward and wakes the sleeps that became due.
    pub fn advance(&self, millis: u64) {
        self.0
            .nanos
            .fetch_add(millis.saturating_mul(1_000_000), Ordering::SeqCst);
        let now = self.0.now();
        let due: Vec<Waker> = {
            let mut sleepers = self.0.sleepers.lock().expect("lock poisoned");
            let (due, waiting) = std::mem::take(&mut sleepers.waiting)
                .into_iter()
                .partition(|(_, at, _)| *at <= now);
            sleepers.waiting = waiting;
            due.into_iter().map(|(_, _, w)| w).collect()
        };
        for waker in due {
            waker.wake();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.0.now()
    }

    fn now_millis(&self) -> u64 {
        self.0.nanos.load(Ordering::SeqCst) / 1_000_000
    }

    fn sleep_until(&self, at: Duration) -> Sleep {
        let id = {
            let mut sleepers = self.0.sleepers.lock().expect("lock poisoned");
            sleepers.next_id += 1;
            sleepers.next_id
        };
        Box::pin(ManualSleep {
            clock: std::sync::Arc::clone(&self.0),
            at,
            id,
        })
    }
}

/// A sleep on a [`ManualClock`]: one waiting entry however often it is
/// polled, removed when it completes or is dropped.
struct ManualSleep {
    clock: std::sync::Arc<Manual>,
    at: Duration,
    id: u64,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The time is read under the lock `advance` wakes under, so a sleep
        // either sees the new time or is woken by it.
        let mut sleepers = self.clock.sleepers.lock().expect("lock poisoned");
        sleepers.waiting.retain(|(id, _, _)| *id != self.id);
        if self.clock.now() >= self.at {
            return Poll::Ready(());
        }
        sleepers
            .waiting
            .push((self.id, self.at, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Ok(mut sleepers) = self.clock.sleepers.lock() {
            sleepers.waiting.retain(|(id, _, _)| *id != self.id);
        }
    }
}

/// A lock-free source of random `u64`s shared by concurrent operations.
pub trait Random: Send + Sync + 'static {
    /// A uniformly distributed `u64`.
    fn next_u64(&self) -> u64;
}

/// splitmix64 over an atomic counter (Steele, Lea & Flood, "Fast splittable
/// pseudorandom number generators", OOPSLA 2014): one `fetch_add` per draw,
/// no lock, and a fixed seed gives a fixed sequence in single-task tests.
/// Not cryptographic; it only spreads jitter.
#[derive(Debug)]
pub struct SplitMix(AtomicU64);

impl SplitMix {
    /// A generator with a fixed seed (tests).
    pub fn seeded(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// A generator seeded from the operating system.
    pub fn from_os() -> Self {
        use rand::{RngCore, SeedableRng, rngs::SmallRng};
        Self::seeded(SmallRng::from_os_rng().next_u64())
    }
}

impl Random for SplitMix {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Uniform draw in `[0, bound]` from a random `u64` (Lemire's multiply-shift;
/// bias < 2^-64 · bound).
pub(crate) fn uniform_inclusive(r: u64, bound: u64) -> u64 {
    ((u128::from(r) * (u128::from(bound) + 1)) >> 64) as u64
}
