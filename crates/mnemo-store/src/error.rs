//! Errors of the store layer.

/// Everything the store can refuse or fail with.
///
/// Each variant says whether any state changed; none of them is retryable
/// against the same store except [`StoreError::Storage`], which may be
/// transient (a full disk that gets space again).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A request field breaks a limit. Nothing changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field, as the API names it.
        field: &'static str,
        /// What limit it breaks, in words a person can act on.
        reason: String,
    },
    /// Another memory already holds this id. Nothing changed.
    #[error("memory {id:?} already exists in space {space:?} with different contents")]
    AlreadyExists {
        /// Space name.
        space: String,
        /// Memory id.
        id: String,
    },
    /// The id was forgotten; ids are never reused. Nothing changed.
    #[error("memory {id:?} in space {space:?} was forgotten; ids are not reused")]
    Forgotten {
        /// Space name.
        space: String,
        /// Memory id.
        id: String,
    },
    /// The space does not exist on this node. Nothing changed.
    #[error("space {0:?} has no data on this node")]
    NoSuchSpace(String),
    /// The embedded database failed; the batch that hit it was not committed.
    #[error("storage failure: {0}")]
    Storage(#[from] redb::Error),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Storage(e.into())
            }
        }
    )*};
}
storage_from!(
    std::io::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias of the store layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
