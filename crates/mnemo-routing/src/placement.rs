//! Placement: which nodes hold a space, in preference order.
//!
//! # Why pure rendezvous hashing
//!
//! A space's preference list is the `rf` members with the highest score
//! `mix(hash(space) ^ seed(node))`: rendezvous or highest-random-weight (HRW)
//! hashing, Thaler & Ravishankar, "Using name-based mappings to increase hit
//! rates" (IEEE/ACM ToN, 1998). It depends on the member set alone, removing a
//! node moves only the spaces it held (its first replica becomes primary
//! because the remaining ranks keep their order), and adding a node moves only
//! the spaces it now wins.
//!
//! We considered a fixed slot table (4096 or 16384 slots filled by HRW) for
//! O(1) lookup and rejected it: slots land on nodes as a multinomial draw, so
//! with 100 nodes and 16384 slots a node's share deviates by about 8% (one
//! standard deviation) and the most loaded node carries ~1.2x the mean, which
//! misses the 1.15 balance goal; a table fine enough to meet it (2^17 slots)
//! costs ~800 KB per snapshot and a 1000-node rebuild of 130 M hashes. Pure
//! HRW gives the binomial optimum (1.09 measured at 100 nodes, 100k spaces), zero
//! table memory and an O(N) rebuild, for an O(N) lookup that is one 64x64→128
//! multiply per live node (~1 ns; see `benches/routing.rs`). Hot spaces skip
//! even that: each topology snapshot memoises recent answers
//! (`placement_cache`).
//!
//! Hashes are stable across processes and versions: xxh3-64 of the UTF-8
//! bytes of names and ids (never std's randomly seeded `RandomState`), and wyhash's
//! multiply-fold ("mum") to score a (space, node) pair.
//!
//! Defaults: replication factor [`DEFAULT_RF`] = 3, at most [`MAX_RF`];
//! capped by the number of live members.

use xxhash_rust::xxh3::xxh3_64;

/// Default replication factor: a primary and two replicas.
pub const DEFAULT_RF: usize = 3;

/// Largest supported replication factor; preference lists are inline arrays of
/// this length so that a routing decision never allocates.
pub const MAX_RF: usize = 7;

/// Index of a member in a [`Topology`](crate::Topology) snapshot (members
/// sorted by id). Only meaningful with the snapshot that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub(crate) u16);

impl NodeIndex {
    /// The position in [`Topology::members`](crate::Topology::members).
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// Stable 64-bit hash of a space name.
pub fn space_hash(space: &str) -> u64 {
    xxh3_64(space.as_bytes())
}

/// Stable 64-bit seed of a node id.
pub fn node_seed(id: &str) -> u64 {
    xxh3_64(id.as_bytes())
}

/// splitmix64's finalizer: a bijection with full avalanche.
#[inline]
fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Per-node key: the id's hash and a second, independent word from it.
#[derive(Debug, Clone, Copy)]
struct NodeKey(u64, u64);

impl NodeKey {
    fn new(seed: u64) -> Self {
        Self(seed, fmix(seed ^ 0x243f_6a88_85a3_08d3))
    }
}

/// Score of a (space, node) pair: wyhash's "mum" mix (the folded 128-bit
/// product of two keyed words), one multiply per node. The space side is
/// two independent words computed once per lookup.
#[inline]
fn score(space: (u64, u64), node: NodeKey) -> u64 {
    let m = u128::from(space.0 ^ node.0) * u128::from(space.1 ^ node.1);
    (m as u64) ^ ((m >> 64) as u64)
}

/// An ordered preference list `[primary, replica1, ...]` of distinct members,
/// stored inline (no allocation). `Copy`, 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PreferenceList {
    nodes: [NodeIndex; MAX_RF],
    len: u8,
}

impl PreferenceList {
    /// The empty list (no live members).
    pub const EMPTY: Self = Self {
        nodes: [NodeIndex(0); MAX_RF],
        len: 0,
    };

    /// A list of one member.
    pub(crate) fn single(node: NodeIndex) -> Self {
        let mut l = Self::EMPTY;
        l.nodes[0] = node;
        l.len = 1;
        l
    }

    /// Moves the first `by` members to the end.
    pub fn rotate_left(&mut self, by: usize) {
        let len = usize::from(self.len);
        if len > 0 {
            self.nodes[..len].rotate_left(by % len);
        }
    }

    /// Appends a member (at most [`MAX_RF`]).
    pub(crate) fn push(&mut self, node: NodeIndex) {
        self.nodes[usize::from(self.len)] = node;
        self.len += 1;
    }

    /// The members in preference order.
    pub fn as_slice(&self) -> &[NodeIndex] {
        &self.nodes[..usize::from(self.len)]
    }

    /// The primary, if any member is live.
    pub fn primary(&self) -> Option<NodeIndex> {
        self.as_slice().first().copied()
    }

    /// Number of members in the list.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when no member is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `node` is in the list.
    pub fn contains(&self, node: NodeIndex) -> bool {
        self.as_slice().contains(&node)
    }
}

impl std::fmt::Debug for PreferenceList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// HRW placement over a fixed candidate set.
///
/// Invariant: `nodes` and `seeds` are parallel, `nodes` ascending (members are
/// sorted by id), so ties on score (probability ~2^-64) break by id.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    nodes: Vec<NodeIndex>,
    keys: Vec<NodeKey>,
    rf: usize,
}

impl Placement {
    /// Placement over `candidates` (index and id-seed pairs, ascending by
    /// index) with replication factor `rf`, capped by the candidate count and
    /// [`MAX_RF`].
    pub fn new(candidates: impl IntoIterator<Item = (NodeIndex, u64)>, rf: usize) -> Self {
        let (nodes, keys): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .map(|(i, seed)| (i, NodeKey::new(seed)))
            .unzip();
        let rf = rf.clamp(1, MAX_RF).min(nodes.len());
        Self { nodes, keys, rf }
    }

    /// Effective replication factor.
    pub fn rf(&self) -> usize {
        self.rf
    }

    /// Number of candidate nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The preference list of a space given its [`space_hash`].
    pub fn preference_list_hashed(&self, hash: u64) -> PreferenceList {
        let rf = self.rf;
        let mut out = PreferenceList::EMPTY;
        if rf == 0 {
            return out;
        }
        let space = (hash, fmix(hash ^ 0x1319_8a2e_0370_7344));
        // Top-rf by (score desc, position asc), kept sorted in `best`. The
        // first rf candidates fill it; after that a candidate costs one
        // multiply and one well-predicted compare unless it beats the last.
        // (A branch-free min/max network was tried: 2x slower at 1000 nodes,
        // its dependency chain outweighs the ~3·ln(N/rf) mispredicted inserts.)
        let mut best = [(0u64, 0usize); MAX_RF];
        let insert = |best: &mut [(u64, usize); MAX_RF], mut i: usize, s: u64, pos: usize| {
            while i > 0 && best[i - 1].0 < s {
                best[i] = best[i - 1];
                i -= 1;
            }
            best[i] = (s, pos);
        };
        for (pos, &key) in self.keys[..rf].iter().enumerate() {
            insert(&mut best, pos, score(space, key), pos);
        }
        let mut last = best[rf - 1].0;
        for (pos, &key) in self.keys.iter().enumerate().skip(rf) {
            let s = score(space, key);
            if s > last {
                insert(&mut best, rf - 1, s, pos);
                last = best[rf - 1].0;
            }
        }
        for (slot, &(_, pos)) in out.nodes.iter_mut().zip(&best[..rf]) {
            *slot = self.nodes[pos];
        }
        out.len = rf as u8;
        out
    }

    /// The preference list of a space.
    pub fn preference_list(&self, space: &str) -> PreferenceList {
        self.preference_list_hashed(space_hash(space))
    }
}
