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
        let entries: Vec<mnemo_store::LogEntry> =
            r.entries.into_iter().map(entry_from_wire).collect();
        for entry in &entries {
            check_entry(&r.space, entry)?;
        }
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

/// A replicated memory must be as valid as a client's, and carry the
/// embedding its primary computed.
fn check_entry(space: &str, entry: &mnemo_store::LogEntry) -> Result<(), Status> {
    use mnemo_store::Op;
    let memory = match &entry.op {
        Some(Op::Remember(m)) => Some(m),
        Some(Op::Consolidate(c)) => c.merged.as_ref(),
        _ => None,
    };
    if let Some(m) = memory {
        validate::memory(space, m).map_err(NodeError::from)?;
        if m.id.is_empty() || m.embedding.is_empty() {
            return Err(NodeError::Invalid {
                field: "entries",
                reason: format!(
                    "entry {} carries a memory without id or embedding",
                    entry.seq
                ),
            }
            .into());
        }
    }
    Ok(())
}
