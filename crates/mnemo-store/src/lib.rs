//! mnemo's embedded durable store.
//!
//! Layout:
//! - [`store`]: the [`Store`] facade: open, remember, recall, forget,
//!   consolidate, merge what other holders send, reconciliation views.
//! - [`set`]: a space as a mergeable set of elements (memories and
//!   tombstones), the merge rules, element ids for anti-entropy.
//! - [`reconcile`]: anti-entropy between two holders (negentropy).
//! - [`memory`]: the records on disk and on the wire between nodes.
//! - [`validate`]: the limits every request is checked against.
//! - [`embed`]: the lexical embedding and vector arithmetic.
//! - [`consolidate`]: the deterministic merge of memories that say the same thing.
//! - [`decay`]: confidence of idle memories, and how holders join use.
//! - `writer`: the single writer thread: decides each write, group commit.
//! - `wal`: the write-ahead log that makes each batch durable.
//! - `applier`: brings redb up to date with the log, and checkpoints.
//! - `space`: what is kept in memory per space (index, element set).
//! - `index`: the in-memory layout recall scans.
//! - `bm25`, [`text`]: lexical ranking and the words it counts.
//! - `tables`: the redb tables (the schema).
//! - `time`: the wall clock, read in one place.
//!
//! Durability: every write is acknowledged only after the log record of the
//! batch that holds it is synced to disk; concurrent writes share a batch.
//! redb takes the batches in the background and is made durable by
//! checkpoints; at start-up the log is applied to it again, and redb is then
//! the source of truth the recall index and element sets are rebuilt from.

mod applier;
mod bm25;
pub mod consolidate;
pub mod decay;
pub mod embed;
mod error;
mod index;
pub mod memory;
pub mod reconcile;
pub mod set;
mod space;
pub mod store;
mod tables;
pub mod text;
mod time;
pub mod validate;
mod wal;
mod writer;

pub use error::{Result, StoreError};
pub use memory::{Consolidation, Decay, Memory, MergedInput, Op, Scored, Usage};
pub use set::{Element, ElementId};
pub use store::{Consolidate, ConsolidationReport, Cue, Decayed, SpaceStats, Store, StoreOptions};
pub use time::now_ms;
pub use writer::{Merged, Written};

/// Gives the store's metrics their help texts and creates its counters at
/// zero. Call once, after installing a recorder.
pub fn describe_metrics() {
    use metrics::{Unit, counter, describe_counter, describe_histogram};
    describe_histogram!(
        "mnemo_store_commit_seconds",
        Unit::Seconds,
        "Time to append one batch of writes to the write-ahead log and fsync it"
    );
    describe_histogram!(
        "mnemo_store_batch_writes",
        "Writes acknowledged together by one fsync (group commit)"
    );
    describe_counter!(
        "mnemo_store_checkpoints_total",
        "Checkpoints: the store made durable and the write-ahead log started over"
    );
    describe_counter!(
        "mnemo_store_conflicts_total",
        "Two different memories met under one id (the larger wins everywhere)"
    );
    counter!("mnemo_store_checkpoints_total").absolute(0);
    counter!("mnemo_store_conflicts_total").absolute(0);
}
