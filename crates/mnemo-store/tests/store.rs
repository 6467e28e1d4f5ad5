//! The store against a real redb file in a temporary directory.

use std::sync::atomic::Ordering;

use mnemo_store::{Cue, Element, Memory, Store, StoreError};

fn memory(id: &str, content: &str) -> Memory {
    Memory {
        id: id.into(),
        content: content.into(),
        confidence: 0.9,
        ..Memory::default()
    }
}

fn text(t: &str) -> Cue<'_> {
    Cue {
        text: t,
        ..Cue::default()
    }
}

#[tokio::test]
async fn writes_are_idempotent_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (id, first) = store
        .remember("s", memory("m1", "the sky is blue"))
        .await
        .unwrap();
    assert_eq!(id, "m1");
    assert!(first.changed);

    let (_, again) = store
        .remember("s", memory("m1", "the sky is blue"))
        .await
        .unwrap();
    assert!(!again.changed, "the same write twice is stored once");
    assert_eq!(
        again.elements, first.elements,
        "a replay ships what is stored"
    );

    let conflict = store.remember("s", memory("m1", "the sky is green")).await;
    assert!(matches!(conflict, Err(StoreError::AlreadyExists { .. })));
    assert_eq!(store.get("s", "m1").unwrap().content, "the sky is blue");
}

#[tokio::test]
async fn generated_ids_and_lexical_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (id, _) = store
        .remember("s", memory("", "parked the car on level three"))
        .await
        .unwrap();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    store
        .remember("s", memory("other", "quarterly revenue report"))
        .await
        .unwrap();
    let found = store
        .recall("s", text("where is the car parked"), 2, 0.0)
        .unwrap();
    assert_eq!(found[0].memory.id, id);
    assert_eq!(found.len(), 1, "a memory sharing no word is no answer");
    let cue = Cue {
        include_unmatched: true,
        ..text("where is the car parked")
    };
    let all = store.recall("s", cue, 2, 0.0).unwrap();
    assert_eq!(all[1].memory.id, "other", "unless asked for");
    assert!(all[0].score > 0.0 && all[1].score.to_bits() == 0);
}

#[tokio::test]
async fn forget_is_durable_and_final() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.remember("s", memory("a", "alpha")).await.unwrap();
        store.remember("s", memory("b", "beta")).await.unwrap();
        let forgot = store.forget("s", "a").await.unwrap();
        assert!(forgot.changed && forgot.existed);
        let twice = store.forget("s", "a").await.unwrap();
        assert!(!twice.changed && !twice.existed);
        let unknown = store.forget("s", "never").await.unwrap();
        assert!(
            unknown.changed && !unknown.existed,
            "a tombstone is written anyway"
        );
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(store.get("s", "a").is_none());
    assert!(store.get("s", "b").is_some());
    let again = store.remember("s", memory("a", "alpha")).await;
    assert!(matches!(again, Err(StoreError::Forgotten { .. })));
    let never = store.remember("s", memory("never", "late write")).await;
    assert!(
        matches!(never, Err(StoreError::Forgotten { .. })),
        "tombstone wins"
    );
    let stats = store.stats("s").unwrap();
    assert_eq!((stats.memories, stats.tombstones), (1, 2));
}

#[tokio::test]
async fn dimension_is_fixed_per_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut m = memory("v1", "vector one");
    m.embedding = vec![1.0, 0.0, 0.0];
    store.remember("vec", m).await.unwrap();
    let mut bad = memory("v2", "vector two");
    bad.embedding = vec![1.0, 0.0];
    let err = store.remember("vec", bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "embedding",
                ..
            }
        ),
        "{err}"
    );
    // Text ranks by words whatever embeddings the space holds.
    let found = store.recall("vec", text("vectors"), 5, 0.0).unwrap();
    assert_eq!(found[0].memory.id, "v1");
    assert!(
        store
            .recall("vec", text("words"), 5, 0.0)
            .unwrap()
            .is_empty()
    );
    let cue = Cue {
        embedding: &[0.0, 2.0],
        ..Cue::default()
    };
    let err = store.recall("vec", cue, 5, 0.0).unwrap_err();
    assert!(
        err.to_string().contains("cue_embedding"),
        "not a refusal: {err}"
    );
    let cue = Cue {
        embedding: &[2.0, 0.0, 0.0],
        ..Cue::default()
    };
    assert_eq!(store.recall("vec", cue, 5, 0.0).unwrap()[0].memory.id, "v1");
}

#[tokio::test]
async fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..25 {
                store
                    .remember(
                        "s",
                        memory(&format!("w{w}-{i}"), &format!("writer {w} item {i}")),
                    )
                    .await
                    .unwrap();
            }
        });
    }
    tasks.join_all().await;
    assert_eq!(store.spaces()[0].memories, 400);
}

#[tokio::test]
async fn merging_what_another_holder_sent_is_idempotent_and_tombstones_win() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = Store::open(pd.path()).unwrap();
    let replica = Store::open(rd.path()).unwrap();
    let mut shipped = Vec::new();
    for i in 0..5 {
        let (_, w) = primary
            .remember("s", memory(&format!("m{i}"), &format!("note {i}")))
            .await
            .unwrap();
        shipped.extend(w.elements);
    }
    shipped.extend(primary.forget("s", "m0").await.unwrap().elements);

    // Out of order, duplicated, tombstone first.
    let mut reordered = shipped.clone();
    reordered.reverse();
    let first = replica.merge("s", reordered).await.unwrap();
    assert_eq!(first.applied, 5, "4 memories and a tombstone");
    assert_eq!(first.unchanged, 1, "the forgotten memory arrived too late");
    let again = replica.merge("s", shipped).await.unwrap();
    assert_eq!((again.applied, again.unchanged), (0, 6));
    assert!(replica.get("s", "m0").is_none());
    assert_eq!(
        replica.stats("s").unwrap().digest,
        primary.stats("s").unwrap().digest
    );
}

#[tokio::test]
async fn two_memories_under_one_id_resolve_the_same_way_everywhere() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = Store::open(dirs[0].path()).unwrap();
    let b = Store::open(dirs[1].path()).unwrap();
    let (_, wa) = a.remember("s", memory("x", "left side")).await.unwrap();
    let (_, wb) = b.remember("s", memory("x", "right side")).await.unwrap();
    let ma = a.merge("s", wb.elements.clone()).await.unwrap();
    let mb = b.merge("s", wa.elements.clone()).await.unwrap();
    assert_eq!((ma.conflicts, mb.conflicts), (1, 1));
    assert_eq!(
        a.get("s", "x").unwrap().content,
        b.get("s", "x").unwrap().content
    );
    assert_eq!(a.stats("s").unwrap().digest, b.stats("s").unwrap().digest);
    // A client's write under the id still sees the stored one as taken.
    let taken = a.remember("s", memory("x", "a third text")).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists { .. })));
}

#[tokio::test]
async fn invalid_elements_are_refused_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut good = memory("ok", "fine");
    good.embedding = mnemo_store::embed::lexical("fine");
    let mut bad = memory("bad", "too many tags");
    bad.embedding = good.embedding.clone();
    bad.tags = (0..40).map(|i| format!("t{i}")).collect();
    let merged = store
        .merge(
            "s",
            vec![
                Element::Memory(bad),
                Element::Memory(good),
                Element::Tombstone(String::new()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(merged.applied, 1);
    assert_eq!(merged.refused.len(), 2, "{:?}", merged.refused);
    assert_eq!(merged.refused[0].0, "bad");
    assert!(merged.refused[0].1.contains("tags"), "{:?}", merged.refused);
    assert!(store.get("s", "ok").is_some());

    // A use dated far ahead of this node's clock would win every join for
    // good: refused, naming the field, and the held copy is unchanged.
    let ahead = mnemo_store::now_ms() + 2 * mnemo_store::validate::MAX_CLOCK_AHEAD_MS;
    let held = store.get("s", "ok").unwrap();
    let stamped = Memory {
        recalled_at_ms: ahead,
        ..Memory::clone(&held)
    };
    let decayed = Memory {
        decay: Some(mnemo_store::Decay {
            as_of_ms: ahead,
            half_life_ms: 1000,
            floor: 0.1,
        }),
        ..Memory::clone(&held)
    };
    let merged = store
        .merge(
            "s",
            vec![Element::Memory(stamped), Element::Memory(decayed)],
        )
        .await
        .unwrap();
    let fields: Vec<&str> = merged
        .refused
        .iter()
        .map(|(_, why)| why.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(merged.refused.len(), 2, "{merged:?}");
    assert!(merged.refused[0].1.contains("recalled_at_ms"), "{fields:?}");
    assert!(merged.refused[1].1.contains("decay.as_of_ms"), "{fields:?}");
    assert_eq!(store.get("s", "ok").unwrap(), held);
}

#[tokio::test]
async fn a_dropped_space_is_gone_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.remember("gone", memory("a", "alpha")).await.unwrap();
        store.forget("gone", "b").await.unwrap();
        store.remember("kept", memory("a", "alpha")).await.unwrap();
        let seen = store.stats("gone").unwrap().digest;
        store
            .remember("gone", memory("late", "arrived after"))
            .await
            .unwrap();
        assert!(
            !store.drop_space("gone", seen).await.unwrap(),
            "a write since the digest was taken keeps the space"
        );
        assert!(store.get("gone", "late").is_some());
        let now = store.stats("gone").unwrap().digest;
        assert!(store.drop_space("gone", now).await.unwrap());
        assert!(!store.holds("gone"));
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.space_names(), ["kept"]);
}

#[tokio::test]
async fn consolidation_merges_and_replicates() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = Store::open(pd.path()).unwrap();
    for (id, t) in [
        ("a", "standup moved to 10am on mondays"),
        ("b", "Standup moved to 10am on Mondays."),
        ("c", "the wifi password is hunter2"),
    ] {
        primary.remember("s", memory(id, t)).await.unwrap();
    }
    let report = primary.consolidate("s", 0.92, false).await.unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(report.merged[0].inputs, ["a", "b"]);
    assert_eq!((report.before, report.after), (3, 2));
    let merged = report.merged[0].merged.as_ref().unwrap();
    let stored = primary.get("s", &merged.id).unwrap();
    assert!(
        (stored.confidence - 0.9).abs() < f32::EPSILON,
        "the inputs' confidence, not more"
    );
    assert_eq!(stored.merged_from.len(), 2, "both inputs are kept");
    assert!(primary.get("s", "a").is_none());

    let again = primary.consolidate("s", 0.92, false).await.unwrap();
    assert!(
        again.merged.is_empty(),
        "consolidation reaches a fixed point"
    );

    let replica = Store::open(rd.path()).unwrap();
    for m in ["a", "b", "c"] {
        let stored = primary.get("s", m).map(|m| Element::Memory((*m).clone()));
        replica
            .merge("s", stored.into_iter().collect())
            .await
            .unwrap();
    }
    // The inputs, as the replica had them before consolidation.
    let mut originals = Vec::new();
    for (id, t) in [
        ("a", "standup moved to 10am on mondays"),
        ("b", "Standup moved to 10am on Mondays."),
    ] {
        let mut m = memory(id, t);
        m.embedding = mnemo_store::embed::lexical(t);
        m.created_at_ms = 1;
        originals.push(Element::Memory(m));
    }
    replica.merge("s", originals).await.unwrap();
    replica.merge("s", report.elements.clone()).await.unwrap();
    assert_eq!(
        replica.get("s", &merged.id).unwrap().content,
        stored.content
    );
    assert!(replica.get("s", "b").is_none());
}

/// Writes that race for the same ids land in shared batches, where later
/// writes must see what earlier ones in the batch did. What readers are
/// shown (decided in memory) and what the disk ends up with (the logged
/// changes, applied to redb) must be the same state: reopened, the store
/// reports the same digests, counts and memories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_batch_shows_is_what_the_disk_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let consolidated = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for round in 0..20 {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let store = store.clone();
            let space = format!("s{}", next(3));
            let id = format!("m{}", next(12));
            // Few texts: different ids often say the same thing, so
            // consolidations in the mix have something to merge.
            let content = format!("content number {}", next(4));
            let kind = next(9);
            let minority = next(2) == 0;
            let consolidated = std::sync::Arc::clone(&consolidated);
            tasks.spawn(async move {
                match kind {
                    0..=3 => drop(store.remember(&space, memory(&id, &content)).await),
                    4 | 5 => drop(store.forget(&space, &id).await.unwrap()),
                    6 => {
                        if let Ok(report) = store.consolidate(&space, 0.97, false).await {
                            consolidated.fetch_add(report.merged.len(), Ordering::Relaxed);
                        }
                    }
                    _ => {
                        let mut m = memory(&id, &content);
                        m.embedding = mnemo_store::embed::lexical(&content);
                        m.created_at_ms = 1;
                        m.minority = minority;
                        let merged = store.merge(&space, vec![Element::Memory(m)]).await;
                        assert!(merged.unwrap().refused.is_empty());
                    }
                }
            });
        }
        tasks.join_all().await;
        let contents = |store: &Store| -> Vec<Vec<(String, String)>> {
            (0..3)
                .map(|s| {
                    let mut found: Vec<(String, String)> = store
                        .recall(&format!("s{s}"), text("content"), 1000, 0.0)
                        .unwrap()
                        .into_iter()
                        .map(|m| (m.memory.id.clone(), m.memory.content.clone()))
                        .collect();
                    found.sort();
                    found
                })
                .collect()
        };
        let shown_contents = contents(&store);
        // Those recalls stamp what they returned, in the background.
        store.settled().await.unwrap();
        let shown = store.spaces();
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(
            reopened.spaces(),
            shown,
            "round {round}: digests and counts"
        );
        assert_eq!(
            contents(&reopened),
            shown_contents,
            "round {round}: memories"
        );
        store = reopened;
    }
    assert!(
        consolidated.load(Ordering::Relaxed) > 0,
        "consolidations merged something"
    );
}

#[tokio::test]
async fn a_dry_run_shows_the_plan_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (id, t) in [
        ("a", "standup moved to 10am on mondays"),
        ("b", "Standup moved to 10am on Mondays."),
        ("c", "standup moved to 11am on mondays"),
    ] {
        store.remember("s", memory(id, t)).await.unwrap();
    }
    let before = store.spaces();
    let plan = store.consolidate("s", 0.97, true).await.unwrap();
    assert_eq!(store.spaces(), before, "a dry run changes nothing");
    assert!(plan.elements.is_empty());
    assert_eq!((plan.before, plan.after), (3, 2));
    let done = store.consolidate("s", 0.97, false).await.unwrap();
    assert_eq!(done.merged, plan.merged, "the plan is what is done");
    assert_eq!((done.before, done.after), (3, 2));
}

/// Plain questions find the memory they mean among look-alikes.
#[tokio::test]
async fn plain_questions_rank_the_memory_they_mean_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let facts = [
        ("keys", "I left the car keys on the kitchen counter"),
        ("car", "The car is parked on level 3 of the garage"),
        ("taxi", "Alice owes Tom 12 euros for the taxi"),
        ("tom", "Tom's birthday is on the 4th of May"),
        (
            "copy",
            "Use shutil.copy to copy a file to another directory",
        ),
        (
            "files",
            "Files in the shared directory are deleted after 30 days",
        ),
        ("sushi", "Alice prefers sushi and dislikes cilantro"),
        ("dentist", "Dentist appointment on Thursday at 9am"),
    ];
    for (id, text) in facts {
        store.remember("s", memory(id, text)).await.unwrap();
    }
    for (question, expected) in [
        ("where are my car keys", "keys"),
        ("where did I park the car", "car"),
        ("how much money does Alice owe Tom", "taxi"),
        ("how do I copy a file", "copy"),
        ("what food does Alice like", "sushi"),
        ("when is my dentist appointment", "dentist"),
    ] {
        let found = store.recall("s", text(question), 3, 0.0).unwrap();
        assert_eq!(
            found.first().map(|s| s.memory.id.as_str()),
            Some(expected),
            "{question:?} found {:?}",
            found.iter().map(|s| &s.memory.id).collect::<Vec<_>>()
        );
    }
    // A cue sharing no word with any memory finds nothing.
    assert!(
        store
            .recall("s", text("quantum chromodynamics"), 3, 0.0)
            .unwrap()
            .is_empty()
    );
    // Equal evidence: the more confident memory first.
    let mut sure = memory("sure", "the wifi password is hunter2");
    sure.confidence = 1.0;
    let mut unsure = memory("unsure", "the wifi password is hunter3");
    unsure.confidence = 0.4;
    store.remember("w", unsure).await.unwrap();
    store.remember("w", sure).await.unwrap();
    let found = store.recall("w", text("wifi password"), 2, 0.0).unwrap();
    assert_eq!(found[0].memory.id, "sure");
}

/// A drop refused because the space changed must not make the rest of its
/// batch forget the space's embedding dimension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_drop_keeps_the_dimension_for_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut m = memory("three", "three dimensions");
    m.embedding = vec![1.0, 0.0, 0.0];
    store.remember("s", m).await.unwrap();
    let stale = store.spaces()[0].digest.wrapping_add(1);
    for round in 0..20 {
        let mut wrong = memory(&format!("five-{round}"), "five dimensions");
        wrong.embedding = vec![1.0, 0.0, 0.0, 0.0, 0.0];
        wrong.created_at_ms = 1;
        // Sent back to back, so they usually share a batch.
        let (dropped, merged) = tokio::join!(
            store.drop_space("s", stale),
            store.merge("s", vec![Element::Memory(wrong)])
        );
        assert!(!dropped.unwrap(), "the digest is stale");
        let merged = merged.unwrap();
        assert_eq!(merged.applied, 0, "round {round}: {merged:?}");
        assert_eq!(merged.refused.len(), 1, "round {round}");
    }
    assert_eq!(store.spaces()[0].dimension, 3);
}

/// Tags in a cue keep only the memories that carry all of them.
#[tokio::test]
async fn tags_filter_recall() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (id, tags) in [
        ("home-urgent", vec!["home", "urgent"]),
        ("home", vec!["home"]),
        ("work", vec!["work", "urgent"]),
    ] {
        let mut m = memory(id, "call the plumber about the leak");
        m.tags = tags.into_iter().map(String::from).collect();
        store.remember("s", m).await.unwrap();
    }
    let found = |tags: &[&str], all: bool| -> Vec<String> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        let cue = Cue {
            text: if all { "unrelated words" } else { "plumber" },
            include_unmatched: all,
            tags: &tags,
            ..Cue::default()
        };
        let mut ids: Vec<String> = store
            .recall("s", cue, 10, 0.0)
            .unwrap()
            .into_iter()
            .map(|s| s.memory.id.clone())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(found(&["home"], false), ["home", "home-urgent"]);
    assert_eq!(found(&["home", "urgent"], false), ["home-urgent"]);
    assert_eq!(
        found(&["urgent"], true),
        ["home-urgent", "work"],
        "unmatched too"
    );
    assert!(found(&["garden"], false).is_empty());
    let bad = vec![String::new()];
    let cue = Cue {
        text: "plumber",
        tags: &bad,
        ..Cue::default()
    };
    let err = store.recall("s", cue, 10, 0.0).unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid { field: "tags", .. }),
        "{err}"
    );
}
