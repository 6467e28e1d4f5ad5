//! Routed decisions: the pure decision of [`mnemo_routing::decision`] made
//! over a [`RouteTable`], the topology together with each remote node's
//! channels, breaker and latency estimates, which the executor needs to
//! carry it out.
//!
//! A decision holds an `Arc` of the table it was made from and an inline
//! [`PreferenceList`]: making one takes one atomic load of the table, one
//! refcount increment and the placement lookup, and never allocates (errors
//! excepted).

use std::fmt;
use std::sync::Arc;

use crate::breaker::{Breaker, BreakerConfig};
use crate::error::RouterError;
use crate::latency::NodeLatency;
use crate::placement::{NodeIndex, PreferenceList};
use crate::pool::{NodeChannels, PoolConfig};
use crate::topology::{Member, MemberState, Topology};

pub use mnemo_routing::decision::{Decision, Operation, PartitionState, Strategy, Undecided};

/// Per-remote-node state kept across topology updates.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Channels; `None` if the member's address is invalid.
    pub channels: Option<Arc<NodeChannels>>,
    /// The node's breaker.
    pub breaker: Arc<Breaker>,
    /// How long the node usually takes to answer.
    pub latency: Arc<NodeLatency>,
}

/// What a decision reads: a [`Topology`] and, by member index, the remote
/// nodes' channels and breakers. Immutable; swapped whole.
#[derive(Debug)]
pub struct RouteTable {
    topology: Topology,
    remotes: Box<[Option<Remote>]>,
}

impl RouteTable {
    /// Binds `topology` to per-node state, reusing `previous`'s breakers (by
    /// id) and channels (by id and address). The local node and members that
    /// left get no entry; that drops their channels.
    pub fn build(
        topology: Topology,
        previous: Option<&RouteTable>,
        pool: &PoolConfig,
        breaker: BreakerConfig,
    ) -> Self {
        let local = topology.local_index();
        let remotes = topology
            .members()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if Some(i) == local.map(NodeIndex::get) || m.state == MemberState::Left {
                    return None;
                }
                let old = previous.and_then(|p| {
                    let idx = p.topology.index_of(m.id.as_str())?;
                    p.remotes[idx.get()].as_ref()
                });
                let channels = match old.and_then(|o| o.channels.as_ref()) {
                    Some(c) if c.addr() == m.addr => Some(Arc::clone(c)),
                    _ => NodeChannels::new(m, pool).ok().map(Arc::new),
                };
                let breaker = old.map_or_else(
                    || Arc::new(Breaker::new(breaker)),
                    |o| Arc::clone(&o.breaker),
                );
                let latency = old.map_or_else(Arc::default, |o| Arc::clone(&o.latency));
                Some(Remote {
                    channels,
                    breaker,
                    latency,
                })
            })
            .collect();
        Self { topology, remotes }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The remote state of member `idx` (`None` for the local node).
    pub fn remote(&self, idx: NodeIndex) -> Option<&Remote> {
        self.remotes.get(idx.get()).and_then(Option::as_ref)
    }

    /// Remote entries with their member.
    pub fn remotes(&self) -> impl Iterator<Item = (&Member, &Remote)> {
        self.topology
            .members()
            .iter()
            .zip(self.remotes.iter())
            .filter_map(|(m, r)| r.as_ref().map(|r| (m, r)))
    }
}

/// Where and how to run one operation.
#[derive(Clone)]
pub struct RoutingDecision {
    table: Arc<RouteTable>,
    decision: Decision,
}

impl RoutingDecision {
    /// The operation routed.
    pub fn operation(&self) -> Operation {
        self.decision.operation
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.decision.strategy
    }

    /// The targets as a preference list (`Copy`, inline).
    pub fn preference(&self) -> &PreferenceList {
        &self.decision.targets
    }

    /// Targets in order: primary first, then fallbacks.
    pub fn targets(&self) -> &[NodeIndex] {
        self.decision.targets.as_slice()
    }

    /// The member first tried.
    pub fn primary(&self) -> &Member {
        self.table
            .topology
            .member(self.decision.targets.as_slice()[0])
    }

    /// Members tried after the primary, in order.
    pub fn fallbacks(&self) -> impl Iterator<Item = &Member> {
        self.decision.targets.as_slice()[1..]
            .iter()
            .map(|&i| self.table.topology.member(i))
    }

    /// True when `idx` is this node (served without gRPC).
    pub fn is_local(&self, idx: NodeIndex) -> bool {
        self.table.topology.local_index() == Some(idx)
    }

    /// Factor to multiply returned confidences by (1 unless partitioned).
    pub fn confidence_penalty(&self) -> f32 {
        self.decision.penalty
    }

    /// True when the answer is degraded (partition).
    pub fn is_degraded(&self) -> bool {
        self.decision.degraded
    }

    /// The table the decision was made from.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }
}

impl fmt::Debug for RoutingDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.table.topology;
        f.debug_struct("RoutingDecision")
            .field("operation", &self.decision.operation)
            .field("strategy", &self.decision.strategy)
            .field(
                "targets",
                &self
                    .targets()
                    .iter()
                    .map(|&i| &t.member(i).id)
                    .collect::<Vec<_>>(),
            )
            .field("penalty", &self.decision.penalty)
            .field("degraded", &self.decision.degraded)
            .field("epoch", &t.epoch())
            .finish()
    }
}

/// A scatter-gather plan ([`Strategy::ScatterGather`]): one recall-like
/// decision per space, in input order; a space that cannot be routed keeps
/// its error and is reported as failed instead of failing the query.
#[derive(Debug)]
pub struct QueryPlan {
    /// Space and its decision (or why it has none).
    pub parts: Vec<(String, Result<RoutingDecision, RouterError>)>,
}

impl QueryPlan {
    /// Always [`Strategy::ScatterGather`].
    pub fn strategy(&self) -> Strategy {
        Strategy::ScatterGather
    }

    /// True when any part is degraded or unroutable.
    pub fn is_degraded(&self) -> bool {
        self.parts
            .iter()
            .any(|(_, d)| d.as_ref().map_or(true, RoutingDecision::is_degraded))
    }
}

/// The decision for `operation` on `space` over `table` (see
/// [`mnemo_routing::decision::decide`]).
#[inline]
pub fn decide(
    table: &Arc<RouteTable>,
    operation: Operation,
    space: &str,
    partition: PartitionState,
) -> Result<RoutingDecision, RouterError> {
    let decision = mnemo_routing::decision::decide(&table.topology, operation, space, partition)?;
    Ok(RoutingDecision {
        table: Arc::clone(table),
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::NodeId;

    fn table(local: &str, n: usize) -> Arc<RouteTable> {
        let members = (0..n).map(|i| Member::alive(format!("n{i}"), format!("10.0.0.{i}:7000")));
        let topo = Topology::new(NodeId::from(local), members, 3, 1);
        Arc::new(RouteTable::build(
            topo,
            None,
            &PoolConfig::default(),
            BreakerConfig::default(),
        ))
    }

    fn space_where(t: &RouteTable, pred: impl Fn(&[NodeIndex], NodeIndex) -> bool) -> String {
        let local = t.topology().local_index().unwrap();
        (0..10_000)
            .map(|i| format!("s{i}"))
            .find(|s| pred(t.topology().preference_list(s).as_slice(), local))
            .unwrap()
    }

    #[test]
    fn each_operation_routes_as_design_says() {
        let t = table("n0", 5);
        let healthy = PartitionState::HEALTHY;
        for op in [Operation::Store, Operation::Recall] {
            let d = decide(&t, op, "a", healthy).unwrap();
            assert_eq!(d.strategy(), Strategy::PrimaryWithFallback);
            assert_eq!(d.targets(), t.topology().preference_list("a").as_slice());
            assert_eq!(d.fallbacks().count(), 2);
            assert!(!d.is_degraded());
        }

        let held = space_where(&t, |l, me| l.contains(&me));
        let not_held = space_where(&t, |l, me| !l.contains(&me));
        let d = decide(&t, Operation::Consolidation, &held, healthy).unwrap();
        assert_eq!(d.strategy(), Strategy::LocalOnly);
        assert!(d.is_local(d.targets()[0]));
        assert_eq!(
            decide(&t, Operation::Consolidation, &not_held, healthy).unwrap_err(),
            RouterError::NotLocal {
                space: not_held.clone()
            }
        );
    }

    #[test]
    fn partition_goes_local_only_with_penalty() {
        let t = table("n0", 5);
        let p = PartitionState::from_counts(2, 5);
        assert!(p.partitioned);
        let held = space_where(&t, |l, me| l[1..].contains(&me));
        let not_held = space_where(&t, |l, me| !l.contains(&me));
        for op in [Operation::Store, Operation::Recall] {
            let d = decide(&t, op, &held, p).unwrap();
            assert_eq!(d.strategy(), Strategy::LocalOnly);
            assert!(d.is_degraded());
            assert!((d.confidence_penalty() - 0.4).abs() < 1e-6);
            let e = decide(&t, op, &not_held, p).unwrap_err();
            assert!(matches!(e, RouterError::NoLocalData { .. }));
        }
        assert!(!PartitionState::from_counts(3, 5).partitioned);
    }

    #[test]
    fn rebuild_keeps_breakers_and_channels_and_drops_gone_nodes() {
        let a = table("n0", 4);
        let members = (1..4).map(|i| Member::alive(format!("n{i}"), format!("10.0.0.{i}:7000")));
        let topo = Topology::new(NodeId::from("n0"), members, 3, 2);
        let b = RouteTable::build(
            topo,
            Some(&a),
            &PoolConfig::default(),
            BreakerConfig::default(),
        );
        assert_eq!(b.remotes().count(), 3);
        let (ma, ra) = a.remotes().find(|(m, _)| m.id.as_str() == "n2").unwrap();
        let (mb, rb) = b.remotes().find(|(m, _)| m.id.as_str() == "n2").unwrap();
        assert_eq!(ma, mb);
        assert!(Arc::ptr_eq(&ra.breaker, &rb.breaker));
        assert!(Arc::ptr_eq(
            ra.channels.as_ref().unwrap(),
            rb.channels.as_ref().unwrap()
        ));
    }
}
