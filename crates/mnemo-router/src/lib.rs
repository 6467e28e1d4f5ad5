//! Routing layer (temporary).
pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod placement;
pub mod topology;
pub use topology::{Member, MemberState, NodeId, Topology};
