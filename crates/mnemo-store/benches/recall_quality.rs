//! Recall quality on a labelled set (`benches/eval/recall.json`): 51
//! agent-style facts about one person's life among 560 first lines of
//! Python standard library docstrings, and 40 plain questions, each with
//! the memories that answer it. Reports hit@5 (a right memory among the
//! first five) and MRR@10 (mean of 1/rank of the first right memory, 0
//! past ten) for the built-in text ranking (BM25) and for what recall did
//! before it: cosine similarity of the lexical embedding.
//!
//! It also plans a consolidation of the set, whose memories are distinct
//! statements but for one pair of docstrings that differ by a full stop:
//! any other merge would cost a fact.
//!
//! `cargo bench -p mnemo-store --bench recall_quality`. Numbers are
//! printed, never asserted (tests check ranking on small hand-made cases).

#![allow(missing_docs)]

use mnemo_store::{Cue, Memory, Store, embed::lexical};
use serde_json::Value;

struct Figures {
    hit5: f64,
    mrr10: f64,
    misses: Vec<String>,
}

fn evaluate(
    store: &Store,
    queries: &[(String, Vec<String>)],
    cue: impl Fn(&str) -> Vec<f32>,
    text: bool,
) -> Figures {
    let (mut hits, mut rr, mut misses) = (0usize, 0.0f64, Vec::new());
    for (query, relevant) in queries {
        let embedding = cue(query);
        let c = Cue {
            text: if text { query } else { "" },
            embedding: &embedding,
            ..Cue::default()
        };
        let found = store.recall("eval", c, 10, 0.0).expect("recall");
        let rank = found.iter().position(|s| relevant.contains(&s.memory.id));
        match rank {
            Some(r) => {
                if r < 5 {
                    hits += 1;
                } else {
                    misses.push(query.clone());
                }
                rr += 1.0 / (r as f64 + 1.0);
            }
            None => misses.push(query.clone()),
        }
    }
    let n = queries.len() as f64;
    Figures {
        hit5: hits as f64 / n,
        mrr10: rr / n,
        misses,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/eval/recall.json");
    let set: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the set")).expect("JSON");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let memories = set["memories"].as_array().expect("memories");
    rt.block_on(async {
        for m in memories {
            let memory = Memory {
                id: m["id"].as_str().unwrap().into(),
                content: m["content"].as_str().unwrap().into(),
                confidence: 1.0,
                ..Memory::default()
            };
            store.remember("eval", memory).await.expect("remember");
        }
    });
    let queries: Vec<(String, Vec<String>)> = set["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .map(|q| {
            (
                q["query"].as_str().unwrap().to_owned(),
                q["relevant"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    println!(
        "Recall quality, {} memories, {} questions:",
        memories.len(),
        queries.len()
    );
    for (what, figures) in [
        (
            "cosine of the lexical embedding (before)",
            evaluate(&store, &queries, lexical, false),
        ),
        (
            "BM25 over stemmed words (text cue)",
            evaluate(&store, &queries, |_| Vec::new(), true),
        ),
        (
            "BM25 fused with the lexical embedding (RRF)",
            evaluate(&store, &queries, lexical, true),
        ),
    ] {
        println!(
            "  {what:<46} hit@5 {:.2}   MRR@10 {:.3}   missed: {:?}",
            figures.hit5, figures.mrr10, figures.misses
        );
    }
    let plan = rt
        .block_on(store.consolidate("eval", mnemo_store::consolidate::DEFAULT_THRESHOLD, true))
        .expect("a plan");
    println!(
        "  consolidation plan over the {} memories: {} merges {:?}",
        plan.before,
        plan.merged.len(),
        plan.merged.iter().map(|m| &m.inputs).collect::<Vec<_>>()
    );
}
