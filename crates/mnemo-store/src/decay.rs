//! Decay: memories nobody recalls lose confidence, slowly and boundedly.
//!
//! A memory keeps the confidence it was written with. Its **use** changes:
//! - `recalled_at_ms`: the last time a recall returned it (a recall stamps
//!   the memories it returns, at most once per [`STAMP_EVERY`] each, or
//!   whenever a decay is in effect, which the stamp then lifts);
//! - `decay`: the latest decay a consolidation applied, as of that
//!   consolidation's own timestamp, with the half-life and floor it used.
//!
//! Its current confidence is a pure function of the memory:
//!
//! ```text
//! idle    = decay.as_of − max(created_at, recalled_at)
//! current = written                                        if idle ≤ 0
//!         = max(min(written, floor), written · 2^(−idle / half_life))  otherwise
//! ```
//!
//! so it never rises above what was written, never falls below the floor
//! (nor raises a memory already below it), never deletes anything, and a
//! recall after the decay's date restores the written confidence. Every
//! node computes the same value from the same memory, whatever its clock.
//!
//! Holders **join** use: the later recall, and the decay with the later
//! date (ties broken by half-life, then floor). The join is commutative,
//! associative and idempotent, so a recall on one holder and a
//! consolidation on another, in any order, end as the same memory
//! everywhere, and the decay accounts for the recall.
//!
//! A consolidation records a new decay on a memory only when that moves
//! its current confidence by at least [`STEP`], so running it often does
//! not rewrite every idle memory each time.

use std::sync::Arc;

use crate::memory::{Decay, Memory, Usage};

/// Smallest change of current confidence a consolidation records.
pub const STEP: f32 = 0.01;
/// A recall stamps a memory again only once this long has passed since
/// its last use (milliseconds): decay counts in days, and each stamp is a
/// write.
pub const STAMP_EVERY: i64 = 60 * 60 * 1000;

/// How a consolidation decays idle memories.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Idle time that halves a memory's confidence, in milliseconds
    /// (positive).
    pub half_life_ms: i64,
    /// The lowest confidence decay brings a memory to, in [0, 1].
    pub floor: f32,
}

/// Current confidence of `m` (see the module documentation).
pub fn confidence(m: &Memory) -> f32 {
    confidence_under(m, m.decay)
}

/// What the confidence of `m` would be under `decay` instead of its own.
fn confidence_under(m: &Memory, decay: Option<Decay>) -> f32 {
    let written = m.confidence;
    let Some(d) = decay else {
        return written;
    };
    let idle = d.as_of_ms.saturating_sub(m.last_used_ms());
    if idle <= 0 || d.half_life_ms <= 0 {
        return written;
    }
    let halvings = idle as f64 / d.half_life_ms as f64;
    let decayed = f64::from(written) * (-halvings * std::f64::consts::LN_2).exp();
    let floor = f64::from(d.floor.min(written));
    decayed.max(floor) as f32
}

/// The order decays join in: the later date wins, then the longer
/// half-life, then the higher floor (a total order on valid decays).
fn later(a: &Decay, b: &Decay) -> bool {
    (a.as_of_ms, a.half_life_ms, a.floor.to_bits())
        > (b.as_of_ms, b.half_life_ms, b.floor.to_bits())
}

/// The join of two uses of one memory.
pub fn join(a: &Usage, b: &Usage) -> Usage {
    let decay = match (a.decay, b.decay) {
        (Some(x), Some(y)) => Some(if later(&y, &x) { y } else { x }),
        (x, y) => x.or(y),
    };
    Usage {
        recalled_at_ms: a.recalled_at_ms.max(b.recalled_at_ms),
        decay,
    }
}

/// Whether a recall at `at_ms` should be recorded on `m`: it was not used
/// for [`STAMP_EVERY`], or a decay dated before the recall is in effect (a
/// recall restores it).
pub fn due_a_stamp(m: &Memory, at_ms: i64) -> bool {
    let last = m.last_used_ms();
    at_ms > m.recalled_at_ms
        && (at_ms.saturating_sub(last) >= STAMP_EVERY
            || m.decay
                .is_some_and(|d| d.as_of_ms > last && d.as_of_ms <= at_ms))
}

/// `m` with its use joined with `usage`.
pub fn with_usage(m: &Memory, usage: &Usage) -> Memory {
    let joined = join(&m.usage(), usage);
    Memory {
        recalled_at_ms: joined.recalled_at_ms,
        decay: joined.decay,
        ..m.clone()
    }
}

/// `m` decayed by `policy` as of `as_of_ms`, if that moves its current
/// confidence by at least [`STEP`]; `None` otherwise (or when `m` already
/// carries a later decay).
pub fn decayed(m: &Memory, policy: Policy, as_of_ms: i64) -> Option<Memory> {
    let decay = Decay {
        as_of_ms,
        half_life_ms: policy.half_life_ms,
        floor: policy.floor,
    };
    if m.decay.is_some_and(|held| !later(&decay, &held)) {
        return None;
    }
    // Judged before anything is copied: most idle memories of a frequent
    // consolidation do not move a step.
    let moved = (confidence_under(m, Some(decay)) - confidence(m)).abs();
    (moved >= STEP).then(|| Memory {
        decay: Some(decay),
        ..m.clone()
    })
}

/// The decays a consolidation as of `as_of_ms` records: every memory of
/// `memories` whose current confidence `policy` moves by [`STEP`] or more,
/// decayed, in id order.
pub fn plan(memories: &[Arc<Memory>], policy: Policy, as_of_ms: i64) -> Vec<Memory> {
    let mut out: Vec<Memory> = memories
        .iter()
        .filter_map(|m| decayed(m, policy, as_of_ms))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 24 * 60 * 60 * 1000;
    const POLICY: Policy = Policy {
        half_life_ms: 30 * DAY,
        floor: 0.1,
    };

    fn mem(confidence: f32, created: i64, recalled: i64) -> Memory {
        Memory {
            id: "m".into(),
            content: "Alice owes Tom 12 euros".into(),
            confidence,
            created_at_ms: created,
            recalled_at_ms: recalled,
            ..Default::default()
        }
    }

    #[test]
    fn halves_per_half_life_and_stops_at_the_floor() {
        let m = mem(0.8, 0, 0);
        let at = |days| confidence(&decayed(&m, POLICY, days * DAY).expect("moves"));
        assert!((at(30) - 0.4).abs() < 1e-6);
        assert!((at(60) - 0.2).abs() < 1e-6);
        assert!((at(3000) - 0.1).abs() < 1e-6);
        // Below the floor already: never raised.
        let low = mem(0.05, 0, 0);
        assert!(decayed(&low, POLICY, 3000 * DAY).is_none());
    }

    #[test]
    fn a_recall_after_the_decay_restores_and_one_before_it_counts() {
        let m = decayed(&mem(0.8, 0, 0), POLICY, 60 * DAY).expect("moves");
        assert!((confidence(&m) - 0.2).abs() < 1e-6);
        let recalled_after = with_usage(
            &m,
            &Usage {
                recalled_at_ms: 61 * DAY,
                decay: None,
            },
        );
        assert_eq!(confidence(&recalled_after).to_bits(), 0.8f32.to_bits());
        // A recall on another holder 30 days in, which the consolidation
        // did not know of: once joined, only 30 idle days count.
        let recalled_before = with_usage(
            &m,
            &Usage {
                recalled_at_ms: 30 * DAY,
                decay: None,
            },
        );
        assert!((confidence(&recalled_before) - 0.4).abs() < 1e-6);
    }

    #[test]
    fn small_moves_and_older_dates_are_not_recorded() {
        let m = mem(1.0, 0, 0);
        // Ten minutes idle moves a 30-day half-life by far less than a step.
        assert!(decayed(&m, POLICY, 10 * 60 * 1000).is_none());
        let d = decayed(&m, POLICY, 30 * DAY).expect("moves");
        assert!(
            decayed(&d, POLICY, 29 * DAY).is_none(),
            "a decay never goes back in time"
        );
        assert!(
            decayed(&d, POLICY, 30 * DAY).is_none(),
            "the same decay again is nothing"
        );
        let ids: Vec<String> = plan(
            &[
                Arc::new(Memory {
                    id: "b".into(),
                    ..m.clone()
                }),
                Arc::new(Memory {
                    id: "a".into(),
                    ..m
                }),
            ],
            POLICY,
            30 * DAY,
        )
        .into_iter()
        .map(|m| m.id)
        .collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn a_recall_is_stamped_hourly_or_to_lift_a_decay() {
        let hour = STAMP_EVERY;
        let m = mem(0.8, 0, 10 * DAY);
        assert!(
            !due_a_stamp(&m, 10 * DAY + hour - 1),
            "stamped within the hour"
        );
        assert!(due_a_stamp(&m, 10 * DAY + hour));
        // Decayed since the last use: the next recall lifts it at once.
        let decayed = Memory {
            decay: Some(Decay {
                as_of_ms: 10 * DAY + 10,
                half_life_ms: 1,
                floor: 0.1,
            }),
            ..m.clone()
        };
        assert!(due_a_stamp(&decayed, 10 * DAY + 20));
        // Not by a decay dated after the recall, nor twice at one time.
        assert!(!due_a_stamp(&decayed, 10 * DAY + 5));
        assert!(!due_a_stamp(&m, 10 * DAY));
    }

    fn usage() -> impl Strategy<Value = Usage> {
        let decay =
            (0i64..1000, 1i64..5, 0u8..3).prop_map(|(as_of_ms, half_life_ms, floor)| Decay {
                as_of_ms,
                half_life_ms,
                floor: f32::from(floor) / 4.0,
            });
        (0i64..1000, proptest::option::of(decay)).prop_map(|(recalled_at_ms, decay)| Usage {
            recalled_at_ms,
            decay,
        })
    }

    proptest! {
        #[test]
        fn join_is_a_semilattice(a in usage(), b in usage(), c in usage()) {
            prop_assert_eq!(join(&a, &b), join(&b, &a));
            prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
            prop_assert_eq!(join(&a, &a), a.clone());
            // The join only ever moves use forward.
            let j = join(&a, &b);
            prop_assert!(j.recalled_at_ms >= a.recalled_at_ms.max(b.recalled_at_ms));
        }

        #[test]
        fn decay_is_bounded_and_deterministic(
            written in 0.0f32..=1.0,
            created in 0i64..1_000_000,
            recalled in 0i64..1_000_000,
            as_of in 0i64..10_000_000,
            half_life in 1i64..1_000_000,
            floor in 0.0f32..=1.0,
        ) {
            let m = Memory {
                decay: Some(Decay { as_of_ms: as_of, half_life_ms: half_life, floor }),
                ..mem(written, created, recalled)
            };
            let c = confidence(&m);
            prop_assert!(c <= written);
            prop_assert!(c >= floor.min(written));
            prop_assert_eq!(c.to_bits(), confidence(&m.clone()).to_bits());
        }
    }
}
