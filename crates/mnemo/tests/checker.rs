//! The consistency checker: concurrent writers (`ack=quorum`, unique ids,
//! some forgets) through every node, while primaries are SIGKILLed and
//! restarted, round after round; then quiescence, and every holder's copy of
//! every space read on its own and compared with what was acknowledged.
//!
//! Verdicts:
//! - **lost**: a write acknowledged (and never forgotten) that a routed read
//!   through some node, or some holder's own copy, lacks;
//! - **resurrected**: an id whose forget was acknowledged, present anywhere;
//! - **divergent**: an id some holders of a space have and others lack.
//!
//! A write or forget that failed is *indeterminate*: it may or may not have
//! landed, but every holder must agree on it. On any failure the whole operation
//! history is written as JSON lines under the test's temporary directory
//! and its path is printed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mnemo_proto::v1;
use support::Cluster;
use tokio::sync::watch;

const SPACES: usize = 6;
const WRITERS: usize = 4;
const ROUNDS: usize = 4;
/// Acknowledged writes awaited in each phase (node down, node back).
const WRITES_PER_PHASE: usize = 120;

#[derive(Debug, Clone, serde::Serialize)]
struct Op {
    at_ms: u64,
    writer: usize,
    via: String,
    kind: &'static str,
    space: String,
    id: String,
    /// "ok", or the error.
    result: String,
}

#[derive(Default)]
struct History {
    ops: Vec<Op>,
    acked: BTreeMap<String, BTreeSet<String>>,
    forgotten: BTreeMap<String, BTreeSet<String>>,
    /// Every id a forget was sent for, acknowledged or not.
    forget_sent: BTreeMap<String, BTreeSet<String>>,
}

fn space(i: usize) -> String {
    format!("check-{i}")
}

/// One writer: remembers unique ids through the nodes in turn, and forgets
/// one of its own acknowledged ids now and then, until told to stop.
async fn writer(
    w: usize,
    nodes: Vec<(String, String)>,
    history: Arc<Mutex<History>>,
    acked: watch::Sender<usize>,
    stop: watch::Receiver<bool>,
    start: Instant,
) {
    let mut clients = Vec::new();
    for (id, addr) in &nodes {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        clients.push((id.clone(), v1::mnemo_client::MnemoClient::new(channel)));
    }
    let mut mine: Vec<(String, String)> = Vec::new();
    let mut i = 0usize;
    while !*stop.borrow() {
        i += 1;
        let (via, client) = &mut clients[i % nodes.len()];
        let s = space((i * 7 + w) % SPACES);
        let forget = i.is_multiple_of(10) && !mine.is_empty();
        let (kind, id, result) = if forget {
            let (s2, id) = mine.swap_remove(i % mine.len());
            let mut request = tonic::Request::new(v1::ForgetRequest {
                space: s2.clone(),
                id: id.clone(),
                ack: v1::Ack::Quorum as i32,
            });
            request.set_timeout(std::time::Duration::from_secs(5));
            let r = client.forget(request).await.map(|_| ());
            ("forget", (s2, id), r)
        } else {
            let id = format!("w{w}-{i}");
            let mut request = tonic::Request::new(v1::RememberRequest {
                space: s.clone(),
                id: id.clone(),
                content: format!("note {id} from writer {w}"),
                ack: v1::Ack::Quorum as i32,
                ..Default::default()
            });
            request.set_timeout(std::time::Duration::from_secs(5));
            let r = client.remember(request).await.map(|_| ());
            ("remember", (s, id), r)
        };
        let (space, id) = id;
        let ok = result.is_ok();
        {
            let mut h = history.lock().unwrap();
            h.ops.push(Op {
                at_ms: start.elapsed().as_millis() as u64,
                writer: w,
                via: via.clone(),
                kind,
                space: space.clone(),
                id: id.clone(),
                result: result.map_or_else(
                    |e| format!("{:?}: {}", e.code(), e.message()),
                    |()| "ok".into(),
                ),
            });
            if kind == "forget" {
                h.forget_sent
                    .entry(space.clone())
                    .or_default()
                    .insert(id.clone());
            }
            if ok {
                let set = if kind == "remember" {
                    &mut h.acked
                } else {
                    &mut h.forgotten
                };
                set.entry(space.clone()).or_default().insert(id.clone());
            }
        }
        if ok && kind == "remember" {
            mine.push((space, id));
            acked.send_modify(|n| *n += 1);
        }
    }
}

async fn await_acked(acked: &mut watch::Receiver<usize>, more: usize) {
    let target = *acked.borrow_and_update() + more;
    support::eventually(&format!("{more} more acknowledged writes"), || {
        let n = *acked.borrow();
        std::future::ready((n >= target).then_some(()))
    })
    .await;
}

fn dump(history: &History) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("checker-history-{}.jsonl", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    for op in &history.ops {
        writeln!(f, "{}", serde_json::to_string(op).unwrap()).unwrap();
    }
    path
}

fn local_ids(r: &v1::RecallResponse) -> BTreeSet<String> {
    r.memories
        .iter()
        .map(|m| m.memory.as_ref().unwrap().id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_restart_rounds_and_holders_converge() {
    let mut cluster = Cluster::start(3).await;
    let spaces: Vec<String> = (0..SPACES).map(space).collect();
    let nodes: Vec<(String, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.addr.to_string()))
        .collect();
    let history = Arc::new(Mutex::new(History::default()));
    let (acked_tx, mut acked) = watch::channel(0usize);
    let (stop_tx, stop) = watch::channel(false);
    let start = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        writers.spawn(writer(
            w,
            nodes.clone(),
            Arc::clone(&history),
            acked_tx.clone(),
            stop.clone(),
            start,
        ));
    }

    for round in 0..ROUNDS {
        await_acked(&mut acked, WRITES_PER_PHASE).await;
        // Kill the primary of one space, a different one each round.
        let victim = cluster.holders(&spaces[round % SPACES]).await[0].clone();
        cluster.node_mut(&victim).kill9();
        await_acked(&mut acked, WRITES_PER_PHASE).await;
        cluster.restart(&victim).await;
    }
    await_acked(&mut acked, WRITES_PER_PHASE).await;
    let _ = stop_tx.send(true);
    while writers.join_next().await.is_some() {}
    cluster.await_converged(&spaces).await;

    // Every writer has stopped: the history is final.
    let history = std::mem::take(&mut *history.lock().unwrap());
    let Verdict {
        lost,
        resurrected,
        divergent,
    } = verdict(&cluster, &spaces, &history).await;
    let sent = history.ops.iter().filter(|o| o.kind == "remember").count();
    let acked_writes: usize = history.acked.values().map(BTreeSet::len).sum();
    let forgets: usize = history.forgotten.values().map(BTreeSet::len).sum();
    let failed = history.ops.iter().filter(|o| o.result != "ok").count();
    eprintln!(
        "checker: {ROUNDS} kill/restart rounds, {sent} writes sent, {acked_writes} acknowledged, \
         {forgets} forgets acknowledged, {failed} operations failed; lost {}, resurrected {}, divergent {}",
        lost.len(),
        resurrected.len(),
        divergent.len()
    );
    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    for o in history.ops.iter().filter(|o| o.result != "ok") {
        let cause: String = o.result.chars().take(70).collect();
        *causes.entry(cause).or_default() += 1;
    }
    eprintln!("checker: failures by cause: {causes:#?}");
    if !(lost.is_empty() && resurrected.is_empty() && divergent.is_empty()) {
        let path = dump(&history);
        panic!(
            "lost {lost:?}\nresurrected {resurrected:?}\ndivergent {divergent:?}\nhistory: {}",
            path.display()
        );
    }
}

#[derive(Default)]
struct Verdict {
    lost: Vec<String>,
    resurrected: Vec<String>,
    divergent: Vec<String>,
}

/// Reads every space through every node and from every holder's own copy,
/// and judges them against `history`.
async fn verdict(cluster: &Cluster, spaces: &[String], history: &History) -> Verdict {
    let Verdict {
        mut lost,
        mut resurrected,
        mut divergent,
    } = Verdict::default();
    for space in spaces {
        let acked = history.acked.get(space).cloned().unwrap_or_default();
        let forgotten = history.forgotten.get(space).cloned().unwrap_or_default();
        // A forget that failed may or may not have landed: its id is
        // expected nowhere and forbidden nowhere (but holders must agree).
        let sent = history.forget_sent.get(space).cloned().unwrap_or_default();
        let expected: BTreeSet<&String> = acked.difference(&sent).collect();
        // Routed reads through every node.
        for node in &cluster.nodes {
            let r = node
                .client()
                .await
                .recall(v1::RecallRequest {
                    space: space.clone(),
                    cue: "note".into(),
                    k: Some(1000),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let got = local_ids(&r);
            assert!(
                got.len() < 1000,
                "{space} outgrew one recall; lower the load"
            );
            lost.extend(
                expected
                    .iter()
                    .filter(|id| !got.contains(**id))
                    .map(|id| format!("{space}/{id} via {}", node.id)),
            );
            resurrected.extend(
                forgotten
                    .intersection(&got)
                    .map(|id| format!("{space}/{id} via {}", node.id)),
            );
        }
        // Each holder's own copy.
        let mut copies = Vec::new();
        for h in cluster.holders(space).await {
            let got = local_ids(&cluster.node(&h).recall_local(space, "note").await.unwrap());
            lost.extend(
                expected
                    .iter()
                    .filter(|id| !got.contains(**id))
                    .map(|id| format!("{space}/{id} on {h}")),
            );
            resurrected.extend(
                forgotten
                    .intersection(&got)
                    .map(|id| format!("{space}/{id} on {h}")),
            );
            copies.push((h, got));
        }
        let union: BTreeSet<&String> = copies.iter().flat_map(|(_, c)| c.iter()).collect();
        for id in union {
            let lacking: Vec<&String> = copies
                .iter()
                .filter(|(_, c)| !c.contains(id))
                .map(|(h, _)| h)
                .collect();
            if !lacking.is_empty() {
                divergent.push(format!("{space}/{id} missing on {lacking:?}"));
            }
        }
    }
    Verdict {
        lost,
        resurrected,
        divergent,
    }
}
