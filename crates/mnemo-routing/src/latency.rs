//! How long a node usually takes, and what that says about how long to wait.
//!
//! Per node and per kind of call (reads, writes), a smoothed latency and
//! its mean deviation, as TCP estimates round-trip time (RFC 6298, from
//! Jacobson's "Congestion Avoidance and Control", 1988):
//! `srtt ← 7/8·srtt + 1/8·r`, `rttvar ← 3/4·rttvar + 1/4·|srtt − r|`.
//! From them:
//! - the **attempt timeout**, `srtt + 4·rttvar` (TCP's RTO), floored at
//!   [`Timeouts::attempt_floor`] (default 50 ms) and capped at
//!   [`Timeouts::attempt_cap`] (default 2 s), 1 s before the first sample:
//!   a node that stops answering costs one such timeout, not the deadline;
//! - the **hedge delay** of a read, `srtt + 2·rttvar` (beyond about the 95th
//!   percentile of a roughly normal latency), floored at
//!   [`Timeouts::hedge_floor`] (default 20 ms, so that on a healthy
//!   cluster with sub-millisecond reads almost nothing is hedged) and
//!   capped at [`Timeouts::hedge_cap`] (default 50 ms: a primary that turns
//!   slow must not push its own hedge out of reach);
//! - **slowness**: a node whose read latency stays far above the other
//!   holders' ([`Timeouts::slow_factor`] times, default 8, and at least
//!   [`Timeouts::slow_floor`], default 20 ms) is asked last for reads.
//!
//! Answers are sampled as they come. A timed-out attempt is a fault for the
//! node's breaker, so a silent node stops being asked within a few short
//! attempts. When its breaker lets one probe through and the probe times
//! out too, the timeout backs off (RFC 6298 §5.5: the estimate takes twice
//! the timeout as a sample): a node that turned slower than its timeout is
//! soon given long enough to answer, and relearns from the answer, while a
//! silent one costs one client a growing but capped timeout per probe. The
//! last attempt an operation has gets its whole deadline, so a cluster that
//! turned slow everywhere still answers. Slowness also learns from reads
//! whose hedge won: the time the primary had taken by then is a lower
//! bound of its latency.
//!
//! A read is hedged only while its hedge delay is under
//! [`Timeouts::hedge_cap`]: when the primary is that slow every read would
//! be hedged, doubling the load and draining the retry budget; a primary
//! slower than the other holders is asked last instead, and one as slow as
//! them gains nothing from a hedge.
//!
//! One `AtomicU64` per estimate (two `u32` microsecond fields), updated
//! with a compare-and-swap loop: no lock on the hot path. Pure: the caller
//! measures and passes durations in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Timeout and hedging settings derived from latency; `Default` gives the
/// documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// Shortest attempt timeout (default 50 ms).
    pub attempt_floor: Duration,
    /// Longest attempt timeout (default 2 s); the deadline caps it too.
    pub attempt_cap: Duration,
    /// Attempt timeout before a node has answered anything (default 1 s).
    pub attempt_initial: Duration,
    /// Shortest adaptive hedge delay (default 20 ms).
    pub hedge_floor: Duration,
    /// Longest adaptive hedge delay (default 50 ms).
    pub hedge_cap: Duration,
    /// A node is slow when its smoothed read latency is this many times
    /// the fastest other holder's (default 8)...
    pub slow_factor: u32,
    /// ... and at least this much (default 20 ms).
    pub slow_floor: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt_floor: Duration::from_millis(50),
            attempt_cap: Duration::from_secs(2),
            attempt_initial: Duration::from_secs(1),
            hedge_floor: Duration::from_millis(20),
            hedge_cap: Duration::from_millis(50),
            slow_factor: 8,
            slow_floor: Duration::from_millis(20),
        }
    }
}

/// A smoothed latency and its mean deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Smoothed latency.
    pub srtt: Duration,
    /// Mean deviation.
    pub rttvar: Duration,
}

impl Estimate {
    /// The attempt timeout this estimate gives (`None`: no sample yet).
    pub fn attempt_timeout(estimate: Option<Estimate>, t: &Timeouts) -> Duration {
        match estimate {
            None => t.attempt_initial,
            Some(e) => (e.srtt + 4 * e.rttvar).clamp(t.attempt_floor, t.attempt_cap),
        }
    }

    /// How long a node may stay silent before the silence is its own
    /// fault, even when the caller's deadline ran out first: its attempt
    /// timeout once it has answered something, else the floor (a node with
    /// no history gets no benefit of the doubt beyond what a healthy node
    /// needs).
    pub fn blame_after(estimate: Option<Estimate>, t: &Timeouts) -> Duration {
        match estimate {
            None => t.attempt_floor,
            some => Self::attempt_timeout(some, t),
        }
    }

    /// The hedge delay this estimate gives (`None`: no sample yet, hedge
    /// at the floor); `None` when it would exceed the cap (do not hedge).
    pub fn hedge_delay(estimate: Option<Estimate>, t: &Timeouts) -> Option<Duration> {
        match estimate {
            None => Some(t.hedge_floor),
            Some(e) => {
                let delay = (e.srtt + 2 * e.rttvar).max(t.hedge_floor);
                (delay <= t.hedge_cap).then_some(delay)
            }
        }
    }

    /// The estimate of this node itself: it answers without the network.
    pub const LOCAL: Estimate = Estimate {
        srtt: Duration::ZERO,
        rttvar: Duration::ZERO,
    };

    /// Whether a node with this estimate is slow beside the fastest other
    /// holder's `fastest` (this node counts as [`Estimate::LOCAL`]).
    pub fn is_slow(self, fastest: Estimate, t: &Timeouts) -> bool {
        self.srtt >= t.slow_floor && self.srtt > fastest.srtt * t.slow_factor
    }
}

/// One lock-free estimate.
#[derive(Debug, Default)]
pub struct LatencyEstimate {
    /// `srtt_us << 32 | rttvar_us`; 0: no sample yet.
    word: AtomicU64,
}

const MAX_US: u64 = u32::MAX as u64;

fn pack(srtt_us: u64, rttvar_us: u64) -> u64 {
    // A zero word means "no sample": keep srtt at least 1 µs.
    (srtt_us.clamp(1, MAX_US) << 32) | rttvar_us.min(MAX_US)
}

impl LatencyEstimate {
    /// Folds in one answer's latency.
    pub fn record(&self, sample: Duration) {
        let r = (sample.as_micros() as u64).min(MAX_US);
        let _ = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                if w == 0 {
                    return Some(pack(r, r / 2));
                }
                let (srtt, var) = (w >> 32, w & MAX_US);
                let var = (3 * var + srtt.abs_diff(r)) / 4;
                let srtt = (7 * srtt + r) / 8;
                Some(pack(srtt, var))
            });
    }

    /// An attempt given `timeout` got no answer: back off (RFC 6298 §5.5),
    /// as if it had answered in twice that.
    pub fn timed_out(&self, timeout: Duration) {
        self.record(timeout * 2);
    }

    /// Forgets everything (the node restarted: its past says nothing).
    pub fn reset(&self) {
        self.word.store(0, Ordering::Relaxed);
    }

    /// The current estimate, if any answer was sampled.
    pub fn get(&self) -> Option<Estimate> {
        let w = self.word.load(Ordering::Relaxed);
        (w != 0).then(|| Estimate {
            srtt: Duration::from_micros(w >> 32),
            rttvar: Duration::from_micros(w & MAX_US),
        })
    }
}

/// A node's estimates, by kind of call.
#[derive(Debug, Default)]
pub struct NodeLatency {
    /// Recall and query sub-requests: answers only. Gives attempt
    /// timeouts and hedge delays.
    pub read: LatencyEstimate,
    /// Remember and forget: answers only.
    pub write: LatencyEstimate,
    /// Reads as callers lived them: answers, and for a read whose hedge won
    /// first, the time until then (a lower bound of the node's latency).
    /// Judges slowness; it must not shorten timeouts, since lower bounds
    /// would cut off a node that answers slowly but surely.
    pub read_seen: LatencyEstimate,
}

impl NodeLatency {
    /// Forgets every estimate.
    pub fn reset(&self) {
        self.read.reset();
        self.write.reset();
        self.read_seen.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_estimate_follows_rfc_6298() {
        let e = LatencyEstimate::default();
        assert_eq!(e.get(), None);
        e.record(ms(8));
        assert_eq!(
            e.get().unwrap(),
            Estimate {
                srtt: ms(8),
                rttvar: ms(4)
            }
        );
        e.record(ms(16));
        // rttvar = (3·4 + |8−16|)/4 = 5, srtt = (7·8 + 16)/8 = 9.
        assert_eq!(
            e.get().unwrap(),
            Estimate {
                srtt: ms(9),
                rttvar: ms(5)
            }
        );
    }

    #[test]
    fn timeouts_are_floored_capped_and_initial_without_samples() {
        let t = Timeouts::default();
        assert_eq!(Estimate::attempt_timeout(None, &t), ms(1000));
        let fast = Estimate {
            srtt: Duration::from_micros(300),
            rttvar: Duration::from_micros(100),
        };
        assert_eq!(Estimate::attempt_timeout(Some(fast), &t), ms(50));
        assert_eq!(Estimate::hedge_delay(Some(fast), &t), Some(ms(20)));
        let slow = Estimate {
            srtt: ms(100),
            rttvar: ms(30),
        };
        assert_eq!(Estimate::attempt_timeout(Some(slow), &t), ms(220));
        assert_eq!(
            Estimate::hedge_delay(Some(slow), &t),
            None,
            "every read would be hedged"
        );
        let moderate = Estimate {
            srtt: ms(20),
            rttvar: ms(5),
        };
        assert_eq!(Estimate::hedge_delay(Some(moderate), &t), Some(ms(30)));
        let awful = Estimate {
            srtt: ms(900),
            rttvar: ms(900),
        };
        assert_eq!(Estimate::attempt_timeout(Some(awful), &t), ms(2000));
    }

    #[test]
    fn slow_means_far_slower_than_the_fastest_holder_and_not_tiny() {
        let t = Timeouts::default();
        let e = |srtt| Estimate {
            srtt: ms(srtt),
            rttvar: ms(0),
        };
        assert!(e(200).is_slow(e(1), &t));
        assert!(
            !e(5).is_slow(
                Estimate {
                    srtt: Duration::from_micros(300),
                    rttvar: ms(0)
                },
                &t
            ),
            "under the floor"
        );
        assert!(!e(200).is_slow(e(30), &t), "within the factor");
    }

    #[test]
    fn timeouts_back_off_until_a_slower_node_can_answer() {
        let t = Timeouts::default();
        let e = LatencyEstimate::default();
        for _ in 0..20 {
            e.record(ms(1));
        }
        // The node now needs 70 ms: each timed-out attempt lengthens the next.
        let mut timeouts = Vec::new();
        loop {
            let timeout = Estimate::attempt_timeout(e.get(), &t);
            timeouts.push(timeout);
            if timeout >= ms(70) {
                break;
            }
            e.timed_out(timeout);
        }
        assert!(timeouts.len() <= 3, "{timeouts:?}");
        assert!(timeouts.windows(2).all(|w| w[0] < w[1]), "{timeouts:?}");
    }

    #[test]
    fn a_huge_sample_saturates_instead_of_wrapping() {
        let e = LatencyEstimate::default();
        e.record(Duration::from_secs(100_000));
        let got = e.get().unwrap();
        assert_eq!(got.srtt, Duration::from_micros(MAX_US));
    }
}
