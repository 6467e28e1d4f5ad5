use std::sync::Barrier;
use std::sync::atomic::AtomicUsize;

use proptest::prelude::*;

use super::*;

fn cfg() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 5,
        open_timeout: Duration::from_secs(30),
        jitter: 0.0,
    }
}

fn trip(b: &Breaker, now: u64) {
    for _ in 0..5 {
        let _ = b.try_acquire(now).unwrap().failure(now, 0);
    }
}

#[test]
fn opens_at_threshold_and_rejects_while_open() {
    let b = Breaker::new(cfg());
    for i in 1..5 {
        assert_eq!(b.try_acquire(0).unwrap().failure(0, 0), None);
        assert_eq!(b.snapshot(), (BreakerState::Closed, i));
    }
    let t = b.try_acquire(0).unwrap().failure(0, 0);
    assert_eq!(
        t,
        Some(Transition {
            from: BreakerState::Closed,
            to: BreakerState::Open
        })
    );
    assert!(b.try_acquire(29_999).is_err());
    assert!(b.try_acquire(30_000).is_ok());
}

#[test]
fn success_resets_the_count() {
    let b = Breaker::new(cfg());
    for _ in 0..4 {
        let _ = b.try_acquire(0).unwrap().failure(0, 0);
    }
    let _ = b.try_acquire(0).unwrap().success();
    let _ = b.try_acquire(0).unwrap().failure(0, 0);
    assert_eq!(b.snapshot(), (BreakerState::Closed, 1));
}

#[test]
fn neutral_does_not_move_a_closed_breaker() {
    let b = Breaker::new(cfg());
    let _ = b.try_acquire(0).unwrap().failure(0, 0);
    assert_eq!(b.try_acquire(0).unwrap().neutral(), None);
    assert_eq!(b.snapshot(), (BreakerState::Closed, 1));
}

#[test]
fn probe_success_closes_and_failure_reopens() {
    let b = Breaker::new(cfg());
    trip(&b, 0);
    let p = b.try_acquire(30_000).unwrap();
    assert!(p.is_probe());
    assert_eq!(b.snapshot().0, BreakerState::HalfOpen);
    assert!(b.try_acquire(30_000).is_err());
    let _ = p.failure(30_000, 0);
    assert_eq!(b.snapshot().0, BreakerState::Open);
    assert!(b.try_acquire(59_999).is_err());
    let p = b.try_acquire(60_000).unwrap();
    assert_eq!(
        p.success(),
        Some(Transition {
            from: BreakerState::HalfOpen,
            to: BreakerState::Closed
        })
    );
    assert_eq!(b.snapshot(), (BreakerState::Closed, 0));
}

#[test]
fn dropped_probe_releases_the_slot() {
    let b = Breaker::new(cfg());
    trip(&b, 0);
    let p = b.try_acquire(30_000).unwrap();
    drop(p);
    assert_eq!(b.snapshot().0, BreakerState::Open);
    let again = b.try_acquire(30_001).unwrap();
    assert!(again.is_probe());
}

#[test]
fn open_timeout_is_jittered_within_bounds() {
    let b = Breaker::new(BreakerConfig {
        jitter: 0.1,
        ..cfg()
    });
    for _ in 0..5 {
        let _ = b.try_acquire(0).unwrap().failure(0, u64::MAX);
    }
    assert!(b.try_acquire(32_999).is_err());
    assert!(b.try_acquire(33_000).is_ok());
    let b = Breaker::new(BreakerConfig {
        jitter: 0.1,
        ..cfg()
    });
    for _ in 0..5 {
        let _ = b.try_acquire(0).unwrap().failure(0, 0);
    }
    assert!(b.try_acquire(26_999).is_err());
    assert!(b.try_acquire(27_000).is_ok());
}

#[test]
fn exactly_one_of_1000_concurrent_callers_probes() {
    let b = Breaker::new(cfg());
    trip(&b, 0);
    let admitted = AtomicUsize::new(0);
    let start = Barrier::new(8);
    let done = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                start.wait();
                let permits: Vec<_> = (0..125)
                    .filter_map(|_| b.try_acquire(30_000).ok())
                    .collect();
                admitted.fetch_add(permits.len(), Ordering::Relaxed);
                done.wait(); // hold permits until everyone has tried
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(u64),
    Success,
    Failure,
    Drop,
}

proptest! {
    /// Never more than one probe outstanding; held permits are reported in any order.
    #[test]
    fn at_most_one_probe(ops in proptest::collection::vec(prop_oneof![
        (0u64..40_000).prop_map(Op::Acquire), Just(Op::Success), Just(Op::Failure), Just(Op::Drop)
    ], 1..200)) {
        let b = Breaker::new(cfg());
        let mut now = 0;
        let mut held: Vec<Permit<'_>> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire(dt) => {
                    now += dt;
                    if let Ok(p) = b.try_acquire(now) { held.push(p); }
                }
                Op::Success => { if let Some(p) = held.pop() { let _ = p.success(); } }
                Op::Failure => { if let Some(p) = held.pop() { let _ = p.failure(now, 0); } }
                Op::Drop => { held.pop(); }
            }
            prop_assert!(held.iter().filter(|p| p.is_probe()).count() <= 1);
            if held.iter().any(Permit::is_probe) {
                prop_assert_eq!(b.snapshot().0, BreakerState::HalfOpen);
            }
        }
    }
}

#[test]
fn a_returning_member_is_probed_at_once() {
    let b = Breaker::new(BreakerConfig {
        failure_threshold: 1,
        open_timeout: std::time::Duration::from_secs(30),
        jitter: 0.0,
    });
    b.try_acquire(0).unwrap().failure(0, 0);
    assert_eq!(b.snapshot().0, BreakerState::Open);
    assert!(b.try_acquire(1).is_err(), "open for 30 s");
    b.member_returned();
    let probe = b.try_acquire(1).expect("probe admitted at once");
    assert!(probe.is_probe());
    assert!(b.try_acquire(1).is_err(), "exactly one probe");
    probe.success();
    assert_eq!(b.snapshot().0, BreakerState::Closed);
    // Closed stays closed.
    b.member_returned();
    assert_eq!(b.snapshot(), (BreakerState::Closed, 0));
}
