//! The pure core of mnemo's routing layer: what the router decides, as
//! plain data and functions. Nothing here performs I/O, reads a clock or a
//! random source, or can import tokio or tonic (the manifest has neither):
//! time comes in as milliseconds and randomness as `u64` draws, so every
//! decision is a function of its inputs and is tested as one.
//!
//! - [`decision`]: DESIGN §3: operation + space + partition state → where
//!   it goes and how; the partition rule and its confidence penalty.
//! - [`topology`]: the immutable cluster snapshot, and the preference list
//!   of a space over it.
//! - [`placement`]: rendezvous hashing, space → `[primary, replicas..]`.
//! - `placement_cache`: a lock-free memo of recent preference lists per
//!   snapshot (seqlock slots), so hot spaces skip the O(N) HRW scan.
//! - [`breaker`]: per-node circuit breaker, one `AtomicU64`.
//! - [`budget`]: the shared retry budget (gRPC retry throttling).
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`latency`]: per-node latency estimates (RFC 6298), and the attempt
//!   timeouts, hedge delays and slowness they give.
//! - [`clock`]: the injected clock and random source (and a manual clock).
//!
//! `mnemo-router` re-exports these modules and carries the decisions out.

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod decision;
pub mod latency;
pub mod placement;
mod placement_cache;
pub mod topology;
