//! Partition detection: "can this node still reach a majority of the cluster?"
//!
//! Rule (design §3): a node is *partitioned* when the members it can reach —
//! `Alive` and `Suspect` ones, itself included — are fewer than a majority of
//! the **expected** cluster size. The expected size is the configured size or
//! the largest membership ever observed, whichever is larger. It is never the
//! current live view: inside a minority the live view shrinks too, and a
//! node alone would otherwise count itself as "1 of 1, majority reached".
//! The expected size grows with every member seen and shrinks by one for
//! each member that **left on purpose** (a graceful leave or a
//! decommission): a crashed or unreachable member still counts, since it
//! may be on the other side of a partition, but a removed one must not keep
//! the majority threshold at the old size.
//!
//! Hysteresis: membership flaps (a suspect refutes, a node restarts), and a
//! flapping partition flag would flip routing between local-only and normal.
//! The detector therefore switches state only after the new condition has
//! held *continuously* for `hold` (default [`DEFAULT_HOLD`], 1.5 s), in
//! either direction. The very first observation sets the state directly.
//!
//! Pure logic: time is passed in by the caller, so tests drive it by hand.

use std::time::{Duration, Instant};

/// Default time a new condition must hold before the state switches.
pub const DEFAULT_HOLD: Duration = Duration::from_millis(1500);

/// The outcome of partition detection, published in every cluster view:
/// the routing core's type (`partitioned` after hysteresis, `reachable`
/// members right now, self included, and the `expected` size the majority
/// is counted against).
pub use mnemo_routing::decision::{PartitionState, majority};

/// Tracks expected size and applies hysteresis. See the module docs.
#[derive(Debug, Clone)]
pub struct PartitionDetector {
    configured: Option<usize>,
    largest_seen: usize,
    hold: Duration,
    partitioned: Option<bool>,
    // Since when the raw condition has differed from `partitioned`.
    pending_since: Option<Instant>,
}

impl PartitionDetector {
    /// `expected_size`: the configured cluster size, if any. `hold`: how
    /// long a changed condition must persist before the state switches.
    pub fn new(expected_size: Option<usize>, hold: Duration) -> Self {
        Self {
            configured: expected_size,
            largest_seen: 1,
            hold,
            partitioned: None,
            pending_since: None,
        }
    }

    /// Expected cluster size right now: max(configured, largest seen, 1).
    pub fn expected(&self) -> usize {
        self.configured.unwrap_or(0).max(self.largest_seen).max(1)
    }

    /// A member left the cluster on purpose: it no longer counts.
    pub fn member_left(&mut self) {
        self.largest_seen = self.largest_seen.saturating_sub(1).max(1);
    }

    /// Feeds one observation. `reachable`: alive + suspect members including
    /// self. `known`: every member currently in the view that has not left,
    /// including self (feeds "largest ever seen").
    pub fn observe(&mut self, now: Instant, reachable: usize, known: usize) -> PartitionState {
        self.largest_seen = self.largest_seen.max(known).max(reachable);
        let expected = self.expected();
        let raw = reachable < majority(expected);
        let partitioned = match self.partitioned {
            None => {
                self.partitioned = Some(raw);
                raw
            }
            Some(current) if current == raw => {
                self.pending_since = None;
                current
            }
            Some(current) => {
                let since = *self.pending_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.hold {
                    self.partitioned = Some(raw);
                    self.pending_since = None;
                    raw
                } else {
                    current
                }
            }
        };
        PartitionState {
            partitioned,
            reachable,
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = DEFAULT_HOLD;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn majority_counts() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn counts_against_configured_size_not_live_view() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(Some(5), HOLD);
        // The live view is just us and one peer, both alive: 2 of 2 in the
        // live view, but only 2 of the expected 5.
        let s = d.observe(t0, 2, 2);
        assert!(s.partitioned);
        assert_eq!((s.reachable, s.expected), (2, 5));
        let mut d = PartitionDetector::new(Some(5), HOLD);
        assert!(!d.observe(t0, 3, 3).partitioned);
    }

    #[test]
    fn largest_seen_membership_sets_expected_without_configuration() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(None, HOLD);
        assert!(!d.observe(t0, 1, 1).partitioned, "alone and new: 1 of 1");
        assert!(!d.observe(t0, 5, 5).partitioned);
        // Three members are removed from the view entirely; the view is now
        // 2 of 2, but we once saw 5.
        let s = d.observe(t0 + HOLD, 2, 2);
        assert_eq!(s.expected, 5);
        let s = d.observe(t0 + HOLD * 2, 2, 2);
        assert!(s.partitioned);
        assert_eq!(d.expected(), 5);
    }

    #[test]
    fn a_member_that_left_no_longer_counts() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(None, HOLD);
        d.observe(t0, 3, 3);
        d.member_left();
        let s = d.observe(t0, 2, 2);
        assert_eq!(s.expected, 2);
        // One of two left is no majority: a crash still counts.
        d.observe(t0 + HOLD, 1, 2);
        assert!(d.observe(t0 + HOLD * 2, 1, 2).partitioned);
        // It comes back (a new incarnation): it counts again.
        assert_eq!(d.observe(t0 + HOLD * 3, 3, 3).expected, 3);
    }

    #[test]
    fn configured_size_smaller_than_seen_uses_seen() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(Some(3), HOLD);
        d.observe(t0, 5, 5);
        assert_eq!(d.expected(), 5);
    }

    #[test]
    fn becoming_partitioned_needs_the_hold_time() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(Some(3), HOLD);
        assert!(!d.observe(t0, 3, 3).partitioned);
        // Two peers become unreachable.
        assert!(!d.observe(t0 + ms(100), 1, 3).partitioned);
        assert!(!d.observe(t0 + ms(1000), 1, 3).partitioned);
        assert!(!d.observe(t0 + ms(1599), 1, 3).partitioned);
        assert!(d.observe(t0 + ms(1600), 1, 3).partitioned);
    }

    #[test]
    fn healing_needs_the_hold_time_too() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(Some(3), HOLD);
        assert!(
            d.observe(t0, 1, 3).partitioned,
            "first observation is direct"
        );
        assert!(d.observe(t0 + ms(10), 2, 3).partitioned);
        assert!(d.observe(t0 + ms(1500), 2, 3).partitioned);
        assert!(!d.observe(t0 + ms(1510), 2, 3).partitioned);
    }

    #[test]
    fn a_blip_shorter_than_hold_does_not_flip_and_resets_the_clock() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(Some(3), HOLD);
        d.observe(t0, 3, 3);
        assert!(!d.observe(t0 + ms(100), 1, 3).partitioned);
        // Recovered before the hold time ran out: the pending switch is
        // forgotten.
        assert!(!d.observe(t0 + ms(1000), 3, 3).partitioned);
        // A new loss starts a fresh clock.
        assert!(!d.observe(t0 + ms(1200), 1, 3).partitioned);
        assert!(!d.observe(t0 + ms(2000), 1, 3).partitioned);
        assert!(d.observe(t0 + ms(2700), 1, 3).partitioned);
    }

    #[test]
    fn reported_counts_are_current_even_while_holding() {
        let t0 = Instant::now();
        let mut d = PartitionDetector::new(Some(3), HOLD);
        d.observe(t0, 3, 3);
        let s = d.observe(t0 + ms(10), 1, 3);
        assert_eq!(
            s,
            PartitionState {
                partitioned: false,
                reachable: 1,
                expected: 3
            }
        );
        assert_eq!(s.quorum(), 2);
    }
}
