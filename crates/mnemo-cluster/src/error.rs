//! Errors of the membership layer.

use std::net::SocketAddr;

/// Errors returned by [`crate::Membership`] and its handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (e.g. listening on `0.0.0.0` without an
    /// advertised address). Not retryable; nothing was started.
    #[error("invalid membership config: {0}")]
    InvalidConfig(String),
    /// Binding the gossip UDP socket failed (port in use, permission).
    /// Retryable once the port is free; nothing was started.
    #[error("cannot bind gossip UDP socket on {addr}: {source}")]
    Bind {
        /// Address we tried to bind.
        addr: SocketAddr,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The membership task has already stopped (after `leave`, `abort` or a
    /// panic). Not retryable: start a new membership.
    #[error("membership has stopped")]
    Stopped,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
