//! Acknowledged (durable) remembers per second through gRPC on loopback,
//! with 1 and 64 concurrent clients, against a real node with a real redb
//! file. Each client has its own connection.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mnemo_node::NodeConfig;
use mnemo_proto::v1::{self, mnemo_client::MnemoClient};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn remember(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = rt
        .block_on(mnemo_node::start(NodeConfig::new(
            "bench",
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
        )))
        .unwrap();
    let url = format!("http://{}", running.local_addr);

    let mut group = c.benchmark_group("remember");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    for clients in [1usize, 64] {
        let channels: Vec<_> = (0..clients)
            .map(|_| rt.block_on(MnemoClient::connect(url.clone())).unwrap())
            .collect();
        group.bench_with_input(BenchmarkId::new("clients", clients), &clients, |b, _| {
            b.to_async(&rt).iter_custom(|iters| {
                let channels = channels.clone();
                async move {
                    let n_clients = channels.len() as u64;
                    let per_client = iters.div_ceil(n_clients);
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for mut client in channels {
                        tasks.spawn(async move {
                            for _ in 0..per_client {
                                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                                client
                                    .remember(v1::RememberRequest {
                                        space: format!("bench-{}", n % 16),
                                        id: format!("m{n}"),
                                        content: format!("benchmark memory number {n}"),
                                        ..Default::default()
                                    })
                                    .await
                                    .unwrap();
                            }
                        });
                    }
                    tasks.join_all().await;
                    // Report time per element as if exactly `iters` ran.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_client * n_clients) as f64)
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, remember);
criterion_main!(benches);
