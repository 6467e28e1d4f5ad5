//! Executor: runs a caller's operation against a [`RoutingDecision`].
//!
//! For each target in order (primary, then fallbacks for recall and query):
//! check the node's breaker (open: skip it without calling the operation),
//! call the operation with [`Target::Remote`] (a pooled channel and the time
//! left) or [`Target::Local`], and classify the result ([`Classify`] into a
//! [`Failure`](crate::error::Failure)). A success returns at once, saying who served and whether it
//! was a fallback; a fatal error returns at once and leaves breakers alone; a
//! node fault (or the attempt's own timeout passing) moves to the next target
//! and counts against the node's breaker and the retry budget; what is not
//! the node's fault (a refusal: catching up, a different view, a quorum
//! shortfall; or the caller's deadline) moves to the next target too, but
//! counts nothing. When every target was tried, a new round starts after a
//! full-jitter backoff, up to `max_attempts_per_node` rounds (default 3), so
//! no node sees more than that many attempts. Every attempt after the first needs the shared retry budget
//! (see [`budget`](crate::budget)).
//!
//! One deadline per operation (default 10 s): each attempt gets what is left
//! as its timeout (pass it on as the gRPC timeout) and is also cut off here
//! when it runs out; a backoff that would end past the deadline is not slept.
//!
//! Hedging (recall and query only, off by default): if the primary has not
//! answered after `hedge_delay`, the same request goes to the next admitted
//! replica, if the budget gives a token; the first success wins and the
//! loser is dropped (a dropped breaker probe releases its slot). Dean &
//! Barroso, "The Tail at Scale" (CACM 2013).
//!
//! This is an adapter: every time it reads, sleeps or times out on comes
//! from the router's injected [`Clock`](crate::clock::Clock) (times are
//! durations since the clock's origin), so tests drive it with tokio's
//! paused clock or a [`ManualClock`](crate::clock::ManualClock).
//!
//! # Layout, one layer per file
//!
//! - this file: [`Router::execute`], the entry point, and what it returns;
//! - `rounds`: fallback rounds over the targets, backoff between rounds,
//!   the deadline, the retry budget; the order targets are tried in;
//! - `attempt`: one attempt at one target: breaker admission, the attempt
//!   timeout, classifying the result, reporting it to breaker, budget and
//!   latency estimate;
//! - `hedge`: racing the primary's attempt against a second one;
//! - `scatter`: [`Router::query`], one routed recall per space, merged.

mod attempt;
mod hedge;
mod rounds;
mod scatter;

use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;

use crate::decision::RoutingDecision;
use crate::error::{Classify, ExecError};
use crate::metrics;
use crate::router::{Router, error_label};
use crate::topology::NodeId;

pub use scatter::{QueryResult, merge_top_k};

/// Where the caller's operation should run.
#[derive(Debug, Clone)]
pub enum Target {
    /// On this node: serve from the local store, no gRPC.
    Local,
    /// On a remote node over `channel`; set `timeout` as the gRPC timeout.
    Remote {
        /// The node.
        node: NodeId,
        /// A pooled channel to it.
        channel: Channel,
        /// Time left of the operation's deadline.
        timeout: Duration,
    },
}

impl Target {
    /// The remote node, if any.
    pub fn node(&self) -> Option<&NodeId> {
        match self {
            Self::Local => None,
            Self::Remote { node, .. } => Some(node),
        }
    }
}

/// A successful result and who served it.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts reported to the caller, not a state"
)]
#[derive(Debug, Clone, PartialEq)]
pub struct Served<T> {
    /// The operation's value.
    pub value: T,
    /// The node that served.
    pub node: NodeId,
    /// True when served by this node without gRPC.
    pub local: bool,
    /// True when served by a node other than the first target.
    pub fallback: bool,
    /// True when the winning request was a hedge.
    pub hedged: bool,
    /// Attempts made, hedges included.
    pub attempts: u32,
    /// An earlier attempt failed with its effect unknown (it timed out, or
    /// its connection broke): a write it carried may have been applied,
    /// and the answer's node may have received it from there.
    pub uncertain: bool,
    /// Multiply returned confidences by this (1 unless partitioned).
    pub confidence_penalty: f32,
    /// True when the answer is degraded (partition).
    pub degraded: bool,
}

impl Router {
    /// Runs `op` as `decision` says, within `deadline` (default from config).
    pub async fn execute<T, E, F, Fut>(
        &self,
        decision: &RoutingDecision,
        deadline: Option<Duration>,
        mut op: F,
    ) -> Result<Served<T>, ExecError<E>>
    where
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let until = self.clock.now() + deadline.unwrap_or(self.config.deadline);
        self.execute_until(decision, until, &mut op).await
    }

    pub(crate) async fn execute_until<T, E, F, Fut>(
        &self,
        d: &RoutingDecision,
        until: Duration,
        op: &mut F,
    ) -> Result<Served<T>, ExecError<E>>
    where
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let result = self.run_rounds(d, until, op).await;
        let outcome = match &result {
            Ok(s) if s.fallback => {
                metrics::fallback(d.operation().as_str());
                "fallback"
            }
            Ok(_) => "ok",
            Err(ExecError::Operation(_)) => "operation_error",
            Err(ExecError::Router { error, .. }) => error_label(error),
        };
        metrics::request(d.operation().as_str(), d.strategy().as_str(), outcome);
        result
    }
}

#[cfg(test)]
mod tests;
