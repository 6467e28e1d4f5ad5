//! A mnemo node.
//!
//! Layout, in the order a request travels:
//! - [`service`]: the public `Mnemo` gRPC service, where requests are
//!   validated.
//! - [`node`]: the node's state: identity, store, view of the cluster.
//! - [`internal`]: the node-to-node `Internal` service (replication).
//! - [`server`]: binding, serving, health and reflection.
//! - [`error`]: the node's errors and their single mapping to gRPC codes.
//! - `convert`: wire types to store records and back.

pub mod config;
mod convert;
pub mod error;
pub mod internal;
pub mod node;
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
