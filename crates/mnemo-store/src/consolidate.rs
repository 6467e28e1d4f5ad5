//! Consolidation: memories that say the same thing become one memory.
//!
//! It must never cost a fact, so two memories merge only when they are the
//! **same statement**:
//! - their texts are equal once normalised (Unicode NFKC, lower case,
//!   punctuation and runs of whitespace made single spaces): exact copies
//!   and case, punctuation, whitespace or Unicode variants; or
//! - both carry embeddings their client supplied (not the built-in lexical
//!   one), with a cosine similarity at or above the threshold (default
//!   [`DEFAULT_THRESHOLD`]), **and** their texts do not conflict: the same
//!   numbers, the same negations, the same capitalised (named) words, and
//!   not the same words in another order ("prefers tea and dislikes coffee"
//!   against "prefers coffee and dislikes tea").
//!
//! Memories with the built-in lexical embedding merge on equal text only:
//! that embedding counts words, so similar vectors are no evidence of one
//! meaning. Groups are the connected components of the relation; a group in
//! which some pair is not the same statement falls back to its equal-text
//! subgroups. Each group of two or more becomes a merged memory:
//! - id: `c-` and the 128-bit xxh3 of the sorted input ids, so the same
//!   inputs give the same id on any node;
//! - content and embedding of the most confident input (ties: smallest id);
//! - confidence: the highest the inputs were written with (repeating a
//!   statement does not make it truer);
//! - use: the latest recall of any input and its latest decay (joined as
//!   in [`crate::decay`]), so the merge decays from the statement's last use;
//! - tags of all inputs, sorted and deduplicated, the first [`MAX_TAGS`];
//! - created_at: the latest of the inputs;
//! - `merged_from`: every input as it was (id, text, confidence, time,
//!   tags), and the inputs of any merged input, so nothing said is lost.
//!   A group whose record would pass [`MAX_MERGED_FROM`] inputs or
//!   [`MAX_PROVENANCE_BYTES`] of text is left as it is.
//!
//! The plan is a pure function of the space's memories (any order gives the
//! same merges), so it can be shown first (a dry run) and replicas merge
//! the result like any other write.
//!
//! The embedding pass compares every pair of client-embedded memories,
//! O(n²·dim); spaces above [`MAX_CONSOLIDATE`] memories are refused rather
//! than stalling the node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh3::xxh3_128;

use crate::embed::{dot, lexical};
use crate::memory::{Consolidation, Memory, MergedInput, Usage};
use crate::validate::{MAX_MERGED_FROM, MAX_PROVENANCE_BYTES, MAX_TAGS};

/// Similarity of client-supplied embeddings at or above which two
/// memories whose texts do not conflict merge.
pub const DEFAULT_THRESHOLD: f32 = 0.97;
/// Largest space consolidation accepts.
pub const MAX_CONSOLIDATE: usize = 20_000;

/// Words that negate what they stand near.
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "cannot",
    "without", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "cant",
    "couldnt", "shouldnt", "wouldnt", "hasnt", "havent", "hadnt", "mustnt",
];

/// A text as consolidation compares it.
struct Text {
    /// Normalised: NFKC, lower case, words separated by single spaces.
    normal: String,
    /// Words containing a digit.
    numbers: Vec<String>,
    negations: Vec<String>,
    /// Capitalised words that do not start a sentence, lower-cased.
    names: BTreeSet<String>,
}

impl Text {
    fn new(content: &str) -> Text {
        let nfkc: String = content
            .nfkc()
            .filter(|c| !matches!(c, '\'' | '’'))
            .collect();
        let mut words: Vec<&str> = Vec::new();
        let mut names = BTreeSet::new();
        for sentence in nfkc.split(['.', '!', '?']) {
            let in_sentence = sentence
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty());
            for (n, word) in in_sentence.enumerate() {
                // A capital that does not start a sentence marks a name.
                if n > 0 && word.starts_with(char::is_uppercase) {
                    names.insert(word.to_lowercase());
                }
                words.push(word);
            }
        }
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        let mut numbers: Vec<String> = lower
            .iter()
            .filter(|w| w.chars().any(|c| c.is_ascii_digit()))
            .cloned()
            .collect();
        numbers.sort();
        let mut negations: Vec<String> = lower
            .iter()
            .filter(|w| NEGATIONS.contains(&w.as_str()))
            .cloned()
            .collect();
        negations.sort();
        Text {
            normal: lower.join(" "),
            numbers,
            negations,
            names,
        }
    }

    /// Whether two texts may say the same thing (used only together with
    /// near-identical client embeddings).
    fn compatible(&self, other: &Text) -> bool {
        if self.normal == other.normal {
            return true;
        }
        if self.numbers != other.numbers
            || self.negations != other.negations
            || self.names != other.names
        {
            return false;
        }
        // The same words in another order say something else.
        let mut a: Vec<&str> = self.normal.split(' ').collect();
        let mut b: Vec<&str> = other.normal.split(' ').collect();
        a.sort_unstable();
        b.sort_unstable();
        a != b
    }
}

/// Plans the merges of a space. `items` pairs each memory with its unit
/// embedding; their order does not matter.
pub fn plan(items: &[(Arc<Memory>, &[f32])], threshold: f32) -> Vec<Consolidation> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[a].0.id.cmp(&items[b].0.id));
    let sorted: Vec<&(Arc<Memory>, &[f32])> = order.iter().map(|&i| &items[i]).collect();
    let texts: Vec<Text> = sorted.iter().map(|(m, _)| Text::new(&m.content)).collect();
    // Client-supplied embeddings: the only ones whose closeness counts.
    let supplied: Vec<bool> = sorted
        .iter()
        .map(|(m, _)| m.embedding != lexical(&m.content))
        .collect();
    let same = |i: usize, j: usize| {
        texts[i].normal == texts[j].normal
            || (supplied[i]
                && supplied[j]
                && sorted[i].1.len() == sorted[j].1.len()
                && dot(sorted[i].1, sorted[j].1) >= threshold
                && texts[i].compatible(&texts[j]))
    };

    let mut parent: Vec<usize> = (0..sorted.len()).collect();
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    for (i, text) in texts.iter().enumerate() {
        if let Some(&first) = by_text.get(text.normal.as_str()) {
            union(&mut parent, first, i);
        } else {
            by_text.insert(&text.normal, i);
        }
    }
    let embedded: Vec<usize> = (0..sorted.len()).filter(|&i| supplied[i]).collect();
    for (a, &i) in embedded.iter().enumerate() {
        for &j in &embedded[a + 1..] {
            if same(i, j) {
                union(&mut parent, i, j);
            }
        }
    }
    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..sorted.len() {
        let root = find(&mut parent, i);
        components.entry(root).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for component in components.into_values() {
        let whole = component
            .iter()
            .enumerate()
            .all(|(a, &i)| component[a + 1..].iter().all(|&j| same(i, j)));
        if whole {
            groups.push(component);
            continue;
        }
        // Not one statement throughout: only equal texts merge.
        let mut by_normal: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for i in component {
            by_normal.entry(&texts[i].normal).or_default().push(i);
        }
        groups.extend(by_normal.into_values());
    }
    let mut merges: Vec<Consolidation> = groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .filter_map(|g| merge(&g.iter().map(|&i| &sorted[i].0).collect::<Vec<_>>()))
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

/// Merges one group (sorted by id); `None` when its provenance would be
/// too large to keep.
fn merge(group: &[&Arc<Memory>]) -> Option<Consolidation> {
    let inputs: Vec<String> = group.iter().map(|m| m.id.clone()).collect();
    let lead = group
        .iter()
        .max_by(|a, b| {
            a.confidence
                .total_cmp(&b.confidence)
                .then_with(|| b.id.cmp(&a.id))
        })
        .expect("a group has members");
    let mut merged_from: Vec<MergedInput> = Vec::new();
    for m in group {
        merged_from.extend(m.merged_from.iter().cloned());
        merged_from.push(MergedInput {
            id: m.id.clone(),
            content: m.content.clone(),
            confidence: m.confidence,
            created_at_ms: m.created_at_ms,
            tags: m.tags.clone(),
        });
    }
    merged_from.sort_by(|a, b| a.id.cmp(&b.id));
    merged_from.dedup_by(|a, b| a.id == b.id);
    let text: usize = merged_from.iter().map(|i| i.content.len()).sum();
    if merged_from.len() > MAX_MERGED_FROM || text > MAX_PROVENANCE_BYTES {
        return None;
    }
    let tags: BTreeSet<&String> = group.iter().flat_map(|m| &m.tags).collect();
    let use_of = group
        .iter()
        .fold(Usage::default(), |u, m| crate::decay::join(&u, &m.usage()));
    let merged = Memory {
        id: merged_id(&inputs),
        content: lead.content.clone(),
        embedding: lead.embedding.clone(),
        confidence: group.iter().map(|m| m.confidence).fold(0.0, f32::max),
        created_at_ms: group.iter().map(|m| m.created_at_ms).max().unwrap_or(0),
        tags: tags.into_iter().take(MAX_TAGS).cloned().collect(),
        minority: group.iter().any(|m| m.minority),
        merged_from,
        // Use of the statement through any of its copies counts.
        recalled_at_ms: use_of.recalled_at_ms,
        decay: use_of.decay,
    };
    Some(Consolidation {
        merged: Some(merged),
        inputs,
    })
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

    fn mem(id: &str, text: &str, confidence: f32) -> Arc<Memory> {
        Arc::new(Memory {
            id: id.into(),
            content: text.into(),
            embedding: lexical(text),
            confidence,
            created_at_ms: id.len() as i64,
            tags: vec![format!("t-{id}")],
            ..Memory::default()
        })
    }

    /// A memory whose client supplied `embedding`.
    fn embedded(id: &str, text: &str, embedding: &[f32]) -> Arc<Memory> {
        let mut m = (*mem(id, text, 0.5)).clone();
        m.embedding = embedding.to_vec();
        crate::embed::normalize(&mut m.embedding);
        Arc::new(m)
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
            (merged.confidence - 0.6).abs() < f32::EPSILON,
            "the highest input, not more"
        );
        assert_eq!(merged.content, "The meeting is on Tuesday at noon!");
        assert_eq!(merged.tags, ["t-a", "t-b"]);
        let kept: Vec<(&str, &str)> = merged
            .merged_from
            .iter()
            .map(|i| (i.id.as_str(), i.content.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("a", "the meeting is on tuesday at noon"),
                ("b", "The meeting is on Tuesday at noon!")
            ],
            "every input is kept as it was"
        );
    }

    #[test]
    fn true_duplicates_merge() {
        let variants = [
            "Alice owes Tom 12 euros for the taxi",
            "alice owes tom 12 euros for the taxi",
            "Alice owes Tom 12 euros for the taxi.",
            "  Alice   owes Tom 12 euros, for the taxi!  ",
            "Alice owes Tom １２ euros for the taxi",
            "ALICE OWES TOM 12 EUROS FOR THE TAXI",
        ];
        let ms: Vec<Arc<Memory>> = variants
            .iter()
            .enumerate()
            .map(|(i, t)| mem(&format!("v{i}"), t, 0.5))
            .collect();
        let out = run(&ms);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].inputs.len(), variants.len());
        // Composed and decomposed accents are one text.
        let out = run(&[
            mem("x", "Meet at the café", 0.5),
            mem("y", "Meet at the cafe\u{301}", 0.5),
        ]);
        assert_eq!(out.len(), 1);
    }

    /// Pairs of distinct facts: a number, a negation, a name or the order
    /// of words differs.
    fn distinct_pairs() -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (a, b) in [(12, 247), (3, 4), (1990, 1991), (5, 50)] {
            pairs.push((
                format!("Alice owes Jen {a} euros"),
                format!("Alice owes Jen {b} euros"),
            ));
            pairs.push((
                format!("The flight leaves at {a}:00 from gate B"),
                format!("The flight leaves at {b}:00 from gate B"),
            ));
        }
        for (yes, no) in [
            ("Alice likes cilantro", "Alice does not like cilantro"),
            ("The door is locked", "The door isn't locked"),
            (
                "Tom will come to the party",
                "Tom will never come to the party",
            ),
            ("Bob eats meat", "Bob eats no meat"),
        ] {
            pairs.push((yes.into(), no.into()));
        }
        for (x, y) in [("Nairobi", "Oslo"), ("Tom", "Jen"), ("Monday", "Friday")] {
            pairs.push((
                format!("Alice has a flight to {x} next week"),
                format!("Alice has a flight to {y} next week"),
            ));
            pairs.push((
                format!("Dinner with {x} is booked"),
                format!("Dinner with {y} is booked"),
            ));
        }
        for (a, b) in [
            (
                "Alice prefers peanuts and dislikes spicy Thai curry",
                "Alice prefers spicy Thai curry and dislikes peanuts",
            ),
            ("Tom owes Alice money", "Alice owes Tom money"),
            ("the cat chased the dog", "the dog chased the cat"),
        ] {
            pairs.push((a.into(), b.into()));
        }
        pairs
    }

    #[test]
    fn distinct_facts_never_merge_even_with_identical_embeddings() {
        let pairs = distinct_pairs();
        assert!(pairs.len() >= 20);
        let same_vector: Vec<f32> = (0..16).map(|i| i as f32).collect();
        for (a, b) in &pairs {
            for ms in [
                vec![mem("a", a, 0.5), mem("b", b, 0.5)],
                vec![
                    embedded("a", a, &same_vector),
                    embedded("b", b, &same_vector),
                ],
            ] {
                assert!(run(&ms).is_empty(), "merged {a:?} with {b:?}");
            }
        }
    }

    #[test]
    fn near_identical_client_embeddings_merge_compatible_paraphrases() {
        let v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut w = v.clone();
        w[3] += 0.01;
        let ms = [
            embedded("a", "Alice prefers sushi", &v),
            embedded("b", "Alice really likes sushi", &w),
        ];
        assert_eq!(run(&ms).len(), 1);
        // Far apart, the same paraphrase stays two memories.
        let far: Vec<f32> = (0..16).map(|i| (15 - i) as f32).collect();
        let ms = [
            embedded("a", "Alice prefers sushi", &v),
            embedded("b", "Alice really likes sushi", &far),
        ];
        assert!(run(&ms).is_empty());
    }

    #[test]
    fn a_chain_that_is_not_one_statement_throughout_keeps_only_equal_texts() {
        // b is close to a and to c, but a and c differ in a number.
        let v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let ms = [
            embedded("a", "the rent is 900 euros", &v),
            embedded("a2", "The rent is 900 euros.", &v),
            embedded("b", "the rent is due monthly", &v),
            embedded("c", "the rent is 950 euros", &v),
        ];
        let out = run(&ms);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].inputs, ["a", "a2"]);
    }

    #[test]
    fn a_merge_of_merges_keeps_every_input() {
        let first = run(&[mem("a", "x y z", 0.4), mem("b", "X y z", 0.5)]);
        let merged = Arc::new(first[0].merged.clone().unwrap());
        let second = run(&[merged, mem("c", "x, y, z", 0.3)]);
        let ids: Vec<&str> = second[0]
            .merged
            .as_ref()
            .unwrap()
            .merged_from
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.contains(&"a") && ids.contains(&"b") && ids.contains(&"c"));
        assert!((second[0].merged.as_ref().unwrap().confidence - 0.5).abs() < f32::EPSILON);
    }

    #[test]
    fn same_inputs_in_any_order_give_identical_output() {
        let ms = vec![
            mem("x1", "alpha beta gamma delta", 0.3),
            mem("x2", "Alpha beta gamma delta.", 0.3),
            mem("x3", "alpha beta gamma delta", 0.7),
            mem("y1", "completely different words here", 0.4),
            mem("y2", "completely different words here", 0.2),
            mem("z1", "completely different words there", 0.2),
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
    fn a_group_too_large_to_record_is_left_alone() {
        let ms: Vec<Arc<Memory>> = (0..=MAX_MERGED_FROM)
            .map(|i| mem(&format!("m{i:03}"), "the same words", 0.5))
            .collect();
        assert!(run(&ms).is_empty());
        assert_eq!(run(&ms[..MAX_MERGED_FROM]).len(), 1);
    }

    #[test]
    fn merged_id_depends_on_inputs_only() {
        let a = merged_id(&["a".into(), "bc".into()]);
        assert_eq!(a, merged_id(&["a".into(), "bc".into()]));
        assert_ne!(a, merged_id(&["ab".into(), "c".into()]));
        assert!(crate::validate::id(&a).is_ok());
    }
}
