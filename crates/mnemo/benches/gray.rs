//! A stalled primary, on a real 3-node cluster on loopback: steady recall
//! and `ack=quorum` write load through another node, then the space's
//! primary SIGSTOPped for 10 s (alive to TCP, silent to requests), then
//! SIGCONT. Reported: latency (p50, p99, max) and failures of recalls and
//! writes in steady state and during the stall, and the extra requests
//! hedging sends in steady state. Run with the defaults and with hedging
//! off (`--hedge-ms 0`), one after the other.
//!
//! `cargo bench -p mnemo --bench gray` (add `-- --stall-secs N`). Numbers are
//! printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mnemo_proto::v1;
use support::Cluster;

type OpLog = Vec<(Instant, Duration, bool)>;

async fn load(
    cluster: &Cluster,
    via: &str,
    space: &'static str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinSet<(bool, OpLog)> {
    let mut tasks = tokio::task::JoinSet::new();
    for (task, write) in [false, true, false, true].into_iter().enumerate() {
        let mut c = cluster.node(via).client().await;
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut log = Vec::new();
            let mut i = 0u64;
            while !*stop.borrow() {
                let start = Instant::now();
                let ok = if write {
                    c.remember(support::remember(
                        space,
                        &format!("t{task}-{i}"),
                        "a note on the launch",
                        v1::Ack::Quorum,
                    ))
                    .await
                    .is_ok()
                } else {
                    c.recall(v1::RecallRequest {
                        space: space.into(),
                        cue: "launch".into(),
                        k: Some(5),
                        ..Default::default()
                    })
                    .await
                    .is_ok()
                };
                log.push((start, start.elapsed(), ok));
                i += 1;
            }
            (write, log)
        });
    }
    tasks
}

fn summary(what: &str, log: &[(Instant, Duration, bool)]) {
    if log.is_empty() {
        println!("    {what:<8} no operations");
        return;
    }
    let mut took: Vec<Duration> = log.iter().map(|o| o.1).collect();
    took.sort();
    let at = |p: f64| took[((took.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "    {what:<8} {:>6} ops  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  failed {}",
        log.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        log.iter().filter(|o| !o.2).count()
    );
}

async fn trial(label: &str, extra: &[&str], stall: Duration) {
    let mut flags = vec!["--http", "127.0.0.1:0"];
    flags.extend(extra);
    // The defaults, as a user runs them (no test settings).
    let cluster = Cluster::start_exactly(3, &flags).await;
    let space = "gray";
    let primary = cluster.holders(space).await[0].clone();
    let entry = cluster.node_other_than(&[&primary]).id.clone();
    let http = cluster.node(&entry).http.clone().expect("http address");
    let metrics = || {
        let page = support::http_get(&http, "/metrics");
        (
            support::metric_sum(&page, "mnemo_router_hedges_total"),
            support::metric_sum(&page, "mnemo_router_requests_total{operation=\"recall\""),
        )
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut tasks = load(&cluster, &entry, space, &stop).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // warm up
    let (hedges0, _) = metrics();
    let steady_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (hedges1, _) = metrics();
    let stalled_from = Instant::now();
    cluster.node(&primary).signal("STOP");
    tokio::time::sleep(stall).await;
    cluster.node(&primary).signal("CONT");
    let stalled_to = Instant::now();
    let _ = stop_tx.send(true);
    let mut reads: OpLog = Vec::new();
    let mut writes: OpLog = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (write, log) = r.unwrap();
        if write {
            writes.extend(log);
        } else {
            reads.extend(log);
        }
    }
    let window = |log: &OpLog, from: Instant, to: Instant| -> OpLog {
        log.iter()
            .filter(|o| o.0 >= from && o.0 < to)
            .copied()
            .collect()
    };
    let steady_reads = window(&reads, steady_from, stalled_from);
    println!("  {label}");
    println!("   steady state (3 s):");
    summary("recall", &steady_reads);
    summary("write", &window(&writes, steady_from, stalled_from));
    println!(
        "    hedges {} for {} recalls: {:.2}% extra read requests",
        hedges1 - hedges0,
        steady_reads.len(),
        100.0 * (hedges1 - hedges0) / steady_reads.len().max(1) as f64
    );
    println!("   primary SIGSTOPped ({} s):", stall.as_secs());
    summary("recall", &window(&reads, stalled_from, stalled_to));
    summary("write", &window(&writes, stalled_from, stalled_to));
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let stall = Duration::from_secs(support::bench_arg(&args, "--stall-secs", 10));
    rt.block_on(async move {
        println!("stalled primary, 2 readers + 2 quorum writers through another node:");
        trial("defaults (adaptive timeouts and hedging)", &[], stall).await;
        trial("hedging off (--hedge-ms 0)", &["--hedge-ms", "0"], stall).await;
    });
}
