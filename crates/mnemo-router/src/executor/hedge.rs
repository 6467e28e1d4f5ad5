//! Hedging (reads only): when the primary has not answered after the
//! hedge delay, the same request goes to the next admitted replica, if the
//! retry budget gives a token; the first success wins.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use super::Target;
use super::attempt::{Outcome, Prepared};
use super::rounds::Tally;
use crate::decision::{Operation, RoutingDecision, Strategy};
use crate::error::Classify;
use crate::metrics;
use crate::placement::NodeIndex;
use crate::router::{Hedge, Router};

impl Router {
    /// Races the primary attempt `run` against a hedge sent after `delay`.
    /// Returns (outcome, index of the winner, whether the hedge won, next
    /// target index). Outcome `None`: both failed retryably or were refused.
    #[allow(
        clippy::too_many_arguments,
        reason = "the state of one round, passed down"
    )]
    pub(super) async fn hedged<'a, T, E, F, Fut>(
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

    /// How long a read waits for the first target before hedging, if at all.
    pub(super) fn hedge_delay(
        &self,
        d: &RoutingDecision,
        targets: &[NodeIndex],
    ) -> Option<Duration> {
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
