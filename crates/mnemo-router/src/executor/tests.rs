#![allow(
    clippy::disallowed_methods,
    reason = "the fake nodes answer on tokio's paused clock, which the router's TokioClock reads"
)]
//! Executor tests against a fake transport: a closure that counts calls per
//! node and answers as told. Paused tokio time, seeded randomness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tonic::Status;

use super::*;
use crate::breaker::Permit;
use crate::breaker::{BreakerConfig, BreakerState};
use crate::budget::BudgetConfig;
use crate::clock::{SplitMix, TokioClock};
use crate::decision::PartitionState;
use crate::decision::Strategy;
use crate::error::RouterError;
use crate::router::{Hedge, RouterConfig};
use crate::topology::{Member, MemberState};

#[derive(Debug, Clone, Copy)]
enum Act {
    Ok,
    Unavailable,
    NotFound,
    /// Answer after `ms`: Ok or Unavailable.
    After(u64, bool),
    Hang,
}

#[derive(Default)]
struct Fake {
    acts: Mutex<BTreeMap<String, Act>>,
    calls: Mutex<BTreeMap<String, u32>>,
    timeouts: Mutex<Vec<Duration>>,
}

impl Fake {
    fn set(&self, node: &str, act: Act) {
        self.acts.lock().unwrap().insert(node.to_owned(), act);
    }

    fn calls(&self, node: &str) -> u32 {
        self.calls.lock().unwrap().get(node).copied().unwrap_or(0)
    }

    fn total(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }

    fn remote_calls(&self) -> u32 {
        self.total() - self.calls("local")
    }

    fn call(&self, target: &Target) -> impl Future<Output = Result<String, Status>> + use<> {
        let key = target
            .node()
            .map_or_else(|| "local".to_owned(), ToString::to_string);
        *self.calls.lock().unwrap().entry(key.clone()).or_default() += 1;
        if let Target::Remote { timeout, .. } = target {
            self.timeouts.lock().unwrap().push(*timeout);
        }
        let act = self
            .acts
            .lock()
            .unwrap()
            .get(&key)
            .copied()
            .unwrap_or(Act::Ok);
        async move {
            match act {
                Act::Ok => Ok(key),
                Act::Unavailable => Err(Status::unavailable("down")),
                Act::NotFound => Err(Status::not_found("no such memory")),
                Act::After(ms, ok) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if ok {
                        Ok(key)
                    } else {
                        Err(Status::unavailable("slow and down"))
                    }
                }
                Act::Hang => std::future::pending().await,
            }
        }
    }
}

/// The routing defaults without the latency-derived behaviour (no hedging,
/// attempts bounded by the deadline only), so each test shows one thing.
fn config() -> RouterConfig {
    RouterConfig {
        breaker: BreakerConfig {
            jitter: 0.0,
            ..BreakerConfig::default()
        },
        hedge: Hedge::Off,
        timeouts: crate::latency::Timeouts {
            attempt_initial: Duration::from_secs(3600),
            attempt_cap: Duration::from_secs(3600),
            slow_factor: u32::MAX,
            ..crate::latency::Timeouts::default()
        },
        ..RouterConfig::default()
    }
}

/// The routing defaults, latency-derived behaviour included.
fn defaults() -> RouterConfig {
    RouterConfig {
        breaker: BreakerConfig {
            jitter: 0.0,
            ..BreakerConfig::default()
        },
        ..RouterConfig::default()
    }
}

fn router(cfg: RouterConfig) -> Router {
    router_on(cfg, Arc::new(TokioClock::new()))
}

fn router_on(cfg: RouterConfig, clock: Arc<dyn crate::clock::Clock>) -> Router {
    let members = (0..5).map(|i| Member::alive(format!("n{i}"), format!("127.0.0.1:{}", 10 + i)));
    Router::with_sources(
        NodeId::from("n0"),
        members,
        cfg,
        clock,
        Arc::new(SplitMix::seeded(42)),
    )
}

/// A space whose preference list does (or does not) include the local node.
fn space(r: &Router, with_local: bool) -> String {
    let t = r.table();
    let local = t.topology().local_index().unwrap();
    (0..10_000)
        .map(|i| format!("space-{i}"))
        .find(|s| t.topology().preference_list(s).contains(local) == with_local)
        .unwrap()
}

/// (node, state, consecutive failures) of `node`'s breaker.
fn breaker(r: &Router, node: &str) -> (NodeId, BreakerState, u32) {
    r.breaker_snapshot()
        .into_iter()
        .find(|b| b.0.as_str() == node)
        .unwrap()
}

/// Opens the breaker of target `idx` of `d` by hand (five faults at time 0).
fn trip(r: &Router, d: &RoutingDecision, idx: usize) {
    let table = r.table();
    let breaker = &table.remote(d.targets()[idx]).unwrap().breaker;
    for _ in 0..5 {
        let _ = breaker.try_acquire(0).unwrap().failure(0, 0);
    }
}

fn names(d: &RoutingDecision) -> Vec<String> {
    d.targets()
        .iter()
        .map(|&i| d.table().topology().member(i).id.to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn store_goes_to_the_primary_then_the_next_holder() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_store(&space(&r, false)).unwrap();
    assert_eq!(d.strategy(), Strategy::PrimaryWithFallback);
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node, d.primary().id);
    assert!(!served.fallback);
    assert_eq!(fake.total(), 1);

    let order = names(&d);
    fake.set(&order[0], Act::Unavailable);
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[1]);
    assert!(served.fallback);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_moves_on_without_a_fault() {
    let r = router(config());
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    for _ in 0..10 {
        let served = r
            .execute(&d, None, |t| {
                let refuse = t.node().is_some_and(|n| n.as_str() == order[0]);
                async move {
                    if refuse {
                        Err(crate::error::refusal("catching-up", "catching up"))
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(served.node.as_str(), order[1]);
        assert!(!served.uncertain, "a refusal leaves no doubt");
    }
    let (_, state, failures) = breaker(&r, &order[0]);
    assert_eq!((state, failures), (BreakerState::Closed, 0));
    assert!((r.retry_budget_tokens() - BudgetConfig::default().max_tokens as f32).abs() < 1e-3);
}

#[tokio::test(start_paused = true)]
async fn recall_falls_back_in_preference_order() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::Unavailable);
    fake.set(&order[1], Act::Unavailable);
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[2]);
    assert!(served.fallback);
    assert_eq!(served.attempts, 3);
    assert!(served.uncertain, "two attempts failed as node faults");
    assert_eq!(
        (
            fake.calls(&order[0]),
            fake.calls(&order[1]),
            fake.calls(&order[2])
        ),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn open_breaker_is_skipped_without_calling() {
    let r = router(config());
    let fake = Fake::default();
    let s = space(&r, false);
    let order = names(&r.route_recall(&s).unwrap());
    fake.set(&order[0], Act::Unavailable);
    // Five writes that fail on the primary (and land on the next holder)
    // trip its breaker (threshold 5)...
    for _ in 0..5 {
        let d = r.route_store(&s).unwrap();
        let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        assert_eq!(served.node.as_str(), order[1]);
    }
    let state = breaker(&r, &order[0]);
    assert_eq!((state.1, state.2), (BreakerState::Open, 5));
    // ... then neither a write nor a read reaches it.
    let before = fake.calls(&order[0]);
    let d = r.route_store(&s).unwrap();
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[1]);
    assert_eq!(served.attempts, 1, "the open breaker cost no attempt");
    let served = r
        .execute(&r.route_recall(&s).unwrap(), None, |t| fake.call(&t))
        .await
        .unwrap();
    assert_eq!(served.node.as_str(), order[1]);
    assert_eq!(fake.calls(&order[0]), before);

    // After the open timeout one probe goes through; success closes.
    fake.set(&order[0], Act::Ok);
    tokio::time::advance(Duration::from_secs(30)).await;
    let served = r
        .execute(&r.route_recall(&s).unwrap(), None, |t| fake.call(&t))
        .await
        .unwrap();
    assert_eq!(served.node.as_str(), order[0]);
    let state = breaker(&r, &order[0]);
    assert_eq!((state.1, state.2), (BreakerState::Closed, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_releases_the_slot() {
    let r = router(config());
    let fake = Fake::default();
    let s = space(&r, false);
    let primary = r.route_store(&s).unwrap().primary().id.to_string();
    fake.set(&primary, Act::Unavailable);
    for _ in 0..5 {
        let _ = r
            .execute(&r.route_store(&s).unwrap(), None, |t| fake.call(&t))
            .await;
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    fake.set(&primary, Act::Hang);
    let d = r.route_store(&s).unwrap();
    let probe = r.execute(&d, None, |t| fake.call(&t));
    assert!(
        tokio::time::timeout(Duration::from_millis(5), probe)
            .await
            .is_err()
    );
    let state = breaker(&r, &primary);
    assert_eq!(
        state.1,
        BreakerState::Open,
        "dropped probe went back to open"
    );
    fake.set(&primary, Act::Ok);
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), primary);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_return_at_once_and_leave_breakers() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::NotFound);
    let e = r.execute(&d, None, |t| fake.call(&t)).await.unwrap_err();
    assert!(matches!(e, ExecError::Operation(ref s) if s.code() == tonic::Code::NotFound));
    assert_eq!(fake.total(), 1);
    assert!(
        r.breaker_snapshot()
            .iter()
            .all(|b| b.1 == BreakerState::Closed && b.2 == 0)
    );
}

#[tokio::test(start_paused = true)]
async fn store_retries_every_holder_with_bounded_backoff() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_store(&space(&r, false)).unwrap();
    for n in names(&d) {
        fake.set(&n, Act::Unavailable);
    }
    let start = r.clock.now();
    let e = r.execute(&d, None, |t| fake.call(&t)).await.unwrap_err();
    assert_eq!(
        e.router_error(),
        Some(&RouterError::Unavailable {
            attempts: 9,
            rejected: 0
        })
    );
    assert_eq!(fake.total(), 9);
    // Two backoffs: at most 10 ms + 20 ms.
    assert!(r.clock.now().saturating_sub(start) <= Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn every_attempt_fits_in_the_deadline() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    for n in names(&d) {
        fake.set(&n, Act::After(3_000, false));
    }
    let start = r.clock.now();
    let e = r
        .execute(&d, Some(Duration::from_secs(10)), |t| fake.call(&t))
        .await
        .unwrap_err();
    assert!(matches!(
        e.router_error(),
        Some(RouterError::DeadlineExceeded { attempts: 4 })
    ));
    assert_eq!(r.clock.now().saturating_sub(start), Duration::from_secs(10));
    let timeouts = fake.timeouts.lock().unwrap().clone();
    assert_eq!(timeouts.len(), 4);
    assert_eq!(timeouts[0], Duration::from_secs(10));
    assert!(timeouts.windows(2).all(|w| w[1] < w[0]), "{timeouts:?}");
    assert!(timeouts[3] <= Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn outage_retries_stay_within_the_budget() {
    let r = router(RouterConfig {
        breaker: BreakerConfig {
            failure_threshold: u32::MAX, // isolate the budget
            ..BreakerConfig::default()
        },
        ..config()
    });
    let fake = Fake::default();
    for i in 1..5 {
        fake.set(&format!("n{i}"), Act::Unavailable);
    }
    fake.set("local", Act::Unavailable);
    let spaces: Vec<String> = (0..10_000).map(|i| format!("space-{i}")).collect();
    for s in &spaces {
        let d = r.route_recall(s).unwrap();
        assert!(r.execute(&d, None, |t| fake.call(&t)).await.is_err());
    }
    // Retries stop once half the bucket is spent; nothing refills it.
    let allowed = BudgetConfig::default().max_tokens / 2;
    let retries = fake.total() - 10_000;
    assert!(
        retries <= allowed,
        "{retries} retries in a total outage, budget {allowed}"
    );
}

#[tokio::test(start_paused = true)]
async fn hedged_recall_returns_the_faster_replica() {
    let r = router(RouterConfig {
        hedge: Hedge::Fixed(Duration::from_millis(50)),
        ..config()
    });
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::After(1_000, true));
    fake.set(&order[1], Act::After(10, true));
    let start = r.clock.now();
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[1]);
    assert!(served.hedged && served.fallback);
    assert_eq!(
        r.clock.now().saturating_sub(start),
        Duration::from_millis(60)
    );

    // A primary that answers before the hedge delay gets no hedge.
    fake.set(&order[0], Act::After(20, true));
    let before = fake.calls(&order[1]);
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[0]);
    assert!(!served.hedged);
    assert_eq!(fake.calls(&order[1]), before);
}

#[tokio::test(start_paused = true)]
async fn partition_serves_locally_without_remote_calls() {
    let r = router(config());
    let fake = Fake::default();
    let held = space(&r, true);
    let not_held = space(&r, false);
    r.set_partition(PartitionState::from_counts(2, 5));
    for d in [
        r.route_store(&held).unwrap(),
        r.route_recall(&held).unwrap(),
    ] {
        assert_eq!(d.strategy(), Strategy::LocalOnly);
        let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        assert!(served.local && served.degraded);
        assert!((served.confidence_penalty - 0.4).abs() < 1e-6);
    }
    let e = r.route_recall(&not_held).unwrap_err();
    assert_eq!(
        e,
        RouterError::NoLocalData {
            space: not_held.clone()
        }
    );
    assert_eq!(Status::from(e).code(), tonic::Code::Unavailable);
    assert_eq!(fake.remote_calls(), 0);
    assert_eq!(fake.calls("local"), 2);

    // Healing restores normal routing.
    r.set_partition(PartitionState::from_counts(5, 5));
    let d = r.route_recall(&not_held).unwrap();
    assert_eq!(d.strategy(), Strategy::PrimaryWithFallback);
}

#[tokio::test(start_paused = true)]
async fn partition_judges_local_data_by_the_full_placement() {
    let r = router(config());
    // A space placed on other nodes while all five were alive, and one
    // placed here...
    let not_held = space(&r, false);
    let held = space(&r, true);
    // ...then three peers become unreachable: over the two live members the
    // local node would now be in every preference list, but it never
    // received this space's data.
    let members = (0..5).map(|i| Member {
        id: NodeId::from(format!("n{i}")),
        addr: format!("127.0.0.1:{}", 10 + i),
        state: if i < 2 {
            MemberState::Alive
        } else {
            MemberState::Down
        },
    });
    assert!(r.update_topology(members, 1));
    let table = r.table();
    let local = table.topology().local_index().unwrap();
    assert!(table.topology().preference_list(&not_held).contains(local));
    r.set_partition(PartitionState::from_counts(2, 5));
    assert_eq!(
        r.route_store(&not_held).unwrap_err(),
        RouterError::NoLocalData {
            space: not_held.clone()
        }
    );
    assert!(table.topology().holds_as_placed(&held));
    assert_eq!(
        r.route_recall(&held).unwrap().strategy(),
        Strategy::LocalOnly
    );
}

#[tokio::test(start_paused = true)]
async fn consolidation_is_local_only() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_consolidation(&space(&r, true)).unwrap();
    assert_eq!(d.strategy(), Strategy::LocalOnly);
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert!(served.local && !served.degraded);
    assert_eq!(fake.remote_calls(), 0);
    let e = r.route_consolidation(&space(&r, false)).unwrap_err();
    assert!(matches!(e, RouterError::NotLocal { .. }));
}

#[tokio::test(start_paused = true)]
async fn scatter_gather_merges_top_k_and_lists_failed_spaces() {
    let r = router(config());
    let spaces = ["a", "b", "c", "d"];
    let calls = Mutex::new(0u32);
    let result = r
        .query(&spaces, None, |space, _target| {
            *calls.lock().unwrap() += 1;
            let space = space.to_owned();
            async move {
                if space == "c" {
                    return Err(Status::unavailable("down"));
                }
                let base = f32::from(space.as_bytes()[0] - b'a');
                Ok(vec![
                    (format!("{space}1"), base + 0.5),
                    (format!("{space}2"), base),
                ])
            }
        })
        .await
        .unwrap();
    assert!(result.is_partial());
    assert_eq!(result.failed_spaces().collect::<Vec<_>>(), ["c"]);
    assert_eq!(result.parts.len(), 3);
    let top = merge_top_k(result.parts.into_iter().map(|(_, s)| s.value), 3, |h| h.1);
    let ids: Vec<_> = top.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(ids, ["d1", "d2", "b1"]);
    assert!(matches!(
        r.query::<&str, (), Status, _, _>(&[], None, |_, _| async { Ok(()) })
            .await,
        Err(RouterError::EmptyQuery)
    ));
}

#[tokio::test(start_paused = true)]
async fn topology_update_keeps_breakers_and_evicts_gone_nodes() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let _ = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    let primary = d.primary().id.clone();
    assert_eq!(
        r.pool_snapshot().iter().find(|p| p.0 == primary).unwrap().1,
        1
    );
    let victim = if primary.as_str() == "n4" { "n3" } else { "n4" };
    let keep: Vec<Member> = (0..5)
        .map(|i| Member::alive(format!("n{i}"), format!("127.0.0.1:{}", 10 + i)))
        .filter(|m| m.id.as_str() != victim)
        .collect();
    assert!(r.update_topology(keep, 2));
    assert!(!r.update_topology(Vec::new(), 1), "older epoch ignored");
    let pool = r.pool_snapshot();
    assert_eq!(pool.len(), 3);
    assert!(pool.iter().all(|p| p.0.as_str() != victim));
    assert_eq!(
        pool.iter().find(|p| p.0 == primary).unwrap().1,
        1,
        "channel kept"
    );
}

#[tokio::test(start_paused = true)]
async fn hedges_draw_on_the_retry_budget() {
    let r = router(RouterConfig {
        hedge: Hedge::Fixed(Duration::from_millis(50)),
        // A6's example bucket, so the counts below are easy to follow.
        budget: BudgetConfig {
            max_tokens: 10,
            token_ratio: 0.1,
        },
        ..config()
    });
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::After(100, true));
    // Each hedge takes a token and each success refills 0.1: six hedges bring
    // the bucket to half (10 -> 4.6), then one hedge per ~5-10 successes.
    let mut hedges = 0;
    for _ in 0..20 {
        let before = fake.calls(&order[1]);
        let _ = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        hedges += fake.calls(&order[1]) - before;
    }
    assert!((6..=8).contains(&hedges), "{hedges} hedges in 20 recalls");
}

#[tokio::test(start_paused = true)]
async fn query_concurrency_is_bounded() {
    let r = router(RouterConfig {
        query_concurrency: 2,
        ..config()
    });
    let in_flight = Arc::new(Mutex::new((0u32, 0u32))); // (now, max)
    let spaces: Vec<String> = (0..10).map(|i| format!("q{i}")).collect();
    let result = r
        .query(&spaces, None, |_, _| {
            let in_flight = Arc::clone(&in_flight);
            async move {
                {
                    let mut g = in_flight.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                in_flight.lock().unwrap().0 -= 1;
                Ok::<_, Status>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(result.parts.len(), 10);
    assert_eq!(in_flight.lock().unwrap().1, 2);
}

#[tokio::test(start_paused = true)]
async fn a_silent_node_costs_one_attempt_timeout_not_the_deadline() {
    let r = router(defaults());
    let fake = Fake::default();
    let d = r.route_store(&space(&r, false)).unwrap();
    let order = names(&d);
    // The primary answers in 1 ms a few times: its timeout becomes the floor.
    fake.set(&order[0], Act::After(1, true));
    for _ in 0..8 {
        r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    }
    // Then it hangs: the write goes to the next holder after 50 ms.
    fake.set(&order[0], Act::Hang);
    let start = r.clock.now();
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[1]);
    assert_eq!(
        r.clock.now().saturating_sub(start),
        Duration::from_millis(50)
    );
    let failures = breaker(&r, &order[0]).2;
    assert_eq!(failures, 1, "the stall counts against its breaker");
}

#[tokio::test(start_paused = true)]
async fn reads_hedge_after_the_adaptive_delay() {
    let r = router(defaults());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::After(2, true));
    for _ in 0..20 {
        let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        assert!(
            !served.hedged,
            "a 2 ms primary is never hedged at the 20 ms floor"
        );
    }
    // It turns slow (but not silent): the hedge goes out at the floor.
    fake.set(&order[0], Act::After(500, true));
    let start = r.clock.now();
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert!(served.hedged && served.fallback);
    assert_eq!(served.node.as_str(), order[1]);
    assert_eq!(
        r.clock.now().saturating_sub(start),
        Duration::from_millis(20)
    );
}

#[tokio::test(start_paused = true)]
async fn a_primary_far_slower_than_its_replicas_is_asked_last_for_reads() {
    let r = router(RouterConfig {
        hedge: Hedge::Off,
        ..defaults()
    });
    let fake = Fake::default();
    let s = space(&r, false);

    let d = r.route_recall(&s).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::After(300, true));
    fake.set(&order[1], Act::After(1, true));
    fake.set(&order[2], Act::After(1, true));
    // Learn every node's latency: the primary by reads, the replicas by
    // reads that fall back to them.
    for _ in 0..4 {
        r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    }
    for n in &order[1..] {
        fake.set(&order[0], Act::Unavailable);
        let other = if *n == order[1] { &order[2] } else { &order[1] };
        fake.set(other, Act::Unavailable);
        r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        fake.set(other, Act::After(1, true));
    }
    fake.set(&order[0], Act::After(300, true));
    let mut first = 0;
    for _ in 0..64 {
        let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        first += u32::from(served.node.as_str() == order[0]);
        assert_eq!(served.fallback, served.node.as_str() != order[0]);
    }
    // One read in 16 still probes it (seeded randomness: a handful).
    assert!(first > 0 && first < 16, "primary served {first} of 64");
    // Writes keep the primary first.
    let w = r.route_store(&s).unwrap();
    assert_eq!(
        r.execute(&w, None, |t| fake.call(&t))
            .await
            .unwrap()
            .node
            .as_str(),
        order[0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_is_not_sent_spends_no_token() {
    let r = router(RouterConfig {
        hedge: Hedge::Fixed(Duration::from_millis(10)),
        ..config()
    });
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    // Both replicas' breakers open: no hedge can be admitted.
    for idx in 1..d.targets().len() {
        trip(&r, &d, idx);
    }
    fake.set(&order[0], Act::After(50, true));
    let before = r.retry_budget_tokens();
    let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    assert!(!served.hedged);
    assert!(
        r.retry_budget_tokens() >= before,
        "{} < {before}",
        r.retry_budget_tokens()
    );
    assert_eq!(fake.total(), 1, "only the primary was asked");
}

#[tokio::test(start_paused = true)]
async fn a_node_that_turns_slower_than_its_timeout_is_soon_waited_for() {
    let r = router(defaults());
    let fake = Fake::default();
    let d = r.route_store(&space(&r, false)).unwrap();
    let order = names(&d);
    for n in &order {
        fake.set(n, Act::After(1, true));
    }
    for _ in 0..8 {
        r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    }
    // The primary now needs 70 ms: its attempts time out and its breaker
    // opens; each half-open probe that times out backs its timeout off until
    // a probe waits long enough, and it serves again.
    fake.set(&order[0], Act::After(70, true));
    let mut served_by = Vec::new();
    for _ in 0..12 {
        let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
        served_by.push(served.node.as_str() == order[0]);
        tokio::time::advance(Duration::from_secs(31)).await;
    }
    assert!(
        served_by.ends_with(&[true, true, true]),
        "served by the primary: {served_by:?}"
    );
    assert_eq!(breaker(&r, &order[0]).1, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn when_every_holder_turns_slow_the_last_attempt_waits_for_it() {
    let r = router(defaults());
    let fake = Fake::default();
    let d = r.route_store(&space(&r, false)).unwrap();
    let order = names(&d);
    // Every holder has answered writes in 1 ms: all their timeouts are 50 ms.
    let table = r.table();
    for &idx in d.targets() {
        for _ in 0..8 {
            table
                .remote(idx)
                .unwrap()
                .latency
                .write
                .record(Duration::from_millis(1));
        }
    }
    for n in &order {
        fake.set(n, Act::After(80, true));
    }
    for _ in 0..5 {
        r.execute(&d, None, |t| fake.call(&t))
            .await
            .expect("a slow cluster still answers");
    }
}

/// (breaker state, consecutive failures) of `node`, and whether the retry
/// budget is still full.
fn untouched(r: &Router, node: &str) -> (BreakerState, u32, bool) {
    let (_, state, failures) = breaker(r, node);
    let full = (r.retry_budget_tokens() - BudgetConfig::default().max_tokens as f32).abs() < 1e-3;
    (state, failures, full)
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_is_no_fault_of_the_node() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    // The caller's own deadline, shorter than any node is given to answer
    // (the attempt floor), runs out while the primary works.
    fake.set(&order[0], Act::After(200, true));
    for _ in 0..10 {
        let e = r
            .execute(&d, Some(Duration::from_millis(20)), |t| fake.call(&t))
            .await
            .unwrap_err();
        assert!(matches!(
            e.router_error(),
            Some(RouterError::DeadlineExceeded { .. })
        ));
    }
    assert_eq!(untouched(&r, &order[0]), (BreakerState::Closed, 0, true));
}

#[tokio::test(start_paused = true)]
async fn answers_that_are_no_fault_of_the_node_move_on_and_count_nothing() {
    let r = router(config());
    let d = r.route_store(&space(&r, false)).unwrap();
    let order = names(&d);
    // The primary reports the caller's deadline as passed, or a quorum that
    // fell short, or that its view differs: the next holder serves, and
    // however often it happens, the primary's breaker stays closed.
    let answers = [
        Status::deadline_exceeded("deadline passed while waiting for the quorum"),
        crate::error::refusal("quorum-shortfall", "durable here, 1 of 3 confirmed"),
        crate::error::refusal("not-a-holder", "views differ"),
    ];
    for i in 0..12 {
        let answer = answers[i % answers.len()].clone();
        let served = r
            .execute(&d, None, |t| {
                let from_primary = t.node().is_some_and(|n| n.as_str() == order[0]);
                let answer = answer.clone();
                async move { if from_primary { Err(answer) } else { Ok(()) } }
            })
            .await
            .unwrap();
        assert_eq!(served.node.as_str(), order[1]);
    }
    assert_eq!(untouched(&r, &order[0]), (BreakerState::Closed, 0, true));
}

#[tokio::test(start_paused = true)]
async fn node_faults_still_open_breakers_and_spend_the_budget() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_store(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::Unavailable);
    for _ in 0..5 {
        r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
    }
    let (state, failures, full) = untouched(&r, &order[0]);
    assert_eq!((state, failures), (BreakerState::Open, 5));
    assert!(!full, "each fault took from the budget");
}

/// A probe is counted as a half-open transition when it is sent, not when
/// it is taken: a hedge whose budget token went to a concurrent request
/// between the check and the take drops the probe it prepared unsent.
#[test]
fn a_probe_is_counted_when_sent_not_when_taken() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let half_open = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, _, _, _)| {
                key.key().name() == "mnemo_router_breaker_transitions_total"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "to" && l.value() == "half_open")
            })
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum::<u64>()
    };
    ::metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let r = router(config());
            let fake = Fake::default();
            let d = r.route_recall(&space(&r, false)).unwrap();
            let order = names(&d);
            trip(&r, &d, 0);
            tokio::time::advance(Duration::from_secs(60)).await;
            // Taken and dropped unsent: not counted, and the next caller
            // still gets the probe.
            let taken = r.prepare(&d, d.targets()[0], Duration::from_secs(1));
            assert!(
                taken
                    .as_ref()
                    .is_some_and(|p| p.permit.as_ref().is_some_and(Permit::is_probe))
            );
            drop(taken);
            assert_eq!(half_open(), 0);
            let served = r.execute(&d, None, |t| fake.call(&t)).await.unwrap();
            assert_eq!(
                served.node.as_str(),
                order[0],
                "the probe went out and closed it"
            );
            assert_eq!(half_open(), 1);
        });
    });
}

/// Deadlines, backoff and attempt timeouts run on the injected clock: with
/// a manual clock, an hour-long deadline passes the moment the clock is
/// moved an hour on, and not before.
#[tokio::test]
async fn deadlines_run_on_the_injected_clock() {
    let clock = Arc::new(crate::clock::ManualClock::new(0));
    let r = Arc::new(router_on(config(), Arc::clone(&clock) as _));
    let d = r.route_recall(&space(&r, false)).unwrap();
    let called = Arc::new(tokio::sync::Notify::new());
    let task = {
        let (r, called) = (Arc::clone(&r), Arc::clone(&called));
        tokio::spawn(async move {
            r.execute(&d, Some(Duration::from_secs(3600)), |_| {
                called.notify_one();
                std::future::pending::<Result<(), Status>>()
            })
            .await
        })
    };
    called.notified().await;
    clock.advance(3_599_999);
    tokio::task::yield_now().await;
    assert!(!task.is_finished(), "a millisecond of the deadline is left");
    clock.advance(1);
    let e = task.await.unwrap().unwrap_err();
    assert!(matches!(
        e.router_error(),
        Some(RouterError::DeadlineExceeded { attempts: 1 })
    ));
    // Silent for an hour, far past what it needs to answer: its fault.
    let order = names(&r.route_recall(&space(&r, false)).unwrap());
    assert_eq!(untouched(&r, &order[0]), (BreakerState::Closed, 1, false));
}

/// Backoff between rounds sleeps on the injected clock too: a write whose
/// every holder is down makes its rounds as the manual clock moves.
#[tokio::test]
async fn backoff_sleeps_on_the_injected_clock() {
    let clock = Arc::new(crate::clock::ManualClock::new(0));
    let r = Arc::new(router_on(config(), Arc::clone(&clock) as _));
    let fake = Arc::new(Fake::default());
    for i in 0..5 {
        fake.set(&format!("n{i}"), Act::Unavailable);
    }
    fake.set("local", Act::Unavailable);
    let d = r.route_store(&space(&r, false)).unwrap();
    let holders = d.targets().len() as u32;
    let task = {
        let (r, fake) = (Arc::clone(&r), Arc::clone(&fake));
        tokio::spawn(async move { r.execute(&d, None, |t| fake.call(&t)).await })
    };
    // The first round runs without the clock moving, then waits.
    while fake.total() < holders {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fake.total(),
        holders,
        "the second round waits for the clock"
    );
    while !task.is_finished() {
        clock.advance(10);
        tokio::task::yield_now().await;
    }
    let e = task.await.unwrap().unwrap_err();
    assert!(
        matches!(e.router_error(), Some(RouterError::Unavailable { .. })),
        "{e:?}"
    );
    let rounds = RouterConfig::default().max_attempts_per_node;
    assert_eq!(fake.total(), holders * rounds);
}

/// A node silent for longer than it needs to answer is at fault even when
/// every caller's deadline runs out before its attempt timeout would: its
/// breaker opens, and reads go to the replicas.
#[tokio::test(start_paused = true)]
async fn a_silent_node_is_blamed_even_when_callers_give_up_first() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    fake.set(&order[0], Act::Hang);
    for _ in 0..5 {
        let e = r
            .execute(&d, Some(Duration::from_millis(500)), |t| fake.call(&t))
            .await
            .unwrap_err();
        assert!(matches!(
            e.router_error(),
            Some(RouterError::DeadlineExceeded { .. })
        ));
    }
    assert_eq!(breaker(&r, &order[0]).1, BreakerState::Open);
    let served = r
        .execute(&d, Some(Duration::from_millis(500)), |t| fake.call(&t))
        .await
        .unwrap();
    assert_eq!(served.node.as_str(), order[1]);
}

/// A probe that gets no answer within its caller's short deadline reopens
/// the breaker with a fresh timeout: the next callers do not each spend
/// their deadline on the silent node.
#[tokio::test(start_paused = true)]
async fn a_probe_cut_short_by_its_callers_deadline_reopens_the_breaker() {
    let r = router(config());
    let fake = Fake::default();
    let d = r.route_recall(&space(&r, false)).unwrap();
    let order = names(&d);
    trip(&r, &d, 0);
    tokio::time::advance(Duration::from_secs(60)).await;
    fake.set(&order[0], Act::Hang);
    let short = Some(Duration::from_millis(20));
    assert!(r.execute(&d, short, |t| fake.call(&t)).await.is_err());
    assert_eq!(fake.calls(&order[0]), 1, "the probe went out");
    assert_eq!(breaker(&r, &order[0]).1, BreakerState::Open);
    let served = r.execute(&d, short, |t| fake.call(&t)).await.unwrap();
    assert_eq!(served.node.as_str(), order[1]);
    assert_eq!(
        fake.calls(&order[0]),
        1,
        "no second caller spent its deadline there"
    );
}
