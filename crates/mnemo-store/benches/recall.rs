//! Recall over one space of 10k and 100k memories, top 10: by a 256-dimension
//! embedding cue (the lexical embedding's dimension), and by a text cue
//! (BM25) over memories of eight words from a 5,000-word vocabulary plus one
//! word every memory shares, which the cue also names.

#![allow(missing_docs)]

use std::fmt::Write as _;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mnemo_store::{Cue, Element, Memory, Store};

const DIM: usize = 256;

/// A deterministic pseudo-random sequence (xorshift), so runs are comparable.
fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

fn vector(seed: u64) -> Vec<f32> {
    xorshift(seed)
        .take(DIM)
        .map(|x| (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect()
}

/// Eight words of a 5,000-word vocabulary, after a word every memory has.
fn words(seed: u64) -> String {
    let mut out = String::from("memory");
    for x in xorshift(seed).take(8) {
        let _ = write!(out, " word{}", x % 5000);
    }
    out
}

/// Top-10 recalls of `cue` over spaces of 10k and 100k memories made by
/// `memory` (from its index).
fn bench(c: &mut Criterion, name: &str, memory: impl Fn(usize) -> Memory, cue: Cue<'_>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group(name);
    for n in [10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entries = (0..n).map(|i| Element::Memory(memory(i))).collect();
        let merged = rt.block_on(store.merge("bench", entries)).unwrap();
        assert!(merged.refused.is_empty());
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let found = store.recall("bench", cue, 10, 0.0).unwrap();
                assert_eq!(found.len(), 10);
                found
            });
        });
    }
    group.finish();
}

fn recall(c: &mut Criterion) {
    let cue = vector(u64::MAX / 3);
    let memory = |i: usize| Memory {
        id: format!("m{i}"),
        content: format!("memory {i}"),
        embedding: vector(i as u64),
        confidence: 1.0,
        created_at_ms: 1,
        ..Memory::default()
    };
    let cue = Cue {
        embedding: &cue,
        ..Cue::default()
    };
    bench(c, "recall", memory, cue);
}

fn recall_text(c: &mut Criterion) {
    let cue = format!("memory {}", &words(7)[7..40]);
    let memory = |i: usize| {
        let content = words(i as u64);
        Memory {
            id: format!("m{i}"),
            embedding: mnemo_store::embed::lexical(&content),
            content,
            confidence: 1.0,
            created_at_ms: 1,
            ..Memory::default()
        }
    };
    let cue = Cue {
        text: &cue,
        ..Cue::default()
    };
    bench(c, "recall_text", memory, cue);
}

criterion_group!(benches, recall, recall_text);
criterion_main!(benches);
