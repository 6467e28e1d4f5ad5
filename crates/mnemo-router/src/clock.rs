//! Injected time and randomness.
//!
//! Core modules (placement, breaker, budget, backoff, decision) never read a
//! clock or a random source themselves: they take `now` as `u64` milliseconds
//! and random draws as `u64`. This module holds the two sources the adapters
//! pass in. `std::time::Instant::now` is banned in this crate by
//! `clippy.toml`; [`TokioClock`] reads tokio's clock, which tests pause and
//! advance with `#[tokio::test(start_paused = true)]`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic clock in milliseconds since an arbitrary origin.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the clock's origin; never decreases.
    fn now_millis(&self) -> u64;
}

/// tokio's clock (honours paused time in tests). Origin: construction.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_millis(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// A clock moved by hand; for tests and benchmarks.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at `millis`.
    pub fn new(millis: u64) -> Self {
        Self(AtomicU64::new(millis))
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: u64) {
        self.0.fetch_add(millis, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
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
