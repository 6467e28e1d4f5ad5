//! Executor: runs a caller's operation against a [`RoutingDecision`].
//!
//! For each target in order (primary, then fallbacks for recall and query):
//! check the node's breaker (open: skip it without calling the operation),
//! call the operation with [`Target::Remote`] (a pooled channel and the time
//! left) or [`Target::Local`], and classify the result ([`Classify`] into a
//! [`Failure`]). A success returns at once, saying who served and whether it
//! was a fallback; a fatal error returns at once and leaves breakers alone; a
//! node fault (or the attempt's own timeout passing) moves to the next target
//! and counts against the node's breaker and the retry budget; what is not
//! the node's fault (a refusal: catching up, a different view, a quorum
//! shortfall; or the caller's deadline) moves to the next target too, but
//! counts nothing. When every
//! target was tried, a new round starts after a full-jitter backoff, up to
//! `max_attempts_per_node` rounds (default 3), so no node sees more than that
//! many attempts. Every attempt after the first needs the shared retry budget
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

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use tonic::transport::Channel;

use crate::breaker::{Permit, Transition};
use crate::decision::{Operation, RoutingDecision, Strategy};
use crate::error::{Classify, ExecError, Failure, RouterError};
use crate::metrics;
use crate::placement::NodeIndex;
use crate::placement::PreferenceList;
use crate::router::{Hedge, Router, error_label};
use crate::topology::NodeId;

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
    /// Multiply returned confidences by this (1 unless partitioned).
    pub confidence_penalty: f32,
    /// True when the answer is degraded (partition).
    pub degraded: bool,
}

/// Result of [`Router::query`]: what each space answered, and which failed.
#[derive(Debug)]
pub struct QueryResult<T, E> {
    /// Spaces that answered, in completion order.
    pub parts: Vec<(String, Served<T>)>,
    /// Spaces that failed, with why.
    pub failed: Vec<(String, ExecError<E>)>,
}

impl<T, E> QueryResult<T, E> {
    /// True when some space failed.
    pub fn is_partial(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Names of the failed spaces.
    pub fn failed_spaces(&self) -> impl Iterator<Item = &str> {
        self.failed.iter().map(|(s, _)| s.as_str())
    }
}

/// Merges per-space hit lists into the `k` best by `score` (descending;
/// NaN last). Apply each part's confidence penalty in `score` if wanted.
pub fn merge_top_k<H, L>(
    lists: impl IntoIterator<Item = L>,
    k: usize,
    score: impl Fn(&H) -> f32,
) -> Vec<H>
where
    L: IntoIterator<Item = H>,
{
    let mut all: Vec<H> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        let (a, b) = (score(a), score(b));
        b.is_nan().cmp(&a.is_nan()).reverse().then(b.total_cmp(&a))
    });
    all.truncate(k);
    all
}

/// What one attempt came to (see [`Failure`]).
enum Outcome<T, E> {
    Ok(T),
    Fatal(E),
    /// A node fault: next target, counted by breaker and budget.
    Fault(E),
    /// Not the node's fault (a refusal, the caller's deadline reported by
    /// the node): next target, nothing counted.
    Declined(E),
    /// The attempt's own timeout (from the node's usual latency) passed
    /// with time left: a node fault; next target.
    Stalled,
    /// The operation's deadline passed: the caller's time is spent, which
    /// says nothing about the node.
    TimedOut,
}

struct Prepared<'a> {
    permit: Option<Permit<'a>>,
    node: NodeId,
    target: Target,
    /// The node's latency estimates (remote targets only).
    latency: Option<&'a crate::latency::NodeLatency>,
}

struct Tally<E> {
    attempts: u32,
    /// Attempts that failed with a node fault (refusals excluded).
    faults: u32,
    rejected: u32,
    last: Option<E>,
}

impl<E> Tally<E> {
    fn fail(self, error: RouterError) -> ExecError<E> {
        ExecError::Router {
            error,
            last: self.last,
        }
    }

    fn deadline(self) -> ExecError<E> {
        let attempts = self.attempts;
        self.fail(RouterError::DeadlineExceeded { attempts })
    }
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

    /// Scatter-gather: one routed recall per space, at most
    /// `query_concurrency` at once, all under one deadline. Spaces that fail
    /// are listed in the result instead of failing the query. `op` gets the
    /// space and the target.
    pub async fn query<S, T, E, F, Fut>(
        &self,
        spaces: &[S],
        deadline: Option<Duration>,
        op: F,
    ) -> Result<QueryResult<T, E>, RouterError>
    where
        S: AsRef<str>,
        F: Fn(&str, Target) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let plan = self.route_query(spaces)?;
        let until = self.clock.now() + deadline.unwrap_or(self.config.deadline);
        let op = &op;
        let runs = plan.parts.into_iter().map(|(space, decision)| async move {
            let result = match decision {
                Ok(d) => self.execute_until(&d, until, &mut |t| op(&space, t)).await,
                Err(e) => Err(e.into()),
            };
            (space, result)
        });
        let mut out = QueryResult {
            parts: Vec::new(),
            failed: Vec::new(),
        };
        let mut stream =
            futures_util::stream::iter(runs).buffer_unordered(self.config.query_concurrency.max(1));
        while let Some((space, result)) = stream.next().await {
            match result {
                Ok(served) => out.parts.push((space, served)),
                Err(e) => out.failed.push((space, e)),
            }
        }
        let outcome = if out.is_partial() { "partial" } else { "ok" };
        metrics::request(
            Operation::Query.as_str(),
            Strategy::ScatterGather.as_str(),
            outcome,
        );
        Ok(out)
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

    async fn run_rounds<T, E, F, Fut>(
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
        let targets = self.order(d);
        let targets = targets.as_slice();
        let opname = d.operation().as_str();
        let hedge_delay = self.hedge_delay(d, targets);
        let mut tally = Tally {
            attempts: 0,
            faults: 0,
            rejected: 0,
            last: None,
        };
        let rounds = self.config.max_attempts_per_node.max(1);
        for round in 0..rounds {
            if round > 0 {
                let delay = self.config.backoff.delay(round - 1, self.random.next_u64());
                let wake = self.clock.now() + delay;
                if wake >= until {
                    return Err(tally.deadline());
                }
                self.clock.sleep_until(wake).await;
            }
            let mut admitted = false;
            let mut i = 0;
            while i < targets.len() {
                if tally.faults > 0 && !self.budget.can_retry() {
                    metrics::budget_exhausted(opname);
                    let attempts = tally.attempts;
                    return Err(tally.fail(RouterError::BudgetExhausted { attempts }));
                }
                let left = until.saturating_sub(self.clock.now());
                if left.is_zero() {
                    return Err(tally.deadline());
                }
                let Some(p) = self.prepare(d, targets[i], left) else {
                    tally.rejected += 1;
                    i += 1;
                    continue;
                };
                admitted = true;
                tally.attempts += 1;
                metrics::attempt(opname, tally.attempts > 1);
                let Prepared {
                    permit,
                    node: id,
                    target,
                    latency,
                } = p;
                let last_resort = round + 1 == rounds && i + 1 == targets.len();
                let run = pin!(self.run(
                    d.operation(),
                    permit,
                    id,
                    latency,
                    op(target),
                    left,
                    last_resort
                ));
                let hedge = if round == 0 && i == 0 {
                    hedge_delay
                } else {
                    None
                };
                let (outcome, winner, hedged, next) = match hedge {
                    Some(delay) => {
                        self.hedged(d, targets, run, delay, until, op, &mut tally)
                            .await
                    }
                    None => (Some(run.await), i, false, i + 1),
                };
                let served_by = if hedged { winner } else { i };
                match outcome {
                    Some(Outcome::Ok(value)) => {
                        let by = targets[served_by];
                        return Ok(served(d, by, value, hedged, tally.attempts));
                    }
                    Some(Outcome::Fatal(e)) => return Err(ExecError::Operation(e)),
                    Some(Outcome::Fault(e)) => {
                        tally.faults += 1;
                        tally.last = Some(e);
                    }
                    Some(Outcome::Declined(e)) => tally.last = Some(e),
                    Some(Outcome::Stalled) => tally.faults += 1,
                    Some(Outcome::TimedOut) => return Err(tally.deadline()),
                    None => {} // both hedged requests failed retryably
                }
                i = next;
            }
            if !admitted {
                break; // every breaker is open; backing off will not close them
            }
        }
        let (attempts, rejected) = (tally.attempts, tally.rejected);
        Err(tally.fail(RouterError::Unavailable { attempts, rejected }))
    }

    /// Races the primary attempt `run` against a hedge sent after `delay`.
    /// Returns (outcome, index of the winner, whether the hedge won, next
    /// target index). Outcome `None`: both failed retryably or were refused.
    #[allow(
        clippy::too_many_arguments,
        reason = "the state of one round, passed down"
    )]
    async fn hedged<'a, T, E, F, Fut>(
        &'a self,
        d: &'a RoutingDecision,
        targets: &[NodeIndex],
        mut run: std::pin::Pin<&mut (impl Future<Output = Outcome<T, E>> + 'a)>,
        delay: Duration,
        until: Duration,
        op: &mut F,
        tally: &mut Tally<E>,
    ) -> (Option<Outcome<T, E>>, usize, bool, usize)
    where
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let started = self.clock.now();
        tokio::select! {
            res = &mut run => return (Some(res), 0, false, 1),
            () = self.clock.sleep_until(started + delay) => {}
        }
        let left = until.saturating_sub(self.clock.now());
        // The token is taken only when a replica is admitted: a hedge that
        // is not sent costs nothing (and no probe is taken for nothing).
        let hedge = if self.budget.can_retry() {
            (1..targets.len())
                .find_map(|j| self.prepare(d, targets[j], left).map(|p| (j, p)))
                .filter(|_| self.budget.try_hedge())
        } else {
            None
        };
        let Some((hedge_idx, prepared)) = hedge else {
            return (Some(run.await), 0, false, 1);
        };
        tally.attempts += 1;
        metrics::attempt(d.operation().as_str(), true);
        metrics::hedge(false);
        let Prepared {
            permit,
            node,
            target,
            latency,
        } = prepared;
        let mut second = pin!(self.run(
            d.operation(),
            permit,
            node,
            latency,
            op(target),
            left,
            false
        ));
        let (mut first_done, mut second_done) = (false, false);
        loop {
            let (result, from_hedge) = tokio::select! {
                res = &mut run, if !first_done => (res, false),
                res = &mut second, if !second_done => (res, true),
            };
            let idx = if from_hedge { hedge_idx } else { 0 };
            match result {
                Outcome::Fault(e) => {
                    tally.faults += 1;
                    tally.last = Some(e);
                }
                Outcome::Declined(e) => tally.last = Some(e),
                Outcome::Stalled => tally.faults += 1,
                other => {
                    if from_hedge && matches!(other, Outcome::Ok(_)) {
                        metrics::hedge(true);
                    }
                    if from_hedge && !first_done && matches!(other, Outcome::Ok(_)) {
                        // The primary's attempt is dropped unanswered; it
                        // took at least this long, which is all its
                        // estimate can learn (and enough to judge it slow).
                        if let Some(remote) = d.table().remote(targets[0]) {
                            remote
                                .latency
                                .read_seen
                                .record(self.clock.now().saturating_sub(started));
                        }
                    }
                    return (Some(other), idx, from_hedge, hedge_idx + 1);
                }
            }
            if from_hedge {
                second_done = true;
            } else {
                first_done = true;
            }
            if first_done && second_done {
                return (None, 0, false, hedge_idx + 1);
            }
        }
    }

    /// Breaker check and channel pick for target `idx`; `None` when the
    /// breaker rejects or the node has no valid address.
    fn prepare<'a>(
        &self,
        d: &'a RoutingDecision,
        idx: NodeIndex,
        left: Duration,
    ) -> Option<Prepared<'a>> {
        let member = d.table().topology().member(idx);
        if d.is_local(idx) {
            return Some(Prepared {
                permit: None,
                node: member.id.clone(),
                target: Target::Local,
                latency: None,
            });
        }
        let remote = d.table().remote(idx)?;
        let Ok(permit) = remote.breaker.try_acquire(self.clock.now_millis()) else {
            metrics::breaker_rejected(&member.id);
            return None;
        };
        let channel = remote.channels.as_ref()?.get().clone();
        Some(Prepared {
            permit: Some(permit),
            node: member.id.clone(),
            target: Target::Remote {
                node: member.id.clone(),
                channel,
                timeout: left,
            },
            latency: Some(&remote.latency),
        })
    }

    /// Runs one attempt and reports the outcome to the breaker, the budget
    /// and (answers only) the node's latency estimate. A remote attempt gets
    /// at most the node's attempt timeout (see [`latency`](crate::latency)):
    /// a node that stops answering costs that, not the deadline.
    #[allow(clippy::too_many_arguments, reason = "one attempt's inputs")]
    async fn run<T, E, Fut>(
        &self,
        operation: Operation,
        permit: Option<Permit<'_>>,
        node: NodeId,
        latency: Option<&crate::latency::NodeLatency>,
        fut: Fut,
        left: Duration,
        last_resort: bool,
    ) -> Outcome<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        let estimate = latency.map(|l| match operation {
            Operation::Store => &l.write,
            _ => &l.read,
        });
        // The last attempt an operation has gets the whole deadline: a
        // cluster that turned slower than its estimates still answers.
        let probe = permit.as_ref().is_some_and(Permit::is_probe);
        if probe {
            // Counted when the probe is sent: one taken and then dropped
            // unsent (a hedge not sent) went back to open.
            metrics::breaker_transition(
                &node,
                Transition {
                    from: crate::breaker::BreakerState::Open,
                    to: crate::breaker::BreakerState::HalfOpen,
                },
            );
        }
        let attempt = match estimate {
            Some(e) if !last_resort => {
                crate::latency::Estimate::attempt_timeout(e.get(), &self.config.timeouts).min(left)
            }
            _ => left,
        };
        let started = self.clock.now();
        let result = tokio::select! {
            r = fut => Ok(r),
            () = self.clock.sleep_until(started + attempt) => Err(()),
        };
        let now = self.clock.now_millis();
        let answered = |e: Option<&crate::latency::LatencyEstimate>| {
            if let Some(e) = e {
                let took = self.clock.now().saturating_sub(started);
                e.record(took);
                if let (Some(l), Operation::Recall | Operation::Query) = (latency, operation) {
                    l.read_seen.record(took);
                }
            }
        };
        let (outcome, transition) = match result {
            Ok(Ok(v)) => {
                answered(estimate);
                self.budget.on_success();
                (Outcome::Ok(v), permit.and_then(Permit::success))
            }
            Ok(Err(e)) => match e.classify() {
                Failure::NodeFault => {
                    self.budget.on_failure();
                    let r = self.random.next_u64();
                    (Outcome::Fault(e), permit.and_then(|p| p.failure(now, r)))
                }
                // The node answered; how long it took to refuse, or to let
                // the caller's deadline run out, is no sample of its
                // latency.
                Failure::NotNodeFault => (Outcome::Declined(e), permit.and_then(Permit::neutral)),
                Failure::Fatal => {
                    answered(estimate);
                    (Outcome::Fatal(e), permit.and_then(Permit::neutral))
                }
            },
            Err(()) if attempt < left => {
                self.budget.on_failure();
                let r = self.random.next_u64();
                metrics::attempt_timeout(&node);
                // A half-open probe that stalls backs the node's timeout
                // off, so the next probe waits longer: a node that turned
                // slower than its timeout is soon waited for, while a
                // silent one costs one short timeout per probe.
                if let (true, Some(e)) = (probe, estimate) {
                    e.timed_out(attempt);
                }
                if let (Some(l), Operation::Recall | Operation::Query) = (latency, operation) {
                    l.read_seen.timed_out(attempt);
                }
                (Outcome::Stalled, permit.and_then(|p| p.failure(now, r)))
            }
            // The caller's deadline, not the node's doing: no verdict (a
            // probe dropped unanswered leaves the breaker open for the next
            // caller to probe).
            Err(()) => (Outcome::TimedOut, None),
        };
        if let Some(t) = transition {
            metrics::breaker_transition(&node, t);
        }
        outcome
    }

    /// Targets in the order to try them: the decision's, except that for
    /// reads a primary far slower than the fastest other holder goes last
    /// (outlier ejection), but for one read in [`SLOW_PROBE_EVERY`], so its
    /// estimate can show it recovered.
    fn order(&self, d: &RoutingDecision) -> PreferenceList {
        let mut targets = *d.preference();
        if d.operation() == Operation::Store || targets.len() < 2 {
            return targets;
        }
        let estimate = |idx: NodeIndex| {
            d.table()
                .remote(idx)
                .and_then(|r| r.latency.read_seen.get())
        };
        let Some(primary) = estimate(targets.as_slice()[0]) else {
            return targets;
        };
        let fastest = targets.as_slice()[1..]
            .iter()
            .filter_map(|&i| {
                if d.is_local(i) {
                    Some(crate::latency::Estimate::LOCAL)
                } else {
                    estimate(i)
                }
            })
            .min_by_key(|e| e.srtt);
        let slow = fastest.is_some_and(|f| primary.is_slow(f, &self.config.timeouts));
        if slow && !self.random.next_u64().is_multiple_of(SLOW_PROBE_EVERY) {
            targets.rotate_left(1);
        }
        targets
    }

    /// How long a read waits for the first target before hedging, if at all.
    fn hedge_delay(&self, d: &RoutingDecision, targets: &[NodeIndex]) -> Option<Duration> {
        let reads = matches!(d.operation(), Operation::Recall | Operation::Query);
        if !reads || d.strategy() != Strategy::PrimaryWithFallback || targets.len() < 2 {
            return None;
        }
        match self.config.hedge {
            Hedge::Off => None,
            Hedge::Fixed(delay) => Some(delay),
            Hedge::Adaptive => {
                let estimate = d
                    .table()
                    .remote(targets[0])
                    .and_then(|r| r.latency.read.get());
                crate::latency::Estimate::hedge_delay(estimate, &self.config.timeouts)
            }
        }
    }
}

/// A success, served by target `by`.
fn served<T>(
    d: &RoutingDecision,
    by: NodeIndex,
    value: T,
    hedged: bool,
    attempts: u32,
) -> Served<T> {
    Served {
        value,
        local: d.is_local(by),
        node: d.table().topology().member(by).id.clone(),
        // Not the decision's primary (which may have been moved last as slow).
        fallback: by != d.targets()[0],
        hedged,
        attempts,
        confidence_penalty: d.confidence_penalty(),
        degraded: d.is_degraded(),
    }
}

/// One read in this many still goes first to a primary judged slow.
const SLOW_PROBE_EVERY: u64 = 16;

#[cfg(test)]
mod tests;
