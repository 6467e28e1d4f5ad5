//! The router: holds the current [`RouteTable`], the partition state, the
//! shared retry budget and the injected clock and random source, and turns
//! requests into [`RoutingDecision`]s. Running a decision is in
//! [`executor`](crate::executor).
//!
//! Readers (every request) do one `ArcSwap` load; writers (membership
//! changes) build a whole new table off the hot path and swap it in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::backoff::Backoff;
use crate::breaker::{BreakerConfig, BreakerState};
use crate::budget::{BudgetConfig, RetryBudget};
use crate::clock::{Clock, Random, SplitMix, TokioClock};
use crate::decision::{Operation, PartitionState, QueryPlan, RouteTable, RoutingDecision, decide};
use crate::error::RouterError;
use crate::latency::Estimate;
use crate::placement::DEFAULT_RF;
use crate::pool::PoolConfig;
use crate::topology::{Member, NodeId, Topology};

/// Default deadline of one operation.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Default attempts per node.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default concurrent sub-requests of one query.
pub const DEFAULT_QUERY_CONCURRENCY: usize = 16;

/// When to send a recall's hedge (a second request to the next replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hedge {
    /// Never.
    Off,
    /// After this long without an answer.
    Fixed(Duration),
    /// After about the primary's 95th-percentile latency, floored (see
    /// [`latency`](crate::latency)). The default.
    #[default]
    Adaptive,
}

/// Router settings; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Replication factor (default 3).
    pub replication_factor: usize,
    /// Per-node circuit breakers.
    pub breaker: BreakerConfig,
    /// Shared retry budget.
    pub budget: BudgetConfig,
    /// Backoff between retry rounds.
    pub backoff: Backoff,
    /// Attempts per node per operation (default 3).
    pub max_attempts_per_node: u32,
    /// Deadline of an operation when the caller gives none (default 10 s).
    pub deadline: Duration,
    /// When a recall is hedged to the next replica (default: adaptive).
    pub hedge: Hedge,
    /// Attempt timeouts, hedge delays and slowness from observed latency.
    pub timeouts: crate::latency::Timeouts,
    /// Connection pool.
    pub pool: PoolConfig,
    /// Concurrent sub-requests of one query (default 16).
    pub query_concurrency: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            replication_factor: DEFAULT_RF,
            breaker: BreakerConfig::default(),
            budget: BudgetConfig::default(),
            backoff: Backoff::default(),
            max_attempts_per_node: DEFAULT_MAX_ATTEMPTS,
            deadline: DEFAULT_DEADLINE,
            hedge: Hedge::Adaptive,
            timeouts: crate::latency::Timeouts::default(),
            pool: PoolConfig::default(),
            query_concurrency: DEFAULT_QUERY_CONCURRENCY,
        }
    }
}

/// One node's latency, as [`Router::latency_snapshot`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLatencyStatus {
    /// The node.
    pub node: NodeId,
    /// Its read latency as callers lived it (see
    /// [`NodeLatency::read_seen`](crate::latency::NodeLatency::read_seen)).
    pub read: Option<Estimate>,
    /// Its write latency estimate, once it answered a write.
    pub write: Option<Estimate>,
    /// Its reads are far slower than the fastest other node's.
    pub slow: bool,
}

/// The routing layer of one node (or of a client library).
pub struct Router {
    table: ArcSwap<RouteTable>,
    partition: AtomicU64,
    /// Serialises writers only; readers never take it.
    update: Mutex<()>,
    pub(crate) config: RouterConfig,
    pub(crate) budget: RetryBudget,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("epoch", &self.table.load().topology().epoch())
            .field("partition", &self.partition())
            .field("budget_tokens", &self.budget.tokens())
            .finish_non_exhaustive()
    }
}

/// One decision in this many is timed for `mnemo_router_decision_seconds`.
const SAMPLE_EVERY: u32 = 64;

thread_local! {
    static SAMPLE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

const PARTITIONED: u64 = 1 << 63;
const COUNT_MASK: u64 = (1 << 31) - 1;

impl Router {
    /// A router for node `local` over `members` (epoch 0), with tokio's clock
    /// and an OS-seeded random source. Needs no runtime; executing does.
    pub fn new(
        local: NodeId,
        members: impl IntoIterator<Item = Member>,
        config: RouterConfig,
    ) -> Self {
        Self::with_sources(
            local,
            members,
            config,
            Arc::new(TokioClock::new()),
            Arc::new(SplitMix::from_os()),
        )
    }

    /// Like [`new`](Self::new) with an injected clock and random source
    /// (tests: a seeded [`SplitMix`], paused tokio time).
    pub fn with_sources(
        local: NodeId,
        members: impl IntoIterator<Item = Member>,
        config: RouterConfig,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Self {
        let topology = Topology::new(local, members, config.replication_factor, 0);
        let table = RouteTable::build(topology, None, &config.pool, config.breaker);
        Self {
            table: ArcSwap::from_pointee(table),
            partition: AtomicU64::new(0),
            update: Mutex::new(()),
            budget: RetryBudget::new(config.budget),
            config,
            clock,
            random,
        }
    }

    /// Installs a new membership view. Ignored (returns false) if `epoch` is
    /// older than the current one. Breakers and channels of nodes that stay
    /// are kept; those of nodes that went away are dropped.
    pub fn update_topology(&self, members: impl IntoIterator<Item = Member>, epoch: u64) -> bool {
        let _writer = self
            .update
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.table.load_full();
        if epoch < old.topology().epoch() {
            return false;
        }
        let topology = Topology::new(
            old.topology().local().clone(),
            members,
            self.config.replication_factor,
            epoch,
        );
        let table = RouteTable::build(topology, Some(&old), &self.config.pool, self.config.breaker);
        for (gone, _) in old.remotes() {
            if table.topology().index_of(gone.id.as_str()).is_none() {
                crate::metrics::pool_channels(&gone.id, 0);
            }
        }
        for (known, _) in table.remotes() {
            if old.topology().index_of(known.id.as_str()).is_none() {
                crate::metrics::node_known(&known.id);
            }
        }
        self.table.store(Arc::new(table));
        true
    }

    /// Membership saw node `id` come back: its breaker, if open, probes at
    /// once (see [`Breaker::member_returned`](crate::breaker::Breaker::member_returned)).
    pub fn member_returned(&self, id: &str) {
        let table = self.table.load();
        if let Some(remote) = table
            .topology()
            .index_of(id)
            .and_then(|idx| table.remote(idx))
        {
            let _ = remote.breaker.member_returned();
            // A new process: what the old one's latency was says nothing.
            remote.latency.reset();
        }
    }

    /// The current table (topology, channels, breakers).
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Sets the partition state reported by the membership layer.
    pub fn set_partition(&self, state: PartitionState) {
        let bits = (if state.partitioned { PARTITIONED } else { 0 })
            | ((state.expected as u64 & COUNT_MASK) << 31)
            | (state.reachable as u64 & COUNT_MASK);
        self.partition.store(bits, Ordering::Release);
    }

    /// The current partition state.
    pub fn partition(&self) -> PartitionState {
        let bits = self.partition.load(Ordering::Acquire);
        PartitionState {
            partitioned: bits & PARTITIONED != 0,
            reachable: (bits & COUNT_MASK) as usize,
            expected: ((bits >> 31) & COUNT_MASK) as usize,
        }
    }

    pub(crate) fn route(
        &self,
        operation: Operation,
        space: &str,
    ) -> Result<RoutingDecision, RouterError> {
        // Timing every decision would cost two clock reads, about as much as
        // the decision itself at 100 nodes; one in SAMPLE_EVERY per thread
        // is timed instead.
        let sampled = SAMPLE.with(|n| {
            let v = n.get().wrapping_add(1);
            n.set(v);
            v % SAMPLE_EVERY == 0
        });
        let start = sampled.then(|| self.clock.now());
        let decision = decide(&self.table.load(), operation, space, self.partition());
        if let Some(start) = start {
            let took = self.clock.now().saturating_sub(start);
            crate::metrics::decision_latency(operation.as_str(), took.as_secs_f64());
        }
        if let Err(e) = &decision {
            crate::metrics::request(operation.as_str(), "none", error_label(e));
        }
        decision
    }

    /// Routes a remember/forget: [`Strategy::PrimaryWithFallback`](crate::decision::Strategy::PrimaryWithFallback) (any
    /// holder may take a write), or
    /// [`Strategy::LocalOnly`](crate::decision::Strategy::LocalOnly) during a partition.
    pub fn route_store(&self, space: &str) -> Result<RoutingDecision, RouterError> {
        self.route(Operation::Store, space)
    }

    /// Routes a recall: [`Strategy::PrimaryWithFallback`](crate::decision::Strategy::PrimaryWithFallback), or
    /// [`Strategy::LocalOnly`](crate::decision::Strategy::LocalOnly) during a partition.
    pub fn route_recall(&self, space: &str) -> Result<RoutingDecision, RouterError> {
        self.route(Operation::Recall, space)
    }

    /// Routes a consolidation: always [`Strategy::LocalOnly`](crate::decision::Strategy::LocalOnly); fails with
    /// [`RouterError::NotLocal`] if this node does not hold the space.
    pub fn route_consolidation(&self, space: &str) -> Result<RoutingDecision, RouterError> {
        self.route(Operation::Consolidation, space)
    }

    /// Routes a query ([`Strategy::ScatterGather`](crate::decision::Strategy::ScatterGather)): one recall decision per
    /// space. Run it with [`query`](Self::query).
    pub fn route_query<S: AsRef<str>>(&self, spaces: &[S]) -> Result<QueryPlan, RouterError> {
        if spaces.is_empty() {
            return Err(RouterError::EmptyQuery);
        }
        Ok(QueryPlan {
            parts: spaces
                .iter()
                .map(|s| {
                    (
                        s.as_ref().to_owned(),
                        self.route(Operation::Query, s.as_ref()),
                    )
                })
                .collect(),
        })
    }

    /// Open channels per remote node, for status.
    pub fn pool_snapshot(&self) -> Vec<(NodeId, usize)> {
        self.table
            .load()
            .remotes()
            .map(|(m, r)| {
                (
                    m.id.clone(),
                    r.channels.as_ref().map_or(0, |c| c.open_count()),
                )
            })
            .collect()
    }

    /// Whether `node`'s breaker is closed (or it has none: this node, or
    /// one not in the topology): whether it is answering as far as this
    /// node has seen.
    pub fn breaker_closed(&self, node: &str) -> bool {
        self.table
            .load()
            .remotes()
            .find(|(m, _)| m.id.as_str() == node)
            .is_none_or(|(_, r)| r.breaker.snapshot().0 == BreakerState::Closed)
    }

    /// Breaker state and consecutive failures per remote node, for status.
    pub fn breaker_snapshot(&self) -> Vec<(NodeId, BreakerState, u32)> {
        self.table
            .load()
            .remotes()
            .map(|(m, r)| {
                let (state, failures) = r.breaker.snapshot();
                (m.id.clone(), state, failures)
            })
            .collect()
    }

    /// Per remote node: its read and write latency estimates, and whether
    /// its reads are slow beside the fastest other node's, this one
    /// included (see [`latency`](crate::latency)), for status.
    pub fn latency_snapshot(&self) -> Vec<NodeLatencyStatus> {
        let table = self.table.load();
        let reads: Vec<(NodeId, Option<Estimate>, Option<Estimate>)> = table
            .remotes()
            .map(|(m, r)| {
                (
                    m.id.clone(),
                    r.latency.read_seen.get(),
                    r.latency.write.get(),
                )
            })
            .collect();
        reads
            .iter()
            .map(|(id, read, write)| {
                let fastest = reads
                    .iter()
                    .filter(|(other, _, _)| other != id)
                    .filter_map(|(_, e, _)| *e)
                    .chain(std::iter::once(Estimate::LOCAL))
                    .min_by_key(|e| e.srtt);
                NodeLatencyStatus {
                    node: id.clone(),
                    read: *read,
                    write: *write,
                    slow: matches!((read, fastest), (Some(r), Some(f)) if r.is_slow(f, &self.config.timeouts)),
                }
            })
            .collect()
    }

    /// Tokens left in the shared retry budget.
    pub fn retry_budget_tokens(&self) -> f32 {
        self.budget.tokens()
    }
}

pub(crate) fn error_label(e: &RouterError) -> &'static str {
    match e {
        RouterError::NoLiveNodes { .. } => "no_live_nodes",
        RouterError::NoLocalData { .. } => "no_local_data",
        RouterError::NotLocal { .. } => "not_local",
        RouterError::Unavailable { .. } => "unavailable",
        RouterError::BudgetExhausted { .. } => "budget_exhausted",
        RouterError::DeadlineExceeded { .. } => "deadline_exceeded",
        RouterError::InvalidAddress { .. } => "invalid_address",
        RouterError::EmptyQuery => "empty_query",
    }
}
