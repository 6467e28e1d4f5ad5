//! Fallback rounds: every target in order, then, after a full-jitter
//! backoff, again, up to `max_attempts_per_node` rounds, within the
//! operation's deadline and the shared retry budget.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use super::attempt::{Outcome, Prepared};
use super::{Served, Target};
use crate::decision::{Operation, RoutingDecision};
use crate::error::{Classify, ExecError, RouterError};
use crate::metrics;
use crate::placement::{NodeIndex, PreferenceList};
use crate::router::Router;

pub(super) struct Tally<E> {
    pub(super) attempts: u32,
    /// Attempts that failed with a node fault (refusals excluded).
    pub(super) faults: u32,
    pub(super) rejected: u32,
    pub(super) last: Option<E>,
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
    pub(super) async fn run_rounds<T, E, F, Fut>(
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
                        return Ok(served(d, by, value, hedged, &tally));
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

    /// Targets in the order to try them: the decision's, except that for
    /// reads a primary far slower than the fastest other holder goes last
    /// (outlier ejection), but for one read in [`SLOW_PROBE_EVERY`], so its
    /// estimate can show it recovered.
    pub(super) fn order(&self, d: &RoutingDecision) -> PreferenceList {
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
}

/// A success, served by target `by`, after the attempts `tally` counted.
fn served<T, E>(
    d: &RoutingDecision,
    by: NodeIndex,
    value: T,
    hedged: bool,
    tally: &Tally<E>,
) -> Served<T> {
    Served {
        value,
        local: d.is_local(by),
        node: d.table().topology().member(by).id.clone(),
        // Not the decision's primary (which may have been moved last as slow).
        fallback: by != d.targets()[0],
        hedged,
        attempts: tally.attempts,
        uncertain: tally.faults > 0,
        confidence_penalty: d.confidence_penalty(),
        degraded: d.is_degraded(),
    }
}

/// One read in this many still goes first to a primary judged slow.
const SLOW_PROBE_EVERY: u64 = 16;
