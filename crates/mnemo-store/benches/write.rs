//! Acknowledged (durable) remembers per second at the store, without the
//! network: 1 and 64 concurrent writers on a real file. Set against the
//! node's `remember` bench this tells the storage's share of a write's cost
//! from the gRPC hop's.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mnemo_store::{Memory, Store};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn write(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();

    let mut group = c.benchmark_group("store_remember");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for writers in [1u64, 64] {
        group.bench_with_input(
            BenchmarkId::new("writers", writers),
            &writers,
            |b, &writers| {
                b.to_async(&rt).iter_custom(|iters| {
                    let store = store.clone();
                    async move {
                        let per_writer = iters.div_ceil(writers);
                        let start = Instant::now();
                        let mut tasks = tokio::task::JoinSet::new();
                        for _ in 0..writers {
                            let store = store.clone();
                            tasks.spawn(async move {
                                for _ in 0..per_writer {
                                    let n = NEXT.fetch_add(1, Ordering::Relaxed);
                                    let memory = Memory {
                                        id: format!("m{n}"),
                                        content: format!("benchmark memory number {n}"),
                                        ..Default::default()
                                    };
                                    store
                                        .remember(&format!("bench-{}", n % 16), memory)
                                        .await
                                        .unwrap();
                                }
                            });
                        }
                        tasks.join_all().await;
                        start
                            .elapsed()
                            .mul_f64(iters as f64 / (per_writer * writers) as f64)
                    }
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
