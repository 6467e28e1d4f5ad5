//! Real UDP on 127.0.0.1, port 0. Synchronisation is by awaiting the watch
//! channel, or the rejected-datagram counter reaching a count (polled, as it
//! has no channel); the timeouts only turn a hang into a failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mnemo_cluster::seal::TAG_LEN;
use mnemo_cluster::{
    ClusterView, GossipKey, MemberState, Membership, MembershipConfig, MembershipHandle,
};
use tokio::net::UdpSocket;
use tokio::sync::watch;

const GUARD: Duration = Duration::from_secs(20);

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(id: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> MembershipConfig {
    MembershipConfig::new(id, listen)
        .with_seeds(seeds.iter().map(ToString::to_string))
        .with_expected_size(3)
}

async fn start(id: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> MembershipHandle {
    start_keyed(id, listen, seeds, None).await
}

async fn start_keyed(
    id: &str,
    listen: SocketAddr,
    seeds: &[SocketAddr],
    key: Option<&GossipKey>,
) -> MembershipHandle {
    let mut config = config(id, listen, seeds);
    config.gossip_key = key.cloned();
    Membership::start(config).await.expect("start membership")
}

fn cluster_key() -> GossipKey {
    GossipKey::new(*b"mnemo test cluster key, 32 bytes")
}

fn other_key() -> GossipKey {
    GossipKey::new(*b"another cluster's key, 32 bytes!")
}

/// Waits until `h` has rejected at least `n` datagrams, failing after
/// [`GUARD`]. The counter has no channel, so it is polled.
async fn until_rejected(h: &MembershipHandle, n: u64) {
    let waited = tokio::time::timeout(GUARD, async {
        while h.rejected_datagrams() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if let Err(elapsed) = waited {
        panic!(
            "{elapsed} waiting for {n} rejected datagrams, have {}",
            h.rejected_datagrams()
        );
    }
}

fn ids(view: &ClusterView) -> Vec<&str> {
    view.members.iter().map(|m| m.id.as_str()).collect()
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
    three_nodes_keyed(None).await
}

async fn three_nodes_keyed(
    key: Option<&GossipKey>,
) -> (MembershipHandle, MembershipHandle, MembershipHandle) {
    let n1 = start_keyed("n1", loopback0(), &[], key).await;
    let seed = n1.local_addr();
    // n2 and n3 only know the seed; n3 learns n2 through gossip.
    let n2 = start_keyed("n2", loopback0(), &[seed], key).await;
    let n3 = start_keyed("n3", loopback0(), &[seed], key).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_the_same_key_form_a_cluster() {
    let key = cluster_key();
    let (n1, n2, n3) = three_nodes_keyed(Some(&key)).await;
    for h in [&n1, &n2, &n3] {
        assert_eq!(ids(&h.view()), ["n1", "n2", "n3"]);
        // Legitimate traffic is never truncated or refused.
        assert_eq!(h.rejected_datagrams(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_without_the_key_are_kept_out() {
    let key = cluster_key();
    let (n1, n2, n3) = three_nodes_keyed(Some(&key)).await;

    // One stranger with another key knocks at n1, one with no key at n2,
    // both re-announcing every 200 ms.
    let wrong = other_key();
    let mut stranger = config("wrong-key", loopback0(), &[n1.local_addr()]);
    stranger.gossip_key = Some(wrong);
    stranger.seed_retry = Duration::from_millis(200);
    let wrong_key = Membership::start(stranger).await.expect("start stranger");
    let mut stranger = config("no-key", loopback0(), &[n2.local_addr()]);
    stranger.seed_retry = Duration::from_millis(200);
    let no_key = Membership::start(stranger).await.expect("start stranger");

    // Six refused announces each (over a second: two probe periods) prove
    // the strangers have been trying; an accepted announce would have made
    // them members within one round trip.
    until_rejected(&n1, 6).await;
    until_rejected(&n2, 6).await;

    for h in [&n1, &n2, &n3] {
        let view = h.view();
        assert_eq!(ids(&view), ["n1", "n2", "n3"], "{view:#?}");
        assert_eq!(view.count(MemberState::Alive), 3);
    }
    for h in [&wrong_key, &no_key] {
        let view = h.view();
        assert_eq!(view.members.len(), 1, "stranger sees others: {view:#?}");
        // Nobody answers them, so nothing arrives to reject either.
        assert_eq!(h.rejected_datagrams(), 0);
    }
    assert_eq!(n3.rejected_datagrams(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_badly_tagged_datagrams_change_nothing() {
    let key = cluster_key();
    let (mut n1, n2, n3) = three_nodes_keyed(Some(&key)).await;
    let before = n1.view();

    // Capture a genuine sealed datagram: a keyed node announcing to a raw
    // socket it takes for its seed.
    let raw = UdpSocket::bind(loopback0()).await.expect("bind raw socket");
    let n4 = start_keyed("n4", loopback0(), &[raw.local_addr().unwrap()], Some(&key)).await;
    let mut buf = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(GUARD, raw.recv_from(&mut buf))
        .await
        .expect("n4 announces to its seed")
        .expect("recv");
    n4.abort().await;
    let genuine = buf[..len].to_vec();
    let payload = &genuine[..len - TAG_LEN];
    assert_eq!(key.open(&genuine), Some(payload));

    let mut flipped_tag = genuine.clone();
    *flipped_tag.last_mut().unwrap() ^= 1;
    let mut flipped_payload = genuine.clone();
    flipped_payload[0] ^= 0x80;
    let pseudo_random: Vec<u8> = (0u32..300).map(|i| (i * 7919 % 251) as u8).collect();
    let bad: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![1],
        vec![0; TAG_LEN],
        pseudo_random,
        // Larger than the receive buffer: arrives truncated.
        vec![0xff; 60_000],
        flipped_tag,
        flipped_payload,
        genuine[..len - 1].to_vec(),
        // The genuine payload, untagged (as a node without key sends it)
        // and tagged with another key.
        payload.to_vec(),
        other_key().seal(payload),
    ];
    for datagram in &bad {
        raw.send_to(datagram, n1.local_addr())
            .await
            .expect("send garbage");
    }
    until_rejected(&n1, bad.len() as u64).await;
    // Exactly those: nothing from n2 and n3 was refused.
    assert_eq!(n1.rejected_datagrams(), bad.len() as u64);

    let after = n1.view();
    assert_eq!(after.members, before.members);
    assert!(after.get("n4").is_none());
    // n1's task is still running: it leaves gracefully and the others see it.
    n1.leave().await.expect("n1 still running");
    for h in [&n2, &n3] {
        let mut rx = h.subscribe();
        until(&mut rx, "n1 left", |v| {
            state_of(v, "n1") == Some(MemberState::Left)
        })
        .await;
    }
}
