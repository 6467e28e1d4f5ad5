//! How a node is configured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest gRPC message a node accepts or sends. Content is capped at 64 KiB
/// and embeddings at 4096 floats, so legitimate requests stay far below.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Stable node id; survives restarts.
    pub id: String,
    /// gRPC (TCP) and gossip (UDP) address. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the node keeps its database.
    pub data_dir: PathBuf,
    /// Other nodes' listen addresses (IPs or DNS names) to join through.
    pub join: Vec<String>,
    /// Copies of each space, primary included (capped by cluster size).
    pub replication_factor: usize,
    /// Where to serve `/metrics` and `/health`, if anywhere.
    pub http: Option<SocketAddr>,
    /// Similarity of client-supplied embeddings at or above which
    /// consolidation merges memories whose texts do not conflict.
    pub consolidate_threshold: f32,
    /// How consolidation decays memories nobody recalls; `None`: it does
    /// not.
    pub decay: Option<mnemo_store::decay::Policy>,
    /// Cluster size the partition detector counts a majority of; `None`:
    /// the largest membership seen.
    pub expected_size: Option<usize>,
    /// How long a node's breaker stays open before one probe is let through.
    pub breaker_open_timeout: Duration,
    /// Hedge a recall to the next replica after this long; `None`: after
    /// the primary's usual latency (adaptive, the default); zero: never.
    pub hedge_delay: Option<Duration>,
    /// How often each space is compared with one other holder (default
    /// 10 s). Repairs after failures and catch-ups do not wait for it.
    pub anti_entropy_interval: Duration,
    /// Most bytes of memories per second anti-entropy, catch-up and
    /// hand-over move (default 64 MiB/s), so a join or a return does not
    /// starve serving traffic.
    pub sync_bytes_per_sec: u64,
    /// For tests of slow nodes only: every public request waits this long
    /// before it is served. Zero (the default) in any real deployment.
    pub inject_latency: Duration,
    /// Threads serving gRPC connections, each a single-threaded runtime
    /// that owns the connections handed to it; 0 (this type's default,
    /// for a node embedded in another program): the node's multi-threaded
    /// runtime serves them all. With threads, a request and the forward it
    /// makes stay on one thread (a hop costs about a proxy's), but a thread
    /// the kernel sets aside stalls its connections. `mnemo node` runs one
    /// per core unless told otherwise.
    pub serving_threads: usize,
    /// Most connections open at once on the gRPC and HTTP ports together,
    /// clients' and peers'; one more is closed as soon as it is accepted,
    /// and an eighth are kept for gRPC connections from members'
    /// addresses. Every connection
    /// holds a file descriptor, and a node out of them can neither accept
    /// nor open its files: keep this below the process's open-file limit.
    pub max_connections: usize,
    /// A client's connection that carries no request for this long (no
    /// byte, on the HTTP port) is closed, and gives its place back; one
    /// that says nothing within 30 s of being accepted (or this, if
    /// shorter) too. `None`: never. Connections from members' addresses
    /// on the gRPC port are kept.
    pub connection_idle: Option<Duration>,
    /// How the embedded store runs (checkpoints of its write-ahead log).
    pub store: mnemo_store::StoreOptions,
    /// TLS, peer and client authentication; `None`: an insecure node that
    /// trusts every caller (for loopback development clusters).
    pub security: Option<std::sync::Arc<crate::security::Security>>,
}

/// Default [`NodeConfig::anti_entropy_interval`].
pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(10);
/// Default [`NodeConfig::sync_bytes_per_sec`].
pub const DEFAULT_SYNC_BYTES_PER_SEC: u64 = 64 * 1024 * 1024;
/// Default [`NodeConfig::max_connections`] (Redis's default client limit).
/// `mnemo node` lowers it to what its open-file limit leaves room for.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default [`NodeConfig::connection_idle`].
pub const DEFAULT_CONNECTION_IDLE: Duration = Duration::from_secs(300);

impl NodeConfig {
    /// Default [`NodeConfig::decay`]: half-life 30 days, floor 0.1.
    pub const DEFAULT_DECAY: mnemo_store::decay::Policy = mnemo_store::decay::Policy {
        half_life_ms: 30 * 24 * 60 * 60 * 1000,
        floor: 0.1,
    };

    /// A single node with defaults: id `n1` on 127.0.0.1:7401, data in `./mnemo-data`.
    pub fn new(id: impl Into<String>, listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            id: id.into(),
            listen,
            data_dir: data_dir.into(),
            join: Vec::new(),
            replication_factor: 3,
            http: None,
            consolidate_threshold: mnemo_store::consolidate::DEFAULT_THRESHOLD,
            decay: Some(Self::DEFAULT_DECAY),
            expected_size: None,
            breaker_open_timeout: Duration::from_secs(30),
            hedge_delay: None,
            anti_entropy_interval: DEFAULT_ANTI_ENTROPY_INTERVAL,
            sync_bytes_per_sec: DEFAULT_SYNC_BYTES_PER_SEC,
            inject_latency: Duration::ZERO,
            serving_threads: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connection_idle: Some(DEFAULT_CONNECTION_IDLE),
            store: mnemo_store::StoreOptions::default(),
            security: None,
        }
    }
}
