//! The store against a real redb file in a temporary directory.

use mnemo_store::{Cue, LogEntry, Memory, Op, Store, StoreError};

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
        embedding: &[],
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
    assert_eq!(first.seq, 1);

    let (_, again) = store
        .remember("s", memory("m1", "the sky is blue"))
        .await
        .unwrap();
    assert!(!again.changed, "the same write twice is stored once");
    assert_eq!(again.seq, 1, "a replay takes no log position");

    let conflict = store.remember("s", memory("m1", "the sky is green")).await;
    assert!(matches!(conflict, Err(StoreError::AlreadyExists { .. })));
    assert_eq!(store.get("s", "m1").unwrap().content, "the sky is blue");
    assert_eq!(store.seq("s"), 1);
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
    assert!(found[0].score > found[1].score);
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
    assert_eq!(store.seq("s"), 4);
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
    let err = store.recall("vec", text("words"), 5, 0.0).unwrap_err();
    assert!(matches!(
        err,
        StoreError::Invalid {
            field: "cue_embedding",
            ..
        }
    ));
    let cue = Cue {
        text: "",
        embedding: &[0.0, 2.0],
    };
    let err = store.recall("vec", cue, 5, 0.0).unwrap_err();
    assert!(
        err.to_string().contains("cue_embedding"),
        "not a refusal: {err}"
    );
    let cue = Cue {
        text: "",
        embedding: &[2.0, 0.0, 0.0],
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
    assert_eq!(store.seq("s"), 400);
    assert_eq!(store.spaces()[0].memories, 400);
    let log = store.log_since("s", 0, 1000).unwrap();
    assert_eq!(log.len(), 400);
    assert!(log.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
}

#[tokio::test]
async fn replicas_apply_the_primary_log_in_order() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = Store::open(pd.path()).unwrap();
    let replica = Store::open(rd.path()).unwrap();
    for i in 0..5 {
        primary
            .remember("s", memory(&format!("m{i}"), &format!("note {i}")))
            .await
            .unwrap();
    }
    primary.forget("s", "m0").await.unwrap();
    let log = primary.log_since("s", 0, 100).unwrap();
    assert_eq!(log.len(), 6);

    assert_eq!(
        replica
            .apply_replicated("s", log[..3].to_vec())
            .await
            .unwrap(),
        3
    );
    // Overlapping resend: applied entries are skipped, the rest applied.
    assert_eq!(
        replica
            .apply_replicated("s", log[1..].to_vec())
            .await
            .unwrap(),
        6
    );
    assert!(replica.get("s", "m0").is_none());
    assert_eq!(replica.spaces()[0].memories, 4);

    // A gap is refused and changes nothing.
    let gap = vec![LogEntry {
        seq: 9,
        op: Some(Op::Forget("m1".into())),
    }];
    assert!(replica.apply_replicated("s", gap).await.is_err());
    assert!(replica.get("s", "m1").is_some());
    assert_eq!(replica.seq("s"), 6);
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
    let report = primary.consolidate("s", 0.92).await.unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(report.merged[0].inputs, ["a", "b"]);
    assert_eq!((report.before, report.after), (3, 2));
    let merged = report.merged[0].merged.as_ref().unwrap();
    let stored = primary.get("s", &merged.id).unwrap();
    assert!((stored.confidence - 0.99).abs() < 1e-6);
    assert!(primary.get("s", "a").is_none());

    let again = primary.consolidate("s", 0.92).await.unwrap();
    assert!(
        again.merged.is_empty(),
        "consolidation reaches a fixed point"
    );

    let replica = Store::open(rd.path()).unwrap();
    replica
        .apply_replicated("s", primary.log_since("s", 0, 100).unwrap())
        .await
        .unwrap();
    assert_eq!(
        replica.get("s", &merged.id).unwrap().content,
        stored.content
    );
    assert!(replica.get("s", "b").is_none());
}
