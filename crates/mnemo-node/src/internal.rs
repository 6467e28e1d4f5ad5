//! The node-to-node `mnemo.v1.Internal` service: a replica applies what its
//! primary ships.

use std::sync::Arc;

use mnemo_proto::v1::{self, internal_server::Internal};
use mnemo_store::validate;
use tonic::{Request, Response, Status};

use crate::convert::entry_from_wire;
use crate::error::NodeError;
use crate::node::Node;

/// Most entries accepted in one replication batch.
pub const MAX_REPLICATION_BATCH: usize = 4096;

/// The internal gRPC face of a [`Node`].
#[derive(Clone)]
pub struct InternalService {
    node: Arc<Node>,
}

impl InternalService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        InternalService { node }
    }
}

#[tonic::async_trait]
impl Internal for InternalService {
    async fn replicate(
        &self,
        request: Request<v1::ReplicateRequest>,
    ) -> Result<Response<v1::ReplicateResponse>, Status> {
        let r = request.into_inner();
        validate::space(&r.space).map_err(NodeError::from)?;
        if r.entries.len() > MAX_REPLICATION_BATCH {
            return Err(NodeError::Invalid {
                field: "entries",
                reason: format!(
                    "has {} entries; the limit is {MAX_REPLICATION_BATCH}",
                    r.entries.len()
                ),
            }
            .into());
        }
        let entries = r.entries.into_iter().map(entry_from_wire).collect();
        let applied_seq = self
            .node
            .store
            .apply_replicated(&r.space, entries)
            .await
            .map_err(NodeError::from)?;
        Ok(Response::new(v1::ReplicateResponse { applied_seq }))
    }

    async fn position(
        &self,
        request: Request<v1::PositionRequest>,
    ) -> Result<Response<v1::PositionResponse>, Status> {
        let r = request.into_inner();
        validate::space(&r.space).map_err(NodeError::from)?;
        Ok(Response::new(v1::PositionResponse {
            applied_seq: self.node.store.seq(&r.space),
        }))
    }
}
