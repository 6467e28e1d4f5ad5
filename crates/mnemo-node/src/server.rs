//! Starting a node: open the store, bind the listener, join the cluster,
//! and serve the public and internal services with health and reflection.
//!
//! Order matters: the TCP listener is bound before membership starts on the
//! same port (UDP), so by the time other nodes learn of this one, its gRPC
//! port accepts connections ("alive in membership" means ready).

use std::net::SocketAddr;
use std::sync::Arc;

use mnemo_cluster::{GossipKey, Membership, MembershipConfig, MembershipHandle};
use mnemo_proto::v1::{internal_server::InternalServer, mnemo_server::MnemoServer};
use mnemo_router::{NodeId, Router, RouterConfig};
use mnemo_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use crate::antientropy::AntiEntropy;
use crate::config::{MAX_MESSAGE_BYTES, NodeConfig};
use crate::internal::InternalService;
use crate::node::Node;
use crate::places::{Activity, Idle};
use crate::replication::Replicator;
use crate::security::Gate;
use crate::service::MnemoService;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest a graceful leave waits for its hand-over.
const HANDOFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// HTTP/2 pings on a connection that has been quiet this long...
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// ...which close it when unanswered for this long.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A node that is serving.
pub struct Running {
    /// The node.
    pub node: Arc<Node>,
    /// The address the gRPC server (and gossip) is bound to.
    pub local_addr: SocketAddr,
    /// Where `/metrics` and `/health` are served, if asked for.
    pub http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    left: watch::Receiver<bool>,
    server: JoinHandle<Result<(), BoxError>>,
}

impl Running {
    /// Leaves the cluster, stops serving and waits for in-flight requests.
    pub async fn shutdown(self) -> Result<(), BoxError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the server ends (after a [`stopper`](Self::stopper) fired).
    pub async fn wait(self) -> Result<(), BoxError> {
        self.server.await??;
        Ok(())
    }

    /// A sender that stops the node when `true` is sent.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Turns `true` once a stopping node has handed its spaces over and
    /// left the cluster; what remains is closing connections.
    pub fn has_left(&self) -> watch::Receiver<bool> {
        self.left.clone()
    }
}

/// A graceful leave hands every space to the holders it will have without
/// this node before telling the cluster it leaves.
async fn hand_over_before_leaving(node: &Node) {
    let handed = async {
        let spaces = crate::antientropy::hand_over_all(node).await?;
        // Writes taken meanwhile are still on their way to the holders, or
        // were left to anti-entropy (a peer's queue full, or given up on):
        // either way they must reach the holders before this node goes.
        loop {
            node.replicator.drained().await;
            let left_over = node.replicator.take_undelivered(|p| node.is_live(p));
            if left_over.is_empty() {
                break;
            }
            for (peer, spaces) in left_over {
                for space in spaces {
                    crate::antientropy::sync_space(node, &space, &peer).await?;
                }
            }
        }
        Ok::<_, tonic::Status>(spaces)
    };
    match tokio::time::timeout(HANDOFF_TIMEOUT, handed).await {
        Ok(Ok(spaces)) => tracing::info!(spaces, "handed spaces over before leaving"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "hand-over before leaving failed; the other holders will repair");
        }
        Err(_) => {
            tracing::warn!("hand-over before leaving timed out; the other holders will repair");
        }
    }
}

/// Once told to stop: hands the spaces over, tells the cluster (so peers
/// stop routing here), and says so on `left`.
async fn leave_when_stopped(
    node: Arc<Node>,
    mut stopped: watch::Receiver<bool>,
    left: watch::Sender<bool>,
) {
    let _ = stopped.wait_for(|s| *s).await;
    // A node that must not be in the cluster (its id is taken) hands
    // nothing over.
    if node.fatal().is_none() {
        hand_over_before_leaving(&node).await;
    }
    if let Some(mut m) = node.membership.lock().await.take() {
        let _ = m.leave().await;
    }
    let _ = left.send(true);
}

/// The routing layer's settings from the node's.
pub(crate) fn router_config(config: &NodeConfig) -> RouterConfig {
    let mut router_config = RouterConfig {
        replication_factor: config.replication_factor,
        hedge: match config.hedge_delay {
            None => mnemo_router::Hedge::Adaptive,
            Some(d) if d.is_zero() => mnemo_router::Hedge::Off,
            Some(d) => mnemo_router::Hedge::Fixed(d),
        },
        ..RouterConfig::default()
    };
    router_config.breaker.open_timeout = config.breaker_open_timeout;
    router_config.pool.tls = config.security.as_ref().map(|s| s.peer_tls.clone());
    // Pooled channels are shared by the whole node: their tasks stay on the
    // main runtime, whichever serving thread opens them.
    router_config.pool.runtime = tokio::runtime::Handle::try_current().ok();
    router_config
}

/// Binds the TCP listener, then starts membership on the same port.
async fn bind_and_join(config: &NodeConfig) -> Result<(TcpListener, MembershipHandle), BoxError> {
    if config.max_connections == 0 {
        return Err("max_connections must be at least 1: the node could take no connection".into());
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let mut membership_config = MembershipConfig::new(config.id.clone(), local_addr)
        .with_seeds(config.join.iter().cloned());
    membership_config.expected_size = config.expected_size;
    if let Some(security) = &config.security {
        membership_config = membership_config.with_gossip_key(GossipKey::new(security.gossip_key));
    }
    let membership = Membership::start(membership_config)
        .await
        .map_err(|e| format!("cannot start membership on udp {local_addr}: {e}"))?;
    Ok((listener, membership))
}

/// Whether an address is one of the members' in the current view (peers
/// connect from their own host's address, from any port).
fn is_member(view: watch::Receiver<mnemo_cluster::ClusterView>) -> crate::serving::IsMember {
    Box::new(move |ip| view.borrow().members.iter().any(|m| m.addr.ip() == ip))
}

/// Which gRPC connections `node` takes, and how long it keeps clients'.
fn admission(node: &Node) -> crate::serving::Admission {
    crate::serving::Admission {
        places: Arc::clone(&node.places),
        is_member: is_member(node.view.clone()),
        idle: Idle::after(node.config.connection_idle, Activity::Requests),
    }
}

/// Opens the node's store, joins the cluster and starts serving on
/// `config.listen`.
pub async fn start(config: NodeConfig) -> Result<Running, BoxError> {
    let store = tokio::task::block_in_place(|| Store::open_with(&config.data_dir, config.store))?;
    let (listener, membership) = bind_and_join(&config).await?;
    let local_addr = listener.local_addr()?;
    let view = membership.subscribe();

    let router_config = router_config(&config);
    let router = Arc::new(Router::new(
        NodeId::from(config.id.as_str()),
        crate::membership::members(&view.borrow()),
        router_config,
    ));
    let pool = Arc::clone(&router);
    let replicator = Replicator::new(
        config.id.clone(),
        Arc::new(move |id: &str| crate::node::channel_to(&pool, id)),
    );
    let sync = AntiEntropy::new(config.sync_bytes_per_sec);
    let (stop, stopped) = watch::channel(false);
    let (left_tx, left) = watch::channel(false);
    let (health, health_service) = tonic_health::server::health_reporter();
    // A node with seeds serves once it has met another member (see Node::ensure_joined).
    let joined = config.join.is_empty();
    if joined {
        health.set_serving::<MnemoServer<MnemoService>>().await;
    } else {
        health.set_not_serving::<MnemoServer<MnemoService>>().await;
    }
    let hops = crate::hop::Hops::new(config.serving_threads, Arc::clone(&router));
    let node = Arc::new(Node {
        id: config.id.clone(),
        addr: local_addr.to_string(),
        store,
        places: crate::places::Places::new(config.max_connections),
        config,
        router,
        replicator,
        sync,
        hops,
        left: left.clone(),
        view: view.clone(),
        membership: tokio::sync::Mutex::new(Some(membership)),
        joined: std::sync::atomic::AtomicBool::new(joined),
        health,
        stop: stop.clone(),
        fatal: std::sync::OnceLock::new(),
    });
    crate::antientropy::spawn(&node);
    tokio::spawn(crate::membership::follow(Arc::clone(&node), view));

    let http_addr = match node.config.http {
        Some(addr) => Some(crate::http::serve(addr, Arc::clone(&node)).await?),
        None => None,
    };

    // Both versions of reflection: grpcurl 1.8, grpcui, Postman and Evans
    // still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mnemo_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        (reflection().build_v1()?, reflection().build_v1alpha()?);
    let gate = Gate::new(node.config.security.clone());
    let public = MnemoServer::new(MnemoService::new(Arc::clone(&node)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let public = InterceptedService::new(public, {
        let gate = gate.clone();
        move |r| gate.public(r)
    });
    let internal = InternalServer::new(InternalService::new(Arc::clone(&node)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let internal = InterceptedService::new(internal, move |r| gate.internal(r));

    // A peer or client that stops answering on an open connection (its
    // host gone, a network cut) is pinged, then dropped: its connection
    // and buffers do not stay for good.
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(security) = &node.config.security {
        builder = builder.tls_config(security.server_tls.clone())?;
    }
    let router = builder
        .layer(crate::telemetry::TimedLayer)
        .layer(crate::places::InUseLayer)
        .layer(crate::limits::resource_exhausted_layer())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(public)
        .add_service(internal);
    let serve = move |incoming, stop| router.serve_with_incoming_shutdown(incoming, stop);
    let threads = node.config.serving_threads;
    let server = crate::serving::serve(listener, threads, admission(&node), &left, serve)?;
    tokio::spawn(leave_when_stopped(Arc::clone(&node), stopped, left_tx));
    tracing::info!(id = %node.id, addr = %local_addr, "node serving");
    Ok(Running {
        node,
        local_addr,
        http_addr,
        stop,
        left,
        server,
    })
}
