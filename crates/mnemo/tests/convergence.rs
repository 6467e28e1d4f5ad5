//! Data through returns, joins, leaves and consolidation, with real node
//! processes: every acknowledged write stays visible through every node, and
//! every holder of a space ends with the same copy.

mod support;

use std::collections::BTreeSet;

use mnemo_proto::v1;
use support::{Cluster, eventually, ids};

fn remember(space: &str, id: &str, content: &str) -> v1::RememberRequest {
    support::remember(space, id, content, v1::Ack::Quorum)
}

fn everything(space: &str) -> v1::RecallRequest {
    support::recall_all(space, "note")
}

/// Writes `ids` to `space` through `node` with `ack=quorum`.
async fn write_all(cluster: &Cluster, node: &str, space: &str, ids: &[String]) {
    let mut c = cluster.node(node).client().await;
    for id in ids {
        c.remember(remember(space, id, &format!("note {id}")))
            .await
            .unwrap_or_else(|e| panic!("write {id} through {node}: {e}"));
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Every node answers a routed recall of `space` with all of `expected`.
async fn visible_everywhere(cluster: &Cluster, space: &str, expected: &BTreeSet<String>) {
    for node in &cluster.nodes {
        let got = ids(&node.recall(everything(space)).await);
        let missing: Vec<&String> = expected.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "through {}: {space} lacks {missing:?}",
            node.id
        );
    }
}

/// Every holder's own copy of `space` is exactly `expected`.
async fn on_every_holder(cluster: &Cluster, space: &str, expected: &BTreeSet<String>) {
    cluster.await_converged(&[space.to_owned()]).await;
    for h in cluster.holders(space).await {
        let local = ids(&cluster.node(&h).recall_local(space, "note").await.unwrap());
        assert_eq!(&local, expected, "holder {h} of {space}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_primary_serves_what_was_written_while_it_was_down() {
    let mut cluster = Cluster::start(3).await;
    let space = "journal";
    let primary = cluster.holders(space).await[0].clone();
    let other = cluster.node_other_than(&[&primary]).id.clone();
    let before = names("before-", 20);
    write_all(&cluster, &primary, space, &before).await;

    cluster.node_mut(&primary).kill9();
    // Writes fail over to the next holder at once (no waiting for membership).
    let during = names("during-", 50);
    write_all(&cluster, &other, space, &during).await;

    // From the moment it serves again, every answer it gives is complete:
    // until it has caught up, it refuses and its replicas answer.
    let through = cluster.node(&other).addr.to_string();
    cluster.start_again(&primary, &through);
    let acknowledged: BTreeSet<String> = before.iter().chain(&during).cloned().collect();
    let mut c = cluster.node(&primary).client().await;
    let mut answers = 0;
    while answers < 20 {
        match c.recall(everything(space)).await {
            Ok(r) => {
                let got = ids(&r.into_inner());
                let missing: Vec<&String> = acknowledged.difference(&got).collect();
                assert!(
                    missing.is_empty(),
                    "the returned primary answered without {missing:?}"
                );
                answers += 1;
            }
            // Still joining: it says so, and the client asks again.
            Err(e) => assert!(e.message().contains("joining"), "{e}"),
        }
    }
    cluster.await_formed().await;
    let after = names("after-", 20);
    // Written through the returned primary itself.
    write_all(&cluster, &primary, space, &after).await;

    let expected: BTreeSet<String> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .cloned()
        .collect();
    visible_everywhere(&cluster, space, &expected).await;
    on_every_holder(&cluster, space, &expected).await;

    // Its breaker followed membership back: no node still refuses it.
    for n in &cluster.nodes {
        let s = n.status().await;
        assert!(
            s.breakers.iter().all(|b| b.state != "open"),
            "{}: {:?}",
            n.id,
            s.breakers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_never_answers_with_less_than_was_acknowledged() {
    let mut cluster = Cluster::start(3).await;
    let spaces: Vec<String> = names("tenant-", 12);
    let written: Vec<Vec<String>> = spaces
        .iter()
        .map(|s| names(&format!("{s}-m"), 15))
        .collect();
    for (space, ids) in spaces.iter().zip(&written) {
        write_all(&cluster, "n1", space, ids).await;
    }
    let seed = cluster.nodes[0].addr.to_string();

    // Readers through every node while n4 joins: never fewer than acknowledged.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for node in &cluster.nodes {
        let mut client = node.client().await;
        let (spaces, written, stopped, id) = (
            spaces.clone(),
            written.clone(),
            stopped.clone(),
            node.id.clone(),
        );
        readers.spawn(async move {
            let mut reads = 0u32;
            while !*stopped.borrow() || reads == 0 {
                for (space, acked) in spaces.iter().zip(&written) {
                    let r = client.recall(everything(space)).await;
                    let r = r.unwrap_or_else(|e| panic!("recall {space} via {id}: {e}"));
                    let got = ids(&r.into_inner());
                    let missing: Vec<&String> =
                        acked.iter().filter(|i| !got.contains(*i)).collect();
                    assert!(missing.is_empty(), "{space} via {id} lacks {missing:?}");
                    reads += 1;
                }
            }
            reads
        });
    }
    cluster.join("n4", &seed).await;
    // Writes acknowledged after the join.
    let late: Vec<Vec<String>> = spaces
        .iter()
        .map(|s| names(&format!("{s}-late"), 3))
        .collect();
    for (space, ids) in spaces.iter().zip(&late) {
        write_all(&cluster, "n4", space, ids).await;
    }
    // Until n4 has caught up with everything it holds.
    let n4 = cluster.node("n4");
    eventually("n4 to settle", || async {
        n4.status().await.settled.then_some(())
    })
    .await;
    let _ = stop.send(true);
    while let Some(reads) = readers.join_next().await {
        assert!(reads.unwrap() > 0);
    }

    let mut n4_holds = 0;
    for ((space, ids), late) in spaces.iter().zip(&written).zip(&late) {
        let expected: BTreeSet<String> = ids.iter().chain(late).cloned().collect();
        visible_everywhere(&cluster, space, &expected).await;
        on_every_holder(&cluster, space, &expected).await;
        n4_holds += usize::from(cluster.holders(space).await.contains(&"n4".to_owned()));
    }
    assert!(n4_holds > 0, "n4 became a holder of some spaces");
    // Spaces placement moved away from a node are dropped there, once the
    // holders have them.
    for space in &spaces {
        let holders = cluster.holders(space).await;
        for n in cluster.nodes.iter().filter(|n| !holders.contains(&n.id)) {
            eventually(&format!("{} to hand {space} over", n.id), || async {
                (!n.status().await.spaces.iter().any(|s| &s.name == space)).then_some(())
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_loses_nothing_and_shrinks_the_majority() {
    let mut cluster = Cluster::start(4).await;
    let spaces: Vec<String> = names("team-", 8);
    for space in &spaces {
        write_all(&cluster, "n1", space, &names(&format!("{space}-m"), 10)).await;
    }
    // n1 forwards to n4 over its hop stream, which is still open when n4
    // stops.
    let mut led_by_n4 = None;
    for i in 0.. {
        let space = format!("n4-led-{i}");
        if cluster.locate_everywhere(&space).await.primary.unwrap().id == "n4" {
            led_by_n4 = Some(space);
            break;
        }
    }
    let led_by_n4 = led_by_n4.unwrap();
    write_all(&cluster, "n1", &led_by_n4, &names("via-n1-", 3)).await;
    // n4 leaves on SIGTERM; n3 is decommissioned from the command line.
    let mut n4 = cluster.remove("n4");
    assert!(n4.terminate().success());
    // Once n4 left, the stream ended, so n4 did not wait for it to close.
    assert!(
        !n4.lingered.load(std::sync::atomic::Ordering::SeqCst),
        "n4 waited for connections to close"
    );
    let out = cluster.node("n3").cli(&["decommission", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["node_id"], "n3");
    let mut n3 = cluster.remove("n3");
    assert!(n3.wait_exit().success());

    // Two of four remain, yet they are not a minority: the two that left
    // on purpose no longer count.
    for n in &cluster.nodes {
        eventually(&format!("{} to count 2 members", n.id), || async {
            let s = n.status().await;
            (s.expected_cluster_size == 2 && s.partition == "connected").then_some(())
        })
        .await;
    }
    for space in &spaces {
        let expected: BTreeSet<String> = names(&format!("{space}-m"), 10).into_iter().collect();
        visible_everywhere(&cluster, space, &expected).await;
        on_every_holder(&cluster, space, &expected).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidating_many_tags_replicates_and_writes_keep_flowing() {
    let cluster = Cluster::start(3).await;
    let space = "tagged";
    let primary = cluster.holders(space).await[0].clone();
    let mut c = cluster.node(&primary).client().await;
    for (id, side) in [("a", "left"), ("b", "right")] {
        c.remember(v1::RememberRequest {
            tags: (0..20).map(|i| format!("{side}-{i}")).collect(),
            ..remember(space, id, "the standup moved to ten on mondays")
        })
        .await
        .unwrap();
    }
    let merged = c
        .consolidate(v1::ConsolidateRequest {
            space: space.into(),
            threshold: None,
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.merged.len(), 1, "{merged:?}");
    let merged_id = merged.merged[0].id.clone();
    write_all(&cluster, &primary, space, &names("later-", 5)).await;

    let expected: BTreeSet<String> = std::iter::once(merged_id.clone())
        .chain(names("later-", 5))
        .collect();
    visible_everywhere(&cluster, space, &expected).await;
    on_every_holder(&cluster, space, &expected).await;
    for h in cluster.holders(space).await {
        let local = cluster
            .node(&h)
            .recall_local(space, "standup")
            .await
            .unwrap();
        let m = local
            .memories
            .iter()
            .find_map(|m| m.memory.as_ref().filter(|m| m.id == merged_id))
            .unwrap();
        assert_eq!(m.tags.len(), 32, "capped at the limit on {h}");
        let s = cluster.node(&h).status().await;
        assert!(
            s.replication.iter().all(|p| p.refused == 0),
            "{h}: {:?}",
            s.replication
        );
    }
}

/// Decay through real nodes: a memory nobody recalled for 60 days loses
/// confidence when the primary consolidates, one recalled on a replica
/// does not (its use reaches the primary by anti-entropy), every holder
/// ends with the same copy, and a later recall restores the written
/// confidence everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decay_spares_what_any_holder_recalled_and_replicates() {
    let cluster = Cluster::start(3).await;
    let space = "decaying";
    let holders = cluster.holders(space).await;
    let day = 24 * 60 * 60 * 1000;
    let written_at = mnemo_store::now_ms() - 60 * day;
    // Two memories written 60 days ago, as a peer hands them over.
    let old = |id: &str, content: &str| v1::Element {
        kind: Some(v1::element::Kind::Memory(v1::Memory {
            id: id.into(),
            content: content.into(),
            embedding: mnemo_store::embed::lexical(content),
            written_confidence: Some(0.8),
            created_at_ms: written_at,
            ..Default::default()
        })),
    };
    let addrs: Vec<_> = holders.iter().map(|h| cluster.node(h).addr).collect();
    let elements = [
        old("taxi", "Alice owes Tom 12 euros for the taxi"),
        old("keys", "the car keys are in the blue bowl"),
    ];
    merge_into(&addrs, space, &elements).await;
    // A recall served by a replica's own copy stamps what it returned there
    // (in the background), and anti-entropy carries the stamp to the others.
    let replica = holders[1].clone();
    let found = cluster
        .node(&replica)
        .recall_local(space, "where are the car keys")
        .await
        .unwrap();
    assert_eq!(found.memories[0].memory.as_ref().unwrap().id, "keys");
    eventually("the replica to record the recall", || async {
        let got = copies(&cluster, &replica, space).await;
        got.iter()
            .any(|(id, _, _, at)| id == "keys" && *at != 0)
            .then_some(())
    })
    .await;
    cluster.await_converged(&[space.to_owned()]).await;

    let mut primary = cluster.node(&holders[0]).client().await;
    let consolidate = |dry_run| v1::ConsolidateRequest {
        space: space.into(),
        threshold: None,
        dry_run,
    };
    let plan = primary
        .consolidate(consolidate(true))
        .await
        .unwrap()
        .into_inner();
    let decayed: Vec<&str> = plan.decayed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(decayed, ["taxi"], "only the idle memory decays: {plan:?}");
    // 60 idle days at the default 30-day half-life: a quarter.
    assert!((plan.decayed[0].confidence - 0.2).abs() < 0.01, "{plan:?}");
    let done = primary
        .consolidate(consolidate(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.decayed.len(), 1, "{done:?}");
    every_copy(&cluster, space, [("keys", 0.8), ("taxi", 0.2)]).await;

    // Recalled again (routed to the primary): back to what was written.
    let found = cluster.node(&holders[2]).recall(v1::RecallRequest {
        space: space.into(),
        cue: "how much does Alice owe Tom".into(),
        k: Some(1),
        ..Default::default()
    });
    assert_eq!(found.await.memories[0].memory.as_ref().unwrap().id, "taxi");
    every_copy(&cluster, space, [("keys", 0.8), ("taxi", 0.8)]).await;
}

/// One holder's own copy of `space`: (id, confidence now, written
/// confidence, recalled at), by id.
async fn copies(cluster: &Cluster, holder: &str, space: &str) -> Vec<(String, f32, f32, i64)> {
    let r = cluster.node(holder).list_local(space).await.unwrap();
    r.memories
        .into_iter()
        .map(|m| {
            (
                m.id,
                m.confidence,
                m.written_confidence.unwrap_or(-1.0),
                m.recalled_at_ms,
            )
        })
        .collect()
}

/// Waits until every holder's copy of `space` has exactly `expected`
/// (id, current confidence), each written with 0.8, and they agree.
async fn every_copy(cluster: &Cluster, space: &str, expected: [(&str, f32); 2]) {
    let holders = cluster.holders(space).await;
    eventually(&format!("every holder at {expected:?}"), || async {
        for h in &holders {
            let got = copies(cluster, h, space).await;
            let matches = got.len() == expected.len()
                && got
                    .iter()
                    .zip(&expected)
                    .all(|((id, now, written, _), (want_id, want))| {
                        id == want_id && (now - want).abs() < 0.01 && (written - 0.8).abs() < 1e-6
                    });
            if !matches {
                return None;
            }
        }
        Some(())
    })
    .await;
    cluster.await_converged(&[space.to_owned()]).await;
}

/// No periodic anti-entropy: only reads may repair.
const ONLY_READS_REPAIR: [&str; 4] = [
    "--breaker-open-timeout-ms",
    "500",
    "--anti-entropy-ms",
    "600000",
];

/// A write a quorum acknowledged is on the primary and one replica: the
/// other replica may lack it. When the primary does not answer, a read
/// served in its place by that other replica, whether sent there by
/// another node or served where it arrived, first reconciles with the
/// holders, so the answer still holds the write. A read of a holder's own
/// copy (as this suite's checks make) stays its own copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_the_primarys_place_holds_what_a_quorum_acknowledged() {
    let mut cluster = Cluster::start_exactly(4, &ONLY_READS_REPAIR).await;
    let space = "quorum";
    let holders = cluster.holders(space).await;
    let (primary, first_fallback, other) = (&holders[0], &holders[1], &holders[2]);
    let outsider = cluster
        .node_other_than(&[primary, first_fallback, other])
        .id
        .clone();
    let addr = |h: &String| cluster.node(h).addr;
    let (at_primary, at_other) = (addr(primary), addr(other));
    // Writes as holders other than the first fallback acknowledged them.
    merge_into(&[at_primary, at_other], space, &[note("sent")]).await;
    let own = cluster
        .node(first_fallback)
        .recall_local(space, "note")
        .await
        .unwrap();
    assert!(ids(&own).is_empty(), "its own copy lacks it: {own:?}");

    // The primary dies. A read through a node that holds nothing of the
    // space goes to the first fallback (over its hop stream).
    let dead = primary.clone();
    cluster.node_mut(&dead).kill9();
    let answer = cluster.node(&outsider).recall(everything(space)).await;
    assert_eq!(answer.served_by, *first_fallback, "{answer:?}");
    assert_eq!(
        ids(&answer),
        BTreeSet::from(["sent".to_owned()]),
        "{answer:?}"
    );

    // Another write only `other` has; a read where it arrives, at the first
    // fallback, is served there.
    merge_into(&[at_other], space, &[note("here")]).await;
    let answer = cluster.node(first_fallback).recall(everything(space)).await;
    assert_eq!(answer.served_by, *first_fallback, "{answer:?}");
    assert!(answer.fallback, "{answer:?}");
    let both = BTreeSet::from(["sent".to_owned(), "here".to_owned()]);
    assert_eq!(ids(&answer), both, "{answer:?}");

    // Once membership declares the primary down, the first fallback leads
    // the space in the live view; it still answers in the placed
    // primary's place, and still reconciles first.
    eventually("the primary to be declared down", || async {
        let status = cluster.node(first_fallback).status().await;
        let down = status
            .members
            .iter()
            .any(|m| m.id == dead && m.state == "down");
        down.then_some(())
    })
    .await;
    merge_into(&[at_other], space, &[note("later")]).await;
    let answer = cluster.node(first_fallback).recall(everything(space)).await;
    assert_eq!(answer.served_by, *first_fallback, "{answer:?}");
    let all = BTreeSet::from(["sent".to_owned(), "here".to_owned(), "later".to_owned()]);
    assert_eq!(ids(&answer), all, "{answer:?}");
}

/// A read in the primary's place checks its copy against another holder's
/// by bucket. In a space large enough that holders keep their summaries,
/// a small difference (a memory, a tombstone) is found by comparing
/// summaries, and a difference too large for one answer is reconciled in
/// full; either way the reader's own copy then holds everything the other
/// holder has. Three nodes and no periodic anti-entropy: nothing but the
/// reads moves elements once the primary is gone (no stand-in catches up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_the_primarys_place_pulls_small_and_large_differences() {
    let flags = [&ONLY_READS_REPAIR[..], &["--http", "127.0.0.1:0"]].concat();
    let mut cluster = Cluster::start_exactly(3, &flags).await;
    let space = "large";
    let holders = cluster.holders(space).await;
    let (primary, reader, other) = (&holders[0], &holders[1], &holders[2]);
    let addr = |h: &String| cluster.node(h).addr;
    let (at_primary, at_reader, at_other) = (addr(primary), addr(reader), addr(other));
    let shared: Vec<v1::Element> = (0..12_000).map(|i| note(&format!("s{i}"))).collect();
    for chunk in shared.chunks(2000) {
        merge_into(&[at_primary, at_reader, at_other], space, chunk).await;
    }
    let forgotten = v1::Element {
        kind: Some(v1::element::Kind::Tombstone("s5".into())),
    };
    merge_into(&[at_primary, at_other], space, &[note("one"), forgotten]).await;
    let dead = primary.clone();
    cluster.node_mut(&dead).kill9();
    let reader = cluster.node(reader);
    let compares = |result: &str| {
        let page = support::http_get(reader.http.as_deref().unwrap(), "/metrics");
        let series = format!("mnemo_antientropy_compares_total{{result=\"{result}\"}}");
        support::metric_sum(&page, &series)
    };
    let get = |id: &str| {
        let id = id.to_owned();
        async move {
            let mut c = reader.client().await;
            let got = c
                .get(v1::GetRequest {
                    space: space.into(),
                    id: id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("get {id}: {e}"))
                .into_inner();
            assert_eq!(got.served_by, reader.id, "{got:?}");
            got.memory.map(|m| m.id)
        }
    };
    let memories = || async {
        let status = reader.status().await;
        status
            .spaces
            .iter()
            .find(|s| s.name == space)
            .map(|s| s.memories)
    };

    // A write and a forget the reader lacks: found by comparing summaries.
    assert_eq!(get("one").await.as_deref(), Some("one"));
    assert!(compares("lacking") >= 1.0, "the comparison found them");
    assert!(
        compares("too_different") < 1.0,
        "no full reconciliation yet"
    );
    assert_eq!(memories().await, Some(12_000), "s5 forgotten, one added");

    // Writes the reader lacks in nearly every bucket: more ids than one
    // answer lists, so the copies are reconciled in full.
    let late: Vec<v1::Element> = (0..600).map(|i| note(&format!("late{i}"))).collect();
    merge_into(&[at_other], space, &late).await;
    assert_eq!(get("late0").await.as_deref(), Some("late0"));
    assert!(
        compares("too_different") >= 1.0,
        "the full reconciliation was used"
    );
    assert_eq!(memories().await, Some(12_600));
}

/// A memory "note {id}", as a peer's replication carries it.
fn note(id: &str) -> v1::Element {
    let content = format!("note {id}");
    v1::Element {
        kind: Some(v1::element::Kind::Memory(v1::Memory {
            id: id.into(),
            embedding: mnemo_store::embed::lexical(&content),
            content,
            written_confidence: Some(0.9),
            created_at_ms: 1_700_000_000_000,
            ..Default::default()
        })),
    }
}

/// Merges `elements` into `space` on the nodes at `addrs` only, as a
/// peer's replication would; each applies all of them.
async fn merge_into(addrs: &[std::net::SocketAddr], space: &str, elements: &[v1::Element]) {
    use mnemo_proto::v1::internal_client::InternalClient;
    for addr in addrs {
        let mut internal = InternalClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let merged = internal
            .merge(v1::MergeRequest {
                space: space.into(),
                from_node: "test".into(),
                elements: elements.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            merged.applied as usize,
            elements.len(),
            "{addr}: {merged:?}"
        );
    }
}
