//! mnemo's routing layer: which node serves a request, and how to reach it
//! without making a bad situation worse.
//!
//! No dependency on the store or the generated proto crate, so a client
//! library can embed it. The core (placement, topology, breaker, backoff,
//! budget, decision) is plain data and functions with injected time and
//! randomness; tokio and tonic live in the adapters (pool, executor, router).
//!
//! # Layout
//!
//! Following a request:
//!
//! - [`router`]: [`Router`], the entry point: holds the current table, the
//!   partition state, the retry budget; `route_*` make decisions.
//! - [`decision`]: DESIGN §3 as a pure function: operation + space +
//!   partition state → [`RoutingDecision`](decision::RoutingDecision).
//! - [`topology`]: the immutable cluster snapshot, swapped atomically.
//! - [`placement`]: rendezvous hashing, space → `[primary, replicas..]`.
//! - `placement_cache`: a lock-free memo of recent preference lists per
//!   snapshot (seqlock slots), so hot spaces skip the O(N) HRW scan.
//! - [`executor`]: runs an operation on a decision: breakers, attempts,
//!   backoff, budget, fallback, hedging, deadline; scatter-gather queries.
//! - [`breaker`]: per-node circuit breaker, one `AtomicU64`.
//! - [`latency`]: per-node latency estimates (RFC 6298), and the attempt
//!   timeouts, hedge delays and slowness they give.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`budget`]: the shared retry budget (gRPC retry throttling).
//! - [`pool`]: a few lazily connected tonic channels per node.
//! - [`error`]: [`RouterError`], [`Classify`], and the one mapping to gRPC codes.
//! - [`metrics`]: `mnemo_router_*` metric names.
//! - [`clock`]: injected clock and random source.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), tonic::Status> {
//! use mnemo_router::{Member, NodeId, Router, RouterConfig, Target};
//!
//! let router = Router::new(
//!     NodeId::from("n1"),
//!     [Member::alive("n1", "10.0.0.1:7000"), Member::alive("n2", "10.0.0.2:7000")],
//!     RouterConfig::default(),
//! );
//! let decision = router.route_recall("alice")?;
//! let served = router
//!     .execute(&decision, None, |target| async move {
//!         match target {
//!             Target::Local => Ok::<_, tonic::Status>("from the local store"),
//!             Target::Remote { channel, timeout, .. } => {
//!                 let _ = (channel, timeout); // a generated client over `channel`
//!                 Ok("from a peer")
//!             }
//!         }
//!     })
//!     .await?;
//! println!("{} (fallback: {})", served.value, served.fallback);
//! # Ok(())
//! # }
//! ```

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod decision;
pub mod error;
pub mod executor;
pub mod latency;
pub mod metrics;
pub mod placement;
mod placement_cache;
pub mod pool;
pub mod router;
pub mod topology;

pub use breaker::BreakerState;
pub use decision::{Operation, PartitionState, QueryPlan, RoutingDecision, Strategy};
pub use error::{Classify, ExecError, RouterError};
pub use executor::{QueryResult, Served, Target, merge_top_k};
pub use latency::Timeouts;
pub use placement::NodeIndex;
pub use router::{Hedge, NodeLatencyStatus, Router, RouterConfig};
pub use topology::{Member, MemberState, NodeId, Topology};
