//! Conversions between the wire types (`mnemo.v1`) and the store's records.

use mnemo_proto::v1;
use mnemo_store::{Consolidation, LogEntry, Memory, Op, Scored};

pub(crate) fn memory_to_wire(m: &Memory) -> v1::Memory {
    v1::Memory {
        id: m.id.clone(),
        content: m.content.clone(),
        embedding: m.embedding.clone(),
        confidence: m.confidence,
        created_at_ms: m.created_at_ms,
        tags: m.tags.clone(),
    }
}

pub(crate) fn memory_from_wire(m: v1::Memory) -> Memory {
    Memory {
        id: m.id,
        content: m.content,
        embedding: m.embedding,
        confidence: m.confidence,
        created_at_ms: m.created_at_ms,
        tags: m.tags,
    }
}

/// A scored memory on the wire, with its confidence scaled by `penalty`
/// (1.0 outside a partition).
pub(crate) fn scored_to_wire(s: &Scored, penalty: f32) -> v1::ScoredMemory {
    let mut memory = memory_to_wire(&s.memory);
    memory.confidence *= penalty;
    // Recall results carry no embeddings: they are large and the caller sent
    // the cue it compares with.
    memory.embedding.clear();
    v1::ScoredMemory {
        memory: Some(memory),
        score: s.score,
    }
}

pub(crate) fn entry_to_wire(e: LogEntry) -> v1::LogEntry {
    use v1::log_entry::Op as W;
    let op = e.op.map(|op| match op {
        Op::Remember(m) => W::Remember(v1::Remembered {
            memory: Some(memory_to_wire(&m)),
        }),
        Op::Forget(id) => W::Forget(v1::Forgotten { id }),
        Op::Consolidate(c) => W::Consolidate(v1::Consolidated {
            merged: c.merged.as_ref().map(memory_to_wire),
            inputs: c.inputs,
        }),
    });
    v1::LogEntry { seq: e.seq, op }
}

pub(crate) fn entry_from_wire(e: v1::LogEntry) -> LogEntry {
    use v1::log_entry::Op as W;
    let op = e.op.and_then(|op| match op {
        W::Remember(r) => r.memory.map(|m| Op::Remember(memory_from_wire(m))),
        W::Forget(f) => Some(Op::Forget(f.id)),
        W::Consolidate(c) => Some(Op::Consolidate(Consolidation {
            merged: c.merged.map(memory_from_wire),
            inputs: c.inputs,
        })),
    });
    LogEntry { seq: e.seq, op }
}
