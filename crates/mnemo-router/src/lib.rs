//! Routing layer (temporary).
pub mod placement;
pub mod topology;
pub use topology::{Member, MemberState, NodeId, Topology};
