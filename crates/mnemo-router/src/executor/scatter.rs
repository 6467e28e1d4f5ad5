//! Scatter-gather: one routed recall per space under one deadline, the
//! parts merged into one top-k, the spaces that failed listed.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Served, Target};
use crate::decision::{Operation, Strategy};
use crate::error::{Classify, ExecError, RouterError};
use crate::metrics;
use crate::router::Router;

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

impl Router {
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
}
