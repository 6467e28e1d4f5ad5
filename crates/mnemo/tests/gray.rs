//! Gray failures with real node processes and the default settings: a
//! primary that stops answering (SIGSTOP: alive to TCP, silent to
//! requests) or answers slowly costs clients milliseconds, not the deadline.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use mnemo_proto::v1;
use support::{Cluster, eventually, ids};

/// Every client call carries this deadline: a call that waited for the
/// stalled node instead of moving on would fail with DEADLINE_EXCEEDED.
const CLIENT_DEADLINE: Duration = Duration::from_secs(3);

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CLIENT_DEADLINE);
    request
}

/// Steady load through the `via` nodes: on each, a reader and an
/// `ack=quorum` writer, back to back, every call failing the test if it
/// fails. `acked` counts acknowledged writes; each task returns the ids it
/// wrote.
struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    acked: tokio::sync::watch::Receiver<usize>,
    tasks: tokio::task::JoinSet<BTreeSet<String>>,
}

async fn start_load(cluster: &Cluster, space: &'static str, via: &[String]) -> Load {
    let others = via;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (acked_tx, acked) = tokio::sync::watch::channel(0usize);
    let mut load = tokio::task::JoinSet::new();
    // A reader and a writer (ack=quorum) through each of the other nodes.
    for (w, via) in others.iter().enumerate() {
        let mut reader = cluster.node(via).client().await;
        let mut writer = reader.clone();
        let (stopped_r, stopped_w, acked_tx, via_r, via_w) = (
            stopped.clone(),
            stopped.clone(),
            acked_tx.clone(),
            via.clone(),
            via.clone(),
        );
        load.spawn(async move {
            let mut written = BTreeSet::new();
            let mut i = 0;
            while !*stopped_w.borrow() {
                let id = format!("w{w}-{i}");
                writer
                    .remember(timed(support::remember(
                        space,
                        &id,
                        &format!("note {id}"),
                        v1::Ack::Quorum,
                    )))
                    .await
                    .unwrap_or_else(|e| panic!("write {id} through {via_w}: {e}"));
                written.insert(id);
                acked_tx.send_modify(|n| *n += 1);
                i += 1;
            }
            written
        });
        load.spawn(async move {
            while !*stopped_r.borrow() {
                reader
                    .recall(timed(support::recall_all(space, "note")))
                    .await
                    .unwrap_or_else(|e| panic!("recall through {via_r}: {e}"));
            }
            BTreeSet::new()
        });
    }
    Load {
        stop,
        acked,
        tasks: load,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_primary_is_invisible_to_clients() {
    let cluster = Cluster::start(3).await;
    let space = "stall";
    let primary = cluster.holders(space).await[0].clone();
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != primary)
        .map(|n| n.id.clone())
        .collect();
    let Load {
        stop,
        mut acked,
        tasks: mut load,
    } = start_load(&cluster, space, &others).await;
    let more = |acked: &mut tokio::sync::watch::Receiver<usize>, n: usize| {
        let target = *acked.borrow_and_update() + n;
        let mut acked = acked.clone();
        async move {
            eventually(&format!("{n} more writes"), || {
                std::future::ready((*acked.borrow_and_update() >= target).then_some(()))
            })
            .await;
        }
    };
    more(&mut acked, 50).await;
    cluster.node(&primary).signal("STOP");
    // Load goes on until membership has declared the stalled node down
    // (routing moved long before), and some more.
    for n in others.iter().map(|id| cluster.node(id)) {
        eventually(&format!("{} to see {primary} down", n.id), || async {
            let s = n.status().await;
            s.members
                .iter()
                .any(|m| m.id == primary && m.state == "down")
                .then_some(())
        })
        .await;
    }
    more(&mut acked, 50).await;
    cluster.node(&primary).signal("CONT");
    more(&mut acked, 50).await;
    let _ = stop.send(true);
    let mut written = BTreeSet::new();
    while let Some(w) = load.join_next().await {
        written.extend(w.unwrap());
    }
    // It serves again: it rejoined, caught up, and answers as primary.
    cluster.await_formed().await;
    let mut c = cluster.node(&others[0]).client().await;
    eventually(&format!("{primary} to serve {space} again"), || {
        let mut c = c.clone();
        let primary = primary.clone();
        async move {
            let r = c
                .recall(support::recall_all(space, "note"))
                .await
                .ok()?
                .into_inner();
            (r.served_by == primary && !r.fallback).then_some(())
        }
    })
    .await;
    cluster.await_converged(&[space.to_owned()]).await;
    let r = c
        .recall(support::recall_all(space, "note"))
        .await
        .unwrap()
        .into_inner();
    let seen = ids(&r);
    let missing: Vec<&String> = written.difference(&seen).collect();
    assert!(missing.is_empty(), "the returned primary lacks {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_move_to_faster_replicas_of_a_slow_primary() {
    let mut cluster = Cluster::start(3).await;
    let space = "slowpoke";
    let primary = cluster.holders(space).await[0].clone();
    let entry = cluster.node_other_than(&[&primary]).id.clone();
    let mut c = cluster.node(&entry).client().await;
    for i in 0..10 {
        c.remember(support::remember(
            space,
            &format!("m{i}"),
            "a note",
            v1::Ack::Quorum,
        ))
        .await
        .unwrap();
    }
    // The primary comes back slow: every request it serves waits 300 ms.
    cluster.node_mut(&primary).kill9();
    let through = cluster.node(&entry).addr.to_string();
    cluster.start_again_with(&primary, &through, &["--inject-latency-ms", "300"]);
    cluster.await_formed().await;
    // The entry node learns how slow it is, and stops asking it first.
    let node = cluster.node(&entry);
    eventually(&format!("{entry} to judge {primary} slow"), || {
        let mut c = c.clone();
        let primary = &primary;
        async move {
            let _ = c.recall(support::recall_all(space, "note")).await;
            let s = node.status().await;
            s.breakers
                .iter()
                .any(|b| b.node == *primary && b.slow)
                .then_some(())
        }
    })
    .await;
    let mut by_primary = 0;
    for _ in 0..32 {
        let r = c
            .recall(support::recall_all(space, "note"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ids(&r).len(), 10);
        by_primary += u32::from(r.served_by == primary);
    }
    // Hedging answers the occasional probe of the slow primary from a
    // replica too.
    assert_eq!(
        by_primary, 0,
        "the slow primary answered {by_primary} of 32 reads"
    );
}

/// A peer whose view of placement differs from the entry node's refuses the
/// reads sent to it ("not a holder"): however many, they never count
/// against its breaker, and every read is still answered. The views differ
/// for good here: the peer runs with replication factor 1, so it holds only
/// the spaces it leads, while the entry node counts it among the three
/// holders of every space. The primary comes back slow, so the entry node
/// asks the peer before it (or hedges to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refusing_forwarded_reads_never_has_its_breaker_opened() {
    let mut cluster = Cluster::start(3).await;
    let space = "differing";
    let holders = cluster.holders(space).await;
    let (primary, peer, entry) = (holders[0].clone(), holders[1].clone(), holders[2].clone());
    let mut c = cluster.node(&entry).client().await;
    for i in 0..5 {
        c.remember(support::remember(
            space,
            &format!("m{i}"),
            "a note",
            v1::Ack::Quorum,
        ))
        .await
        .unwrap();
    }
    let through = cluster.node(&entry).addr.to_string();
    cluster.node_mut(&peer).kill9();
    cluster.start_again_with(
        &peer,
        &through,
        &["--replication-factor", "1", "--http", "127.0.0.1:0"],
    );
    cluster.node_mut(&primary).kill9();
    cluster.start_again_with(&primary, &through, &["--inject-latency-ms", "300"]);
    cluster.await_formed().await;

    // Read until the peer has refused more reads than it takes faults to
    // open a breaker (5), twice over.
    let peer_node = cluster.node(&peer);
    let refused = || {
        let page = support::http_get(peer_node.http.as_deref().unwrap(), "/metrics");
        support::requests_counted(&page, "recall", "serve", "unavailable")
    };
    eventually(&format!("{peer} to refuse ten reads"), || {
        let mut c = c.clone();
        let peer = &peer;
        let refused = &refused;
        async move {
            let r = c
                .recall(support::recall_all(space, "note"))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(ids(&r).len(), 5, "every read is answered in full");
            assert_ne!(&r.served_by, peer, "the peer holds none of it");
            (refused() >= 10.0).then_some(())
        }
    })
    .await;
    let s = cluster.node(&entry).status().await;
    let b = s.breakers.iter().find(|b| b.node == peer).unwrap();
    assert_eq!(
        (b.state.as_str(), b.consecutive_failures),
        ("closed", 0),
        "{entry}'s breaker for {peer}"
    );
}

/// A primary that stalls (SIGSTOP) while reads are forwarded to it over the
/// entry node's hop stream, and resumes after the callers' time ran out:
/// the reads are answered by the replicas meanwhile, and the primary
/// answers the stale backlog as late (`DEADLINE_EXCEEDED`) instead of
/// serving it, as a unary call reset by its caller would never have been.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_peer_does_not_serve_the_reads_it_was_sent_while_stalled() {
    let cluster = Cluster::start_with(3, &["--http", "127.0.0.1:0"]).await;
    let space = "stalled";
    let holders = cluster.holders(space).await;
    let (primary, entry) = (cluster.node(&holders[0]), cluster.node(&holders[1]));
    let mut c = entry.client().await;
    c.remember(support::remember(space, "m", "a note", v1::Ack::Quorum))
        .await
        .unwrap();
    let read = || {
        // k = 10: a recall that travels on the hop stream (k <= 100).
        let recall = v1::RecallRequest {
            k: Some(10),
            ..support::recall_all(space, "note")
        };
        let mut request = tonic::Request::new(recall);
        request.set_timeout(Duration::from_millis(300));
        request
    };
    // Through the entry node, over its hop stream to the primary (a read
    // may fall back to a replica on a busy machine: read until the
    // primary has served a few).
    let by_primary = std::sync::atomic::AtomicUsize::new(0);
    eventually("the primary to serve reads forwarded to it", || {
        let mut c = c.clone();
        let request = read();
        let (primary, by_primary) = (primary.id.clone(), &by_primary);
        async move {
            let r = c.recall(request).await.ok()?.into_inner();
            let own = usize::from(r.served_by == primary);
            let served = by_primary.fetch_add(own, std::sync::atomic::Ordering::SeqCst) + own;
            (served >= 5).then_some(())
        }
    })
    .await;
    let counted = |outcome: &str| {
        let page = support::http_get(primary.http.as_deref().unwrap(), "/metrics");
        support::requests_counted(&page, "recall", "serve", outcome)
    };
    let served_before = counted("ok");

    primary.signal("STOP");
    primary.await_stopped().await;
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let mut c = c.clone();
            let request = read();
            tokio::spawn(async move { c.recall(request).await })
        })
        .collect();
    for read in reads {
        let r = read.await.unwrap().expect("a replica answers");
        assert_ne!(r.into_inner().served_by, primary.id);
    }
    // Waiting out the reads' 300 ms on the wall clock, with room for the
    // warm-up reads to have been slow: then every one the primary was sent
    // is stale.
    tokio::time::sleep(Duration::from_secs(1)).await;
    primary.signal("CONT");

    let late = eventually("the primary to answer its backlog", || async {
        let late = counted("deadline_exceeded");
        (late >= 1.0).then_some(late)
    })
    .await;
    assert!(
        (counted("ok") - served_before).abs() < 0.5,
        "the primary served reads whose time had run out ({late} answered late)"
    );
}
