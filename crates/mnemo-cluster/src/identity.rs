//! Who a node is on the gossip wire.
//!
//! A node is named by its configured id (`"n1"`), reachable at one
//! `SocketAddr` that serves both gossip (UDP) and gRPC (TCP), and qualified
//! by an *incarnation* that changes every time the process starts.
//!
//! Why the incarnation: SWIM (Das, Gupta, Motivala 2002) treats `Down` as
//! terminal for an identity. A node that crashed and restarted must therefore
//! come back as a *new* identity, or the cluster would keep ignoring it until
//! it forgets the old one. The runtime uses the start time in milliseconds
//! since the Unix epoch; [`foca::Identity::renew`] bumps it by one when foca learns
//! that the cluster declared us down (a false positive), so the node rejoins
//! at once instead of staying defunct.
//!
//! foca keys members by [`foca::Identity::addr`], which here is the socket
//! address: an announce to a seed only knows the seed's address, never its id
//! or incarnation, and foca accepts an announce whose destination has the
//! receiver's `addr`. Two identities with the same address are resolved by
//! [`Identity::wins_over`]: the higher incarnation wins, ties broken by id so
//! every member decides the same way.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A cluster member's identity: node id, shared gossip/gRPC address and
/// incarnation.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Stable node id from the command line (`--id`).
    pub id: String,
    /// Gossip UDP address; the node's gRPC server listens on the same
    /// host:port over TCP.
    pub addr: SocketAddr,
    /// Changes on every start (start-time millis) and on every
    /// [`foca::Identity::renew`]; higher is newer.
    pub incarnation: u64,
}

impl Identity {
    /// Builds an identity. The runtime passes the start time in milliseconds
    /// as `incarnation`; tests pass what they like.
    pub fn new(id: impl Into<String>, addr: SocketAddr, incarnation: u64) -> Self {
        Self {
            id: id.into(),
            addr,
            incarnation,
        }
    }

    /// A placeholder for a seed we only know by address. foca accepts an
    /// announce addressed to any identity with the receiver's address, so the
    /// id and incarnation are irrelevant here.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self::new(String::new(), addr, 0)
    }

    /// Whether `self` should replace `other` when both claim one address:
    /// the higher incarnation wins; on a tie the larger id wins so all
    /// members agree.
    pub fn wins_over(&self, other: &Self) -> bool {
        (self.incarnation, &self.id) > (other.incarnation, &other.id)
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.id, self.addr, self.incarnation)
    }
}

impl foca::Identity for Identity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            id: self.id.clone(),
            addr: self.addr,
            incarnation: self.incarnation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.wins_over(adversary)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity as _;

    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:7401".parse().unwrap()
    }

    #[test]
    fn higher_incarnation_wins_address_conflict() {
        let old = Identity::new("n1", addr(), 100);
        let new = Identity::new("n1", addr(), 200);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn renewed_identity_wins_over_its_predecessor() {
        let old = Identity::new("n1", addr(), 100);
        let renewed = old.renew().expect("identities always renew");
        assert_eq!(renewed.id, "n1");
        assert_eq!(renewed.addr, old.addr);
        assert_eq!(renewed.incarnation, 101);
        assert!(renewed.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&renewed));
    }

    #[test]
    fn tie_is_broken_by_id_the_same_way_on_both_sides() {
        let a = Identity::new("a", addr(), 5);
        let b = Identity::new("b", addr(), 5);
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        // An identity never beats itself, so foca keeps what it has.
        assert!(!a.win_addr_conflict(&a.clone()));
    }

    #[test]
    fn addr_is_the_socket_address() {
        let id = Identity::new("n1", addr(), 1);
        assert_eq!(id.addr(), addr());
        assert_eq!(Identity::seed(addr()).addr(), addr());
    }
}
