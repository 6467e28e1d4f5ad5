//! Circuit breaker per remote node.
//!
//! After Michael Nygard, *Release It!* (2007, 2nd ed. 2018). Terms, since the
//! literature disagrees (linkerd2-proxy says the opposite): a breaker that is
//! **open rejects** traffic, like an open electrical circuit.
//!
//! ```text
//!   Closed --N consecutive node faults--> Open
//!   Open --open timeout elapsed, one caller admitted--> HalfOpen (probe in flight)
//!   HalfOpen --probe succeeds--> Closed
//!   HalfOpen --probe fails--> Open (new timeout)
//!   HalfOpen --probe dropped before a result--> Open (timeout already elapsed,
//!                                               so the next caller probes)
//! ```
//!
//! Defaults: [`DEFAULT_FAILURE_THRESHOLD`] = 5 consecutive failures,
//! [`DEFAULT_OPEN_TIMEOUT`] = 30 s jittered by ±[`DEFAULT_JITTER`] (10%) so
//! that breakers tripped by one event do not probe in lockstep.
//!
//! Only node faults count (see [`Failure`](crate::error::Failure)). A
//! fatal or not-the-node's-fault answer leaves a closed breaker as it is, and closes a
//! half-open one: the node answered, which is what the probe asks.
//!
//! The whole state is one `AtomicU64`, so admission is a load (closed) or a
//! load and one CAS (the single probe); no lock. Time is injected as
//! milliseconds (see [`Clock`](crate::clock::Clock)); randomness as a `u64`.
//!
//! Word layout: bits 0..2 state, 2..16 consecutive failures (saturating),
//! 16..64 time in ms until which an open breaker rejects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::uniform_inclusive;

/// Default consecutive node faults that open a breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default time an open breaker rejects before admitting a probe.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default relative jitter of the open timeout (±).
pub const DEFAULT_JITTER: f64 = 0.1;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_MASK: u64 = 0b11;
const FAIL_SHIFT: u32 = 2;
const FAIL_MAX: u64 = (1 << 14) - 1;
const UNTIL_SHIFT: u32 = 16;
const UNTIL_MAX: u64 = (1 << 48) - 1;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive node faults that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// Time an open breaker rejects before one probe.
    pub open_timeout: Duration,
    /// Relative jitter of `open_timeout`, in `[0, 1]`.
    pub jitter: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            jitter: DEFAULT_JITTER,
        }
    }
}

/// Observable breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Admits all traffic.
    Closed,
    /// Rejects traffic (until its timeout, then admits one probe).
    Open,
    /// One probe is in flight; rejects everything else.
    HalfOpen,
}

impl BreakerState {
    /// Lower-case name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Gauge encoding: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }

    fn from_bits(bits: u64) -> Self {
        match bits & STATE_MASK {
            CLOSED => Self::Closed,
            OPEN => Self::Open,
            _ => Self::HalfOpen,
        }
    }
}

/// A state change, returned so the adapter can record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: BreakerState,
    /// After.
    pub to: BreakerState,
}

/// The caller was rejected: the breaker is open or a probe is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

fn failures(w: u64) -> u64 {
    (w >> FAIL_SHIFT) & FAIL_MAX
}

fn until(w: u64) -> u64 {
    w >> UNTIL_SHIFT
}

fn pack(state: u64, fails: u64, until: u64) -> u64 {
    state | (fails.min(FAIL_MAX) << FAIL_SHIFT) | (until.min(UNTIL_MAX) << UNTIL_SHIFT)
}

/// A lock-free circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    word: AtomicU64,
    threshold: u64,
    open_ms: u64,
    jitter_ms: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let open_ms = config.open_timeout.as_millis() as u64;
        Self {
            word: AtomicU64::new(pack(CLOSED, 0, 0)),
            threshold: u64::from(config.failure_threshold.max(1)).min(FAIL_MAX),
            open_ms,
            jitter_ms: (open_ms as f64 * config.jitter.clamp(0.0, 1.0)) as u64,
        }
    }

    /// State and consecutive failures. An open breaker whose timeout has
    /// passed still reads `Open` until a caller takes the probe.
    pub fn snapshot(&self) -> (BreakerState, u32) {
        let w = self.word.load(Ordering::Acquire);
        (BreakerState::from_bits(w), failures(w) as u32)
    }

    /// Asks to send one request at time `now_ms`. Closed: always admitted.
    /// Open past its timeout: exactly one caller wins the CAS and becomes
    /// the probe. Otherwise rejected.
    #[inline]
    pub fn try_acquire(&self, now_ms: u64) -> Result<Permit<'_>, Rejected> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            match w & STATE_MASK {
                CLOSED => {
                    return Ok(Permit {
                        breaker: self,
                        probe: false,
                        done: false,
                    });
                }
                OPEN if now_ms >= until(w) => {
                    let half = (w & !STATE_MASK) | HALF_OPEN;
                    match self.word.compare_exchange_weak(
                        w,
                        half,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            return Ok(Permit {
                                breaker: self,
                                probe: true,
                                done: false,
                            });
                        }
                        Err(actual) => w = actual,
                    }
                }
                _ => return Err(Rejected),
            }
        }
    }

    /// Membership saw the node come back (a new incarnation, or alive after
    /// down): an open breaker lets its probe through at once instead of
    /// waiting out the open timeout. Closed and half-open are left alone.
    pub fn member_returned(&self) -> Option<Transition> {
        // The probe itself makes the Open → HalfOpen transition, so this
        // records nothing; it only moves the probe time to "now".
        let _ = self.update(|w| {
            (w & STATE_MASK == OPEN && until(w) != 0).then_some(pack(OPEN, failures(w), 0))
        });
        None
    }

    fn reopen_at(&self, now_ms: u64, r: u64) -> u64 {
        let base = self.open_ms.saturating_sub(self.jitter_ms);
        now_ms.saturating_add(base + uniform_inclusive(r, 2 * self.jitter_ms))
    }

    fn update(&self, f: impl Fn(u64) -> Option<u64>) -> Option<Transition> {
        let old = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, &f)
            .ok()?;
        // `f` is pure, so this is the value that was stored.
        let new = f(old)?;
        let (from, to) = (BreakerState::from_bits(old), BreakerState::from_bits(new));
        (from != to).then_some(Transition { from, to })
    }
}

/// Permission to send one request. Report its outcome with
/// [`success`](Self::success), [`failure`](Self::failure) or
/// [`neutral`](Self::neutral). Dropping a probe permit without a report (the
/// request was cancelled) releases the probe slot so the next caller probes.
#[derive(Debug)]
#[must_use = "report the outcome, or drop to release the probe slot"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// True when this request is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The node answered: resets the failure count; a probe closes the breaker.
    pub fn success(mut self) -> Option<Transition> {
        self.done = true;
        if self.probe {
            self.close()
        } else {
            self.breaker.update(|w| {
                (w & STATE_MASK == CLOSED && failures(w) != 0).then_some(pack(CLOSED, 0, 0))
            })
        }
    }

    /// A node fault at `now_ms`; `r` draws the open-timeout jitter.
    /// Counts toward the threshold; a probe re-opens the breaker.
    pub fn failure(mut self, now_ms: u64, r: u64) -> Option<Transition> {
        self.done = true;
        let b = self.breaker;
        let reopen = b.reopen_at(now_ms, r);
        if self.probe {
            b.update(|w| Some(pack(OPEN, failures(w) + 1, reopen)))
        } else {
            b.update(|w| {
                if w & STATE_MASK != CLOSED {
                    return None; // tripped meanwhile; stale result
                }
                let f = failures(w) + 1;
                Some(if f >= b.threshold {
                    pack(OPEN, f, reopen)
                } else {
                    pack(CLOSED, f, 0)
                })
            })
        }
    }

    /// An answer that is no node fault: no change when closed; a probe closes (the
    /// node answered).
    pub fn neutral(mut self) -> Option<Transition> {
        self.done = true;
        if self.probe { self.close() } else { None }
    }

    fn close(&self) -> Option<Transition> {
        self.breaker
            .update(|w| (w & STATE_MASK == HALF_OPEN).then_some(pack(CLOSED, 0, 0)))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            // Back to open with the elapsed timeout: the next caller probes.
            let _ = self
                .breaker
                .update(|w| (w & STATE_MASK == HALF_OPEN).then_some((w & !STATE_MASK) | OPEN));
        }
    }
}

#[cfg(test)]
mod tests;
