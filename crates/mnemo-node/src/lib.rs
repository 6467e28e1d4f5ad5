//! A mnemo node.
//!
//! Layout, in the order a request travels:
//! - [`service`]: the public `Mnemo` gRPC service, where requests are
//!   validated.
//! - `forward`: sending a request on to the node that should serve it, and
//!   the marker that stops it from travelling further.
//! - `local`: serving from this node's store.
//! - [`node`]: the node's state: identity, store, router, cluster view.
//! - [`replication`]: shipping the log from primaries to replicas.
//! - [`internal`]: the node-to-node `Internal` service (replication).
//! - `membership`: SWIM view changes → router topology and partition state.
//! - [`server`]: binding, joining, serving, health and reflection.
//! - [`http`]: `/metrics` and `/health`.
//! - [`error`]: the node's errors and their single mapping to gRPC codes.
//! - `convert`: wire types to store records and back.

pub mod config;
mod convert;
pub mod error;
mod forward;
pub mod http;
pub mod internal;
mod local;
mod membership;
pub mod node;
pub mod replication;
pub mod server;
pub mod service;

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::Node;
pub use server::{Running, start};

/// Checks a node id: the same rule as space names.
pub fn validate_id(id: &str) -> Result<(), mnemo_store::StoreError> {
    mnemo_store::validate::id(id)
}

/// Checks a consolidation threshold: a similarity in (0, 1].
pub fn validate_threshold(t: f32) -> Result<(), mnemo_store::StoreError> {
    mnemo_store::validate::threshold(t)
}
