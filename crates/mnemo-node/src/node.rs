//! A node's state: its identity, its store, its router and what membership
//! says of the cluster.

use std::sync::Arc;

use mnemo_cluster::{ClusterView, MembershipHandle};
use mnemo_proto::v1;
use mnemo_router::{Router, Topology};
use mnemo_store::Store;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::replication::Replicator;

/// One mnemo node.
pub struct Node {
    /// Stable node id.
    pub id: String,
    /// The address other nodes and clients reach this node at.
    pub addr: String,
    /// The node's durable spaces.
    pub store: Store,
    /// How it was started.
    pub config: NodeConfig,
    /// Where requests go.
    pub router: Arc<Router>,
    /// Ships this node's writes to the replicas of the spaces it leads.
    pub replicator: Arc<Replicator>,
    pub(crate) view: watch::Receiver<ClusterView>,
    pub(crate) membership: tokio::sync::Mutex<Option<MembershipHandle>>,
    /// False while a node started with seeds has not met any other member:
    /// until then it would take every space for its own and split the data.
    pub(crate) joined: std::sync::atomic::AtomicBool,
    pub(crate) health: tonic_health::server::HealthReporter,
}

/// Where one space lives, by node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The primary, if any node is live.
    pub primary: Option<v1::NodeRef>,
    /// The replicas in preference order.
    pub replicas: Vec<v1::NodeRef>,
}

impl Node {
    fn topology(&self) -> Arc<mnemo_router::decision::RouteTable> {
        self.router.table()
    }

    /// Refuses data requests while the node is still joining the cluster.
    pub(crate) fn ensure_joined(&self) -> Result<(), tonic::Status> {
        if self.joined.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        Err(tonic::Status::unavailable(format!(
            "node {} is still joining the cluster through {}; retry shortly or ask another node",
            self.id,
            self.config.join.join(", ")
        )))
    }

    /// Where `space` lives in this node's current view.
    pub fn placement(&self, space: &str) -> Placement {
        let table = self.topology();
        let topology: &Topology = table.topology();
        let mut nodes = topology
            .preference_list(space)
            .as_slice()
            .iter()
            .map(|&i| {
                let m = topology.member(i);
                v1::NodeRef {
                    id: m.id.to_string(),
                    addr: m.addr.clone(),
                }
            })
            .collect::<Vec<_>>()
            .into_iter();
        Placement {
            primary: nodes.next(),
            replicas: nodes.collect(),
        }
    }

    /// True when this node is `space`'s primary in its own view.
    pub fn is_primary(&self, space: &str) -> bool {
        let table = self.topology();
        let topology = table.topology();
        topology.local_index().is_some()
            && topology.preference_list(space).primary() == topology.local_index()
    }

    /// True when writes to `space` may be ordered in this node's log: it is
    /// the primary, or it is partitioned and routes what it holds locally.
    pub fn writes_log_of(&self, space: &str) -> bool {
        self.is_primary(space) || self.router.partition().partitioned
    }

    /// True when this node has, or should have, data of `space`.
    pub fn holds(&self, space: &str) -> bool {
        self.store.holds(space) || self.topology().topology().holds(space)
    }

    /// Ids of `space`'s replicas other than this node.
    pub fn replicas_of(&self, space: &str) -> Vec<String> {
        let table = self.topology();
        let topology = table.topology();
        topology
            .preference_list(space)
            .as_slice()
            .iter()
            .filter(|&&i| Some(i) != topology.local_index())
            .map(|&i| topology.member(i).id.to_string())
            .collect()
    }

    pub(crate) fn status(&self) -> v1::StatusResponse {
        let view = self.view.borrow().clone();
        let table = self.topology();
        v1::StatusResponse {
            node_id: self.id.clone(),
            addr: self.addr.clone(),
            partition: if view.partition.partitioned {
                "partitioned"
            } else {
                "connected"
            }
            .into(),
            members: view
                .members
                .iter()
                .map(|m| v1::Member {
                    id: m.id.clone(),
                    addr: m.addr.to_string(),
                    state: m.state.as_str().into(),
                })
                .collect(),
            breakers: self
                .router
                .breaker_snapshot()
                .into_iter()
                .map(|(node, state, failures)| v1::BreakerStatus {
                    node: node.to_string(),
                    state: state.as_str().into(),
                    consecutive_failures: failures,
                })
                .collect(),
            pool: self
                .router
                .pool_snapshot()
                .into_iter()
                .map(|(node, channels)| v1::PoolStatus {
                    node: node.to_string(),
                    channels: channels as u32,
                })
                .collect(),
            replication: self
                .replicator
                .lag()
                .into_iter()
                .map(|l| v1::ReplicaLag {
                    space: l.space,
                    replica: l.replica,
                    primary_seq: l.primary_seq,
                    replica_seq: l.replica_seq,
                })
                .collect(),
            spaces: self
                .store
                .spaces()
                .into_iter()
                .map(|s| v1::SpaceStatus {
                    name: s.name,
                    memories: s.memories,
                    seq: s.seq,
                    dimension: s.dimension,
                })
                .collect(),
            epoch: table.topology().epoch(),
            expected_cluster_size: view.partition.expected as u32,
        }
    }
}

/// A pooled channel to node `id`, if it is a known remote member.
pub(crate) fn channel_to(router: &Router, id: &str) -> Option<tonic::transport::Channel> {
    let table = router.table();
    let idx = table.topology().index_of(id)?;
    Some(table.remote(idx)?.channels.as_ref()?.get().clone())
}
