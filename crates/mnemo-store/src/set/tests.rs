use super::*;

fn ids(set: &mut SpaceSet) -> Vec<ElementId> {
    let storage = set.reconciliation();
    let mut out = Vec::new();
    negentropy::NegentropyStorageBase::iterate(
        &*storage,
        0,
        storage.len_for_tests(),
        &mut |item, _| {
            out.push(*item.id);
            Ok(true)
        },
    )
    .unwrap();
    out
}

trait LenForTests {
    fn len_for_tests(&self) -> usize;
}

impl LenForTests for NegentropyStorageVector {
    fn len_for_tests(&self) -> usize {
        negentropy::NegentropyStorageBase::size(self).unwrap()
    }
}

#[test]
fn digest_does_not_depend_on_order_and_tombstones_replace_memories() {
    let mut a = SpaceSet::default();
    let mut b = SpaceSet::default();
    a.insert_memory("x", memory_element("x", 1));
    a.insert_memory("y", memory_element("y", 2));
    a.insert_tombstone("x");

    b.insert_tombstone("x");
    b.insert_memory("y", memory_element("y", 2));
    // A tombstoned id keeps no memory element, however it got there.
    b.insert_memory("x", memory_element("x", 1));
    b.insert_tombstone("x");
    b.remove_memory("x");

    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    assert_eq!(a.tombstones(), 1);
    assert_eq!(ids(&mut a), ids(&mut b));
}

#[test]
fn a_new_version_replaces_the_old_one() {
    let mut s = SpaceSet::default();
    s.insert_memory("x", memory_element("x", 1));
    let before = s.digest();
    s.insert_memory("x", memory_element("x", 2));
    assert_eq!(s.len(), 1);
    assert_ne!(s.digest(), before);
    assert_eq!(
        s.get(&memory_element("x", 2)),
        Some(&Entry::Memory(Arc::from("x")))
    );
    assert!(s.get(&memory_element("x", 1)).is_none());
}

#[test]
fn the_larger_version_wins() {
    assert!(incoming_wins(1, 2));
    assert!(!incoming_wins(2, 1));
    assert!(!incoming_wins(2, 2));
}

#[test]
fn a_memory_taken_with_the_majority_beats_one_taken_in_a_minority() {
    let with = Memory {
        id: "x".into(),
        content: "majority".into(),
        ..Memory::default()
    };
    let cut_off = Memory {
        content: "minority".into(),
        minority: true,
        ..with.clone()
    };
    let v = |m: &Memory| version(m, &prost::Message::encode_to_vec(m));
    assert!(incoming_wins(v(&cut_off), v(&with)));
    assert!(!incoming_wins(v(&with), v(&cut_off)));
}

#[test]
fn streaming_the_key_hashes_like_the_concatenation() {
    let mut bytes = vec![b'm'];
    bytes.extend_from_slice(b"some-id");
    assert_eq!(keyed(b'm', "some-id"), xxh3_128(&bytes));
}

#[test]
fn use_changes_only_the_low_bits_of_a_version() {
    use crate::memory::Decay;
    use prost::Message;
    let written = Memory {
        id: "x".into(),
        content: "the car keys are in the blue bowl".into(),
        embedding: vec![0.5, 0.25],
        confidence: 0.8,
        created_at_ms: 7,
        ..Memory::default()
    };
    let used = Memory {
        recalled_at_ms: 99,
        decay: Some(Decay {
            as_of_ms: 120,
            half_life_ms: 10,
            floor: 0.1,
        }),
        ..written.clone()
    };
    // The written memory is a prefix of the used one's encoding.
    let (w, u) = (written.encode_to_vec(), used.encode_to_vec());
    assert_eq!(&u[..w.len()], &w[..]);
    assert_eq!(&u[w.len()..], &used.usage().encode_to_vec()[..]);
    // An unused memory keeps the version it always had.
    assert_eq!(version(&written, &w), xxh3_128(&w) >> 1 | 1 << 127);
    let (vw, vu) = (version(&written, &w), version(&used, &u));
    assert_ne!(vw, vu);
    assert!(same_write(vw, vu));
    // Another write under the same id is not the same write, used or not.
    let other = Memory {
        content: "the car keys are on the hook".into(),
        ..used.clone()
    };
    let o = other.encode_to_vec();
    assert!(!same_write(vu, version(&other, &o)));
    assert!(!same_write(vw, version(&other, &o)));
}

mod summaries {
    use std::collections::HashSet;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::super::*;

    /// One change of a set: a memory (id, version), its tombstone, or the
    /// memory taken out (as a newer version replacing it does).
    #[derive(Debug, Clone)]
    enum Change {
        Memory(u16, u8),
        Tombstone(u16),
        Remove(u16),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            6 => (0..1000u16, any::<u8>()).prop_map(|(id, v)| Change::Memory(id, v)),
            1 => (0..1000u16).prop_map(Change::Tombstone),
            1 => (0..1000u16).prop_map(Change::Remove),
        ]
    }

    fn apply(set: &mut SpaceSet, changes: &[Change]) {
        for change in changes {
            match *change {
                Change::Memory(id, v) => {
                    let id = format!("m{id}");
                    if !set.is_tombstoned(&id) {
                        set.insert_memory(&id, memory_element(&id, u128::from(v)));
                    }
                }
                Change::Tombstone(id) => set.insert_tombstone(&format!("m{id}")),
                Change::Remove(id) => set.remove_memory(&format!("m{id}")),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The summary a set keeps through its changes, once it is large
        /// enough to keep one, is the one counted from its elements, and
        /// each bucket counts the ids listed in it.
        #[test]
        fn a_kept_summary_is_the_counted_one(changes in vec(change(), 0..900)) {
            let mut set = SpaceSet::default();
            apply(&mut set, &changes);
            if set.elements.len() >= KEEP_SUMMARY_FROM {
                prop_assert!(set.summary.is_some(), "a set this large keeps its summary");
            }
            let summary = set.summary();
            prop_assert_eq!(&summary, &set.count_summary());
            for b in 0..=u8::MAX {
                let listed = set.ids_in(b).count() as u64;
                prop_assert_eq!(listed, summary.buckets()[usize::from(b)].count);
                prop_assert!(set.ids_in(b).all(|id| id[0] == b));
            }
        }

        /// Whatever two holders' sets are, the other's ids in the buckets
        /// where the summaries differ include every element it has and
        /// this one lacks; buckets whose summaries match hold the same ids.
        #[test]
        fn differing_buckets_list_every_element_one_lacks(
            shared in vec(change(), 0..700),
            mine in vec(change(), 0..40),
            theirs in vec(change(), 0..40),
        ) {
            let (mut a, mut b) = (SpaceSet::default(), SpaceSet::default());
            apply(&mut a, &shared);
            apply(&mut b, &shared);
            apply(&mut a, &mine);
            apply(&mut b, &theirs);
            let (sa, sb) = (a.summary(), b.summary());
            let listed: HashSet<ElementId> =
                b.differing_ids(&sa, usize::MAX).unwrap().into_iter().collect();
            for id in b.elements.keys().filter(|id| a.get(id).is_none()) {
                prop_assert!(listed.contains(id), "{id:?} is missing from the listed buckets");
            }
            // Over the limit, nothing is listed; at it, everything is.
            let limit = listed.len();
            prop_assert_eq!(b.differing_ids(&sa, limit).map(|ids| ids.len()), Some(limit));
            if limit > 0 {
                prop_assert_eq!(b.differing_ids(&sa, limit - 1), None);
            }
            for bucket in (0..=u8::MAX).filter(|&x| sa.buckets()[usize::from(x)] == sb.buckets()[usize::from(x)]) {
                prop_assert!(a.ids_in(bucket).eq(b.ids_in(bucket)));
            }
        }
    }
}
