//! Metrics, through the `metrics` facade (no recorder: no cost beyond a
//! check). Every name starts with `mnemo_router_`:
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `mnemo_router_requests_total` | counter | operation, strategy, outcome |
//! | `mnemo_router_attempts_total` | counter | operation |
//! | `mnemo_router_retries_total` | counter | operation |
//! | `mnemo_router_retry_budget_exhausted_total` | counter | operation |
//! | `mnemo_router_hedges_total` / `_hedge_wins_total` | counter | |
//! | `mnemo_router_replica_fallbacks_total` | counter | operation |
//! | `mnemo_router_breaker_rejections_total` | counter | node |
//! | `mnemo_router_breaker_state` | gauge (0 closed, 1 open, 2 half-open) | node |
//! | `mnemo_router_breaker_transitions_total` | counter | node, from, to |
//! | `mnemo_router_pool_channels` | gauge | node |
//! | `mnemo_router_attempt_timeouts_total` | counter | node |
//! | `mnemo_router_decision_seconds` | histogram, 1 in 64 decisions per thread | operation |
//!
//! Recorded by the adapters (router, executor, pool), never by the pure core.

use metrics::{
    SharedString, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

/// Operations the router counts, for series that exist from the start.
const OPERATIONS: [&str; 4] = ["store", "recall", "consolidation", "query"];

/// Gives every series a help text and creates the unlabelled or
/// operation-labelled counters at zero, so they exist before the first
/// event. Call once, after installing a recorder.
pub fn describe() {
    describe_counter!(
        "mnemo_router_requests_total",
        "Routed operations by outcome"
    );
    describe_counter!(
        "mnemo_router_attempts_total",
        "Attempts made for routed operations, retries included"
    );
    describe_counter!("mnemo_router_retries_total", "Attempts that were retries");
    describe_counter!(
        "mnemo_router_retry_budget_exhausted_total",
        "Retries not made because the retry budget was spent"
    );
    describe_counter!(
        "mnemo_router_hedges_total",
        "Hedged recalls sent to a second holder"
    );
    describe_counter!(
        "mnemo_router_hedge_wins_total",
        "Hedged recalls whose hedge answered first"
    );
    describe_counter!(
        "mnemo_router_replica_fallbacks_total",
        "Operations answered by a replica because the primary failed"
    );
    describe_counter!(
        "mnemo_router_breaker_rejections_total",
        "Attempts refused by an open circuit breaker, per node"
    );
    describe_gauge!(
        "mnemo_router_breaker_state",
        "Circuit breaker state per node: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(
        "mnemo_router_breaker_transitions_total",
        "Circuit breaker state changes per node"
    );
    describe_gauge!("mnemo_router_pool_channels", "Open gRPC channels per node");
    describe_counter!(
        "mnemo_router_attempt_timeouts_total",
        "Attempts that ran out of their own time, per node"
    );
    describe_histogram!(
        DECISION,
        Unit::Seconds,
        "Time to make a routing decision (1 in 64 sampled)"
    );
    for operation in OPERATIONS {
        counter!("mnemo_router_attempts_total", "operation" => operation).absolute(0);
        counter!("mnemo_router_retries_total", "operation" => operation).absolute(0);
        counter!("mnemo_router_retry_budget_exhausted_total", "operation" => operation).absolute(0);
        counter!("mnemo_router_replica_fallbacks_total", "operation" => operation).absolute(0);
    }
    counter!("mnemo_router_hedges_total").absolute(0);
    counter!("mnemo_router_hedge_wins_total").absolute(0);
}

/// Creates a newly known node's series at zero (breaker closed, nothing
/// refused), so a dashboard shows every node before its first failure.
pub(crate) fn node_known(node: &NodeId) {
    gauge!("mnemo_router_breaker_state", "node" => node_label(node)).set(0.0);
    counter!("mnemo_router_breaker_rejections_total", "node" => node_label(node)).absolute(0);
    counter!("mnemo_router_attempt_timeouts_total", "node" => node_label(node)).absolute(0);
}

use crate::breaker::Transition;
use crate::topology::NodeId;

fn node_label(node: &NodeId) -> SharedString {
    SharedString::from_shared(node.shared())
}

pub(crate) fn request(operation: &'static str, strategy: &'static str, outcome: &'static str) {
    counter!("mnemo_router_requests_total", "operation" => operation, "strategy" => strategy, "outcome" => outcome)
        .increment(1);
}

pub(crate) fn attempt(operation: &'static str, retry: bool) {
    counter!("mnemo_router_attempts_total", "operation" => operation).increment(1);
    if retry {
        counter!("mnemo_router_retries_total", "operation" => operation).increment(1);
    }
}

pub(crate) fn budget_exhausted(operation: &'static str) {
    counter!("mnemo_router_retry_budget_exhausted_total", "operation" => operation).increment(1);
}

pub(crate) fn hedge(won: bool) {
    if won {
        counter!("mnemo_router_hedge_wins_total").increment(1);
    } else {
        counter!("mnemo_router_hedges_total").increment(1);
    }
}

pub(crate) fn fallback(operation: &'static str) {
    counter!("mnemo_router_replica_fallbacks_total", "operation" => operation).increment(1);
}

pub(crate) fn breaker_rejected(node: &NodeId) {
    counter!("mnemo_router_breaker_rejections_total", "node" => node_label(node)).increment(1);
}

pub(crate) fn breaker_transition(node: &NodeId, t: Transition) {
    gauge!("mnemo_router_breaker_state", "node" => node_label(node)).set(t.to.as_gauge());
    counter!(
        "mnemo_router_breaker_transitions_total",
        "node" => node_label(node),
        "from" => t.from.as_str(),
        "to" => t.to.as_str()
    )
    .increment(1);
}

pub(crate) fn pool_channels(node: &NodeId, open: usize) {
    gauge!("mnemo_router_pool_channels", "node" => node_label(node)).set(open as f64);
}

pub(crate) fn decision_latency(operation: &'static str, seconds: f64) {
    // Literal labels let the macro build a static key: no allocation.
    match operation {
        "store" => histogram!(DECISION, "operation" => "store").record(seconds),
        "recall" => histogram!(DECISION, "operation" => "recall").record(seconds),
        "consolidation" => histogram!(DECISION, "operation" => "consolidation").record(seconds),
        _ => histogram!(DECISION, "operation" => "query").record(seconds),
    }
}

const DECISION: &str = "mnemo_router_decision_seconds";

pub(crate) fn attempt_timeout(node: &NodeId) {
    counter!("mnemo_router_attempt_timeouts_total", "node" => node_label(node)).increment(1);
}
