//! How fast data follows membership, on a real 3-node cluster on loopback:
//!
//! - a node SIGKILLed while writes go on, then restarted: time from its
//!   process serving again until it has caught up on every space it holds
//!   (it answers them itself), and until every holder of every space has
//!   the same copy;
//! - a fourth node joining the loaded cluster: the same two times.
//!
//! `cargo bench -p mnemo --bench catchup` (add `-- --trials N`). Numbers are
//! printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mnemo_proto::v1;
use support::Cluster;

const SPACES: usize = 20;
const MEMORIES: usize = 250;
const WHILE_DOWN: usize = 50;

fn spaces() -> Vec<String> {
    (0..SPACES).map(|i| format!("tenant-{i}")).collect()
}

/// Writes `n` memories to every space, from several clients at once.
async fn load(cluster: &Cluster, via: &str, prefix: &str, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, space) in spaces().into_iter().enumerate() {
        let mut c = cluster.node(via).client().await;
        let prefix = format!("{prefix}{i}-");
        tasks.spawn(async move {
            for j in 0..n {
                c.remember(v1::RememberRequest {
                    space: space.clone(),
                    id: format!("{prefix}{j}"),
                    content: format!("fact {j} of {space}: the launch moved to week {}", j % 52),
                    ack: v1::Ack::Quorum as i32,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        });
    }
    tasks.join_all().await;
}

async fn poll(what: impl AsyncFn() -> bool) {
    while !what().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// (until it serves its spaces, until every holder converged).
async fn timings(cluster: &Cluster, id: &str, started: Instant) -> (Duration, Duration) {
    let node = cluster.node(id);
    poll(async || node.status().await.settled).await;
    let serves = started.elapsed();
    cluster.await_converged(&spaces()).await;
    (serves, started.elapsed())
}

async fn trial() -> ((Duration, Duration), (Duration, Duration)) {
    let mut cluster = Cluster::start(3).await;
    load(&cluster, "n1", "base-", MEMORIES).await;
    cluster.node_mut("n2").kill9();
    load(&cluster, "n1", "down-", WHILE_DOWN).await;
    let through = cluster.node("n1").addr.to_string();
    let started = Instant::now();
    cluster.start_again("n2", &through);
    let returned = timings(&cluster, "n2", started).await;
    cluster.await_formed().await;

    let started = Instant::now();
    cluster.join("n4", &through).await;
    let joined = timings(&cluster, "n4", started).await;
    (returned, joined)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, mut xs: Vec<(Duration, Duration)>) {
    xs.sort();
    let serve: Vec<f64> = xs.iter().map(|x| ms(x.0)).collect();
    let mut conv: Vec<f64> = xs.iter().map(|x| ms(x.1)).collect();
    conv.sort_by(f64::total_cmp);
    println!(
        "  {what}: serves its spaces after p50 {:>7.1} ms max {:>7.1} ms; all holders converged after p50 {:>7.1} ms max {:>7.1} ms",
        serve[serve.len() / 2],
        serve[serve.len() - 1],
        conv[conv.len() / 2],
        conv[conv.len() - 1]
    );
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let trials: usize = support::bench_arg(&args, "--trials", 3);
    rt.block_on(async move {
        let mut returned = Vec::new();
        let mut joined = Vec::new();
        for _ in 0..trials {
            let (r, j) = trial().await;
            returned.push(r);
            joined.push(j);
        }
        println!(
            "{SPACES} spaces x {MEMORIES} memories on 3 nodes (RF 3), {trials} trials \
             (includes process start and joining membership):"
        );
        report(
            &format!("return after {} writes missed", SPACES * WHILE_DOWN),
            returned,
        );
        report("join of a 4th node", joined);
    });
}
