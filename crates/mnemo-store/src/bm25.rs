//! Lexical ranking: BM25 over one space's memories (an inverted index kept
//! beside the recall index's rows).
//!
//! score(memory, cue) = Σ over the cue's distinct terms t of
//! idf(t) · tf·(k1 + 1) / (tf + k1·(1 − b + b·len/avg_len)), with
//! idf(t) = ln(1 + (N − df + 0.5)/(df + 0.5)), k1 = 1.2, b = 0.75: a term
//! counts more the rarer it is in the space, with diminishing returns for
//! repeats, and long memories do not win by length alone. A memory sharing
//! no term with the cue scores 0: no evidence it is relevant.

use std::collections::HashMap;
use std::sync::Arc;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// A row's distinct terms with their frequency in it.
type RowTerms = Box<[(Arc<str>, u16)]>;

/// The inverted index of one space. Rows are the recall index's rows.
#[derive(Debug, Default)]
pub(crate) struct Bm25 {
    /// term -> (row, term frequency in that row).
    postings: HashMap<Arc<str>, Vec<(u32, u16)>>,
    /// Per row, its distinct terms with their frequency.
    rows: Vec<RowTerms>,
    /// Per row, its length in terms.
    lengths: Vec<u32>,
    total_length: u64,
}

impl Bm25 {
    /// Appends a row for a memory whose text has `terms`.
    pub(crate) fn push(&mut self, terms: &[String]) {
        let row = self.rows.len();
        let distinct = self.link(row, terms);
        self.rows.push(distinct);
        self.lengths.push(terms.len() as u32);
        self.total_length += terms.len() as u64;
    }

    /// Replaces row `row`'s terms.
    pub(crate) fn replace(&mut self, row: usize, terms: &[String]) {
        self.unlink(row);
        self.rows[row] = self.link(row, terms);
        self.total_length -= u64::from(self.lengths[row]);
        self.lengths[row] = terms.len() as u32;
        self.total_length += terms.len() as u64;
    }

    /// Adds `row` to the postings of its terms; returns them with counts.
    fn link(&mut self, row: usize, terms: &[String]) -> RowTerms {
        let mut counts: HashMap<&str, u16> = HashMap::new();
        for t in terms {
            let n = counts.entry(t.as_str()).or_default();
            *n = n.saturating_add(1);
        }
        let mut distinct: Vec<(Arc<str>, u16)> = Vec::with_capacity(counts.len());
        for (term, tf) in counts {
            let key = match self.postings.get_key_value(term) {
                Some((k, _)) => Arc::clone(k),
                None => Arc::from(term),
            };
            self.postings
                .entry(Arc::clone(&key))
                .or_default()
                .push((row as u32, tf));
            distinct.push((key, tf));
        }
        distinct.into_boxed_slice()
    }

    /// Removes row `row`, moving the last row into its place (as the
    /// recall index does).
    pub(crate) fn swap_remove(&mut self, row: usize) {
        self.unlink(row);
        let last = self.rows.len() - 1;
        if row != last {
            self.relink(last, row);
        }
        self.rows.swap_remove(row);
        self.total_length -= u64::from(self.lengths.swap_remove(row));
    }

    /// Drops row `row` from the postings of its terms.
    fn unlink(&mut self, row: usize) {
        for (term, _) in &self.rows[row] {
            if let Some(list) = self.postings.get_mut(term) {
                list.retain(|(r, _)| *r as usize != row);
                if list.is_empty() {
                    self.postings.remove(term);
                }
            }
        }
    }

    /// Renumbers row `from` as `to` in the postings of its terms.
    fn relink(&mut self, from: usize, to: usize) {
        for (term, _) in &self.rows[from] {
            if let Some(list) = self.postings.get_mut(term) {
                for entry in list.iter_mut().filter(|(r, _)| *r as usize == from) {
                    entry.0 = to as u32;
                }
            }
        }
    }

    /// The BM25 score of every row, by row: 0 for a row sharing no term
    /// with `cue_terms`, positive otherwise.
    pub(crate) fn scores(&self, cue_terms: &[String]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows.len()];
        let n = self.rows.len() as f32;
        if n == 0.0 {
            return out;
        }
        let avg = (self.total_length as f32 / n).max(1.0);
        let mut seen: Vec<&str> = Vec::new();
        for term in cue_terms {
            if seen.contains(&term.as_str()) {
                continue;
            }
            seen.push(term);
            let Some(list) = self.postings.get(term.as_str()) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(row, tf) in list {
                let tf = f32::from(tf);
                let len = self.lengths[row as usize] as f32;
                let weight = tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
                out[row as usize] += idf * weight;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::terms;

    #[test]
    fn rarer_terms_count_more_and_rows_stay_consistent() {
        let mut ix = Bm25::default();
        for text in [
            "the car is parked on level 3",
            "the car needs new tyres",
            "the keys are on the kitchen counter",
        ] {
            ix.push(&terms(text));
        }
        let matched =
            |s: Vec<f32>| -> Vec<usize> { (0..s.len()).filter(|&i| s[i] > 0.0).collect() };
        let s = ix.scores(&terms("where are my car keys"));
        assert!(s[2] > s[0], "keys is rarer than car: {s:?}");
        assert!((s[0] - s[1]).abs() < 0.2);
        ix.swap_remove(0);
        // Row 2 moved to row 0.
        assert_eq!(matched(ix.scores(&terms("kitchen"))), [0]);
        assert!(matched(ix.scores(&terms("level"))).is_empty());
        ix.replace(1, &terms("tyres for the bike"));
        assert_eq!(matched(ix.scores(&terms("bike"))), [1]);
        assert!(matched(ix.scores(&terms("car"))).is_empty());
    }
}
