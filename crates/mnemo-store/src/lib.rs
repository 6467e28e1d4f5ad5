//! mnemo's embedded durable store.
//!
//! Layout:
//! - [`store`]: the [`Store`] facade: open, remember, recall, forget,
//!   consolidate, the replication log.
//! - [`memory`]: the records on disk and on the wire between nodes.
//! - [`validate`]: the limits every request is checked against.
//! - [`embed`]: the lexical embedding and vector arithmetic.
//! - [`consolidate`]: the deterministic near-duplicate merge.
//! - `index`: the in-memory layout recall scans.
//! - `writer`: the single writer thread and its group commit.
//!
//! Durability: every write is acknowledged only after the redb transaction
//! that holds it committed with immediate durability (fsync). Concurrent
//! writes share a commit. redb is the source of truth; the recall index is
//! rebuilt from it at start-up.

pub mod consolidate;
pub mod embed;
mod error;
mod index;
pub mod memory;
pub mod store;
pub mod validate;
mod writer;

pub use error::{Result, StoreError};
pub use memory::{Consolidation, LogEntry, Memory, Op, Scored};
pub use store::{ConsolidationReport, Cue, SpaceStats, Store};
pub use writer::Outcome;
