//! Real UDP on 127.0.0.1, port 0. Synchronisation is by awaiting the watch
//! channel; the timeouts only turn a hang into a failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mnemo_cluster::{ClusterView, MemberState, Membership, MembershipConfig, MembershipHandle};
use tokio::sync::watch;

const GUARD: Duration = Duration::from_secs(20);

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(id: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> MembershipHandle {
    let config = MembershipConfig::new(id, listen)
        .with_seeds(seeds.iter().map(ToString::to_string))
        .with_expected_size(3);
    Membership::start(config).await.expect("start membership")
}

/// Waits until `pred` holds for the view, failing after [`GUARD`].
async fn until(
    rx: &mut watch::Receiver<ClusterView>,
    what: &str,
    pred: impl FnMut(&ClusterView) -> bool,
) -> ClusterView {
    let outcome = tokio::time::timeout(GUARD, rx.wait_for(pred))
        .await
        .map(|r| r.map(|view| view.clone()));
    match outcome {
        Ok(Ok(view)) => view,
        Ok(Err(closed)) => panic!("membership stopped while waiting for {what}: {closed}"),
        Err(elapsed) => panic!("{elapsed} waiting for {what}: {:#?}", rx.borrow()),
    }
}

fn state_of(view: &ClusterView, id: &str) -> Option<MemberState> {
    view.get(id).map(|m| m.state)
}

async fn all_alive(handles: &[&MembershipHandle], n: usize) {
    for h in handles {
        let mut rx = h.subscribe();
        // A node starts partitioned (alone, expected 3) and heals only after
        // the detector's hold time, so wait for both.
        until(&mut rx, "all members alive, not partitioned", |v| {
            v.count(MemberState::Alive) == n && !v.partition.partitioned
        })
        .await;
    }
}

async fn three_nodes() -> (MembershipHandle, MembershipHandle, MembershipHandle) {
    let n1 = start("n1", loopback0(), &[]).await;
    let seed = n1.local_addr();
    // n2 and n3 only know the seed; n3 learns n2 through gossip.
    let n2 = start("n2", loopback0(), &[seed]).await;
    let n3 = start("n3", loopback0(), &[seed]).await;
    all_alive(&[&n1, &n2, &n3], 3).await;
    (n1, n2, n3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_is_detected_and_restart_with_same_id_rejoins() {
    let (n1, n2, n3) = three_nodes().await;
    let n3_addr = n3.local_addr();
    let n3_incarnation = n3.identity().incarnation;

    // Crash: no leave notice, the socket just goes away.
    let killed_at = Instant::now();
    n3.abort().await;
    for h in [&n1, &n2] {
        let mut rx = h.subscribe();
        let view = until(&mut rx, "n3 down", |v| {
            state_of(v, "n3") == Some(MemberState::Down)
        })
        .await;
        println!(
            "{} declared killed n3 down after {:?}",
            view.local.id,
            killed_at.elapsed()
        );
        // 2 of 3 reachable is still a majority.
        assert!(!view.partition.partitioned);
        assert_eq!(view.partition.expected, 3);
    }

    // Restart on the same address with a fresh incarnation.
    let n3 = start("n3", n3_addr, &[n1.local_addr()]).await;
    assert!(n3.identity().incarnation > n3_incarnation);
    all_alive(&[&n1, &n2, &n3], 3).await;
    let view = n1.view();
    let member = view.get("n3").unwrap();
    assert_eq!(member.addr, n3_addr);
    assert_eq!(member.incarnation, n3.identity().incarnation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_a_new_port_replaces_the_old_entry() {
    let (n1, n2, n3) = three_nodes().await;
    let old_addr = n3.local_addr();
    n3.abort().await;
    let n3 = start("n3", loopback0(), &[n1.local_addr()]).await;
    assert_ne!(n3.local_addr(), old_addr);
    for h in [&n1, &n2] {
        let mut rx = h.subscribe();
        let new_addr = n3.local_addr();
        until(&mut rx, "n3 alive at its new address", |v| {
            v.get("n3")
                .is_some_and(|m| m.addr == new_addr && m.state == MemberState::Alive)
        })
        .await;
    }
    all_alive(&[&n1, &n2, &n3], 3).await;
    // One entry per node id, never two n3s.
    assert_eq!(n1.view().members.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_seen_as_left() {
    let (n1, n2, mut n3) = three_nodes().await;
    let mut own = n3.subscribe();
    n3.leave().await.expect("leave");
    assert_eq!(own.borrow_and_update().local.state, MemberState::Left);
    for h in [&n1, &n2] {
        let mut rx = h.subscribe();
        let view = until(&mut rx, "n3 left", |v| {
            state_of(v, "n3") == Some(MemberState::Left)
        })
        .await;
        // A member that left is no longer reachable, but still counts
        // towards the expected size.
        assert_eq!(view.partition.reachable, 2);
        assert_eq!(view.partition.expected, 3);
    }
    assert!(matches!(
        n3.leave().await,
        Err(mnemo_cluster::Error::Stopped)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_of_a_minority_reports_partitioned() {
    let (n1, n2, n3) = three_nodes().await;
    n2.abort().await;
    n3.abort().await;
    let mut rx = n1.subscribe();
    let view = until(&mut rx, "n1 partitioned", |v| v.partition.partitioned).await;
    // Its live view is just itself, but the expected size stays 3.
    assert_eq!(view.partition.reachable, 1);
    assert_eq!(view.partition.expected, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_seed_is_found_again_by_re_resolving_seeds() {
    let n1 = start("n1", loopback0(), &[]).await;
    let seed = n1.local_addr();
    let mut config = MembershipConfig::new("n2", loopback0())
        .with_seeds(["localhost:".to_owned() + &seed.port().to_string()])
        .with_expected_size(2);
    config.seed_retry = Duration::from_millis(300);
    let n2 = Membership::start(config).await.expect("start n2");
    all_alive(&[&n1, &n2], 2).await;

    n1.abort().await;
    let mut rx = n2.subscribe();
    until(&mut rx, "seed n1 down", |v| {
        state_of(v, "n1") == Some(MemberState::Down)
    })
    .await;

    // The seed comes back knowing nobody; only n2's periodic seed
    // announce can bring them together.
    let n1 = start("n1", seed, &[]).await;
    all_alive(&[&n1, &n2], 2).await;
}
