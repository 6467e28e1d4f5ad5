//! Exponential backoff with full jitter.
//!
//! The delay before retry `n` (0-based) is drawn uniformly from `[0, d]` with
//! `d = min(base · 2^n, max)`: "full jitter" in Marc Brooker's AWS
//! Architecture Blog post "Exponential Backoff And Jitter" (2015), which
//! spreads synchronized clients best of the variants compared there.
//! Defaults: base [`DEFAULT_BASE`] = 10 ms, max [`DEFAULT_MAX`] = 1 s.
//!
//! Pure: the random draw is passed in.

use std::time::Duration;

use crate::clock::uniform_inclusive;

/// Default base delay.
pub const DEFAULT_BASE: Duration = Duration::from_millis(10);
/// Default cap.
pub const DEFAULT_MAX: Duration = Duration::from_secs(1);

/// Backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay bound before the first retry.
    pub base: Duration,
    /// Largest delay bound.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: DEFAULT_BASE,
            max: DEFAULT_MAX,
        }
    }
}

impl Backoff {
    /// Upper bound `min(base · 2^retry, max)` of the delay before `retry`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Full-jitter delay before `retry`, uniform in `[0, ceiling(retry)]`,
    /// from the random draw `r`.
    pub fn delay(&self, retry: u32, r: u64) -> Duration {
        let ceil = self.ceiling(retry).as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(uniform_inclusive(r, ceil))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Random, SplitMix};

    #[test]
    fn delays_stay_within_per_retry_bounds() {
        let b = Backoff::default();
        let rng = SplitMix::seeded(7);
        for retry in 0..40 {
            let ceil = b.ceiling(retry);
            assert_eq!(
                ceil,
                (DEFAULT_BASE * 2u32.pow(retry.min(20))).min(DEFAULT_MAX)
            );
            for _ in 0..1000 {
                assert!(b.delay(retry, rng.next_u64()) <= ceil);
            }
        }
        assert_eq!(b.delay(3, 0), Duration::ZERO);
        assert_eq!(b.delay(3, u64::MAX), Duration::from_millis(80));
    }

    #[test]
    fn jitter_covers_the_range() {
        let b = Backoff::default();
        let rng = SplitMix::seeded(1);
        let draws: Vec<_> = (0..1000).map(|_| b.delay(2, rng.next_u64())).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(8)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(32)));
    }
}
