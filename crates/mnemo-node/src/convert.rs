//! Conversions between the wire types (`mnemo.v1`) and the store's records.

use mnemo_proto::v1;
use mnemo_store::set::{BUCKETS, Bucket, Summary};
use mnemo_store::{Element, Memory, Scored};

/// A memory on the wire: `confidence` is its current confidence, the one it
/// was written with is `written_confidence`.
pub(crate) fn memory_to_wire(m: &Memory) -> v1::Memory {
    v1::Memory {
        id: m.id.clone(),
        content: m.content.clone(),
        embedding: m.embedding.clone(),
        confidence: m.current_confidence(),
        written_confidence: Some(m.confidence),
        recalled_at_ms: m.recalled_at_ms,
        decay: m.decay.map(|d| v1::Decay {
            as_of_ms: d.as_of_ms,
            half_life_ms: d.half_life_ms,
            floor: d.floor,
        }),
        created_at_ms: m.created_at_ms,
        tags: m.tags.clone(),
        minority: m.minority,
        merged_from: m
            .merged_from
            .iter()
            .map(|i| v1::MergedInput {
                id: i.id.clone(),
                content: i.content.clone(),
                confidence: i.confidence,
                created_at_ms: i.created_at_ms,
                tags: i.tags.clone(),
            })
            .collect(),
    }
}

/// A memory another holder sent, as stored: its current confidence is
/// derived again from what it was written with and its use. A sender that
/// predates decay sends no `written_confidence`: its `confidence` is that.
pub(crate) fn memory_from_wire(m: v1::Memory) -> Memory {
    Memory {
        id: m.id,
        content: m.content,
        embedding: m.embedding,
        confidence: m.written_confidence.unwrap_or(m.confidence),
        recalled_at_ms: m.recalled_at_ms,
        decay: m.decay.map(|d| mnemo_store::Decay {
            as_of_ms: d.as_of_ms,
            half_life_ms: d.half_life_ms,
            floor: d.floor,
        }),
        created_at_ms: m.created_at_ms,
        tags: m.tags,
        minority: m.minority,
        merged_from: m
            .merged_from
            .into_iter()
            .map(|i| mnemo_store::MergedInput {
                id: i.id,
                content: i.content,
                confidence: i.confidence,
                created_at_ms: i.created_at_ms,
                tags: i.tags,
            })
            .collect(),
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

pub(crate) fn element_to_wire(e: Element) -> v1::Element {
    use v1::element::Kind;
    v1::Element {
        kind: Some(match e {
            Element::Memory(m) => Kind::Memory(memory_to_wire(&m)),
            Element::Tombstone(id) => Kind::Tombstone(id),
        }),
    }
}

/// `None` for an element with no kind (refused by the caller).
pub(crate) fn element_from_wire(e: v1::Element) -> Option<Element> {
    use v1::element::Kind;
    Some(match e.kind? {
        Kind::Memory(m) => Element::Memory(memory_from_wire(m)),
        Kind::Tombstone(id) => Element::Tombstone(id),
    })
}

/// A space's summary as a `CompareRequest` carries it: `(digests, counts)`.
pub(crate) fn summary_to_wire(summary: &Summary) -> (Vec<u8>, Vec<u64>) {
    let buckets = summary.buckets();
    let digests = buckets
        .iter()
        .flat_map(|b| b.digest.to_be_bytes())
        .collect();
    (digests, buckets.iter().map(|b| b.count).collect())
}

/// A summary from a `CompareRequest`; the error names the field at fault.
pub(crate) fn summary_from_wire(
    digests: &[u8],
    counts: &[u64],
) -> Result<Summary, (&'static str, String)> {
    let digest_bytes = BUCKETS * 16;
    if digests.len() != digest_bytes {
        return Err((
            "digests",
            format!(
                "is {} bytes; a summary has {digest_bytes} ({BUCKETS} buckets of 16)",
                digests.len()
            ),
        ));
    }
    if counts.len() != BUCKETS {
        return Err((
            "counts",
            format!("has {} counts; a summary has {BUCKETS}", counts.len()),
        ));
    }
    let buckets = digests
        .chunks_exact(16)
        .zip(counts)
        .map(|(digest, &count)| Bucket {
            digest: u128::from_be_bytes(digest.try_into().expect("16 bytes")),
            count,
        })
        .collect();
    Ok(Summary::from_buckets(buckets).expect("BUCKETS buckets"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_confidence_crosses_the_wire_and_an_older_sender_still_counts() {
        let m = Memory {
            id: "a".into(),
            content: "the car keys are in the blue bowl".into(),
            embedding: vec![1.0],
            confidence: 0.8,
            created_at_ms: 1,
            decay: Some(mnemo_store::Decay {
                as_of_ms: 1 + 2 * 86_400_000,
                half_life_ms: 86_400_000,
                floor: 0.1,
            }),
            ..Memory::default()
        };
        let wire = memory_to_wire(&m);
        assert!(
            (wire.confidence - 0.2).abs() < 1e-6,
            "current: {}",
            wire.confidence
        );
        assert_eq!(wire.written_confidence, Some(0.8));
        assert_eq!(memory_from_wire(wire.clone()), m);
        // A node that predates decay sends what was written as `confidence`.
        let older = v1::Memory {
            written_confidence: None,
            decay: None,
            confidence: 0.8,
            ..wire
        };
        assert_eq!(
            memory_from_wire(older).confidence.to_bits(),
            0.8f32.to_bits()
        );
    }

    #[test]
    fn a_summary_crosses_the_wire_whole_and_a_bad_one_names_its_field() {
        let mut buckets = vec![mnemo_store::set::Bucket::default(); BUCKETS];
        buckets[7] = mnemo_store::set::Bucket {
            digest: u128::MAX - 3,
            count: 2,
        };
        let summary = Summary::from_buckets(buckets).unwrap();
        let (digests, counts) = summary_to_wire(&summary);
        assert_eq!(summary_from_wire(&digests, &counts).unwrap(), summary);
        let short = summary_from_wire(&digests[1..], &counts).unwrap_err();
        assert_eq!(short.0, "digests");
        assert!(short.1.contains("4095 bytes"), "{}", short.1);
        let few = summary_from_wire(&digests, &counts[1..]).unwrap_err();
        assert_eq!(few.0, "counts");
        assert!(few.1.contains("255 counts"), "{}", few.1);
    }
}
