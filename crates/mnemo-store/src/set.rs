//! A space as a mergeable set (a two-phase set, a state-based CRDT).
//!
//! The state of a space on a holder is a set of **elements**:
//! - a memory, keyed by its id; memories are immutable;
//! - a tombstone, keyed by the id it forgot; tombstones are permanent.
//!
//! Merge is union with two rules that make the result the same whatever
//! order holders learn things in (commutative, associative, idempotent):
//! 1. **A tombstone wins.** A tombstoned id keeps no memory; a memory that
//!    arrives for a tombstoned id is ignored.
//! 2. **One version per id.** Two different memories under one id (written
//!    on two holders while the primary was cut off, or on both sides of a
//!    partition) resolve to the one with the larger [`version`]: a memory
//!    taken by a node cut off from the majority (`minority`) loses to one
//!    that was not, and otherwise a hash of the encoded memory decides, so
//!    every node picks the same winner without clocks. Such conflicts are
//!    counted (`mnemo_store_conflicts_total`). Versions of one written
//!    memory that differ only in its use (when it was recalled, how it
//!    decayed) are not a conflict: they join ([`crate::decay`]).
//!
//! Visible memories = memories − tombstones, which rule 1 keeps literally:
//! the canonical state never holds both for one id.
//!
//! Every element has a 32-byte [`ElementId`]: a hash of its kind and key,
//! then (for memories) its version. Anti-entropy reconciles these ids with
//! range-based set reconciliation (negentropy), so its cost grows with the
//! difference between two holders, not with the space. A [`Summary`] by
//! bucket (kept up to date by large sets) lets two holders see that they
//! agree in one round trip, or which buckets (a 256th of the set each)
//! they differ in.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use negentropy::{Id, NegentropyStorageVector};
use prost::Message;
use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_128};

use crate::memory::Memory;

/// 32-byte identity of one element, as anti-entropy exchanges it.
pub type ElementId = [u8; 32];

/// One element of a space's state.
#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// A memory.
    Memory(Memory),
    /// The id of a forgotten memory.
    Tombstone(String),
}

impl Element {
    /// The memory id the element is about.
    pub fn id(&self) -> &str {
        match self {
            Self::Memory(m) => &m.id,
            Self::Tombstone(id) => id,
        }
    }
}

/// Low bits of a [`version`] that tell uses of one written memory apart.
const USE_BITS: u32 = 48;

/// Version of memory `m`, whose encoding is `encoded`: what decides between
/// two memories under one id. The top bit says whether it was taken with
/// the majority, the next 79 bits are a hash of what was written, the low
/// [`USE_BITS`] a hash of its use since (recalls, decay), or more of the
/// written hash while it has none, so versions of unused memories stay what
/// they were before use was recorded.
///
/// Two versions that differ above the use bits are two different writes:
/// the larger wins, a total order, so the merge is a maximum. Two that
/// differ only in use are one write used differently on two holders: they
/// join (see [`crate::decay`]). Both rules are commutative, associative and
/// idempotent.
pub fn version(m: &Memory, encoded: &[u8]) -> u128 {
    let usage = m.usage();
    // The use fields carry the highest tags, so they encode last: the
    // encoding is what was written, then the use.
    let (written, used) = encoded.split_at(encoded.len() - usage.encoded_len());
    debug_assert_eq!(
        used,
        &usage.encode_to_vec()[..],
        "the use fields must carry Memory's highest tags"
    );
    let mut hash = xxh3_128(written) >> 1;
    if !used.is_empty() {
        let used = u128::from(xxh3_64(used));
        let mask = (1u128 << USE_BITS) - 1;
        hash = (hash & !mask) | (used & mask);
    }
    if m.minority { hash } else { hash | 1 << 127 }
}

/// Whether two versions are of the same written memory (differing at most
/// in its use).
pub fn same_write(a: u128, b: u128) -> bool {
    a >> USE_BITS == b >> USE_BITS
}

/// The 128-bit hash of `kind` followed by `id` (streamed: no copy).
fn keyed(kind: u8, id: &str) -> u128 {
    let mut hasher = Xxh3::new();
    hasher.update(&[kind]);
    hasher.update(id.as_bytes());
    hasher.digest128()
}

/// Element id of a memory with `id` and `version`.
pub fn memory_element(id: &str, version: u128) -> ElementId {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&keyed(b'm', id).to_be_bytes());
    out[16..].copy_from_slice(&version.to_be_bytes());
    out
}

/// Element id of the tombstone of `id`.
pub fn tombstone_element(id: &str) -> ElementId {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&keyed(b't', id).to_be_bytes());
    out
}

/// Buckets of a [`Summary`]: an element falls into the one its id's first
/// byte names (a hash, so the buckets fill evenly).
pub const BUCKETS: usize = 256;

/// A set at least this large keeps its [`Summary`] up to date with each
/// change; a smaller one counts it when asked, from at most this many
/// elements.
const KEEP_SUMMARY_FROM: usize = 256;

/// The elements of one bucket of a [`Summary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Wrapping sum of the elements' digests (as the set's own digest).
    pub digest: u128,
    /// How many there are.
    pub count: u64,
}

/// A set summarised by bucket. Two holders that compare summaries learn
/// in one round trip which buckets differ, and then need only the ids of
/// those: a read answered in a primary's place checks its copy against
/// another holder's this way. Copies that agree cost a summary each way;
/// a difference costs the ids of the buckets it touches, a 256th of the
/// set each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary(Box<[Bucket; BUCKETS]>);

impl Default for Summary {
    fn default() -> Self {
        Summary(Box::new([Bucket::default(); BUCKETS]))
    }
}

impl Summary {
    /// A summary from its buckets, in order; `None` unless there are
    /// exactly [`BUCKETS`].
    pub fn from_buckets(buckets: Vec<Bucket>) -> Option<Self> {
        let buckets: Box<[Bucket; BUCKETS]> = buckets.into_boxed_slice().try_into().ok()?;
        Some(Summary(buckets))
    }

    /// The buckets, in order.
    pub fn buckets(&self) -> &[Bucket; BUCKETS] {
        &self.0
    }

    /// The buckets in which `self` and `other` differ.
    pub fn differing<'a>(&'a self, other: &'a Summary) -> impl Iterator<Item = u8> + 'a {
        (0..=u8::MAX).filter(|&b| self.0[usize::from(b)] != other.0[usize::from(b)])
    }

    fn add(&mut self, element: &ElementId, digest: u128) {
        let bucket = &mut self.0[usize::from(element[0])];
        bucket.digest = bucket.digest.wrapping_add(digest);
        bucket.count += 1;
    }

    fn remove(&mut self, element: &ElementId, digest: u128) {
        let bucket = &mut self.0[usize::from(element[0])];
        bucket.digest = bucket.digest.wrapping_sub(digest);
        bucket.count -= 1;
    }
}

/// What one element is, by id, in a [`SpaceSet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Memory(Arc<str>),
    Tombstone(Arc<str>),
}

/// The element ids of one space, in order, with a running digest.
///
/// Invariants: `elements` holds exactly one entry per live memory and one
/// per tombstone; `memories` maps each live memory id to its element id;
/// `digest` is the wrapping sum of [`element_digest`] over `elements`.
#[derive(Debug, Default)]
pub(crate) struct SpaceSet {
    elements: BTreeMap<ElementId, Entry>,
    memories: HashMap<Arc<str>, ElementId>,
    tombstones: u64,
    digest: u128,
    /// The summary by bucket, kept once the set is large enough
    /// ([`KEEP_SUMMARY_FROM`]).
    summary: Option<Summary>,
    /// The sealed reconciliation view, until the next change.
    cached: Option<Arc<NegentropyStorageVector>>,
}

/// Contribution of one element to a set's digest. Summing hashes makes the
/// digest independent of insertion order and cheap to update.
fn element_digest(id: &ElementId) -> u128 {
    xxh3_128(id)
}

impl SpaceSet {
    pub(crate) fn insert_memory(&mut self, id: &str, element: ElementId) {
        let id: Arc<str> = Arc::from(id);
        if let Some(old) = self.memories.insert(Arc::clone(&id), element) {
            self.remove(&old);
        }
        self.add(element, Entry::Memory(id));
    }

    pub(crate) fn remove_memory(&mut self, id: &str) {
        if let Some(old) = self.memories.remove(id) {
            self.remove(&old);
        }
    }

    pub(crate) fn insert_tombstone(&mut self, id: &str) {
        self.remove_memory(id);
        let element = tombstone_element(id);
        if !self.elements.contains_key(&element) {
            self.tombstones += 1;
            self.add(element, Entry::Tombstone(Arc::from(id)));
        }
    }

    fn add(&mut self, element: ElementId, entry: Entry) {
        if self.elements.insert(element, entry).is_none() {
            let digest = element_digest(&element);
            self.digest = self.digest.wrapping_add(digest);
            match &mut self.summary {
                Some(summary) => summary.add(&element, digest),
                None if self.elements.len() >= KEEP_SUMMARY_FROM => {
                    self.summary = Some(self.count_summary());
                }
                None => {}
            }
        }
        self.cached = None;
    }

    fn remove(&mut self, element: &ElementId) {
        if self.elements.remove(element).is_some() {
            let digest = element_digest(element);
            self.digest = self.digest.wrapping_sub(digest);
            if let Some(summary) = &mut self.summary {
                summary.remove(element, digest);
            }
        }
        self.cached = None;
    }

    /// The set summarised by bucket.
    pub(crate) fn summary(&self) -> Summary {
        self.summary_here().into_owned()
    }

    /// The kept summary, or one counted now.
    fn summary_here(&self) -> Cow<'_, Summary> {
        match &self.summary {
            Some(kept) => Cow::Borrowed(kept),
            None => Cow::Owned(self.count_summary()),
        }
    }

    fn count_summary(&self) -> Summary {
        let mut summary = Summary::default();
        for element in self.elements.keys() {
            summary.add(element, element_digest(element));
        }
        summary
    }

    /// This set's element ids in every bucket where its summary and
    /// `theirs` differ, or `None` if those buckets hold more than `limit`
    /// (known from the summary, before any id is touched).
    pub(crate) fn differing_ids(&self, theirs: &Summary, limit: usize) -> Option<Vec<ElementId>> {
        let ours = self.summary_here();
        let buckets: Vec<u8> = ours.differing(theirs).collect();
        let listed: u64 = buckets
            .iter()
            .map(|&b| ours.buckets()[usize::from(b)].count)
            .sum();
        if listed > limit as u64 {
            return None;
        }
        Some(
            buckets
                .into_iter()
                .flat_map(|b| self.ids_in(b).copied())
                .collect(),
        )
    }

    /// The element ids in `bucket` (see [`Summary`]), in order.
    pub(crate) fn ids_in(&self, bucket: u8) -> impl Iterator<Item = &ElementId> {
        let (mut first, mut last) = ([0; 32], [u8::MAX; 32]);
        (first[0], last[0]) = (bucket, bucket);
        self.elements.range(first..=last).map(|(id, _)| id)
    }

    /// The version of the live memory under `id`, if there is one.
    pub(crate) fn memory_version(&self, id: &str) -> Option<u128> {
        let element = self.memories.get(id)?;
        Some(u128::from_be_bytes(
            element[16..].try_into().expect("16 bytes"),
        ))
    }

    /// Whether `id` is forgotten.
    pub(crate) fn is_tombstoned(&self, id: &str) -> bool {
        self.elements.contains_key(&tombstone_element(id))
    }

    pub(crate) fn get(&self, element: &ElementId) -> Option<&Entry> {
        self.elements.get(element)
    }

    pub(crate) fn tombstones(&self) -> u64 {
        self.tombstones
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.elements.len()
    }

    /// Order-independent digest of the whole set: two holders with equal
    /// digests (and sizes) hold the same elements.
    pub(crate) fn digest(&self) -> u128 {
        self.digest
    }

    /// The set as negentropy storage, sealed. Every element has timestamp 0,
    /// so ranges split on element ids alone.
    pub(crate) fn reconciliation(&mut self) -> Arc<NegentropyStorageVector> {
        if let Some(c) = &self.cached {
            return Arc::clone(c);
        }
        let mut storage = NegentropyStorageVector::with_capacity(self.elements.len());
        for id in self.elements.keys() {
            storage
                .insert(0, Id::from_byte_array(*id))
                .expect("unsealed storage accepts inserts");
        }
        storage.seal().expect("sealed once");
        let storage = Arc::new(storage);
        self.cached = Some(Arc::clone(&storage));
        storage
    }
}

/// An empty, sealed reconciliation view (a space this node has no data of).
pub(crate) fn empty_reconciliation() -> Arc<NegentropyStorageVector> {
    let mut storage = NegentropyStorageVector::new();
    storage.seal().expect("sealed once");
    Arc::new(storage)
}

/// Which of two different memories under one id survives a merge.
pub(crate) fn incoming_wins(existing_version: u128, incoming_version: u128) -> bool {
    incoming_version > existing_version
}

#[cfg(test)]
mod tests;
