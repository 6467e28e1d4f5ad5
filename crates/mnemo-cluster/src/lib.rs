//! Cluster membership for mnemo: who is in the cluster, who is alive, and
//! whether this node is on the majority side of a partition.
//!
//! # Layout
//!
//! - [`identity`]: a member's identity (node id, shared gossip/gRPC address,
//!   incarnation) and the conflict rule for restarts.
//! - [`config`]: [`MembershipConfig`] and the SWIM timing defaults, with
//!   their false-positive trade-off.
//! - [`view`]: [`ClusterView`], the snapshot published on every change, and
//!   the pure bookkeeping that folds foca's table into it.
//! - [`partition`]: the pure partition detector (majority of the expected
//!   size, with hysteresis).
//! - [`runtime`]: the thin tokio adapter that drives foca (SWIM, Das, Gupta,
//!   Motivala 2002) over UDP: [`Membership::start`] → [`MembershipHandle`].
//! - [`seal`]: [`GossipKey`], the cluster secret, and the HMAC tag that
//!   authenticates every gossip datagram when one is configured.
//! - [`error`]: this layer's error enum.
//!
//! Everything except `runtime` is free of sockets and wall clock.
//!
//! Readiness contract: start membership only after the node's gRPC server
//! listens on the same host:port; then "alive in membership" means ready.
//!
//! Metrics (through the `metrics` facade): gauge `mnemo_cluster_partitioned`
//! (0/1), gauge `mnemo_cluster_members{state="alive"|"suspect"|"down"|"left"}`
//! and counter `mnemo_gossip_rejected_total` (datagrams dropped because
//! their authentication tag did not verify).

pub mod config;
pub mod error;
pub mod identity;
pub mod partition;
pub mod runtime;
pub mod seal;
pub mod view;

pub use config::{MembershipConfig, SwimTiming};
pub use error::{Error, Result};
pub use identity::Identity;
pub use partition::{PartitionDetector, PartitionState};
pub use runtime::{Membership, MembershipHandle};
pub use seal::GossipKey;
pub use view::{ClusterView, MemberInfo, MemberState};

/// Gives membership's metrics their help texts and creates its counters at
/// zero. Call once, after installing a recorder.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "mnemo_cluster_members",
        "Members by state, as this node sees them"
    );
    metrics::describe_gauge!(
        "mnemo_cluster_partitioned",
        "1 while this node is cut off from a majority of the cluster"
    );
    metrics::describe_counter!(
        "mnemo_gossip_rejected_total",
        "Gossip datagrams refused: unauthenticated, damaged or from another cluster"
    );
    metrics::counter!("mnemo_gossip_rejected_total").absolute(0);
}
