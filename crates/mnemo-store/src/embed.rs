//! Vectors: the lexical embedding that makes plain-text recall work without
//! a model, and the arithmetic recall scores with.
//!
//! The lexical embedding is feature hashing (Weinberger et al., 2009):
//! text is lower-cased and split into alphanumeric tokens; every token and
//! every pair of neighbouring tokens is hashed with xxh3 (stable across
//! platforms and releases) to one of [`LEXICAL_DIM`] buckets and a sign, and
//! the result is scaled to unit length. Same text, same vector, on any node.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Dimension of the lexical embedding.
pub const LEXICAL_DIM: usize = 256;

const UNIGRAM_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 0.5;
const BIGRAM_SEED: u64 = 0x6d6e_656d_6f5f_6267;

/// The lexical embedding of `text`, unit length.
pub fn lexical(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; LEXICAL_DIM];
    let lower = text.to_lowercase();
    let mut tokens = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty());
    let mut previous: Option<&str> = None;
    let mut any = false;
    for token in tokens.by_ref() {
        any = true;
        add_feature(
            &mut v,
            xxh3_64_with_seed(token.as_bytes(), 0),
            UNIGRAM_WEIGHT,
        );
        if let Some(p) = previous {
            let mut h = xxh3_64_with_seed(p.as_bytes(), BIGRAM_SEED);
            h ^= xxh3_64_with_seed(token.as_bytes(), h);
            add_feature(&mut v, h, BIGRAM_WEIGHT);
        }
        previous = Some(token);
    }
    if !any {
        // Punctuation only: the whole text is the one feature, so identical
        // texts still match each other.
        add_feature(
            &mut v,
            xxh3_64_with_seed(text.as_bytes(), 1),
            UNIGRAM_WEIGHT,
        );
    }
    normalize(&mut v);
    v
}

fn add_feature(v: &mut [f32], hash: u64, weight: f32) {
    let bucket = (hash % LEXICAL_DIM as u64) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    v[bucket] += sign * weight;
}

/// Scales `v` to unit length; leaves an all-zero vector as it is.
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        let inv = 1.0 / norm;
        for x in v {
            *x *= inv;
        }
    }
}

/// Dot product, written so the compiler vectorises it: eight independent
/// accumulators over fixed-size chunks.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_unit_length() {
        let a = lexical("The cat sat on the mat");
        let b = lexical("The cat sat on the mat");
        assert_eq!(a, b);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(a.len(), LEXICAL_DIM);
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        assert_eq!(lexical("Hello, World!"), lexical("hello world"));
    }

    #[test]
    fn related_text_scores_above_unrelated() {
        let q = lexical("where did I park the car");
        let near = lexical("I parked the car on level 3");
        let far = lexical("quarterly revenue grew by four percent");
        assert!(dot(&q, &near) > dot(&q, &far));
    }

    #[test]
    fn punctuation_only_text_still_embeds() {
        let v = lexical("?!");
        assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
        assert_eq!(v, lexical("?!"));
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.01).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
