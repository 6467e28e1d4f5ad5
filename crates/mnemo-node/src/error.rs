//! The node's errors and their one mapping to gRPC status codes.

use mnemo_store::StoreError;
use tonic::{Code, Status};

/// Why a request failed on this node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The local store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request field breaks a limit of the edge. Nothing changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// The limit, in words.
        reason: String,
    },
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        match e {
            NodeError::Store(e) => store_status(&e),
            NodeError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        }
    }
}

fn store_status(e: &StoreError) -> Status {
    let code = match e {
        StoreError::Invalid { .. } => Code::InvalidArgument,
        StoreError::AlreadyExists { .. } => Code::AlreadyExists,
        StoreError::Forgotten { .. } => Code::FailedPrecondition,
        StoreError::NoSuchSpace(_) => Code::NotFound,
        StoreError::Closed => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}
