//! A node's state: its identity, its store, what it knows of the cluster.

use mnemo_proto::v1;
use mnemo_store::Store;

use crate::config::NodeConfig;

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
}

impl Node {
    pub(crate) fn self_ref(&self) -> v1::NodeRef {
        v1::NodeRef {
            id: self.id.clone(),
            addr: self.addr.clone(),
        }
    }

    pub(crate) fn status(&self) -> v1::StatusResponse {
        v1::StatusResponse {
            node_id: self.id.clone(),
            addr: self.addr.clone(),
            partition: "connected".into(),
            members: vec![v1::Member {
                id: self.id.clone(),
                addr: self.addr.clone(),
                state: "alive".into(),
            }],
            breakers: Vec::new(),
            pool: Vec::new(),
            replication: Vec::new(),
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
            epoch: 0,
            expected_cluster_size: 1,
        }
    }
}
