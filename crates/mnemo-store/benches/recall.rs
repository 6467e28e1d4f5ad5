//! Recall over one space of 10k and 100k memories, top 10: by a 256-dimension
//! embedding cue (the lexical embedding's dimension), and by a text cue
//! (BM25) over memories of eight words from a 5,000-word vocabulary plus one
//! word every memory shares, which the cue also names.

#![allow(missing_docs)]

use std::fmt::Write as _;

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

/// Eight pseudo-random words of a 5,000-word vocabulary, after a word
/// every memory has.
fn words(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::from("memory");
    for _ in 0..8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = write!(out, " word{}", x % 5000);
    }
    out
}

fn recall_text(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("recall_text");
    for n in [10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entries = (0..n)
            .map(|i| {
                let content = words(i as u64);
                Element::Memory(Memory {
                    id: format!("m{i}"),
                    embedding: mnemo_store::embed::lexical(&content),
                    content,
                    confidence: 1.0,
                    created_at_ms: 1,
                    ..Memory::default()
                })
            })
            .collect();
        let merged = rt.block_on(store.merge("bench", entries)).unwrap();
        assert!(merged.refused.is_empty());
        let cue = format!("memory {}", &words(7)[7..40]);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let found = store
                    .recall(
                        "bench",
                        Cue {
                            text: &cue,
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

criterion_group!(benches, recall, recall_text);
criterion_main!(benches);
