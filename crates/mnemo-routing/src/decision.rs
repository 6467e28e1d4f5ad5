//! Routing decisions: DESIGN §3 as a pure function.
//!
//! | operation | strategy |
//! | --- | --- |
//! | store (remember, forget) | [`Strategy::PrimaryWithFallback`]: the primary, then the next holder (writes are idempotent by id and spaces merge, so any holder may take one) |
//! | recall | [`Strategy::PrimaryWithFallback`]: primary, then replicas in placement order |
//! | consolidation | [`Strategy::LocalOnly`]: never leaves this node; it must hold the space |
//! | query | [`Strategy::ScatterGather`]: one recall per space, merged by score |
//!
//! Partition rule: a node that reaches at most half of the *expected* cluster
//! (known size, not the live view that shrinks inside a minority) is
//! partitioned; store and recall then run [`Strategy::LocalOnly`] for spaces
//! this node holds, with confidences multiplied by
//! `reachable / expected` (the penalty grows with the unreachable share) and
//! the answer marked degraded; other spaces get [`Undecided::NoLocalData`].
//! Normal routing resumes as soon as the partition state says healed.
//!
//! [`decide`] reads a [`Topology`] and nothing else: no channels, no
//! breakers, no clock. It never allocates (errors excepted): the targets
//! are an inline [`PreferenceList`].

use crate::placement::PreferenceList;
use crate::topology::Topology;

/// Kind of request being routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// remember / forget: writes.
    Store,
    /// recall: reads.
    Recall,
    /// consolidate: local maintenance.
    Consolidation,
    /// query over several spaces.
    Query,
}

impl Operation {
    /// Lower-case name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Recall => "recall",
            Self::Consolidation => "consolidation",
            Self::Query => "query",
        }
    }
}

/// How a decision's targets are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The primary, then replicas in placement order.
    PrimaryWithFallback,
    /// This node only; no remote call.
    LocalOnly,
    /// One routed recall per space.
    ScatterGather,
}

impl Strategy {
    /// Lower-case name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrimaryWithFallback => "primary_with_fallback",
            Self::LocalOnly => "local_only",
            Self::ScatterGather => "scatter_gather",
        }
    }
}

/// Input from the membership layer: how much of the cluster this node reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// True when this node is in a minority.
    pub partitioned: bool,
    /// Nodes reachable, this one included.
    pub reachable: usize,
    /// Known cluster size.
    pub expected: usize,
}

impl PartitionState {
    /// Not partitioned.
    pub const HEALTHY: Self = Self {
        partitioned: false,
        reachable: 0,
        expected: 0,
    };

    /// The majority rule: partitioned when `reachable` is not more than half
    /// of `expected`.
    pub fn from_counts(reachable: usize, expected: usize) -> Self {
        Self {
            partitioned: expected > 0 && reachable * 2 <= expected,
            reachable,
            expected,
        }
    }

    /// Members needed for a majority of `expected`.
    pub fn quorum(&self) -> usize {
        majority(self.expected)
    }

    /// Factor applied to confidences: 1 when healthy, else
    /// `reachable / expected` in `[0, 1]`.
    pub fn penalty(&self) -> f32 {
        if !self.partitioned || self.expected == 0 {
            return 1.0;
        }
        (self.reachable.min(self.expected) as f32) / (self.expected as f32)
    }
}

/// Smallest count that is a strict majority of `n` (at least 1).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Why no decision could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecided {
    /// No live member to place the space on.
    NoLiveNodes {
        /// The space.
        space: String,
    },
    /// Partitioned, and this node does not hold the space.
    NoLocalData {
        /// The space.
        space: String,
    },
    /// A local-only operation (consolidation) reached a node that does not
    /// hold the space.
    NotLocal {
        /// The space.
        space: String,
    },
}

/// Where one operation on one space goes, and how.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// The targets, in the order to try them (a local-only decision has
    /// this node alone).
    pub targets: PreferenceList,
    /// The operation.
    pub operation: Operation,
    /// How the targets are used.
    pub strategy: Strategy,
    /// Factor to multiply returned confidences by (1 unless partitioned).
    pub penalty: f32,
    /// The answer is degraded (partitioned).
    pub degraded: bool,
}

/// The decision for `operation` on `space` over `topo` in `partition`.
/// (`#[inline]`: it is the router's hot path, called across the crate
/// boundary.)
#[inline]
pub fn decide(
    topo: &Topology,
    operation: Operation,
    space: &str,
    partition: PartitionState,
) -> Result<Decision, Undecided> {
    let local_only = |refused: fn(String) -> Undecided| {
        // Partitioned: only where the space was placed over the whole
        // cluster counts as local data (see `Topology::holds_as_placed`).
        // Computed here, off the common path: each costs an HRW scan.
        let holds = if partition.partitioned {
            topo.holds_as_placed(space)
        } else {
            topo.holds(space)
        };
        match topo.local_index() {
            Some(local) if holds => Ok(Decision {
                targets: PreferenceList::single(local),
                operation,
                strategy: Strategy::LocalOnly,
                penalty: partition.penalty(),
                degraded: partition.partitioned,
            }),
            _ => Err(refused(space.to_owned())),
        }
    };
    if operation == Operation::Consolidation {
        return local_only(|space| Undecided::NotLocal { space });
    }
    if partition.partitioned {
        return local_only(|space| Undecided::NoLocalData { space });
    }
    let targets = topo.preference_list(space);
    if targets.is_empty() {
        return Err(Undecided::NoLiveNodes {
            space: space.to_owned(),
        });
    }
    Ok(Decision {
        targets,
        operation,
        strategy: Strategy::PrimaryWithFallback,
        penalty: 1.0,
        degraded: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Member, NodeId};

    #[test]
    fn the_partition_rule_and_its_penalty() {
        let members = (0..5).map(|i| Member::alive(format!("n{i}"), format!("10.0.0.{i}:7000")));
        let topo = Topology::new(NodeId::from("n0"), members, 3, 1);
        let p = PartitionState::from_counts(2, 5);
        assert!(p.partitioned);
        assert!(!PartitionState::from_counts(3, 5).partitioned);
        assert!((p.penalty() - 0.4).abs() < 1e-6);
        let (held, not_held): (Vec<String>, Vec<String>) = (0..200)
            .map(|i| format!("s{i}"))
            .partition(|s| topo.holds_as_placed(s));
        let d = decide(&topo, Operation::Recall, &held[0], p).unwrap();
        assert_eq!((d.strategy, d.degraded), (Strategy::LocalOnly, true));
        assert_eq!(
            decide(&topo, Operation::Store, &not_held[0], p).unwrap_err(),
            Undecided::NoLocalData {
                space: not_held[0].clone()
            }
        );
        let healthy = decide(
            &topo,
            Operation::Store,
            &not_held[0],
            PartitionState::HEALTHY,
        );
        assert_eq!(healthy.unwrap().strategy, Strategy::PrimaryWithFallback);
    }
}
