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
