//! Anti-entropy between two holders of a 100 000-memory space that differ by
//! 1 000 memories: what reconciliation costs (round trips, bytes, time), and
//! what a full sync moves, against shipping the whole space.
//!
//! The transport is in-process (the responder answers each message
//! directly), so the figures are the protocol's own: on the wire, gRPC adds
//! a few bytes of framing per message.

#![allow(missing_docs)]

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use mnemo_store::reconcile::{reconcile, respond};
use mnemo_store::{Element, Memory, Store, embed};

const SPACE: &str = "big";
const SIZE: usize = 100_000;
const DIFFERENT: usize = 1_000;

fn memory(i: usize) -> Element {
    let content = format!("memory {i} about topic {} and detail {}", i % 97, i % 1013);
    Element::Memory(Memory {
        id: format!("m{i:06}"),
        embedding: embed::lexical(&content),
        content,
        confidence: 1.0,
        created_at_ms: 1_700_000_000_000 + i as i64,
        ..Memory::default()
    })
}

fn filled(rt: &tokio::runtime::Runtime, skip_every: Option<usize>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let elements: Vec<Element> = (0..SIZE)
        .filter(|i| skip_every.is_none_or(|n| i % n != 0))
        .map(memory)
        .collect();
    for chunk in elements.chunks(10_000) {
        rt.block_on(store.merge(SPACE, chunk.to_vec())).unwrap();
    }
    (dir, store)
}

fn antientropy(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_da, a) = filled(&rt, None);
    // b lacks every 100th memory: 1 000 of 100 000.
    let (_db, b) = filled(&rt, Some(SIZE / DIFFERENT));

    let whole: usize = (0..SIZE)
        .map(|i| match memory(i) {
            Element::Memory(m) => prost::Message::encoded_len(&m),
            Element::Tombstone(_) => 0,
        })
        .sum();

    // One reconciliation, reported.
    let started = Instant::now();
    let diff = rt
        .block_on(reconcile(&a.reconciliation(SPACE), |m| {
            let b = &b;
            async move {
                Ok::<_, std::convert::Infallible>(respond(&b.reconciliation(SPACE), &m).unwrap())
            }
        }))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(diff.have.len(), DIFFERENT);
    assert!(diff.need.is_empty());
    let moved = a.elements(SPACE, &diff.have);
    let moved_bytes: usize = moved
        .iter()
        .map(|e| match e {
            Element::Memory(m) => prost::Message::encoded_len(m),
            Element::Tombstone(_) => 0,
        })
        .sum();
    eprintln!(
        "anti-entropy, {SIZE} memories differing by {DIFFERENT}: {} round trips, {} reconciliation \
         bytes ({} sent, {} received) in {:.1} ms; {} bytes of memories to move; the whole space \
         is {} bytes ({:.1}x more than reconciliation plus the difference)",
        diff.rounds,
        diff.sent + diff.received,
        diff.sent,
        diff.received,
        took.as_secs_f64() * 1e3,
        moved_bytes,
        whole,
        whole as f64 / (diff.sent + diff.received + moved_bytes as u64) as f64
    );
    let started = Instant::now();
    let merged = rt.block_on(b.merge(SPACE, moved)).unwrap();
    eprintln!(
        "anti-entropy: merging the {} missing memories durably took {:.1} ms",
        merged.applied,
        started.elapsed().as_secs_f64() * 1e3
    );

    let mut group = c.benchmark_group("antientropy");
    group.sample_size(10);
    group.bench_function("reconcile_100k_identical", |bench| {
        bench.iter(|| {
            rt.block_on(reconcile(&a.reconciliation(SPACE), |m| {
                let b = &b;
                async move {
                    Ok::<_, std::convert::Infallible>(
                        respond(&b.reconciliation(SPACE), &m).unwrap(),
                    )
                }
            }))
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, antientropy);
criterion_main!(benches);
