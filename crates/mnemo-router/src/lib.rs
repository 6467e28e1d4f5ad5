//! mnemo's routing layer: which node serves a request, and how to reach it
//! without making a bad situation worse.
//!
//! No dependency on the store or the generated proto crate, so a client
//! library can embed it. The core (placement, topology, breaker, backoff,
//! budget, latency estimates, the decision and the partition rule) is the
//! crate `mnemo-routing`, plain data and functions with injected time and
//! randomness that cannot import tokio or tonic (its manifest has neither);
//! this crate re-exports it and adds the adapters: the channel pool, the
//! route table, the executor, the router.
//!
//! # Layout
//!
//! Following a request:
//!
//! - [`router`]: [`Router`], the entry point: holds the current table, the
//!   partition state, the retry budget; `route_*` make decisions.
//! - [`decision`]: DESIGN §3 as a pure function (in the core): operation +
//!   space + partition state → a decision; here made over the route table
//!   (channels, breakers, latency per node) as a [`RoutingDecision`].
//! - [`topology`]: the immutable cluster snapshot, swapped atomically.
//! - [`placement`]: rendezvous hashing, space → `[primary, replicas..]`.
//! - [`executor`]: runs an operation on a decision, one layer per file:
//!   `rounds` (fallback rounds, backoff, deadline, budget), `attempt` (one
//!   call: breaker admission, attempt timeout, classification), `hedge`,
//!   `scatter` (scatter-gather queries).
//! - [`breaker`]: per-node circuit breaker, one `AtomicU64`.
//! - [`latency`]: per-node latency estimates (RFC 6298), and the attempt
//!   timeouts, hedge delays and slowness they give.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`budget`]: the shared retry budget (gRPC retry throttling).
//! - [`pool`]: a few lazily connected tonic channels per node.
//! - [`error`]: [`RouterError`], [`Classify`] (what a failure says about the
//!   node: a fault, not its fault, or fatal), and the one mapping to gRPC
//!   codes.
//! - [`metrics`]: `mnemo_router_*` metric names.
//! - [`clock`]: the one injected clock (every read, sleep and timeout) and
//!   random source.
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

pub mod clock;
pub mod decision;
pub mod error;
pub mod executor;
pub mod metrics;
pub mod pool;
pub mod router;

pub use mnemo_routing::{backoff, breaker, budget, latency, placement, topology};

pub use breaker::BreakerState;
pub use decision::{Operation, PartitionState, QueryPlan, RoutingDecision, Strategy};
pub use error::{Classify, ExecError, RouterError};
pub use executor::{QueryResult, Served, Target, merge_top_k};
pub use latency::Timeouts;
pub use placement::NodeIndex;
pub use router::{Hedge, NodeLatencyStatus, Router, RouterConfig};
pub use topology::{Member, MemberState, NodeId, Topology};
