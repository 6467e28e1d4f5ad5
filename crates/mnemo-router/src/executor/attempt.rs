//! One attempt at one target: breaker admission and the channel pick
//! (`prepare`), then the call under the attempt's timeout, its result
//! classified ([`Failure`]) and reported to the breaker, the retry budget
//! and the node's latency estimate (`run`).

use std::future::Future;
use std::time::Duration;

use super::Target;
use crate::breaker::{Permit, Transition};
use crate::decision::{Operation, RoutingDecision};
use crate::error::{Classify, Failure};
use crate::latency::Estimate;
use crate::metrics;
use crate::placement::NodeIndex;
use crate::router::Router;
use crate::topology::NodeId;

/// What one attempt came to (see [`Failure`]).
pub(super) enum Outcome<T, E> {
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

pub(super) struct Prepared<'a> {
    pub(super) permit: Option<Permit<'a>>,
    pub(super) node: NodeId,
    pub(super) target: Target,
    /// The node's latency estimates (remote targets only).
    pub(super) latency: Option<&'a crate::latency::NodeLatency>,
}

impl Router {
    /// Breaker check and channel pick for target `idx`; `None` when the
    /// breaker rejects or the node has no valid address.
    pub(super) fn prepare<'a>(
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
    pub(super) async fn run<T, E, Fut>(
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
        let timeouts = &self.config.timeouts;
        let seen = estimate.and_then(crate::latency::LatencyEstimate::get);
        let attempt = match estimate {
            Some(_) if !last_resort => Estimate::attempt_timeout(seen, timeouts).min(left),
            _ => left,
        };
        let started = self.clock.now();
        let result = tokio::select! {
            // An answer that is in wins over a timer that fired meanwhile.
            biased;
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
            Err(()) => {
                // Silent past its blame time: the node's fault, whether or
                // not the caller's deadline also ran out. Silent for less,
                // with the caller's time spent: not its fault, except for a
                // probe, which only asks whether it answers (it reopens the
                // breaker with a fresh timeout instead of handing the probe
                // to the next caller).
                let silent = estimate.is_some() && attempt >= Estimate::blame_after(seen, timeouts);
                let outcome = if attempt < left {
                    Outcome::Stalled
                } else {
                    Outcome::TimedOut
                };
                if silent {
                    self.budget.on_failure();
                    metrics::attempt_timeout(&node);
                    // A half-open probe that stalls backs the node's
                    // timeout off, so the next probe waits longer: a node
                    // that turned slower than its timeout is soon waited
                    // for, while a silent one costs one short timeout per
                    // probe.
                    if let (true, Some(e)) = (probe, estimate) {
                        e.timed_out(attempt);
                    }
                    if let (Some(l), Operation::Recall | Operation::Query) = (latency, operation) {
                        l.read_seen.timed_out(attempt);
                    }
                }
                let verdict = silent || probe;
                let r = self.random.next_u64();
                let transition = permit.and_then(|p| {
                    if verdict {
                        p.failure(now, r)
                    } else {
                        drop(p);
                        None
                    }
                });
                (outcome, transition)
            }
        };
        if let Some(t) = transition {
            metrics::breaker_transition(&node, t);
        }
        outcome
    }
}
