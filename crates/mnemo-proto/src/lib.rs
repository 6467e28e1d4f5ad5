//! mnemo's gRPC contract, package `mnemo.v1`, generated from `proto/`.
//!
//! Layout:
//! - [`v1`]: messages, the public `Mnemo` service and the node-to-node
//!   `Internal` service, as client and server.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server reflection.
//! - [`FORWARDED_BY`]: the metadata header that marks a forwarded request.
//! - [`FALLBACK`]: the one that marks a read sent in the primary's place.

#![allow(missing_docs, unreachable_pub, clippy::pedantic)]

/// Generated bindings of `proto/mnemo/v1/mnemo.proto`.
pub mod v1 {
    tonic::include_proto!("mnemo.v1");
}

/// Encoded `FileDescriptorSet` of the `mnemo.v1` package.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mnemo_descriptor");

/// Metadata header a node sets when it forwards a request to another node.
/// Its value is the forwarding node's id. A request carrying it is served
/// locally or refused, never forwarded again.
pub const FORWARDED_BY: &str = "mnemo-forwarded-by";

/// Metadata header a node sets on a forwarded read it sends to a holder
/// other than the space's primary, in the primary's place (it declined,
/// failed, or is being hedged around). The holder reconciles the space
/// with the other holders before it answers, so that the answer holds
/// every write a quorum acknowledged.
pub const FALLBACK: &str = "mnemo-fallback";
