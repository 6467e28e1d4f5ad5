//! A small lock-free memo of recent preference lists.
//!
//! Pure HRW costs one multiply per live node per lookup (~200 ns at 100
//! nodes, mostly mispredicted top-k inserts). Traffic concentrates on a
//! working set of spaces, so each topology snapshot keeps a direct-mapped
//! table of [`SLOTS`] recent answers keyed by the space's full 64-bit hash.
//! A hit costs three atomic loads.
//!
//! Correctness does not depend on the tag being unique per name: placement
//! is a function of the space hash alone, so two names with one hash have
//! one preference list. Each slot is a seqlock (Lamport; the fences follow
//! Boehm, "Can seqlocks get along with programming language memory
//! models?", 2012): a writer makes the sequence odd, writes, makes it even;
//! a reader that sees it change or odd ignores the slot and computes. A
//! writer that loses the race for a slot simply does not cache. Lists of up
//! to [`CACHED_RF`] members (3 × 16-bit indices and a length) fit one word.
//! The cache lives and dies with its snapshot, so it never needs
//! invalidation.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::placement::{NodeIndex, PreferenceList};

/// Entries per snapshot (24 bytes each: 48 KiB).
pub(crate) const SLOTS: usize = 2048;
/// Longest preference list that is cached.
pub(crate) const CACHED_RF: usize = 3;

struct Slot {
    seq: AtomicU64,
    hash: AtomicU64,
    list: AtomicU64,
}

/// Recent preference lists of one snapshot.
pub(crate) struct PlacementCache {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for PlacementCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementCache")
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// A clone is a new snapshot's cache: it starts empty.
impl Clone for PlacementCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Default for PlacementCache {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    seq: AtomicU64::new(0),
                    hash: AtomicU64::new(0),
                    list: AtomicU64::new(0),
                })
                .collect(),
        }
    }
}

impl PlacementCache {
    fn slot(&self, hash: u64) -> &Slot {
        &self.slots[(hash as usize) & (SLOTS - 1)]
    }

    /// The cached list for `hash`, if present and read consistently.
    #[inline]
    pub(crate) fn get(&self, hash: u64) -> Option<PreferenceList> {
        let slot = self.slot(hash);
        let before = slot.seq.load(Ordering::Acquire);
        if before == 0 || before & 1 == 1 {
            return None;
        }
        let tag = slot.hash.load(Ordering::Relaxed);
        let list = slot.list.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = slot.seq.load(Ordering::Relaxed);
        (before == after && tag == hash).then(|| decode(list))
    }

    /// Remembers `list` for `hash` unless another writer holds the slot.
    #[inline]
    pub(crate) fn put(&self, hash: u64, list: &PreferenceList) {
        if list.len() > CACHED_RF {
            return;
        }
        let slot = self.slot(hash);
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq & 1 == 1
            || slot
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        slot.hash.store(hash, Ordering::Relaxed);
        slot.list.store(encode(list), Ordering::Relaxed);
        slot.seq.store(seq + 2, Ordering::Release);
    }
}

fn encode(list: &PreferenceList) -> u64 {
    let mut word = list.len() as u64;
    for (i, node) in list.as_slice().iter().enumerate() {
        word |= u64::from(node.0) << (16 * (i + 1));
    }
    word
}

fn decode(word: u64) -> PreferenceList {
    let mut list = PreferenceList::EMPTY;
    let len = (word & 0xffff) as usize;
    for i in 0..len {
        list.push(NodeIndex((word >> (16 * (i + 1))) as u16));
    }
    list
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::placement::{Placement, space_hash};

    fn placement(nodes: u16, rf: usize) -> Placement {
        Placement::new(
            (0..nodes).map(|i| (NodeIndex(i), crate::placement::node_seed(&format!("n{i}")))),
            rf,
        )
    }

    #[test]
    fn cached_answers_equal_computed_ones() {
        let p = placement(100, 3);
        let cache = PlacementCache::default();
        // Ten times the slots, twice over: hits, misses and evictions.
        for _ in 0..2 {
            for i in 0..10 * SLOTS {
                let h = space_hash(&format!("space-{i}"));
                let want = p.preference_list_hashed(h);
                if let Some(got) = cache.get(h) {
                    assert_eq!(got.as_slice(), want.as_slice(), "space-{i}");
                } else {
                    cache.put(h, &want);
                    assert_eq!(cache.get(h).unwrap().as_slice(), want.as_slice());
                }
            }
        }
    }

    #[test]
    fn concurrent_readers_and_writers_never_see_a_torn_list() {
        let p = Arc::new(placement(50, 3));
        let cache = Arc::new(PlacementCache::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (p, cache) = (Arc::clone(&p), Arc::clone(&cache));
                std::thread::spawn(move || {
                    // Few slots, many spaces: constant overwrites.
                    for i in 0..50_000u64 {
                        let h = space_hash(&format!("s-{}", (i * 7 + t) % 3000));
                        let want = p.preference_list_hashed(h);
                        match cache.get(h) {
                            Some(got) => assert_eq!(got.as_slice(), want.as_slice()),
                            None => cache.put(h, &want),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn long_lists_are_not_cached() {
        let p = placement(10, 5);
        let cache = PlacementCache::default();
        let h = space_hash("x");
        cache.put(h, &p.preference_list_hashed(h));
        assert!(cache.get(h).is_none());
    }
}
