//! The in-memory layout recall scans: per space, one contiguous row-major
//! matrix of unit-length embeddings beside a parallel array of records, so a
//! recall is a single linear pass of dot products over cache-friendly memory.
//! Rebuilt from redb at start-up; the database stays the source of truth.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::bm25::Bm25;
use crate::embed::{dot, normalize};
use crate::memory::{Memory, Scored};

/// A cue as the index ranks with it.
pub(crate) struct Query<'a> {
    /// The cue text's terms (empty: no text).
    pub(crate) terms: &'a [String],
    /// The cue's unit embedding, in the space's dimension.
    pub(crate) vector: Option<&'a [f32]>,
    /// Also return memories with no evidence of relevance, after the rest.
    pub(crate) include_unmatched: bool,
    /// Only memories carrying every one of these tags.
    pub(crate) tags: &'a [String],
}

/// Reciprocal rank fusion's constant: ranks past the first few count
/// little, and neither ranking's scale matters.
const RRF_K: f32 = 60.0;

/// One space's live (not forgotten) memories.
#[derive(Debug, Default)]
pub(crate) struct SpaceIndex {
    dim: usize,
    /// `rows.len() * dim` floats; row `i` belongs to `records[i]`.
    vectors: Vec<f32>,
    records: Vec<Arc<Memory>>,
    confidences: Vec<f32>,
    row_of: HashMap<String, usize>,
    lexicon: Bm25,
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

    /// Adds or replaces a memory whose text has the terms `words`. Its
    /// embedding must have the space's dimension.
    pub(crate) fn insert(&mut self, memory: Arc<Memory>, words: &[String]) {
        debug_assert_eq!(memory.embedding.len(), self.dim);
        let mut row = memory.embedding.clone();
        normalize(&mut row);
        if let Some(&i) = self.row_of.get(&memory.id) {
            self.vectors[i * self.dim..(i + 1) * self.dim].copy_from_slice(&row);
            self.confidences[i] = memory.current_confidence();
            self.records[i] = memory;
            self.lexicon.replace(i, words);
            return;
        }
        self.lexicon.push(words);
        self.row_of.insert(memory.id.clone(), self.records.len());
        self.vectors.extend_from_slice(&row);
        self.confidences.push(memory.current_confidence());
        self.records.push(memory);
    }

    /// Removes a memory by swapping the last row into its place.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(i) = self.row_of.remove(id) else {
            return false;
        };
        let last = self.records.len() - 1;
        self.lexicon.swap_remove(i);
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

    /// The `k` memories that best match `query` whose confidence is at
    /// least `min_confidence`, best first. Text alone ranks by BM25, an
    /// embedding alone by cosine similarity, both by reciprocal rank fusion
    /// of the two. Only memories with some evidence of relevance (a shared
    /// term, a positive similarity) come back, unless the query asks for
    /// the rest too (after them, score 0). Equal scores go to the more
    /// confident, then the more recent memory, then the smaller id.
    pub(crate) fn rank(&self, query: &Query<'_>, k: usize, min_confidence: f32) -> Vec<Scored> {
        if let (true, Some(cue), false, true) = (
            query.terms.is_empty(),
            query.vector,
            query.include_unmatched,
            query.tags.is_empty(),
        ) {
            // The common embedding-only case: one pass, no allocation.
            return self.top_k(cue, k, min_confidence);
        }
        // Per row, its score; 0 is no evidence of relevance.
        let lexical = (!query.terms.is_empty()).then(|| self.lexicon.scores(query.terms));
        let vector = query.vector.map(|cue| {
            self.vectors
                .chunks_exact(self.dim.max(1))
                .map(|row| dot(cue, row).max(0.0))
                .collect::<Vec<f32>>()
        });
        let scores: Vec<f32> = match (lexical, vector) {
            (Some(one), None) | (None, Some(one)) => one,
            (Some(l), Some(v)) => {
                let mut fused = vec![0.0f32; self.records.len()];
                for ranking in [l, v] {
                    let ranked = self.ordered(positive(&ranking));
                    for (rank, (row, _)) in ranked.into_iter().enumerate() {
                        fused[row as usize] += 1.0 / (RRF_K + rank as f32 + 1.0);
                    }
                }
                fused
            }
            (None, None) => vec![0.0; self.records.len()],
        };
        let eligible = |row: usize| {
            self.confidences[row] >= min_confidence
                && query
                    .tags
                    .iter()
                    .all(|t| self.records[row].tags.contains(t))
        };
        let found: Vec<(u32, f32)> = positive(&scores)
            .into_iter()
            .filter(|(row, _)| eligible(*row as usize))
            .collect();
        let mut found = self.best(found, k);
        if query.include_unmatched && found.len() < k {
            let rest: Vec<(u32, f32)> = (0..scores.len())
                .filter(|&row| scores[row] <= 0.0 && eligible(row))
                .map(|row| (row as u32, 0.0))
                .collect();
            let more = k - found.len();
            found.extend(self.best(rest, more));
        }
        found
            .into_iter()
            .map(|(row, score)| Scored {
                memory: Arc::clone(&self.records[row as usize]),
                score,
            })
            .collect()
    }

    /// The `k` best of `candidates`, in order.
    fn best(&self, mut candidates: Vec<(u32, f32)>, k: usize) -> Vec<(u32, f32)> {
        if candidates.len() > k {
            candidates.select_nth_unstable_by(k, |a, b| self.order(*a, *b));
            candidates.truncate(k);
        }
        self.ordered(candidates)
    }

    fn ordered(&self, mut candidates: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
        candidates.sort_unstable_by(|a, b| self.order(*a, *b));
        candidates
    }

    /// [`best_first`] of two (row, score) pairs.
    fn order(&self, a: (u32, f32), b: (u32, f32)) -> Ordering {
        let side = |(row, score): (u32, f32)| {
            let row = row as usize;
            (score, self.confidences[row], &*self.records[row])
        };
        best_first(side(a), side(b))
    }

    /// The `k` best matches of a unit-length `cue` with a positive
    /// similarity whose confidence is at least `min_confidence`, best first
    /// (ties as in [`SpaceIndex::rank`]).
    fn top_k(&self, cue: &[f32], k: usize, min_confidence: f32) -> Vec<Scored> {
        debug_assert_eq!(cue.len(), self.dim);
        let mut heap: BinaryHeap<Candidate<'_>> = BinaryHeap::with_capacity(k + 1);
        for (i, row) in self.vectors.chunks_exact(self.dim.max(1)).enumerate() {
            if self.confidences[i] < min_confidence {
                continue;
            }
            let score = dot(cue, row);
            if score <= 0.0 {
                continue;
            }
            let candidate = Candidate {
                score,
                confidence: self.confidences[i],
                memory: &self.records[i],
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

/// The rows with a positive score.
fn positive(scores: &[f32]) -> Vec<(u32, f32)> {
    scores
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > 0.0)
        .map(|(row, s)| (row as u32, *s))
        .collect()
}

/// One side of a comparison: a score, the memory's current confidence (as
/// the index keeps it), the memory.
type Ranked<'a> = (f32, f32, &'a Memory);

/// Best first: the higher score, then the more confident now, the more
/// recently used (written or recalled) memory, then the smaller id.
fn best_first((a_score, a_conf, a): Ranked<'_>, (b_score, b_conf, b): Ranked<'_>) -> Ordering {
    b_score
        .total_cmp(&a_score)
        .then_with(|| b_conf.total_cmp(&a_conf))
        .then_with(|| b.last_used_ms().cmp(&a.last_used_ms()))
        .then_with(|| a.id.cmp(&b.id))
}

/// A memory kept by [`SpaceIndex::top_k`], ordered by [`best_first`]. The
/// heap is a max-heap of this order, so its top is the worst one kept.
struct Candidate<'a> {
    score: f32,
    confidence: f32,
    memory: &'a Memory,
    row: usize,
}

impl Ord for Candidate<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        best_first(
            (self.score, self.confidence, self.memory),
            (other.score, other.confidence, other.memory),
        )
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
            ix.insert(mem(id, e.to_vec(), *c), &[]);
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
