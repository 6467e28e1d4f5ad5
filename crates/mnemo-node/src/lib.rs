//! A mnemo node.
//!
//! Layout, in the order a request travels:
//! - [`service`]: the public `Mnemo` gRPC service: one shape for every call
//!   routed to a space's holders (check; serve a forwarded request, or route
//!   it), and query, consolidate, locate, status, decommission.
//! - `calls`: what differs per routed call (remember, forget, recall, get,
//!   list): its checks, where it goes, how it is served here and on a peer.
//! - `forward`: route or forward: each attempt the router's executor makes,
//!   here or on a peer, and the marker that stops a forwarded request from
//!   travelling further.
//! - [`hop`]: the one stream per peer that forwarded requests travel over,
//!   both its ends (sending, and serving what a peer forwarded).
//! - `service/stream.rs`: `RememberStream`, many remembers over one stream.
//! - `local`: serving from this node's store.
//! - [`node`]: the node's state: identity, store, router, cluster view.
//! - [`replication`]: the fast path: each write sent at once to the space's
//!   other holders, acknowledged per holder (what `ack=quorum` counts).
//! - [`antientropy`]: the truth: holders compare element sets and exchange
//!   what differs; catch-up, repair and hand-over.
//! - [`catchup`]: which spaces this node may answer reads of as complete.
//! - [`internal`]: the node-to-node `Internal` service (merge, reconcile,
//!   fetch, spaces, hop).
//! - `membership`: SWIM view changes → router topology, partition state,
//!   breakers of returning nodes, settles and repairs.
//! - [`server`]: binding, joining, serving, health and reflection.
//! - `serving`: accepting connections and handing them to the runtime, or
//!   the threads, that serve them.
//! - [`http`]: `/metrics` and `/health`.
//! - [`security`]: TLS, who may call what (nodes, operators, tokens), and
//!   the certificates directory.
//! - `telemetry`: metric descriptions, histograms, request timing.
//! - [`error`]: the node's errors and their single mapping to gRPC codes.
//! - `convert`: wire types to store records and back.

pub mod antientropy;
mod calls;
pub mod catchup;
pub mod config;
mod convert;
pub mod error;
mod forward;
pub mod hop;
pub mod http;
pub mod internal;
pub mod json;
mod limits;
mod local;
mod membership;
pub mod node;
mod places;
pub mod replication;
pub mod security;
pub mod server;
pub mod service;
mod serving;
mod telemetry;

pub use config::NodeConfig;
pub use error::NodeError;
pub use mnemo_store::decay::Policy as DecayPolicy;
pub use node::Node;
pub use server::{Running, start};

/// Checks a node id: the same rule as space names.
pub fn validate_id(id: &str) -> Result<(), mnemo_store::StoreError> {
    mnemo_store::validate::id(id)
}

/// Checks a decay policy: a positive half-life, a floor in [0, 1].
pub fn validate_decay(p: DecayPolicy) -> Result<(), mnemo_store::StoreError> {
    mnemo_store::validate::decay_policy(p)
}

/// Checks a consolidation threshold: a similarity in (0, 1].
pub fn validate_threshold(t: f32) -> Result<(), mnemo_store::StoreError> {
    mnemo_store::validate::threshold(t)
}
