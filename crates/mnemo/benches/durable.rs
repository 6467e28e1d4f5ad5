//! Durable writes side by side with Redis's `appendfsync always`, in one
//! run on one machine (not criterion: real processes, latency percentiles):
//!
//! - one `mnemo node` process: acknowledged remembers (40-byte contents,
//!   16 spaces) with 1 and 64 clients, each client on its own connection,
//!   as unary calls and over one `RememberStream` per client (each client
//!   still waits for one write's answer before sending the next, as a
//!   `redis-benchmark` client does);
//! - a 3-node local cluster: the same with `ack=quorum`, through the
//!   primary's node and through another node;
//! - the same gRPC clients calling a recall of an empty space, which stores
//!   nothing: the most this transport carries on this machine;
//! - `redis-server --appendonly yes --appendfsync always` (every
//!   acknowledged write fsynced), driven by `redis-benchmark -t set -d 40`
//!   with 1 and 64 clients. Skipped, saying so, when Debian's
//!   `redis-server`/`redis-tools` are not installed.
//!
//! `cargo bench -p mnemo --bench durable` (add `-- --seconds N` per
//! measurement, default 5; `-- --only TEXT` for the lines whose label
//! contains TEXT). Numbers are printed, never asserted.

#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mnemo_proto::v1::{self, mnemo_client::MnemoClient};
use support::{Cluster, NodeProcess};
use tonic::transport::Channel;

static NEXT: AtomicU64 = AtomicU64::new(0);

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn print(what: &str, f: &Figures) {
    println!(
        "  {what:<44} {:>9.0} /s   p50 {:>7.3} ms   p99 {:>7.3} ms",
        f.per_sec,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3
    );
}

#[derive(Clone, Copy)]
enum Call {
    Remember(v1::Ack),
    /// Remembers one after another over one `RememberStream` per client.
    Stream(v1::Ack),
    /// A recall of a space that does not exist: the transport alone.
    Nothing,
}

fn remember(ack: v1::Ack) -> v1::RememberRequest {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    v1::RememberRequest {
        space: format!("bench-{}", n % 16),
        id: format!("m{n}"),
        content: format!("{n:0>40}"),
        ack: ack as i32,
        ..Default::default()
    }
}

/// One client's way of making calls: unary, or over its open stream.
enum Caller {
    Unary(MnemoClient<Channel>, Call),
    Stream {
        requests: tokio::sync::mpsc::Sender<v1::RememberRequest>,
        answers: tonic::Streaming<v1::RememberStreamResponse>,
        ack: v1::Ack,
    },
}

impl Caller {
    async fn new(mut client: MnemoClient<Channel>, call: Call) -> Caller {
        let Call::Stream(ack) = call else {
            return Caller::Unary(client, call);
        };
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        let answers = client
            .remember_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open a stream")
            .into_inner();
        Caller::Stream {
            requests,
            answers,
            ack,
        }
    }

    async fn call(&mut self) {
        match self {
            Caller::Unary(client, call) => one(client, *call).await,
            Caller::Stream {
                requests,
                answers,
                ack,
            } => {
                requests.send(remember(*ack)).await.expect("send");
                let answer = answers.message().await.expect("an answer").expect("open");
                assert!(
                    matches!(
                        answer.outcome,
                        Some(v1::remember_stream_response::Outcome::Remembered(_))
                    ),
                    "remember failed: {answer:?}"
                );
            }
        }
    }
}

async fn one(client: &mut MnemoClient<Channel>, call: Call) {
    match call {
        Call::Remember(ack) | Call::Stream(ack) => {
            client.remember(remember(ack)).await.expect("remember");
        }
        Call::Nothing => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            client
                .recall(v1::RecallRequest {
                    space: format!("nothing-{}", n % 16),
                    cue: "benchmark".into(),
                    k: Some(5),
                    ..Default::default()
                })
                .await
                .expect("recall");
        }
    }
}

/// `clients` connections to `node` calling `call` back to back for
/// `seconds` (after a warm-up of a tenth of that).
async fn drive(node: &NodeProcess, clients: usize, call: Call, seconds: f64) -> Figures {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Caller::new(node.client().await, call).await);
    }
    let warm_up = Duration::from_secs_f64(seconds / 10.0);
    let measure = Duration::from_secs_f64(seconds);
    let start = Arc::new(Instant::now() + warm_up);
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            let mut times = Vec::new();
            let end = *start + measure;
            loop {
                let began = Instant::now();
                if began >= end {
                    return times;
                }
                client.call().await;
                if began >= *start {
                    times.push(began.elapsed());
                }
            }
        });
    }
    let mut times: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Figures {
        per_sec: times.len() as f64 / seconds,
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Redis with every acknowledged write fsynced, driven by redis-benchmark.
fn redis(seconds: f64) {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("redis-server") || !have("redis-benchmark") {
        println!(
            "  redis: skipped (redis-server and redis-benchmark not found; \
             apt-get install redis-server redis-tools)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let port = support::free_port().to_string();
    let mut server = Command::new("redis-server")
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let ready = (0..200).any(|_| {
        let up = Command::new("redis-cli")
            .args(["-p", &port, "ping"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"));
        if !up {
            std::thread::sleep(Duration::from_millis(25));
        }
        up
    });
    assert!(ready, "redis-server did not come up");
    for (clients, rate) in [(1usize, 5_000.0), (64, 60_000.0)] {
        let requests = ((rate * seconds) as u64).to_string();
        let out = Command::new("redis-benchmark")
            .args(["-p", &port, "-t", "set", "-d", "40", "-r", "1000000"])
            .args(["-c", &clients.to_string(), "-n", &requests, "--csv"])
            .output()
            .expect("run redis-benchmark");
        let csv = String::from_utf8_lossy(&out.stdout);
        let row: Vec<f64> = csv
            .lines()
            .find(|l| l.starts_with("\"SET\""))
            .expect("a SET row")
            .split(',')
            .skip(1)
            .map(|v| v.trim_matches('"').parse().expect("a number"))
            .collect();
        // rps, avg, min, p50, p95, p99, max (ms)
        print(
            &format!("redis appendfsync always, {clients} clients"),
            &Figures {
                per_sec: row[0],
                p50: Duration::from_secs_f64(row[3] / 1e3),
                p99: Duration::from_secs_f64(row[5] / 1e3),
            },
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

fn main() {
    let Some((args, rt)) = support::bench_setup() else {
        return;
    };
    let seconds: f64 = support::bench_arg(&args, "--seconds", 5.0);
    let only: String = support::bench_arg(&args, "--only", String::new());
    let wanted = |label: &str| label.contains(only.as_str());
    rt.block_on(async move {
        println!("Durable writes, {seconds} s per line:");
        let dir = tempfile::tempdir().unwrap();
        let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &[]);
        for (call, what) in [
            (Call::Remember(v1::Ack::Primary), "mnemo remember, one node"),
            (
                Call::Stream(v1::Ack::Primary),
                "mnemo remember stream, one node",
            ),
            (Call::Nothing, "mnemo gRPC, nothing stored"),
        ] {
            for clients in [1, 64] {
                let label = format!("{what}, {clients} clients");
                if wanted(&label) {
                    print(&label, &drive(&node, clients, call, seconds).await);
                }
            }
        }
        drop(node);

        let quorum = |how: &str, clients| {
            format!("mnemo remember{how} ack=quorum, 3 nodes, {clients} clients")
        };
        if ["", " stream"]
            .iter()
            .any(|how| wanted(&quorum(how, 1)) || wanted(&quorum(how, 64)))
        {
            let cluster = Cluster::start_exactly(3, &[]).await;
            for (call, how) in [
                (Call::Remember(v1::Ack::Quorum), ""),
                (Call::Stream(v1::Ack::Quorum), " stream"),
            ] {
                for clients in [1, 64] {
                    let label = quorum(how, clients);
                    if wanted(&label) {
                        print(
                            &label,
                            &drive(&cluster.nodes[0], clients, call, seconds).await,
                        );
                    }
                }
            }
        }
    });
    if wanted("redis") {
        redis(seconds);
    }
}
