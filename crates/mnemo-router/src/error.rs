//! Errors of the routing layer, and the one place they become gRPC codes.
//!
//! [`RouterError`] is what the router itself decides (no placement, no local
//! data, every replica failed...). An operation's own error type `E` only has
//! to say what a failure means ([`Classify`] into a [`Failure`]): a node
//! fault (next target, counted by breakers and the retry budget), not a node
//! fault (next target, nothing counted), or fatal (returned at once).
//! [`ExecError`] carries either a fatal operation error or a `RouterError`
//! with the last operation error seen.

use tonic::{Code, Status};

use crate::topology::NodeId;

/// Metadata key of a status that is a *refusal*: the node answered, but
/// will not serve this request now (it is catching up on the space, or its
/// view of placement differs). Its value says why. A refusal moves the
/// request on to the next target without counting against the node's
/// breaker or the retry budget: it says nothing about the node's health.
pub const REFUSAL_KEY: &str = "mnemo-refusal";

/// What a failed attempt says about the node that made it, and so what the
/// executor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The node is in trouble: a transport error, `Unavailable` from the
    /// node's own state. The next target is tried, and the fault counts
    /// against the node's breaker and the shared retry budget.
    NodeFault,
    /// The node is fine but did not serve this: a refusal (it is catching
    /// up, its view of placement differs, a quorum fell short; see
    /// [`REFUSAL_KEY`]) or the caller's deadline ran out on the way. The
    /// next target is tried if time is left; breakers and budget are left
    /// alone.
    NotNodeFault,
    /// The request itself failed (invalid, not found, not allowed...):
    /// returned to the caller at once, breakers and budget left alone.
    Fatal,
}

/// How an operation's error is classified (see [`Failure`]).
pub trait Classify {
    /// What this error says about the node that returned it.
    fn classify(&self) -> Failure;
}

/// A refusal status: `Unavailable`, marked with [`REFUSAL_KEY`] = `why`.
pub fn refusal(why: &'static str, message: impl Into<String>) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        REFUSAL_KEY,
        tonic::metadata::MetadataValue::from_static(why),
    );
    Status::with_metadata(Code::Unavailable, message, metadata)
}

impl Classify for Status {
    /// - a refusal ([`REFUSAL_KEY`]): not a node fault;
    /// - `DeadlineExceeded`, and tonic's `CANCELLED "Timeout expired"` (what
    ///   a tonic server answers when the request's `grpc-timeout` passes):
    ///   the caller's deadline (the executor hands each attempt the time left
    ///   as its gRPC timeout; a node that stalls is caught by the executor's
    ///   own attempt timeout): not a node fault;
    /// - `Unavailable`, and any status made locally from a transport failure,
    ///   whatever its code (tonic reports a connection that broke
    ///   mid-request as `Unknown` "transport error" or `Cancelled`
    ///   "operation was canceled", and an HTTP/2 GOAWAY by its reason, such
    ///   as `ResourceExhausted` for `ENHANCE_YOUR_CALM`, each with the
    ///   underlying error as its source, whereas a status a server sent
    ///   never has a source): a node fault;
    /// - everything else: fatal.
    fn classify(&self) -> Failure {
        if self.metadata().contains_key(REFUSAL_KEY) {
            return Failure::NotNodeFault;
        }
        match self.code() {
            Code::DeadlineExceeded => Failure::NotNodeFault,
            Code::Cancelled if self.message() == tonic::TimeoutExpired(()).to_string() => {
                Failure::NotNodeFault
            }
            Code::Unavailable => Failure::NodeFault,
            _ if std::error::Error::source(self).is_some() => Failure::NodeFault,
            _ => Failure::Fatal,
        }
    }
}

impl Classify for tonic::transport::Error {
    fn classify(&self) -> Failure {
        Failure::NodeFault
    }
}

impl Classify for RouterError {
    /// A nested router's failure: a fault where it may pass, fatal where
    /// it cannot.
    fn classify(&self) -> Failure {
        if self.is_retryable() {
            Failure::NodeFault
        } else {
            Failure::Fatal
        }
    }
}

/// Routing failures. No variant changes state: routing only reads the
/// topology, and breakers/budget were updated by the attempts themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// No live member to place the space on. Retryable (membership heals).
    #[error("no live node for space {space:?}")]
    NoLiveNodes {
        /// The space.
        space: String,
    },
    /// Partitioned, and this node does not hold the space. Retryable: the
    /// partition heals by itself.
    #[error("no local data for space {space:?} during partition")]
    NoLocalData {
        /// The space.
        space: String,
    },
    /// A local-only operation (consolidation) reached a node that does not
    /// hold the space. Not retryable here: send it to a holder.
    #[error("this node does not hold space {space:?}")]
    NotLocal {
        /// The space.
        space: String,
    },
    /// Every candidate failed (or refused) or had an open breaker.
    /// Retryable (later).
    #[error("all replicas unavailable ({attempts} attempts, {rejected} rejected by open breakers)")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Candidates skipped because their breaker was open.
        rejected: u32,
    },
    /// The shared retry budget forbade another retry. Retryable (later).
    #[error("retry budget exhausted after {attempts} attempts")]
    BudgetExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// The operation's deadline passed. Not retryable: the caller's time is
    /// spent.
    #[error("deadline exceeded after {attempts} attempts")]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
    },
    /// A member's address is not a valid URI. Not retryable.
    #[error("invalid address {addr:?} for node {node}")]
    InvalidAddress {
        /// The member.
        node: NodeId,
        /// Its address.
        addr: String,
    },
    /// A query named no space. Not retryable.
    #[error("query names no space")]
    EmptyQuery,
}

impl RouterError {
    /// True when the same request may succeed later or elsewhere.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoLiveNodes { .. }
            | Self::NoLocalData { .. }
            | Self::Unavailable { .. }
            | Self::BudgetExhausted { .. } => true,
            Self::NotLocal { .. }
            | Self::DeadlineExceeded { .. }
            | Self::InvalidAddress { .. }
            | Self::EmptyQuery => false,
        }
    }

    /// The gRPC code; the only place codes are chosen.
    pub fn code(&self) -> Code {
        match self {
            Self::NoLiveNodes { .. }
            | Self::NoLocalData { .. }
            | Self::Unavailable { .. }
            | Self::BudgetExhausted { .. } => Code::Unavailable,
            Self::NotLocal { .. } => Code::FailedPrecondition,
            Self::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Self::InvalidAddress { .. } => Code::Internal,
            Self::EmptyQuery => Code::InvalidArgument,
        }
    }
}

impl From<mnemo_routing::decision::Undecided> for RouterError {
    fn from(e: mnemo_routing::decision::Undecided) -> Self {
        use mnemo_routing::decision::Undecided;
        match e {
            Undecided::NoLiveNodes { space } => Self::NoLiveNodes { space },
            Undecided::NoLocalData { space } => Self::NoLocalData { space },
            Undecided::NotLocal { space } => Self::NotLocal { space },
        }
    }
}

impl From<RouterError> for Status {
    fn from(e: RouterError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Outcome of [`Router::execute`](crate::Router::execute) when no attempt
/// succeeded.
#[derive(Debug, thiserror::Error)]
pub enum ExecError<E> {
    /// The operation failed fatally (see [`Failure::Fatal`]); returned at once,
    /// breakers untouched.
    #[error("{0}")]
    Operation(E),
    /// The router gave up.
    #[error("{error}")]
    Router {
        /// Why.
        error: RouterError,
        /// The last operation error seen, if an attempt was made.
        last: Option<E>,
    },
}

impl<E> ExecError<E> {
    /// The router's reason, if the router gave up.
    pub fn router_error(&self) -> Option<&RouterError> {
        match self {
            Self::Router { error, .. } => Some(error),
            Self::Operation(_) => None,
        }
    }
}

impl<E> From<RouterError> for ExecError<E> {
    fn from(error: RouterError) -> Self {
        Self::Router { error, last: None }
    }
}

impl From<ExecError<Status>> for Status {
    /// An operation's own status passes through; router errors map by
    /// [`RouterError::code`].
    fn from(e: ExecError<Status>) -> Self {
        match e {
            ExecError::Operation(s) => s,
            ExecError::Router { error, .. } => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_codes() {
        assert_eq!(Status::unavailable("").classify(), Failure::NodeFault);
        assert_eq!(
            Status::deadline_exceeded("").classify(),
            Failure::NotNodeFault
        );
        assert_eq!(
            refusal("quorum-shortfall", "only 1 of 3").classify(),
            Failure::NotNodeFault
        );
        // What a tonic server answers when the request's grpc-timeout passes.
        let server_timeout = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(server_timeout.code(), Code::Cancelled);
        assert_eq!(server_timeout.classify(), Failure::NotNodeFault);
        for c in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
        ] {
            assert_eq!(Status::new(c, "").classify(), Failure::Fatal);
        }
        // A broken connection: tonic's local status carries the cause.
        let broken = Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(broken.code(), Code::Unknown);
        assert_eq!(broken.classify(), Failure::NodeFault);
        let mut dropped = Status::cancelled("operation was canceled");
        dropped.set_source(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::BrokenPipe,
        )));
        assert_eq!(dropped.classify(), Failure::NodeFault);
        assert_eq!(
            Status::cancelled("client went away").classify(),
            Failure::Fatal
        );
        // A connection the peer ended with GOAWAY ENHANCE_YOUR_CALM (too
        // many streams reset): tonic's local status has h2's reason as its
        // code; the same code from a server is its answer.
        let mut calm = Status::resource_exhausted("h2 protocol error: http2 error");
        calm.set_source(std::sync::Arc::new(std::io::Error::other("GOAWAY")));
        assert_eq!(calm.classify(), Failure::NodeFault);
        assert_eq!(
            Status::resource_exhausted("over the limit").classify(),
            Failure::Fatal
        );
        // The same code sent by a server is its answer, not a transport failure.
        assert_eq!(
            Status::new(Code::Unknown, "transport error").classify(),
            Failure::Fatal
        );
        let e = RouterError::NoLocalData { space: "s".into() };
        assert!(e.is_retryable());
        let s: Status = e.into();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("no local data"));
        let s: Status = RouterError::NotLocal { space: "s".into() }.into();
        assert_eq!(s.code(), Code::FailedPrecondition);
    }
}
