//! The cluster view published to the rest of the node.
//!
//! foca knows members by socket address; mnemo knows them by node id. This
//! module folds foca's membership table into one entry per node id: a node
//! that restarted on a new port shows up in foca as a fresh member while its
//! old address lingers as `Down`; the view keeps only the entry with the
//! highest incarnation, so the restarted node is simply `Alive` again.
//!
//! `Left` is not a SWIM state: foca models a graceful leave as the member
//! declaring itself `Down`. The runtime remembers the identities that sent a
//! leave notice and this module reports them as `Left`. If the notice is
//! lost the member shows as `Down` — same routing consequence.
//!
//! Pure bookkeeping: no sockets, no clock.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use crate::identity::Identity;
use crate::partition::PartitionState;

/// Liveness of a member as seen by this node: the routing core's type, so
/// membership and routing speak of one thing.
pub use mnemo_routing::topology::MemberState;

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Node id.
    pub id: String,
    /// Gossip UDP address, which is also the member's gRPC TCP address.
    pub addr: SocketAddr,
    /// Current state.
    pub state: MemberState,
    /// The member's incarnation (changes on restart); a change with the same
    /// id means the process restarted, e.g. pooled connections are stale.
    pub incarnation: u64,
}

impl MemberInfo {
    pub(crate) fn from_identity(id: &Identity, state: MemberState) -> Self {
        Self {
            id: id.id.clone(),
            addr: id.addr,
            state,
            incarnation: id.incarnation,
        }
    }
}

/// A snapshot of cluster membership, published on every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// Bumped on every published change; starts at 0 for the initial view.
    pub epoch: u64,
    /// This node.
    pub local: MemberInfo,
    /// Every known member **including this node**, one entry per node id,
    /// sorted by id. Down/left members stay until foca forgets them
    /// (`remove_down_after`).
    pub members: Vec<MemberInfo>,
    /// Partition detector output.
    pub partition: PartitionState,
    /// Other live members that use this node's id (at another address):
    /// two nodes started with one `--id`. The one started later should
    /// stop.
    pub same_id: Vec<MemberInfo>,
}

impl ClusterView {
    /// The member with this node id, if known.
    pub fn get(&self, id: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Members (self included) in the given state.
    pub fn in_state(&self, state: MemberState) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(move |m| m.state == state)
    }

    /// Members (self included) that are alive or suspect.
    pub fn reachable(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| m.state.is_live())
    }

    /// Number of members in the given state.
    pub fn count(&self, state: MemberState) -> usize {
        self.in_state(state).count()
    }
}

/// Converts foca's state, honouring leave notices.
pub(crate) fn member_state(
    id: &Identity,
    state: foca::State,
    left: &HashSet<(String, u64)>,
) -> MemberState {
    if left.contains(&(id.id.clone(), id.incarnation)) {
        return MemberState::Left;
    }
    match state {
        foca::State::Alive => MemberState::Alive,
        foca::State::Suspect => MemberState::Suspect,
        foca::State::Down => MemberState::Down,
    }
}

/// Folds foca's table (keyed by address) into one entry per node id,
/// keeping the highest incarnation, with `local` always present and
/// authoritative for its own id. Sorted by id.
pub(crate) fn merge_members<'a>(
    local: &MemberInfo,
    entries: impl IntoIterator<Item = (&'a Identity, foca::State)>,
    left: &HashSet<(String, u64)>,
) -> Vec<MemberInfo> {
    let mut by_id: BTreeMap<&str, MemberInfo> = BTreeMap::new();
    for (identity, state) in entries {
        if identity.id == local.id || identity.id.is_empty() {
            continue;
        }
        let info = MemberInfo::from_identity(identity, member_state(identity, state, left));
        // Per id, a live identity over one that is not (a twin that left
        // must not hide the node it imitated), then the newest.
        let rank = |m: &MemberInfo| (m.state.is_live(), m.incarnation);
        match by_id.get(identity.id.as_str()) {
            Some(existing) if rank(existing) >= rank(&info) => {}
            _ => {
                by_id.insert(&identity.id, info);
            }
        }
    }
    let mut members: Vec<MemberInfo> = by_id.into_values().collect();
    let at = members.partition_point(|m| m.id < local.id);
    members.insert(at, local.clone());
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(id: &str, port: u16, inc: u64) -> Identity {
        Identity::new(id, SocketAddr::from(([127, 0, 0, 1], port)), inc)
    }

    fn local() -> MemberInfo {
        MemberInfo::from_identity(&ident("n2", 2, 1), MemberState::Alive)
    }

    #[test]
    fn one_entry_per_id_highest_incarnation_wins() {
        let old = ident("n1", 1, 10);
        let restarted = ident("n1", 11, 20);
        let n3 = ident("n3", 3, 1);
        let entries = vec![
            (&restarted, foca::State::Alive),
            (&old, foca::State::Down),
            (&n3, foca::State::Suspect),
        ];
        let members = merge_members(&local(), entries, &HashSet::new());
        let ids: Vec<_> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["n1", "n2", "n3"]);
        assert_eq!(members[0].addr.port(), 11);
        assert_eq!(members[0].state, MemberState::Alive);
        assert_eq!(members[2].state, MemberState::Suspect);
    }

    #[test]
    fn a_live_identity_wins_over_a_newer_one_that_left() {
        // A second process started with n1's id, then refused and left: the
        // live n1 keeps its place whatever order foca lists them in.
        let real = ident("n1", 1, 10);
        let twin = ident("n1", 9, 20);
        for entries in [
            vec![(&real, foca::State::Alive), (&twin, foca::State::Down)],
            vec![(&twin, foca::State::Down), (&real, foca::State::Alive)],
        ] {
            let left: HashSet<(String, u64)> = [("n1".to_owned(), 20)].into();
            let members = merge_members(&local(), entries, &left);
            assert_eq!(members[0].addr.port(), 1);
            assert_eq!(members[0].state, MemberState::Alive);
        }
    }

    #[test]
    fn order_of_entries_does_not_matter() {
        let old = ident("n1", 1, 10);
        let restarted = ident("n1", 11, 20);
        let a = merge_members(
            &local(),
            vec![(&old, foca::State::Down), (&restarted, foca::State::Alive)],
            &HashSet::new(),
        );
        let b = merge_members(
            &local(),
            vec![(&restarted, foca::State::Alive), (&old, foca::State::Down)],
            &HashSet::new(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn local_is_authoritative_for_its_own_id() {
        // An older incarnation of ourselves lingering in foca's table.
        let stale_self = ident("n2", 22, 0);
        let members = merge_members(
            &local(),
            vec![(&stale_self, foca::State::Down)],
            &HashSet::new(),
        );
        assert_eq!(members, vec![local()]);
    }

    #[test]
    fn leave_notice_turns_down_into_left_for_that_incarnation_only() {
        let gone = ident("n1", 1, 10);
        let mut left = HashSet::new();
        left.insert(("n1".to_owned(), 10));
        let members = merge_members(&local(), vec![(&gone, foca::State::Down)], &left);
        assert_eq!(members[0].state, MemberState::Left);

        let back = ident("n1", 1, 11);
        let members = merge_members(&local(), vec![(&back, foca::State::Alive)], &left);
        assert_eq!(members[0].state, MemberState::Alive);
    }

    #[test]
    fn seed_placeholders_never_show_up() {
        let placeholder = Identity::seed(SocketAddr::from(([127, 0, 0, 1], 9)));
        let members = merge_members(
            &local(),
            vec![(&placeholder, foca::State::Alive)],
            &HashSet::new(),
        );
        assert_eq!(members.len(), 1);
    }
}
