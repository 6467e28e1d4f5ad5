//! A node's state: its identity, its store, its router and what membership
//! says of the cluster.

use std::sync::Arc;

use mnemo_cluster::{ClusterView, MembershipHandle};
use mnemo_proto::v1;
use mnemo_router::{Router, Topology};
use mnemo_store::Store;
use tokio::sync::watch;

use crate::antientropy::AntiEntropy;
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
    /// Places for connections on its gRPC and HTTP ports.
    pub(crate) places: Arc<crate::places::Places>,
    /// How it was started.
    pub config: NodeConfig,
    /// Where requests go.
    pub router: Arc<Router>,
    /// Sends the writes this node takes to the other holders.
    pub replicator: Arc<Replicator>,
    /// Anti-entropy, catch-up and hand-over.
    pub sync: AntiEntropy,
    /// The streams that carry requests this node forwards to its peers.
    pub hops: crate::hop::Hops,
    pub(crate) view: watch::Receiver<ClusterView>,
    pub(crate) membership: tokio::sync::Mutex<Option<MembershipHandle>>,
    /// False while a node started with seeds has not met any other member:
    /// until then it would take every space for its own and split the data.
    pub(crate) joined: std::sync::atomic::AtomicBool,
    pub(crate) health: tonic_health::server::HealthReporter,
    /// Sending `true` stops the node (after handing its spaces over).
    pub(crate) stop: watch::Sender<bool>,
    /// `true` once the node has left the cluster and its server is
    /// closing: long-lived streams end then, so that it can.
    pub(crate) left: watch::Receiver<bool>,
    /// Why the node stopped by itself, when it could not go on (another
    /// live node has its id).
    pub(crate) fatal: std::sync::OnceLock<String>,
}

/// Where one space lives, by node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The primary, if any node is live.
    pub primary: Option<v1::NodeRef>,
    /// The replicas in preference order.
    pub replicas: Vec<v1::NodeRef>,
}

impl Node {
    /// Completes once the node has left the cluster (at once if it has):
    /// what a long-lived stream ends on, so that the server can close.
    pub(crate) fn has_left(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut left = self.left.clone();
        async move {
            let _ = left.wait_for(|left| *left).await;
        }
    }

    /// Why the node stopped by itself, if it did.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

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
    pub fn location(&self, space: &str) -> Location {
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
        Location {
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

    /// True when this node is in `space`'s preference list over live members.
    pub fn is_holder(&self, space: &str) -> bool {
        let table = self.topology();
        let topology = table.topology();
        topology
            .local_index()
            .is_some_and(|me| topology.preference_list(space).contains(me))
    }

    /// True when this node takes writes to `space` forwarded by another:
    /// it is a holder; during a partition, a holder as the space was placed
    /// over the whole cluster (never a stray copy of a space it lacks).
    pub fn accepts_writes_for(&self, space: &str) -> bool {
        if self.router.partition().partitioned {
            self.topology().topology().holds_as_placed(space)
        } else {
            self.is_holder(space)
        }
    }

    /// True when consolidation of `space` may run here: on its primary, or
    /// during a partition on a holder.
    pub fn consolidates(&self, space: &str) -> bool {
        self.is_primary(space)
            || (self.router.partition().partitioned
                && self.topology().topology().holds_as_placed(space))
    }

    /// Ids of `space`'s holders over live members, primary first (this node
    /// included if it is one).
    pub fn holders_of(&self, space: &str) -> Vec<String> {
        let table = self.topology();
        let topology = table.topology();
        topology
            .preference_list(space)
            .as_slice()
            .iter()
            .map(|&i| topology.member(i).id.to_string())
            .collect()
    }

    /// Ids of `space`'s holders other than this node.
    pub fn replicas_of(&self, space: &str) -> Vec<String> {
        let mut holders = self.holders_of(space);
        holders.retain(|h| *h != self.id);
        holders
    }

    /// Where this node catches `space` up from: its holders among the live
    /// members other than this node (see `Topology::sources`).
    pub fn sources_of(&self, space: &str) -> Vec<String> {
        let table = self.topology();
        let topology = table.topology();
        topology
            .sources(space)
            .into_iter()
            .map(|i| topology.member(i).id.to_string())
            .collect()
    }

    /// `space`'s primary as placed over every member that has not left,
    /// live or not (what `placed_holders_of` lists first, without the
    /// list).
    pub fn placed_primary(&self, space: &str) -> Option<mnemo_router::topology::NodeId> {
        let table = self.topology();
        let topology = table.topology();
        let primary = topology.placed(space).primary()?;
        Some(topology.member(primary).id.clone())
    }

    /// `space`'s holders as placed over every member that has not left,
    /// with whether each is live.
    pub fn placed_holders_of(&self, space: &str) -> Vec<(String, bool)> {
        let table = self.topology();
        let topology = table.topology();
        topology
            .placed(space)
            .as_slice()
            .iter()
            .map(|&i| {
                let m = topology.member(i);
                (m.id.to_string(), m.state.is_live())
            })
            .collect()
    }

    /// True when this node holds `space` in the live view only in place of
    /// a node that is down (it is not among the nodes the space was placed
    /// on over every member that has not left).
    pub fn stands_in_for(&self, space: &str) -> bool {
        self.is_holder(space)
            && !self
                .placed_holders_of(space)
                .iter()
                .any(|(id, _)| *id == self.id)
    }

    /// Whether reads of `space` may be answered from this node's copy.
    pub fn ready(&self, space: &str) -> bool {
        let stand_in = self.stands_in_for(space);
        self.sync
            .readiness
            .lock()
            .expect("lock poisoned")
            .ready(space, stand_in)
    }

    /// `Some(why)` when `space` was placed (over every member that has not
    /// left) only on nodes that are down, this one not among them: its data
    /// is there, and no live node can vouch that the space is empty.
    pub fn placed_only_on_down_nodes(&self, space: &str) -> Option<String> {
        let placed = self.placed_holders_of(space);
        if placed.iter().any(|(id, live)| *id == self.id || *live) {
            return None;
        }
        let names: Vec<&str> = placed.iter().map(|(id, _)| id.as_str()).collect();
        Some(format!(
            "space {space:?} lives on {}, and all of them are down",
            names.join(", ")
        ))
    }

    /// True when membership says node `id` is alive or suspect.
    pub fn is_live(&self, id: &str) -> bool {
        let table = self.topology();
        let topology = table.topology();
        topology
            .index_of(id)
            .is_some_and(|i| topology.member(i).state.is_live())
    }

    /// Ids of the live members other than this node.
    pub fn live_peers(&self) -> Vec<String> {
        let table = self.topology();
        table
            .topology()
            .members()
            .iter()
            .filter(|m| m.state.is_live() && m.id.as_str() != self.id)
            .map(|m| m.id.to_string())
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
            breakers: {
                let latency = self.router.latency_snapshot();
                let ms = |e: Option<mnemo_router::latency::Estimate>| {
                    e.map_or(0.0, |e| e.srtt.as_secs_f64() * 1e3)
                };
                self.router
                    .breaker_snapshot()
                    .into_iter()
                    .map(|(node, state, failures)| {
                        let l = latency.iter().find(|l| l.node == node);
                        v1::BreakerStatus {
                            node: node.to_string(),
                            state: state.as_str().into(),
                            consecutive_failures: failures,
                            read_latency_ms: ms(l.and_then(|l| l.read)),
                            write_latency_ms: ms(l.and_then(|l| l.write)),
                            slow: l.is_some_and(|l| l.slow),
                        }
                    })
                    .collect()
            },
            pool: self
                .router
                .pool_snapshot()
                .into_iter()
                .map(|(node, channels)| v1::PoolStatus {
                    node: node.to_string(),
                    channels: channels as u32,
                })
                .collect(),
            replication: {
                let to_repair = self.replicator.to_repair();
                self.replicator
                    .stats()
                    .into_iter()
                    .map(|p| v1::PeerReplication {
                        to_repair: to_repair.get(&p.node).copied().unwrap_or(0) as u64,
                        node: p.node,
                        pending: p.pending,
                        refused: p.refused,
                    })
                    .collect()
            },
            handoffs: self
                .sync
                .jobs()
                .into_iter()
                .map(|j| v1::Handoff {
                    space: j.space().to_owned(),
                    peer: j.peer().unwrap_or_default().to_owned(),
                    kind: j.kind().into(),
                })
                .collect(),
            settled: self.sync.settled(),
            leaving: *self.stop.borrow(),
            spaces: self
                .store
                .spaces()
                .into_iter()
                .map(|s| v1::SpaceStatus {
                    catching_up: !self.ready(&s.name),
                    name: s.name,
                    memories: s.memories,
                    tombstones: s.tombstones,
                    digest: format!("{:032x}", s.digest),
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
    with_channels(router, id, |c| c.get().clone())
}

/// A new channel to node `id`, not one of the pool's (see
/// `NodeChannels::dedicated`).
pub(crate) fn dedicated_channel_to(router: &Router, id: &str) -> Option<tonic::transport::Channel> {
    with_channels(router, id, mnemo_router::pool::NodeChannels::dedicated)
}

/// `f` of node `id`'s pool entry, if the topology has one for it.
fn with_channels<T>(
    router: &Router,
    id: &str,
    f: impl FnOnce(&mnemo_router::pool::NodeChannels) -> T,
) -> Option<T> {
    let table = router.table();
    let idx = table.topology().index_of(id)?;
    Some(f(table.remote(idx)?.channels.as_ref()?))
}
