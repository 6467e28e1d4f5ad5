//! Topology: one immutable snapshot of the cluster as this node sees it.
//!
//! A snapshot holds the members (sorted by id), their states, the placement
//! computed over the live ones, and the membership epoch. It never changes;
//! when membership changes the router builds a new one and swaps it in
//! atomically (see [`Router::update_topology`](crate::Router::update_topology)),
//! so readers never lock and a routing decision sees one consistent view.
//!
//! Live means [`MemberState::Alive`] or [`MemberState::Suspect`]: SWIM-style
//! suspicion is transient, and moving spaces on every suspicion would churn
//! placement; a suspect that is really down is fast-failed by its breaker and
//! its replicas answer.

use std::fmt;
use std::sync::Arc;

use crate::placement::{NodeIndex, Placement, PreferenceList, node_seed, space_hash};
use crate::placement_cache::PlacementCache;

/// A node's stable identity. Cheap to clone (`Arc<str>`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Wraps an id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string (a refcount increment, no copy).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// A member's state as the membership layer (SWIM) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed probes; still placed and still counted as reachable until
    /// declared down (SWIM's suspicion period; see the module doc).
    Suspect,
    /// Declared failed (crashed or unreachable); not placed, but still part
    /// of the expected cluster.
    Down,
    /// Left the cluster on purpose; not placed, not expected.
    Left,
}

impl MemberState {
    /// True when spaces are placed on a member in this state, and it counts
    /// as reachable for the partition rule.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }

    /// Lower-case name, as used in `mnemo status --json` and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Left => "left",
        }
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cluster member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable identity.
    pub id: NodeId,
    /// gRPC address, `host:port`.
    pub addr: String,
    /// Membership state.
    pub state: MemberState,
}

impl Member {
    /// A member in state [`MemberState::Alive`].
    pub fn alive(id: impl Into<NodeId>, addr: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            addr: addr.into(),
            state: MemberState::Alive,
        }
    }
}

/// An immutable snapshot of the cluster.
#[derive(Debug, Clone)]
pub struct Topology {
    local: NodeId,
    local_index: Option<NodeIndex>,
    members: Vec<Member>,
    /// Placement over live members: used to route.
    live: Placement,
    /// Placement over every member that has not left: where data was put
    /// before failures shrank the live view; used to judge "holds the space"
    /// during a partition.
    expected: Placement,
    /// Recent answers of `live`, for the hot path.
    cache: PlacementCache,
    epoch: u64,
}

impl Topology {
    /// Builds a snapshot. Members are sorted by id; of duplicate ids the first
    /// given wins. `rf` is capped by the live member count and
    /// [`MAX_RF`](crate::placement::MAX_RF).
    ///
    /// # Panics
    /// With more than 65 535 members.
    pub fn new(
        local: NodeId,
        members: impl IntoIterator<Item = Member>,
        rf: usize,
        epoch: u64,
    ) -> Self {
        let mut members: Vec<Member> = members.into_iter().collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|b, a| a.id == b.id);
        assert!(u16::try_from(members.len()).is_ok(), "too many members");
        let seeds: Vec<(NodeIndex, u64, MemberState)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (NodeIndex(i as u16), node_seed(m.id.as_str()), m.state))
            .collect();
        let live = Placement::new(
            seeds.iter().filter(|s| s.2.is_live()).map(|s| (s.0, s.1)),
            rf,
        );
        let expected = Placement::new(
            seeds
                .iter()
                .filter(|s| s.2 != MemberState::Left)
                .map(|s| (s.0, s.1)),
            rf,
        );
        let local_index = members
            .binary_search_by(|m| m.id.cmp(&local))
            .ok()
            .map(|i| NodeIndex(i as u16));
        Self {
            local,
            local_index,
            members,
            live,
            expected,
            cache: PlacementCache::default(),
            epoch,
        }
    }

    /// This node's id.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// This node's index, if it is a member.
    pub fn local_index(&self) -> Option<NodeIndex> {
        self.local_index
    }

    /// Membership epoch this snapshot was built from.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Effective replication factor (capped by live members).
    pub fn rf(&self) -> usize {
        self.live.rf()
    }

    /// All members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of live members.
    pub fn live_count(&self) -> usize {
        self.live.node_count()
    }

    /// The member at `idx`.
    ///
    /// # Panics
    /// If `idx` comes from another snapshot with more members.
    pub fn member(&self, idx: NodeIndex) -> &Member {
        &self.members[idx.get()]
    }

    /// Index of the member with this id.
    pub fn index_of(&self, id: &str) -> Option<NodeIndex> {
        self.members
            .binary_search_by(|m| m.id.as_str().cmp(id))
            .ok()
            .map(|i| NodeIndex(i as u16))
    }

    /// The space's preference list over live members `[primary, replicas..]`.
    pub fn preference_list(&self, space: &str) -> PreferenceList {
        let hash = space_hash(space);
        if let Some(list) = self.cache.get(hash) {
            return list;
        }
        let list = self.live.preference_list_hashed(hash);
        self.cache.put(hash, &list);
        list
    }

    /// Where this node finds `space`'s data when it must catch up: the
    /// first `2·RF` (at most [`MAX_RF`](crate::placement::MAX_RF)) of the
    /// space's ranking over the live members *other than this node*. These
    /// are the other holders and the nodes that held the space before this
    /// node (and up to RF others) joined or came back. Not for the hot
    /// path: O(members).
    pub fn sources(&self, space: &str) -> Vec<NodeIndex> {
        let others = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.state.is_live() && Some(NodeIndex(*i as u16)) != self.local_index)
            .map(|(i, m)| (NodeIndex(i as u16), node_seed(m.id.as_str())));
        Placement::new(others, 2 * self.live.rf())
            .preference_list(space)
            .as_slice()
            .to_vec()
    }

    /// `space`'s preference list over every member that has not left (live
    /// or not): where its data was put before failures shrank the live view.
    pub fn placed(&self, space: &str) -> PreferenceList {
        self.expected.preference_list_hashed(space_hash(space))
    }

    /// True when this node holds `space`: it is in the space's preference list
    /// over live members, or over all members that have not left (where the
    /// data was written before peers became unreachable).
    pub fn holds(&self, space: &str) -> bool {
        let Some(local) = self.local_index else {
            return false;
        };
        self.preference_list(space).contains(local) || self.holds_as_placed(space)
    }

    /// True when this node is in `space`'s preference list over every member
    /// that has not left: where the space was placed before any failure.
    /// During a partition this is the test for local data: the live view
    /// inside a minority is small, and placement over it would make the
    /// node believe it holds spaces it never saw.
    pub fn holds_as_placed(&self, space: &str) -> bool {
        self.local_index.is_some_and(|local| {
            self.expected
                .preference_list_hashed(space_hash(space))
                .contains(local)
        })
    }
}

#[cfg(test)]
mod tests;
