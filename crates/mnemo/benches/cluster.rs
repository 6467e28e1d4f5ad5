//! Process-level measurements on a real 3-node cluster on loopback (not
//! criterion: each needs whole clusters and a SIGKILL):
//!
//! - the latency a forwarded recall adds over a direct one (p50, p99);
//! - after SIGKILL of a space's primary under steady recall load through
//!   another node: how long until recall succeeds again, and how long until
//!   membership declares the node down.
//!
//! `cargo bench -p mnemo --bench cluster` (add `-- --trials N` for more
//! failover trials). Numbers are printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mnemo_proto::v1;
use support::Cluster;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

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
        c.remember(v1::RememberRequest {
            space: space.into(),
            id: format!("m{i}"),
            content: format!("meeting {i} is in room {}", i % 7),
            ack: v1::Ack::Quorum as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

async fn forwarding(samples: usize) {
    let cluster = Cluster::start(3).await;
    let space = "latency";
    seed(&cluster, space).await;
    let placement = cluster.locate_everywhere(space).await;
    let primary = placement.primary.unwrap().id;
    let other = cluster.node_other_than(&[&primary]);
    let mut direct = cluster.node(&primary).client().await;
    let mut forwarded = other.client().await;

    let measure = async |client: &mut v1::mnemo_client::MnemoClient<_>| {
        for _ in 0..samples / 10 {
            client.recall(recall(space)).await.unwrap();
        }
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            let r = client.recall(recall(space)).await.unwrap().into_inner();
            times.push(start.elapsed());
            assert_eq!(r.served_by, primary);
        }
        times.sort();
        times
    };
    // Interleave rounds so both see the same machine conditions.
    let (mut d, mut f) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        d.extend(measure(&mut direct).await);
        f.extend(measure(&mut forwarded).await);
    }
    d.sort();
    f.sort();
    let (d50, d99, f50, f99) = (
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&f, 0.5),
        percentile(&f, 0.99),
    );
    println!("forwarded recall vs direct, {} samples each:", d.len());
    println!(
        "  direct     p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(d50),
        micros(d99)
    );
    println!(
        "  forwarded  p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(f50),
        micros(f99)
    );
    println!(
        "  added      p50 {:>8.1} µs  p99 {:>8.1} µs",
        micros(f50.saturating_sub(d50)),
        micros(f99.saturating_sub(d99))
    );
}

struct Trial {
    /// From the kill to the first successful recall that started after it.
    first_success: Duration,
    /// Slowest recall that started after the kill.
    worst: Duration,
    failures: Vec<String>,
    /// From the kill to the entry node's membership saying "not alive".
    declared_down: Duration,
}

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

    // Steady load: two clients recalling back to back.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let mut client = client.clone();
        let stop = stop_rx.clone();
        load.spawn(async move {
            let mut log = Vec::new();
            while !*stop.borrow() {
                let start = Instant::now();
                let result = client.recall(recall(space)).await;
                log.push((
                    start,
                    start.elapsed(),
                    result
                        .map(|_| ())
                        .map_err(|e| format!("{:?}: {}", e.code(), e.message())),
                ));
            }
            log
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
    let log: Vec<_> = load.join_all().await.into_iter().flatten().collect();
    let after: Vec<_> = log.iter().filter(|(s, _, _)| *s >= killed_at).collect();
    let first_success = after
        .iter()
        .filter(|(_, _, r)| r.is_ok())
        .map(|(s, took, _)| (*s + *took) - killed_at)
        .min()
        .unwrap_or(Duration::MAX);
    Trial {
        first_success,
        worst: after
            .iter()
            .map(|(_, took, _)| *took)
            .max()
            .unwrap_or_default(),
        failures: log
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().err().cloned())
            .collect(),
        declared_down,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let trials: usize = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        if !args.iter().any(|a| a == "--skip-forwarding") {
            forwarding(2000).await;
        }
        if trials == 0 {
            return;
        }
        let mut results = Vec::new();
        for _ in 0..trials {
            results.push(failover_trial().await);
        }
        let mut first: Vec<Duration> = results.iter().map(|t| t.first_success).collect();
        let mut worst: Vec<Duration> = results.iter().map(|t| t.worst).collect();
        let mut down: Vec<Duration> = results.iter().map(|t| t.declared_down).collect();
        first.sort();
        worst.sort();
        down.sort();
        println!("SIGKILL of the primary under recall load, {trials} trials:");
        println!(
            "  recall succeeds again after  p50 {:>8.2} ms  max {:>8.2} ms",
            first[trials / 2].as_secs_f64() * 1e3,
            first[trials - 1].as_secs_f64() * 1e3
        );
        println!(
            "  slowest recall after kill    p50 {:>8.2} ms  max {:>8.2} ms",
            worst[trials / 2].as_secs_f64() * 1e3,
            worst[trials - 1].as_secs_f64() * 1e3
        );
        let failures: Vec<&String> = results.iter().flat_map(|t| &t.failures).collect();
        println!("  failed recalls in all trials {}", failures.len());
        for f in failures.iter().take(3) {
            println!("    e.g. {f}");
        }
        println!(
            "  declared down after          p50 {:>8.2} ms  max {:>8.2} ms",
            down[trials / 2].as_secs_f64() * 1e3,
            down[trials - 1].as_secs_f64() * 1e3
        );
    });
}
