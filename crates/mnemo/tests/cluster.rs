//! Three real node processes on loopback: membership from seeds, routing
//! through any node, replication, read fallback after SIGKILL, breakers and
//! the forwarding marker.

mod support;

use mnemo_proto::v1;
use std::collections::{BTreeMap, HashSet};
use support::{Cluster, eventually};
use tokio_stream::StreamExt;
use tonic::Code;

fn remember(space: &str, id: &str, content: &str, ack: v1::Ack) -> v1::RememberRequest {
    v1::RememberRequest {
        space: space.into(),
        id: id.into(),
        content: content.into(),
        ack: ack as i32,
        ..Default::default()
    }
}

fn recall(space: &str, cue: &str) -> v1::RecallRequest {
    v1::RecallRequest {
        space: space.into(),
        cue: cue.into(),
        k: Some(100),
        ..Default::default()
    }
}

fn ids(r: &v1::RecallResponse) -> HashSet<String> {
    r.memories
        .iter()
        .map(|m| m.memory.as_ref().unwrap().id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_routes_to_the_primary_and_locate_agrees() {
    let cluster = Cluster::start(3).await;
    let placement = cluster.locate_everywhere("notes").await;
    let primary = placement.primary.clone().unwrap().id;
    assert_eq!(placement.replicas.len(), 2);

    let entry = cluster.node_other_than(&[&primary]);
    let written = entry
        .client()
        .await
        .remember(remember(
            "notes",
            "m1",
            "standup moved to ten",
            v1::Ack::Primary,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        written.served_by, primary,
        "the write landed on the primary"
    );

    for node in &cluster.nodes {
        let r = node
            .client()
            .await
            .recall(recall("notes", "when is standup"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ids(&r),
            HashSet::from(["m1".to_string()]),
            "via {}",
            node.id
        );
        assert_eq!(r.served_by, primary);
        assert!(!r.fallback);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_writes_are_on_a_replica_when_acknowledged() {
    let cluster = Cluster::start(3).await;
    let placement = cluster.locate_everywhere("ledger").await;
    let replicas: Vec<String> = placement.replicas.iter().map(|n| n.id.clone()).collect();

    let mut c = cluster.nodes[0].client().await;
    for i in 0..20 {
        c.remember(remember(
            "ledger",
            &format!("q{i}"),
            &format!("entry {i}"),
            v1::Ack::Quorum,
        ))
        .await
        .unwrap();
        // Right after the acknowledgement, a majority of the replica set
        // (the primary and at least one replica) holds the write.
        let mut holders = 0;
        for r in &replicas {
            let local = cluster
                .node(r)
                .recall_local("ledger", "entry")
                .await
                .unwrap();
            holders += usize::from(ids(&local).contains(&format!("q{i}")));
        }
        assert!(
            holders >= 1,
            "write q{i} acknowledged with quorum but on no replica"
        );
    }

    c.remember(remember(
        "ledger",
        "p1",
        "primary-acked entry",
        v1::Ack::Primary,
    ))
    .await
    .unwrap();
    for r in &replicas {
        cluster.node(r).await_memories("ledger", 21).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_falls_back_when_the_primary_is_killed() {
    let mut cluster = Cluster::start(3).await;
    let placement = cluster.locate_everywhere("diary").await;
    let primary = placement.primary.unwrap().id;
    let entry_id = cluster.node_other_than(&[&primary]).id.clone();

    let mut c = cluster.node(&entry_id).client().await;
    c.remember(remember(
        "diary",
        "d1",
        "the first diary entry",
        v1::Ack::Quorum,
    ))
    .await
    .unwrap();
    for r in &placement.replicas {
        cluster.node(&r.id).await_memories("diary", 1).await;
    }

    cluster.node_mut(&primary).kill9();
    let r = c
        .recall(recall("diary", "diary entry"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.fallback, "answered by a replica: {r:?}");
    assert_ne!(r.served_by, primary);
    assert_eq!(ids(&r), HashSet::from(["d1".to_string()]));

    // The dead node's breaker opens (or membership drops it); from then on
    // requests do not dial it.
    let entry = cluster.node(&entry_id);
    let opened = entry.await_not_dialing(&primary, "diary", &mut c).await;
    eprintln!("breaker for {primary} opened before membership dropped it: {opened}");
    let failures_before = entry.breaker_failures(&primary).await;
    for _ in 0..20 {
        let r = c
            .recall(recall("diary", "diary entry"))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(r.served_by, primary);
        assert_eq!(ids(&r), HashSet::from(["d1".to_string()]));
    }
    let failures_after = entry.breaker_failures(&primary).await;
    // An open breaker rejects without calling; at most the one half-open
    // probe may have gone out if the open timeout passed during the loop.
    assert!(
        failures_after.unwrap_or(0) <= failures_before.unwrap_or(0) + 1,
        "requests dialled the dead node: {failures_before:?} -> {failures_after:?}"
    );

    // Restart: it rejoins and its breaker closes again.
    // Restart: it rejoins, and a breaker that opened closes again, which
    // it can only do through a successful half-open probe.
    cluster.restart(&primary).await;
    let mut c = cluster.node(&entry_id).client().await;
    if opened {
        cluster
            .node(&entry_id)
            .await_breaker(&primary, "closed", &mut c)
            .await;
    }
    let r = c
        .recall(recall("diary", "diary entry"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&r), HashSet::from(["d1".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_never_forwarded_again() {
    let cluster = Cluster::start_with(3, &["--replication-factor", "2"]).await;
    let placement = cluster.locate_everywhere("loop").await;
    let primary = placement.primary.unwrap().id;
    let holders: Vec<&str> = std::iter::once(primary.as_str())
        .chain(placement.replicas.iter().map(|n| n.id.as_str()))
        .collect();
    let other = cluster.node_other_than(&holders);

    // A write marked as forwarded reaching a node that does not hold the
    // space is refused, not bounced onwards.
    let mut request = tonic::Request::new(remember("loop", "x", "text", v1::Ack::Primary));
    request
        .metadata_mut()
        .insert(mnemo_proto::FORWARDED_BY, "elsewhere".parse().unwrap());
    let status = other.client().await.remember(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("loop"),
        "names the space: {status:?}"
    );

    // A recall marked as forwarded for a space the node holds is served there.
    cluster
        .node(&primary)
        .client()
        .await
        .remember(remember("loop", "y", "looping text", v1::Ack::Quorum))
        .await
        .unwrap();
    for r in &placement.replicas {
        cluster.node(&r.id).await_memories("loop", 1).await;
        let local = cluster
            .node(&r.id)
            .recall_local("loop", "looping")
            .await
            .unwrap();
        assert_eq!(local.served_by, r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_is_complete_with_one_node_killed() {
    let mut cluster = Cluster::start(3).await;
    let spaces: Vec<String> = (0..10).map(|i| format!("team-{i}")).collect();
    let mut c = cluster.nodes[0].client().await;
    for s in &spaces {
        c.remember(remember(
            s,
            &format!("{s}-fact"),
            &format!("the launch date of {s}"),
            v1::Ack::Quorum,
        ))
        .await
        .unwrap();
    }
    for s in &spaces {
        for n in &cluster.nodes {
            n.await_memories(s, 1).await;
        }
    }
    let victim = cluster.nodes[2].id.clone();
    cluster.node_mut(&victim).kill9();
    let mut c = cluster.nodes[0].client().await;
    let r = c
        .query(v1::QueryRequest {
            spaces: spaces.clone(),
            cue: "launch date".into(),
            k: Some(100),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !r.partial,
        "every space has a live replica: {:?}",
        r.failures
    );
    let found: BTreeMap<String, usize> = r.memories.iter().fold(BTreeMap::new(), |mut m, x| {
        *m.entry(x.space.clone()).or_default() += 1;
        m
    });
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(r.memories.windows(2).all(|w| w[0].score >= w[1].score));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_members_and_cli_json_contract() {
    let cluster = Cluster::start(3).await;
    let out = cluster.nodes[1].cli(&["status", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node_id"], cluster.nodes[1].id);
    assert_eq!(v["partition"], "connected");
    assert_eq!(v["members"].as_array().unwrap().len(), 3);
    assert!(v["breakers"].is_array());

    let out = cluster.nodes[2].cli(&["locate", "--space", "x", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["primary"].is_string());
    assert_eq!(v["replicas"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_in_a_minority_serves_only_what_it_holds_degraded() {
    let mut cluster = Cluster::start_with(3, &["--replication-factor", "2"]).await;
    let spaces: Vec<String> = (0..12).map(|i| format!("team-{i}")).collect();
    let mut c = cluster.nodes[0].client().await;
    for s in &spaces {
        c.remember(remember(
            s,
            "fact",
            &format!("the budget of {s}"),
            v1::Ack::Quorum,
        ))
        .await
        .unwrap();
    }
    // Which spaces the survivor holds, as placed over the whole cluster.
    let survivor = cluster.nodes[0].id.clone();
    let mut held = Vec::new();
    for s in &spaces {
        let p = cluster.locate_everywhere(s).await;
        let on: Vec<String> = p
            .primary
            .iter()
            .chain(&p.replicas)
            .map(|n| n.id.clone())
            .collect();
        if on.contains(&survivor) {
            cluster.node(&survivor).await_memories(s, 1).await;
            held.push(s.clone());
        }
    }
    assert!(
        !held.is_empty() && held.len() < spaces.len(),
        "RF 2 of 3: {held:?}"
    );

    for victim in ["n2", "n3"] {
        cluster.node_mut(victim).kill9();
    }
    let node = cluster.node(&survivor);
    support::eventually("the survivor to see itself partitioned", || async {
        (node.status().await.partition == "partitioned").then_some(())
    })
    .await;

    let mut c = node.client().await;
    for s in &spaces {
        let answer = c.recall(recall(s, "budget")).await;
        if held.contains(s) {
            let r = answer.unwrap().into_inner();
            assert!(r.degraded, "{s}: {r:?}");
            assert_eq!(r.served_by, survivor);
            let confidence = r.memories[0].memory.as_ref().unwrap().confidence;
            assert!(confidence < 1.0, "penalised confidence: {confidence}");
        } else {
            let status = answer.unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "{s}");
            assert!(
                status.message().contains("no local data")
                    && status.message().contains("during partition"),
                "{status:?}"
            );
        }
    }
    // Writes to a held space are accepted locally during the partition.
    let w = c
        .remember(remember(
            &held[0],
            "late",
            "written in the minority",
            v1::Ack::Primary,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.served_by, survivor);
    // A quorum write cannot be acknowledged by a node cut off from its replicas.
    let q = c
        .remember(remember(
            &held[0],
            "late-q",
            "quorum in the minority",
            v1::Ack::Quorum,
        ))
        .await
        .unwrap_err();
    assert_eq!(q.code(), Code::Unavailable);
    assert!(q.message().contains("quorum"), "{q:?}");
}

/// `mnemo cluster`: every member's view in one table; exit 0 while the
/// cluster is healthy, 2 (with the problem named) once a member is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mnemo_cluster_tells_healthy_from_unhealthy() {
    let mut cluster = Cluster::start(3).await;
    let out = cluster.nodes[0].cli(&["cluster", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["healthy"], true, "{report}");
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(
        nodes
            .iter()
            .all(|n| n["reachable"] == true && n["view_agrees"] == true),
        "{report}"
    );
    let table = cluster.nodes[1].cli(&["cluster"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("healthy"));

    cluster.node_mut("n3").kill9();
    let asked = cluster.node("n1");
    let report = eventually("mnemo cluster to report n3", || {
        let out = asked.cli(&["cluster", "--json", "--timeout", "1000"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let n3 = report["problems"].as_array().is_some_and(|p| {
            p.iter()
                .any(|x| x.as_str().unwrap_or_default().contains("n3"))
        });
        std::future::ready((n3 && out.status.code() == Some(2)).then_some(report))
    })
    .await;
    assert_eq!(report["healthy"], false, "{report}");
}

/// A second node started with an id that a live node already has stops
/// with a clear error; the first keeps its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_node_id_is_refused() {
    let cluster = Cluster::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = cluster.node("n2").addr.to_string();
    let mut twin = support::mnemo()
        .args([
            "node",
            "--id",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--join",
            &seed,
        ])
        .args(support::TEST_NODE_FLAGS)
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The guard only turns a hang into a failure.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = twin.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = twin.kill();
            panic!("the twin kept running");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut twin.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("\"n1\" is already used by the node at")
            && stderr.contains(&cluster.node("n1").addr.to_string()),
        "{stderr}"
    );
    // The first n1 is still n1, where it was, alive in n2's view.
    let n1_addr = cluster.node("n1").addr.to_string();
    eventually("n2 to see the first n1 again", || async {
        let status = cluster.node("n2").status().await;
        status
            .members
            .iter()
            .any(|m| m.id == "n1" && m.addr == n1_addr && m.state == "alive")
            .then_some(())
    })
    .await;
    let mine = cluster.node("n1").status().await;
    assert_eq!(mine.node_id, "n1");
}

/// A `RememberStream` through one node: every request is answered in the
/// order sent, with its position; good ones land on their space's primary
/// (forwarded when the entry node is not it) and replicate like unary
/// writes; a bad one is answered with its own error naming the field, and
/// the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remember_stream_answers_each_request_in_order_and_routes_each() {
    let cluster = Cluster::start(3).await;
    let spaces: Vec<String> = (0..6).map(|i| format!("stream-{i}")).collect();
    let mut primary_of = BTreeMap::new();
    let mut holders_of = BTreeMap::new();
    for space in &spaces {
        let placement = cluster.locate_everywhere(space).await;
        primary_of.insert(space.clone(), placement.primary.unwrap().id);
        holders_of.insert(space.clone(), cluster.holders(space).await);
    }
    let entry = &cluster.nodes[0];
    assert!(
        primary_of.values().any(|p| *p != entry.id),
        "some space must be forwarded from {}: {primary_of:?}",
        entry.id
    );

    // One at a time: each lands on its space's primary.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut one_by_one = entry
        .client()
        .await
        .remember_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for space in &spaces {
        tx.send(remember(space, "first", "the first fact", v1::Ack::Primary))
            .await
            .unwrap();
        let answer = one_by_one.message().await.unwrap().expect("an answer");
        let Some(v1::remember_stream_response::Outcome::Remembered(r)) = answer.outcome else {
            panic!("{space}: {answer:?}");
        };
        assert_eq!(r.served_by, primary_of[space], "{space}: not the primary");
    }
    drop(tx);
    assert!(
        one_by_one.message().await.unwrap().is_none(),
        "the stream ends"
    );

    // Sent all at once, without waiting: more than the node handles at a
    // time, so answers finish out of order and must still come in order.
    // Under load a write may land on the next holder, as a unary one may
    // (its primary silent past the attempt timeout).
    let mut requests = Vec::new();
    for i in 0..150 {
        let space = &spaces[i % spaces.len()];
        let ack = if i % 3 == 0 {
            v1::Ack::Quorum
        } else {
            v1::Ack::Primary
        };
        let mut r = remember(space, &format!("m{i}"), &format!("stream fact {i}"), ack);
        if i % 25 == 7 {
            r.content = String::new(); // refused: content must not be empty
        }
        requests.push(r);
    }
    let sent = requests.len();
    let answers: Vec<v1::RememberStreamResponse> = entry
        .client()
        .await
        .remember_stream(tokio_stream::iter(requests.clone()))
        .await
        .unwrap()
        .into_inner()
        .map(|a| a.expect("no stream error"))
        .collect()
        .await;
    assert_eq!(answers.len(), sent, "one answer per request");
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for (seq, (answer, request)) in answers.iter().zip(&requests).enumerate() {
        assert_eq!(answer.seq, seq as u64, "answers come in the order sent");
        match answer.outcome.as_ref().expect("an outcome") {
            v1::remember_stream_response::Outcome::Remembered(r) => {
                assert!(
                    !request.content.is_empty(),
                    "{seq}: an empty content was taken"
                );
                assert_eq!((&r.id, &r.space), (&request.id, &request.space));
                assert!(
                    holders_of[&request.space].contains(&r.served_by),
                    "{seq}: {} holds no copy of {}",
                    r.served_by,
                    request.space
                );
                *expected.entry(request.space.clone()).or_default() += 1;
            }
            v1::remember_stream_response::Outcome::Error(e) => {
                assert!(
                    request.content.is_empty(),
                    "{seq}: a good request failed: {e:?}"
                );
                assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}");
                assert!(e.message.contains("content"), "the field is named: {e:?}");
            }
        }
    }
    // What was acknowledged is on every holder, as for unary writes (with
    // the first fact of each space).
    cluster.await_converged(&spaces).await;
    for (space, n) in &expected {
        for holder in &holders_of[space] {
            let got = cluster.node(holder).list_local(space).await.unwrap();
            assert_eq!(got.memories.len(), n + 1, "{holder} holds {space}");
        }
    }
}

/// A forwarded recall whose answer is over the message limit fails alone,
/// with RESOURCE_EXHAUSTED, as it would as a call of its own: the other
/// calls forwarded to the same peer at the same time are answered. (Sent,
/// the answer would end the stream: every call on it would fail as if the
/// peer were down, and this one with UNAVAILABLE.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_forwarded_answer_fails_alone() {
    let cluster = Cluster::start(3).await;
    let space = "big-notes";
    let primary = cluster.locate_everywhere(space).await.primary.unwrap().id;
    let mut at_primary = cluster.node(&primary).client().await;
    // 80 memories of 60 kB: 4.8 MB together, over the 4 MiB limit.
    for i in 0..80 {
        let content = format!("note {i} {}", "x".repeat(60_000));
        at_primary
            .remember(remember(space, &format!("b{i}"), &content, v1::Ack::Quorum))
            .await
            .unwrap();
    }
    at_primary
        .remember(remember(space, "small", "a small note", v1::Ack::Quorum))
        .await
        .unwrap();
    let entry = cluster.node_other_than(&[&primary]);
    let big = v1::RecallRequest {
        k: Some(100),
        include_unmatched: true,
        ..recall(space, "note")
    };
    let small = v1::RecallRequest {
        k: Some(1),
        ..recall(space, "small")
    };
    let (mut c1, mut c2) = (entry.client().await, entry.client().await);
    let (big, small) = tokio::join!(c1.recall(big), c2.recall(small));
    let e = big.expect_err("the answer is over the limit");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let small = small.expect("the other call is answered").into_inner();
    assert_eq!(small.memories[0].memory.as_ref().unwrap().id, "small");
}

/// Nodes whose connections are served by threads of their own (each with
/// its own hop streams to its peers) write, forward and answer, and stop
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_serving_threads_route_forward_and_stop() {
    route_forward_and_stop("2", &["mnemo-serve-1", "mnemo-serve-2"]).await;
}

/// The same on nodes whose one multi-threaded runtime serves every
/// connection (`--serving-threads 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_one_shared_runtime_route_forward_and_stop() {
    route_forward_and_stop("0", &[]).await;
}

/// Four nodes with `--serving-threads threads`, which run the serving
/// threads named `expected`: writes and reads forwarded through a node
/// that holds nothing of a space, reads through every node, a clean stop.
async fn route_forward_and_stop(threads: &str, expected: &[&str]) {
    let mut cluster = Cluster::start_with(4, &["--serving-threads", threads]).await;
    for node in &cluster.nodes {
        let mut names: Vec<String> = node
            .thread_names()
            .into_iter()
            .filter(|n| n.starts_with("mnemo-serve"))
            .collect();
        names.sort();
        assert_eq!(names, expected, "{}", node.id);
    }
    for i in 0..4 {
        let space = format!("threads-{i}");
        let holders = cluster.holders(&space).await;
        let outsider = cluster
            .nodes
            .iter()
            .find(|n| !holders.contains(&n.id))
            .expect("4 nodes, 3 holders");
        // Written through the node that holds nothing of it: forwarded.
        let mut c = outsider.client().await;
        for j in 0..4 {
            c.remember(support::remember(
                &space,
                &format!("m-{j}"),
                &format!("line {j} of {space}"),
                v1::Ack::Quorum,
            ))
            .await
            .unwrap_or_else(|e| panic!("write {j} to {space} through {}: {e}", outsider.id));
        }
        // Read through every node on several connections, which the
        // nodes hand to different threads.
        for node in &cluster.nodes {
            for _ in 0..3 {
                let r = node.recall(support::recall_all(&space, "line")).await;
                assert_eq!(
                    support::ids(&r).len(),
                    4,
                    "{space} through {}: {r:?}",
                    node.id
                );
                assert!(
                    holders.contains(&r.served_by),
                    "{space} through {} served by {}, not a holder {holders:?}",
                    node.id,
                    r.served_by
                );
            }
        }
    }
    let mut n4 = cluster.remove("n4");
    assert!(n4.terminate().success(), "n4 stops on SIGTERM");
    assert!(
        !n4.lingered.load(std::sync::atomic::Ordering::SeqCst),
        "n4 waited for connections to close"
    );
}
