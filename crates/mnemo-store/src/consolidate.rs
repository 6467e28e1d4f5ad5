//! Consolidation: near-duplicates within a space become one memory.
//!
//! Two memories are near-duplicates when the cosine similarity of their
//! embeddings is at or above a threshold (default [`DEFAULT_THRESHOLD`]).
//! Groups are the connected components of that relation, which do not depend
//! on the order memories are visited in. Each group of two or more becomes a
//! merged memory:
//! - id: `c-` and the 128-bit xxh3 of the sorted input ids, so the same
//!   inputs give the same id on any node;
//! - content of the most confident input (ties: smallest id); tags of all
//!   inputs, sorted and deduplicated, the first [`MAX_TAGS`] kept (a merged
//!   memory obeys the same limits as any other, or holders would refuse it);
//! - embedding: the normalised sum of the inputs' unit embeddings;
//! - confidence: noisy-or of the inputs, `1 - Π(1 - cᵢ)`: independent
//!   witnesses of the same fact make it more credible;
//! - created_at: the latest of the inputs.
//!
//! The pass compares every pair, O(n²·dim); spaces above
//! [`MAX_CONSOLIDATE`] memories are refused rather than stalling the node.

use std::collections::BTreeSet;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_128;

use crate::embed::{dot, normalize};
use crate::memory::{Consolidation, Memory};
use crate::validate::MAX_TAGS;

/// Similarity at or above which two memories merge.
pub const DEFAULT_THRESHOLD: f32 = 0.92;
/// Largest space consolidation accepts.
pub const MAX_CONSOLIDATE: usize = 20_000;

/// Plans the merges of a space. `items` pairs each memory with its unit
/// embedding; their order does not matter.
pub fn plan(items: &[(Arc<Memory>, &[f32])], threshold: f32) -> Vec<Consolidation> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[a].0.id.cmp(&items[b].0.id));
    let sorted: Vec<&(Arc<Memory>, &[f32])> = order.iter().map(|&i| &items[i]).collect();

    let mut parent: Vec<usize> = (0..sorted.len()).collect();
    for i in 0..sorted.len() {
        for j in i + 1..sorted.len() {
            if dot(sorted[i].1, sorted[j].1) >= threshold {
                union(&mut parent, i, j);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for i in 0..sorted.len() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }
    let mut merges: Vec<Consolidation> = groups
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|g| merge(&g.iter().map(|&i| sorted[i]).collect::<Vec<_>>()))
        .collect();
    merges.sort_by(|a, b| a.inputs.cmp(&b.inputs));
    merges
}

/// Id of the memory merged from `inputs` (sorted ids).
pub fn merged_id(inputs: &[String]) -> String {
    let mut bytes = Vec::with_capacity(inputs.iter().map(|s| s.len() + 1).sum());
    for id in inputs {
        bytes.extend_from_slice(id.as_bytes());
        bytes.push(0);
    }
    format!("c-{:032x}", xxh3_128(&bytes))
}

/// Merges one group; `group` is sorted by id.
fn merge(group: &[&(Arc<Memory>, &[f32])]) -> Consolidation {
    let inputs: Vec<String> = group.iter().map(|(m, _)| m.id.clone()).collect();
    let lead = group
        .iter()
        .map(|(m, _)| m)
        .max_by(|a, b| {
            a.confidence
                .total_cmp(&b.confidence)
                .then_with(|| b.id.cmp(&a.id))
        })
        .expect("a group has members");
    let dim = group[0].1.len();
    let mut embedding = vec![0.0f32; dim];
    for (_, row) in group {
        for (e, x) in embedding.iter_mut().zip(row.iter()) {
            *e += x;
        }
    }
    normalize(&mut embedding);
    let doubt: f32 = group.iter().map(|(m, _)| 1.0 - m.confidence).product();
    let tags: BTreeSet<&String> = group.iter().flat_map(|(m, _)| &m.tags).collect();
    let merged = Memory {
        id: merged_id(&inputs),
        content: lead.content.clone(),
        embedding,
        confidence: (1.0 - doubt).clamp(0.0, 1.0),
        created_at_ms: group
            .iter()
            .map(|(m, _)| m.created_at_ms)
            .max()
            .unwrap_or(0),
        tags: tags.into_iter().take(MAX_TAGS).cloned().collect(),
        minority: group.iter().any(|(m, _)| m.minority),
    };
    Consolidation {
        merged: Some(merged),
        inputs,
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The smaller index (smaller id) becomes the root: roots are stable.
    let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[hi] = lo;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::lexical;

    fn mem(id: &str, text: &str, confidence: f32) -> Arc<Memory> {
        Arc::new(Memory {
            id: id.into(),
            content: text.into(),
            embedding: lexical(text),
            confidence,
            created_at_ms: id.len() as i64,
            tags: vec![format!("t-{id}")],
            minority: false,
        })
    }

    fn run(ms: &[Arc<Memory>]) -> Vec<Consolidation> {
        let items: Vec<(Arc<Memory>, &[f32])> = ms
            .iter()
            .map(|m| (Arc::clone(m), m.embedding.as_slice()))
            .collect();
        plan(&items, DEFAULT_THRESHOLD)
    }

    #[test]
    fn merges_duplicates_only() {
        let ms = vec![
            mem("a", "the meeting is on tuesday at noon", 0.5),
            mem("b", "The meeting is on Tuesday at noon!", 0.6),
            mem("c", "buy oat milk on the way home", 0.9),
        ];
        let out = run(&ms);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].inputs, ["a", "b"]);
        let merged = out[0].merged.as_ref().unwrap();
        assert_eq!(merged.id, merged_id(&["a".into(), "b".into()]));
        assert!(
            (merged.confidence - 0.8).abs() < 1e-6,
            "noisy-or of 0.5 and 0.6"
        );
        assert_eq!(merged.content, "The meeting is on Tuesday at noon!");
        assert_eq!(merged.tags, ["t-a", "t-b"]);
    }

    #[test]
    fn same_inputs_in_any_order_give_identical_output() {
        let ms = vec![
            mem("x1", "alpha beta gamma delta", 0.3),
            mem("x2", "alpha beta gamma delta", 0.3),
            mem("x3", "alpha beta gamma delta", 0.7),
            mem("y1", "completely different words here", 0.4),
            mem("y2", "completely different words here", 0.2),
        ];
        let expected = run(&ms);
        assert_eq!(expected.len(), 2);
        let mut rotated = ms.clone();
        for _ in 0..ms.len() {
            rotated.rotate_left(1);
            assert_eq!(run(&rotated), expected);
            let mut reversed = rotated.clone();
            reversed.reverse();
            assert_eq!(run(&reversed), expected);
        }
    }

    #[test]
    fn a_merge_of_many_tags_keeps_the_limit() {
        let mut a = (*mem("a", "the standup moved to ten on mondays", 0.5)).clone();
        let mut b = (*mem("b", "the standup moved to ten on mondays", 0.5)).clone();
        a.tags = (0..20).map(|i| format!("left-{i:02}")).collect();
        b.tags = (0..20).map(|i| format!("right-{i:02}")).collect();
        let out = run(&[Arc::new(a), Arc::new(b)]);
        let merged = out[0].merged.as_ref().unwrap();
        assert_eq!(merged.tags.len(), MAX_TAGS);
        assert_eq!(merged.tags[0], "left-00", "the first of the sorted tags");
        assert!(crate::validate::memory("s", merged).is_ok());
    }

    #[test]
    fn merged_id_depends_on_inputs_only() {
        let a = merged_id(&["a".into(), "bc".into()]);
        assert_eq!(a, merged_id(&["a".into(), "bc".into()]));
        assert_ne!(a, merged_id(&["ab".into(), "c".into()]));
        assert!(crate::validate::id(&a).is_ok());
    }
}
