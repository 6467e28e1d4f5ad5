//! Recall over one space of 10k and 100k memories with 256-dimension
//! embeddings (the lexical embedding's dimension), top 10.

#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mnemo_store::{Cue, Element, Memory, Store};

const DIM: usize = 256;

/// A deterministic pseudo-random vector (xorshift), so runs are comparable.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn filled(rt: &tokio::runtime::Runtime, n: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entries = (0..n)
        .map(|i| {
            Element::Memory(Memory {
                id: format!("m{i}"),
                content: format!("memory {i}"),
                embedding: vector(i as u64),
                confidence: 1.0,
                created_at_ms: 1,
                tags: Vec::new(),
                minority: false,
                merged_from: Vec::new(),
            })
        })
        .collect();
    let merged = rt.block_on(store.merge("bench", entries)).unwrap();
    assert!(merged.refused.is_empty());
    (dir, store)
}

fn recall(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("recall");
    for n in [10_000, 100_000] {
        let (_dir, store) = filled(&rt, n);
        let cue = vector(u64::MAX / 3);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let found = store
                    .recall(
                        "bench",
                        Cue {
                            embedding: &cue,
                            ..Cue::default()
                        },
                        10,
                        0.0,
                    )
                    .unwrap();
                assert_eq!(found.len(), 10);
                found
            });
        });
    }
    group.finish();
}

criterion_group!(benches, recall);
criterion_main!(benches);
