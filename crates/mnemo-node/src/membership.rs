//! Membership → routing: every change of the SWIM view swaps the router's
//! topology, feeds it the partition state, and sets replication going
//! towards replicas that appeared or came back.

use std::collections::HashMap;
use std::sync::Arc;

use mnemo_cluster::{ClusterView, MemberState as Swim};
use mnemo_proto::v1::mnemo_server::MnemoServer;
use mnemo_router::{Member, MemberState, NodeId, PartitionState};
use std::sync::atomic::Ordering;
use tokio::sync::watch;

use crate::node::Node;
use crate::service::MnemoService;

/// The router's members for a membership view (this node included).
pub(crate) fn members(view: &ClusterView) -> Vec<Member> {
    view.members
        .iter()
        .map(|m| Member {
            id: NodeId::from(m.id.as_str()),
            addr: m.addr.to_string(),
            state: match m.state {
                Swim::Alive => MemberState::Alive,
                Swim::Suspect => MemberState::Suspect,
                Swim::Down => MemberState::Down,
                Swim::Left => MemberState::Left,
            },
        })
        .collect()
}

pub(crate) fn partition(view: &ClusterView) -> PartitionState {
    PartitionState {
        partitioned: view.partition.partitioned,
        reachable: view.partition.reachable,
        expected: view.partition.expected,
    }
}

/// Follows membership until the node stops.
pub(crate) async fn follow(node: Arc<Node>, mut view: watch::Receiver<ClusterView>) {
    let mut incarnations: HashMap<String, (u64, Swim)> = HashMap::new();
    loop {
        let current = view.borrow_and_update().clone();
        node.router
            .update_topology(members(&current), current.epoch);
        node.router.set_partition(partition(&current));
        let met_someone = current
            .members
            .iter()
            .any(|m| m.id != node.id && m.state.is_reachable());
        if met_someone && !node.joined.swap(true, Ordering::AcqRel) {
            tracing::info!(id = %node.id, "joined the cluster");
            node.health.set_serving::<MnemoServer<MnemoService>>().await;
        }

        for m in &current.members {
            let before = incarnations.insert(m.id.clone(), (m.incarnation, m.state));
            let restarted = before.is_some_and(|(inc, _)| inc != m.incarnation);
            if restarted || m.state == Swim::Left {
                // Its position must be asked again before shipping more.
                node.replicator.forget_replica(&m.id);
            }
        }
        // Catch up every replica of every space this node leads: new
        // replicas get the log from the start, returning ones from where
        // they stopped.
        for space in node.store.spaces() {
            if node.is_primary(&space.name) {
                let replicas = node.replicas_of(&space.name);
                node.replicator
                    .notify(&space.name, replicas.iter().map(String::as_str));
            }
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}
