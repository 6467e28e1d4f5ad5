//! Process-level measurements on a real 3-node cluster on loopback (not
//! criterion: each needs whole clusters and a SIGKILL; what a forwarded
//! call costs is `benches/hop.rs`):
//!
//! - after SIGKILL of a space's primary under steady recall and write load
//!   through another node: how long until recalls and writes succeed
//!   again, how many failed, how long until membership declares the node
//!   down, and how many acknowledged writes (by `ack`) a read misses while
//!   it is down and after it is back.
//!
//! `cargo bench -p mnemo --bench cluster` (add `-- --trials N` for more
//! failover trials). Numbers are printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mnemo_proto::v1;
use support::Cluster;

fn recall(space: &str) -> v1::RecallRequest {
    v1::RecallRequest {
        space: space.into(),
        cue: "where is the meeting".into(),
        k: Some(5),
        ..Default::default()
    }
}

async fn seed(cluster: &Cluster, space: &str) {
    let mut c = cluster.nodes[0].client().await;
    for i in 0..20 {
        support::remember_meeting(&mut c, space, i).await;
    }
}

/// What happened to one kind of operation across a kill.
#[derive(Default)]
struct Gap {
    /// From the kill to the first success of an operation that started
    /// after it.
    first_success: Duration,
    /// Slowest operation that started after the kill.
    worst: Duration,
    failures: Vec<String>,
}

type OpLog = Vec<(Instant, Duration, Result<(), String>)>;

impl Gap {
    fn of(log: &OpLog, killed_at: Instant) -> Gap {
        let after: Vec<_> = log.iter().filter(|(s, _, _)| *s >= killed_at).collect();
        Gap {
            first_success: after
                .iter()
                .filter(|(_, _, r)| r.is_ok())
                .map(|(s, took, _)| (*s + *took) - killed_at)
                .min()
                .unwrap_or(Duration::MAX),
            worst: after
                .iter()
                .map(|(_, took, _)| *took)
                .max()
                .unwrap_or_default(),
            failures: log
                .iter()
                .filter_map(|(_, _, r)| r.as_ref().err().cloned())
                .collect(),
        }
    }
}

struct Trial {
    reads: Gap,
    writes: Gap,
    /// From the kill to the entry node's membership saying "not alive".
    declared_down: Duration,
    /// Acknowledged writes (quorum, primary) missing from a routed read
    /// while the killed node is down.
    missing_while_down: (usize, usize),
    /// The same once it is back and the holders converged.
    missing_after_return: (usize, usize),
    acknowledged: (usize, usize),
}

/// Runs `op` back to back until told to stop, logging each call.
fn spawn_load<F, Fut>(
    load: &mut tokio::task::JoinSet<OpLog>,
    stop: &tokio::sync::watch::Receiver<bool>,
    mut op: F,
) where
    F: FnMut(usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = stop.clone();
    load.spawn(async move {
        let mut log = Vec::new();
        let mut i = 0;
        while !*stop.borrow() {
            let start = Instant::now();
            let result = op(i).await;
            log.push((start, start.elapsed(), result));
            i += 1;
        }
        log
    });
}

fn status_text(e: &tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

/// Spaces the write load spreads over.
const WRITE_SPACES: usize = 8;

/// `space/id` of every memory a routed recall through `via` returns.
async fn routed_ids(
    cluster: &Cluster,
    via: &str,
    spaces: &[String],
) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for space in spaces {
        let r = cluster
            .node(via)
            .client()
            .await
            .recall(v1::RecallRequest {
                space: space.clone(),
                cue: "meeting".into(),
                k: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.memories.len() < 1000, "{space} outgrew one recall");
        out.extend(
            r.memories
                .into_iter()
                .map(|m| format!("{space}/{}", m.memory.unwrap().id)),
        );
    }
    out
}

#[allow(clippy::too_many_lines, reason = "one trial, read top to bottom")]
async fn failover_trial() -> Trial {
    let mut cluster = Cluster::start(3).await;
    let space = "failover";
    seed(&cluster, space).await;
    let placement = cluster.locate_everywhere(space).await;
    let primary = placement.primary.unwrap().id;
    for r in &placement.replicas {
        cluster.node(&r.id).await_memories(space, 20).await;
    }
    let entry_id = cluster.node_other_than(&[&primary]).id.clone();
    let client = cluster.node(&entry_id).client().await;
    // Writes go to spaces with the same primary, spread so that each stays
    // under one recall's 1000 memories for the check afterwards.
    let mut written: Vec<String> = Vec::new();
    let mut n = 0;
    while written.len() < WRITE_SPACES {
        let candidate = format!("failover-{n}");
        if cluster
            .locate_everywhere(&candidate)
            .await
            .primary
            .unwrap()
            .id
            == primary
        {
            written.push(candidate);
        }
        n += 1;
    }
    let written: &'static [String] = Vec::leak(written);

    // Steady load through a survivor: two clients recalling and two
    // writing (one ack=quorum, one ack=primary), back to back.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut reads = tokio::task::JoinSet::new();
    let mut writes = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let client = client.clone();
        spawn_load(&mut reads, &stop_rx, move |_| {
            let mut client = client.clone();
            async move {
                client
                    .recall(recall(space))
                    .await
                    .map(|_| ())
                    .map_err(|e| status_text(&e))
            }
        });
    }
    let acked: std::sync::Arc<std::sync::Mutex<(Vec<String>, Vec<String>)>> =
        std::sync::Arc::default();
    for ack in [v1::Ack::Quorum, v1::Ack::Primary] {
        let (client, acked) = (client.clone(), std::sync::Arc::clone(&acked));
        spawn_load(&mut writes, &stop_rx, move |i| {
            let (mut client, acked) = (client.clone(), std::sync::Arc::clone(&acked));
            async move {
                let id = format!("{}-{i}", ack.as_str_name());
                let space = &written[i % written.len()];
                let r = client
                    .remember(v1::RememberRequest {
                        space: space.clone(),
                        id: id.clone(),
                        content: format!("meeting note {id}"),
                        ack: ack as i32,
                        ..Default::default()
                    })
                    .await;
                if r.is_ok() {
                    let mut a = acked.lock().unwrap();
                    let id = format!("{space}/{id}");
                    if ack == v1::Ack::Quorum {
                        a.0.push(id);
                    } else {
                        a.1.push(id);
                    }
                }
                r.map(|_| ()).map_err(|e| status_text(&e))
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    cluster.node_mut(&primary).kill9();

    let entry = cluster.node(&entry_id);
    let declared_down = loop {
        let s = entry.status().await;
        if !s
            .members
            .iter()
            .any(|m| m.id == primary && m.state == "alive")
        {
            break killed_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    let read_log: OpLog = reads.join_all().await.into_iter().flatten().collect();
    let write_log: OpLog = writes.join_all().await.into_iter().flatten().collect();
    let (quorum, primary_acked) = acked.lock().unwrap().clone();
    let missing = |seen: &std::collections::HashSet<String>| {
        (
            quorum.iter().filter(|id| !seen.contains(*id)).count(),
            primary_acked
                .iter()
                .filter(|id| !seen.contains(*id))
                .count(),
        )
    };
    let missing_while_down = missing(&routed_ids(&cluster, &entry_id, written).await);
    cluster.restart(&primary).await;
    cluster.await_converged(written).await;
    let missing_after_return = missing(&routed_ids(&cluster, &entry_id, written).await);
    Trial {
        reads: Gap::of(&read_log, killed_at),
        writes: Gap::of(&write_log, killed_at),
        declared_down,
        missing_while_down,
        missing_after_return,
        acknowledged: (quorum.len(), primary_acked.len()),
    }
}

fn report_gap(what: &str, trials: &[Trial], gap: impl Fn(&Trial) -> &Gap) {
    let n = trials.len();
    let mut first: Vec<Duration> = trials.iter().map(|t| gap(t).first_success).collect();
    let mut worst: Vec<Duration> = trials.iter().map(|t| gap(t).worst).collect();
    first.sort();
    worst.sort();
    let p99 = |v: &[Duration]| v[((n as f64 - 1.0) * 0.99).round() as usize];
    println!(
        "  {what} succeeds again after  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        first[n / 2].as_secs_f64() * 1e3,
        p99(&first).as_secs_f64() * 1e3,
        first[n - 1].as_secs_f64() * 1e3
    );
    println!(
        "  slowest {what} after kill    p50 {:>8.2} ms  max {:>8.2} ms",
        worst[n / 2].as_secs_f64() * 1e3,
        worst[n - 1].as_secs_f64() * 1e3
    );
    let failures: Vec<&String> = trials.iter().flat_map(|t| &gap(t).failures).collect();
    println!("  failed {what}s in all trials {}", failures.len());
    for f in failures.iter().take(3) {
        println!("    e.g. {f}");
    }
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let trials: usize = support::bench_arg(&args, "--trials", 10);
    rt.block_on(async move {
        if trials == 0 {
            return;
        }
        let mut results = Vec::new();
        for _ in 0..trials {
            results.push(failover_trial().await);
        }
        println!("SIGKILL of the primary under recall and write load through a survivor, {trials} trials:");
        report_gap("recall", &results, |t| &t.reads);
        report_gap("write", &results, |t| &t.writes);
        let mut down: Vec<Duration> = results.iter().map(|t| t.declared_down).collect();
        down.sort();
        println!(
            "  declared down after          p50 {:>8.2} ms  max {:>8.2} ms",
            down[trials / 2].as_secs_f64() * 1e3,
            down[trials - 1].as_secs_f64() * 1e3
        );
        let sum = |f: &dyn Fn(&Trial) -> (usize, usize)| {
            results.iter().map(f).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        let (acked_q, acked_p) = sum(&|t| t.acknowledged);
        let (down_q, down_p) = sum(&|t| t.missing_while_down);
        let (back_q, back_p) = sum(&|t| t.missing_after_return);
        println!("  acknowledged writes: {acked_q} ack=quorum, {acked_p} ack=primary");
        println!("  missing from reads while the node is down: {down_q} ack=quorum, {down_p} ack=primary");
        println!("  missing once it is back and converged:     {back_q} ack=quorum, {back_p} ack=primary");
    });
}
