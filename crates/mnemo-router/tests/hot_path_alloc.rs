//! The hot path allocates nothing: a routing decision, a breaker check and a
//! cached channel pick, counted by a wrapping global allocator. Each test
//! binary has its own allocator; this one holds a single test so that no
//! other thread allocates while it counts.

use std::alloc::System;

use mnemo_router::clock::{Clock, ManualClock};
use mnemo_router::{Member, NodeId, Router, RouterConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn routing_decision_breaker_check_and_channel_pick_do_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let members = (0..100).map(|i| Member::alive(format!("n{i}"), format!("10.0.0.{i}:7000")));
    let router = Router::new(NodeId::from("n0"), members, RouterConfig::default());
    let clock = ManualClock::new(0);
    let spaces: Vec<String> = (0..256).map(|i| format!("space-{i}")).collect();
    let hot = |s: &str| {
        let d = router.route_recall(s).unwrap();
        for &idx in d.targets() {
            if let Some(remote) = d.table().remote(idx) {
                let permit = remote.breaker.try_acquire(clock.now_millis()).unwrap();
                std::hint::black_box(remote.channels.as_ref().unwrap().get());
                drop(permit);
            }
        }
        d
    };
    for s in &spaces {
        drop(hot(s));
    }
    // Open every channel once; the steady state reuses them.
    for (_, remote) in router.table().remotes() {
        let channels = remote.channels.as_ref().unwrap();
        for _ in 0..channels.capacity() {
            let _ = channels.get();
        }
    }
    let region = Region::new(GLOBAL);
    for _ in 0..10 {
        for s in &spaces {
            drop(std::hint::black_box(hot(s)));
        }
    }
    let change = region.change();
    assert_eq!(change.allocations, 0, "{change:?}");
}
