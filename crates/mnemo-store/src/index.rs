//! The in-memory layout recall scans: per space, one contiguous row-major
//! matrix of unit-length embeddings beside a parallel array of records, so a
//! recall is a single linear pass of dot products over cache-friendly memory.
//! Rebuilt from redb at start-up; the database stays the source of truth.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::embed::{dot, normalize};
use crate::memory::{Memory, Scored};

/// One space's live (not forgotten) memories.
#[derive(Debug, Default)]
pub(crate) struct SpaceIndex {
    dim: usize,
    /// `rows.len() * dim` floats; row `i` belongs to `records[i]`.
    vectors: Vec<f32>,
    records: Vec<Arc<Memory>>,
    confidences: Vec<f32>,
    row_of: HashMap<String, usize>,
}

impl SpaceIndex {
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Dimension of the space's embeddings; 0 while it is empty. A space
    /// whose last memory is forgotten takes any dimension again, as it does
    /// after a restart (the dimension is that of the live memories).
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn set_dim(&mut self, dim: usize) {
        debug_assert!(self.records.is_empty() || self.dim == dim);
        self.dim = dim;
    }

    /// Adds or replaces a memory. Its embedding must have the space's dimension.
    pub(crate) fn insert(&mut self, memory: Arc<Memory>) {
        debug_assert_eq!(memory.embedding.len(), self.dim);
        let mut row = memory.embedding.clone();
        normalize(&mut row);
        if let Some(&i) = self.row_of.get(&memory.id) {
            self.vectors[i * self.dim..(i + 1) * self.dim].copy_from_slice(&row);
            self.confidences[i] = memory.confidence;
            self.records[i] = memory;
            return;
        }
        self.row_of.insert(memory.id.clone(), self.records.len());
        self.vectors.extend_from_slice(&row);
        self.confidences.push(memory.confidence);
        self.records.push(memory);
    }

    /// Removes a memory by swapping the last row into its place.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(i) = self.row_of.remove(id) else {
            return false;
        };
        let last = self.records.len() - 1;
        if i != last {
            let (dim, moved_id) = (self.dim, self.records[last].id.clone());
            self.vectors
                .copy_within(last * dim..(last + 1) * dim, i * dim);
            self.records.swap(i, last);
            self.confidences.swap(i, last);
            self.row_of.insert(moved_id, i);
        }
        self.vectors.truncate(last * self.dim);
        self.records.pop();
        self.confidences.pop();
        if self.records.is_empty() {
            self.dim = 0;
        }
        true
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Arc<Memory>> {
        self.row_of.get(id).map(|&i| &self.records[i])
    }

    pub(crate) fn records(&self) -> &[Arc<Memory>] {
        &self.records
    }

    /// Unit-length embedding of row `i`.
    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// The `k` best matches of a unit-length `cue` whose confidence is at least
    /// `min_confidence`, best first; equal scores are ordered by id.
    pub(crate) fn top_k(&self, cue: &[f32], k: usize, min_confidence: f32) -> Vec<Scored> {
        debug_assert_eq!(cue.len(), self.dim);
        let mut heap: BinaryHeap<Candidate<'_>> = BinaryHeap::with_capacity(k + 1);
        for (i, row) in self.vectors.chunks_exact(self.dim.max(1)).enumerate() {
            if self.confidences[i] < min_confidence {
                continue;
            }
            let score = dot(cue, row);
            let candidate = Candidate {
                score,
                id: &self.records[i].id,
                row: i,
            };
            if heap.len() < k {
                heap.push(candidate);
            } else if let Some(worst) = heap.peek()
                && candidate.cmp(worst) == Ordering::Less
            {
                heap.pop();
                heap.push(candidate);
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|c| Scored {
                memory: Arc::clone(&self.records[c.row]),
                score: c.score,
            })
            .collect()
    }
}

/// Orders candidates best first: higher score, then smaller id. The heap is
/// a max-heap of this order, so its top is the worst candidate kept.
struct Candidate<'a> {
    score: f32,
    id: &'a str,
    row: usize,
}

impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.id.cmp(other.id))
    }
}
impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(id: &str, embedding: Vec<f32>, confidence: f32) -> Arc<Memory> {
        Arc::new(Memory {
            id: id.into(),
            content: id.into(),
            embedding,
            confidence,
            ..Memory::default()
        })
    }

    fn index(items: &[(&str, [f32; 2], f32)]) -> SpaceIndex {
        let mut ix = SpaceIndex::default();
        ix.set_dim(2);
        for (id, e, c) in items {
            ix.insert(mem(id, e.to_vec(), *c));
        }
        ix
    }

    fn ids(found: &[Scored]) -> Vec<&str> {
        found.iter().map(|s| s.memory.id.as_str()).collect()
    }

    #[test]
    fn best_first_ties_by_id() {
        let ix = index(&[
            ("b", [1.0, 0.0], 1.0),
            ("a", [2.0, 0.0], 1.0),
            ("c", [0.0, 1.0], 1.0),
            ("d", [1.0, 1.0], 1.0),
        ]);
        let found = ix.top_k(&[1.0, 0.0], 3, 0.0);
        assert_eq!(ids(&found), ["a", "b", "d"]);
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
        assert!((found[0].score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn min_confidence_filters() {
        let ix = index(&[("low", [1.0, 0.0], 0.2), ("high", [0.5, 0.5], 0.9)]);
        assert_eq!(ids(&ix.top_k(&[1.0, 0.0], 10, 0.5)), ["high"]);
    }

    #[test]
    fn remove_keeps_rows_consistent() {
        let mut ix = index(&[
            ("a", [1.0, 0.0], 1.0),
            ("b", [0.0, 1.0], 1.0),
            ("c", [1.0, 1.0], 1.0),
        ]);
        assert!(ix.remove("a"));
        assert!(!ix.remove("a"));
        assert_eq!(ix.len(), 2);
        assert_eq!(ids(&ix.top_k(&[0.0, 1.0], 1, 0.0)), ["b"]);
        assert_eq!(ix.get("c").unwrap().id, "c");
        assert_eq!(ix.row(ix.row_of["c"]).len(), 2);
    }
}
