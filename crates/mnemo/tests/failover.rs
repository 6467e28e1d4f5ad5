//! Writes and reads through a primary's death, with real node processes:
//! writes move to the next holder at once, reads stay complete, and a query
//! is partial exactly where no holder is left.

mod support;

use std::collections::BTreeSet;

use mnemo_proto::v1;
use support::{Cluster, ids};

fn remember(space: &str, id: &str) -> v1::RememberRequest {
    support::remember(
        space,
        id,
        &format!("note {id} about the launch"),
        v1::Ack::Quorum,
    )
}

fn everything(space: &str) -> v1::RecallRequest {
    support::recall_all(space, "launch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_survivors_never_fail_when_the_primary_is_killed() {
    let mut cluster = Cluster::start(3).await;
    let space = "orders";
    let mut acked = BTreeSet::new();
    for round in 0..3 {
        let primary = cluster.holders(space).await[0].clone();
        let survivors: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.id != primary)
            .map(|n| n.id.clone())
            .collect();
        // Writers through both survivors, before, across and after the kill.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut writers = tokio::task::JoinSet::new();
        for (w, via) in survivors.iter().enumerate() {
            let mut c = cluster.node(via).client().await;
            let (via, stopped) = (via.clone(), stopped.clone());
            writers.spawn(async move {
                let mut done = Vec::new();
                let mut i = 0;
                while !*stopped.borrow() || i < 40 {
                    let id = format!("r{round}-w{w}-{i}");
                    c.remember(remember(space, &id))
                        .await
                        .unwrap_or_else(|e| panic!("write {id} through {via} failed: {e}"));
                    done.push(id);
                    i += 1;
                }
                done
            });
        }
        cluster.node_mut(&primary).kill9();
        let _ = stop.send(true);
        while let Some(done) = writers.join_next().await {
            acked.extend(done.unwrap());
        }
        cluster.restart(&primary).await;
    }
    cluster.await_converged(&[space.to_owned()]).await;
    for h in cluster.holders(space).await {
        let local = ids(&cluster
            .node(&h)
            .recall_local(space, "launch")
            .await
            .unwrap());
        let missing: Vec<&String> = acked.difference(&local).collect();
        assert!(missing.is_empty(), "{h} lacks {missing:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_the_primary_is_killed_return_every_quorum_write() {
    let mut cluster = Cluster::start(3).await;
    let space = "reads";
    let mut acked = BTreeSet::new();
    for i in 0..30 {
        let via = &cluster.nodes[i % 3];
        let id = format!("q{i}");
        via.client()
            .await
            .remember(remember(space, &id))
            .await
            .unwrap();
        acked.insert(id);
    }
    let primary = cluster.holders(space).await[0].clone();
    cluster.node_mut(&primary).kill9();
    for n in cluster.nodes.iter().filter(|n| n.id != primary) {
        let r = n.recall(everything(space)).await;
        assert_ne!(r.served_by, primary);
        assert_eq!(ids(&r), acked, "through {}", n.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_is_partial_exactly_where_every_holder_is_down() {
    let mut cluster = Cluster::start_with(5, &["--replication-factor", "2"]).await;
    // One space on two nodes, nine others each with a holder elsewhere.
    let lost_space = "team-0".to_owned();
    let victims = cluster.holders(&lost_space).await;
    let mut spaces = vec![lost_space.clone()];
    let mut i = 1;
    while spaces.len() < 10 {
        let s = format!("team-{i}");
        if cluster
            .holders(&s)
            .await
            .iter()
            .any(|h| !victims.contains(h))
        {
            spaces.push(s);
        }
        i += 1;
    }
    let survivor = cluster
        .node_other_than(&victims.iter().map(String::as_str).collect::<Vec<_>>())
        .id
        .clone();
    let mut c = cluster.node(&survivor).client().await;
    for s in &spaces {
        c.remember(remember(s, &format!("{s}-fact"))).await.unwrap();
    }
    for v in &victims {
        cluster.node_mut(v).kill9();
    }
    let query = v1::QueryRequest {
        spaces: spaces.clone(),
        cue: "launch".into(),
        k: Some(100),
        ..Default::default()
    };
    // Right after the kill, and again once membership has declared the
    // victims down (placement then names live nodes that lack the data).
    for when in ["after the kill", "after membership noticed"] {
        let r = c.query(query.clone()).await.unwrap().into_inner();
        assert!(r.partial, "{when}: {r:?}");
        assert_eq!(r.failed_spaces, vec![lost_space.clone()], "{when}");
        let answered: BTreeSet<String> = r.memories.iter().map(|m| m.space.clone()).collect();
        assert_eq!(answered.len(), 9, "{when}: {answered:?}");
        let node = cluster.node(&survivor);
        support::eventually("the victims to be declared down", || async {
            let s = node.status().await;
            victims
                .iter()
                .all(|v| {
                    s.members
                        .iter()
                        .any(|m| &m.id == v && m.state != "alive" && m.state != "suspect")
                })
                .then_some(())
        })
        .await;
    }
}
