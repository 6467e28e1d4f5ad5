//! The public `mnemo.v1.Mnemo` service: the edge. Every request is
//! validated here, then routed (DESIGN §3): remember and forget to the
//! primary, recall to the primary with replica fallback, consolidate local
//! only, query scattered per space and gathered.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::v1::{self, mnemo_client::MnemoClient, mnemo_server::Mnemo};
use mnemo_router::{RoutingDecision, Served, Target};
use mnemo_store::validate;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::error::NodeError;
use crate::forward::{self, exec_status, is_forwarded, route_status};
use crate::local;
use crate::node::Node;
use crate::security::Caller;

/// Where a request comes from: the caller, whether another node forwarded
/// it, and the deadline it carries.
struct Origin {
    /// The operation's name, for metrics.
    operation: &'static str,
    caller: Caller,
    forwarded: bool,
    deadline: Option<Duration>,
}

impl Origin {
    fn of<T>(request: &Request<T>, operation: &'static str) -> Origin {
        Origin {
            operation,
            caller: Caller::of(request),
            forwarded: is_forwarded(request),
            deadline: forward::deadline(request),
        }
    }
}

/// The gRPC face of a [`Node`].
#[derive(Clone)]
pub struct MnemoService {
    node: Arc<Node>,
}

impl MnemoService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        MnemoService { node }
    }

    /// Runs `request` where `decision` says: `local` on this node, or
    /// `remote` (a generated client call) on a peer, marked as forwarded and
    /// given the time left of the deadline.
    async fn run<Q, A, L, LF, R, RF>(
        &self,
        from: &Origin,
        decision: &RoutingDecision,
        request: &Q,
        local: L,
        remote: R,
    ) -> Result<Served<A>, Status>
    where
        Q: Clone,
        L: Fn(Q) -> LF,
        LF: Future<Output = Result<A, Status>>,
        R: Fn(MnemoClient<Channel>, Request<Q>) -> RF,
        RF: Future<Output = Result<Response<A>, Status>>,
    {
        let (local, remote) = (&local, &remote);
        let hop = Hop {
            from: &self.node.id,
            caller: &from.caller,
            operation: from.operation,
        };
        self.node
            .router
            .execute(decision, from.deadline, |target| {
                dispatch(target, request.clone(), hop, local, remote)
            })
            .await
            .map_err(exec_status)
    }

    /// A read answered from a holder's own copy of `space`: a forwarded
    /// request here (if this node holds the space), any other by the
    /// space's primary, then the other holders.
    async fn read<Q, A, R, RF>(
        &self,
        from: &Origin,
        space: &str,
        request: &Q,
        local: fn(&Node, &Q) -> Result<A, Status>,
        remote: R,
    ) -> Result<A, Status>
    where
        Q: Clone,
        R: Fn(MnemoClient<Channel>, Request<Q>) -> RF,
        RF: Future<Output = Result<Response<A>, Status>>,
    {
        let node = &self.node;
        if from.forwarded {
            if !node.accepts_writes_for(space) {
                return Err(self.refuse_forwarded(space));
            }
            return local(node, request);
        }
        let decision = node.router.route_recall(space).map_err(route_status)?;
        let local = |r: Q| std::future::ready(local(node, &r));
        let served = self.run(from, &decision, request, local, remote).await?;
        Ok(served.value)
    }

    /// The test-only delay of a node made slow on purpose.
    async fn injected_latency(&self) {
        let delay = self.node.config.inject_latency;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// A forwarded write is served only by a holder of the space (during a
    /// partition: a holder as placed over the whole cluster).
    fn accept_forwarded_write(&self, space: &str) -> Result<(), Status> {
        if self.node.accepts_writes_for(space) {
            Ok(())
        } else {
            Err(self.refuse_forwarded(space))
        }
    }

    /// A forwarded request is served here or refused; never sent on. The
    /// refusal is not a fault of this node: the router moves on.
    fn refuse_forwarded(&self, space: &str) -> Status {
        mnemo_router::error::refusal(
            "not-a-holder",
            format!(
                "node {} does not hold space {space:?} in its view; \
                 the forwarding node's view differs, retry shortly",
                self.node.id
            ),
        )
    }
}

/// Who a forwarded request comes from: this node, on behalf of `caller`.
#[derive(Clone, Copy)]
struct Hop<'a> {
    from: &'a str,
    caller: &'a Caller,
    /// The operation's name, for metrics.
    operation: &'static str,
}

/// Runs one attempt at `target`: `local` on this node, or `remote` (a
/// generated client call) on a peer, marked as forwarded by this node,
/// carrying the caller's credentials and given the time left of the
/// deadline.
async fn dispatch<Q, A, L, LF, R, RF>(
    target: Target,
    request: Q,
    hop: Hop<'_>,
    local: L,
    remote: R,
) -> Result<A, Status>
where
    L: FnOnce(Q) -> LF,
    LF: Future<Output = Result<A, Status>>,
    R: FnOnce(MnemoClient<Channel>, Request<Q>) -> RF,
    RF: Future<Output = Result<Response<A>, Status>>,
{
    match target {
        Target::Local => local(request).await,
        Target::Remote {
            channel, timeout, ..
        } => {
            let started = std::time::Instant::now();
            let answer = remote(
                forward::client(channel),
                forward::request(request, hop.from, hop.caller, timeout),
            )
            .await;
            let code = answer
                .as_ref()
                .map_or_else(Status::code, |_| tonic::Code::Ok);
            crate::telemetry::request("public", hop.operation, "forward", code, started);
            answer.map(Response::into_inner)
        }
    }
}

fn check<T>(result: mnemo_store::Result<T>) -> Result<T, Status> {
    result.map_err(|e| NodeError::from(e).into())
}

fn validate_remember(r: &v1::RememberRequest) -> Result<(), Status> {
    check(validate::memory_fields(
        &r.space,
        &r.id,
        &r.content,
        &r.embedding,
        r.confidence.unwrap_or(1.0),
        &r.tags,
    ))?;
    check_ack(r.ack)
}

fn check_ack(ack: i32) -> Result<(), Status> {
    if v1::Ack::try_from(ack).is_err() {
        return Err(Status::invalid_argument(format!(
            "invalid ack: {ack} is not primary (0) or quorum (1)"
        )));
    }
    Ok(())
}

fn validate_cue(
    cue: &str,
    embedding: &[f32],
    k: Option<u32>,
    min: Option<f32>,
) -> Result<(), Status> {
    check(validate::cue(cue, embedding))?;
    check(validate::k(k))?;
    check(validate::unit_interval(
        "min_confidence",
        min.unwrap_or(0.0),
    ))
}

/// Sets `fallback` and `degraded` of a recall answer from how it was served.
fn recall_answer(served: Served<v1::RecallResponse>) -> v1::RecallResponse {
    let mut r = served.value;
    r.fallback |= served.fallback;
    r.degraded |= served.degraded;
    r
}

#[tonic::async_trait]
impl Mnemo for MnemoService {
    async fn remember(
        &self,
        request: Request<v1::RememberRequest>,
    ) -> Result<Response<v1::RememberResponse>, Status> {
        self.node.ensure_joined()?;
        self.injected_latency().await;
        let from = Origin::of(&request, "remember");
        let (caller, forwarded, deadline) = (&from.caller, from.forwarded, from.deadline);
        let mut r = request.into_inner();
        validate_remember(&r)?;
        caller.may_write(&r.space)?;
        if r.id.is_empty() {
            // Named here, at the edge, so a retried or forwarded write
            // stays one write (writes are idempotent by id).
            r.id = uuid::Uuid::now_v7().to_string();
        }
        let node = &self.node;
        let budget = deadline.unwrap_or(mnemo_router::router::DEFAULT_DEADLINE);
        if forwarded {
            self.accept_forwarded_write(&r.space)?;
            return local::remember(node, r, budget).await.map(Response::new);
        }
        let decision = node.router.route_store(&r.space).map_err(route_status)?;
        let served = self
            .run(
                &from,
                &decision,
                &r,
                |r| local::remember(node, r, budget),
                |mut peer, r| async move { peer.remember(r).await },
            )
            .await?;
        Ok(Response::new(served.value))
    }

    async fn recall(
        &self,
        request: Request<v1::RecallRequest>,
    ) -> Result<Response<v1::RecallResponse>, Status> {
        self.node.ensure_joined()?;
        self.injected_latency().await;
        let from = Origin::of(&request, "recall");
        let (caller, forwarded) = (&from.caller, from.forwarded);
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        validate_cue(&r.cue, &r.cue_embedding, r.k, r.min_confidence)?;
        check(validate::tags(&r.tags))?;
        caller.may_read(&r.space)?;
        let node = &self.node;
        if forwarded {
            // A leftover copy on a node that no longer holds the space is
            // not an answer: refuse, and the forwarder asks a holder.
            if !node.accepts_writes_for(&r.space) {
                return Err(self.refuse_forwarded(&r.space));
            }
            let penalty = node.router.partition().penalty();
            return local::recall(node, &r, penalty).map(Response::new);
        }
        let decision = node.router.route_recall(&r.space).map_err(route_status)?;
        let penalty = decision.confidence_penalty();
        let served = self
            .run(
                &from,
                &decision,
                &r,
                |r| std::future::ready(local::recall(node, &r, penalty)),
                |mut peer, r| async move { peer.recall(r).await },
            )
            .await?;
        Ok(Response::new(recall_answer(served)))
    }

    async fn get(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::GetResponse>, Status> {
        self.node.ensure_joined()?;
        self.injected_latency().await;
        let from = Origin::of(&request, "get");
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        check(validate::id(&r.id))?;
        from.caller.may_read(&r.space)?;
        let answer = self
            .read(&from, &r.space, &r, local::get, |mut peer, r| async move {
                peer.get(r).await
            })
            .await?;
        if answer.memory.is_none() && answer.merged_into.is_none() {
            return Err(Status::not_found(format!(
                "space {:?} has no memory {:?} (served by {})",
                r.space, r.id, answer.served_by
            )));
        }
        Ok(Response::new(answer))
    }

    async fn list(
        &self,
        request: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        self.node.ensure_joined()?;
        self.injected_latency().await;
        let from = Origin::of(&request, "list");
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        from.caller.may_read(&r.space)?;
        if !r.cursor.is_empty() && validate::id(&r.cursor).is_err() {
            return Err(Status::invalid_argument(
                "invalid cursor: is not a memory id (pass a page's next_cursor)",
            ));
        }
        if let Some(limit) = r.limit
            && !(1..=local::MAX_LIST).contains(&limit)
        {
            return Err(Status::invalid_argument(format!(
                "invalid limit: is {limit}; it must be 1..={}",
                local::MAX_LIST
            )));
        }
        self.read(&from, &r.space, &r, local::list, |mut peer, r| async move {
            peer.list(r).await
        })
        .await
        .map(Response::new)
    }

    async fn forget(
        &self,
        request: Request<v1::ForgetRequest>,
    ) -> Result<Response<v1::ForgetResponse>, Status> {
        self.node.ensure_joined()?;
        let from = Origin::of(&request, "forget");
        let (caller, forwarded, deadline) = (&from.caller, from.forwarded, from.deadline);
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        check(validate::id(&r.id))?;
        check_ack(r.ack)?;
        caller.may_write(&r.space)?;
        let node = &self.node;
        let budget = deadline.unwrap_or(mnemo_router::router::DEFAULT_DEADLINE);
        if forwarded {
            self.accept_forwarded_write(&r.space)?;
            return local::forget(node, r, budget).await.map(Response::new);
        }
        let decision = node.router.route_store(&r.space).map_err(route_status)?;
        let served = self
            .run(
                &from,
                &decision,
                &r,
                |r| local::forget(node, r, budget),
                |mut peer, r| async move { peer.forget(r).await },
            )
            .await?;
        Ok(Response::new(served.value))
    }

    async fn consolidate(
        &self,
        request: Request<v1::ConsolidateRequest>,
    ) -> Result<Response<v1::ConsolidateResponse>, Status> {
        self.node.ensure_joined()?;
        let caller = Caller::of(&request);
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        caller.may_write(&r.space)?;
        let node = &self.node;
        let threshold = r.threshold.unwrap_or(node.config.consolidate_threshold);
        check(validate::threshold(threshold))?;
        // Local only (never routed), and only on the space's primary (or,
        // during a partition, a holder as placed): one node consolidates, so
        // two holders do not merge the same memories into different sets.
        node.router
            .route_consolidation(&r.space)
            .map_err(route_status)?;
        if !node.consolidates(&r.space) {
            let primary = node.placement(&r.space).primary.unwrap_or_default();
            return Err(Status::failed_precondition(format!(
                "node {} holds a replica of space {:?}; consolidation runs on the space's \
                 primary {} ({}), e.g. with --node {}",
                node.id, r.space, primary.id, primary.addr, primary.addr
            )));
        }
        local::consolidate(node, r, threshold)
            .await
            .map(Response::new)
    }

    async fn query(
        &self,
        request: Request<v1::QueryRequest>,
    ) -> Result<Response<v1::QueryResponse>, Status> {
        self.node.ensure_joined()?;
        let caller = Caller::of(&request);
        let deadline = forward::deadline(&request);
        let r = request.into_inner();
        check(validate::query_spaces(&r.spaces))?;
        caller.may_read_all(&r.spaces)?;
        validate_cue(&r.cue, &r.cue_embedding, r.k, r.min_confidence)?;
        check(validate::tags(&r.tags))?;
        let k = check(validate::k(r.k))?;
        let node = &self.node;
        let result = node
            .router
            .query(&r.spaces, deadline, |space, target| {
                let sub = v1::RecallRequest {
                    space: space.to_owned(),
                    cue: r.cue.clone(),
                    cue_embedding: r.cue_embedding.clone(),
                    k: r.k,
                    min_confidence: r.min_confidence,
                    include_unmatched: r.include_unmatched,
                    tags: r.tags.clone(),
                };
                dispatch(
                    target,
                    sub,
                    Hop {
                        from: &node.id,
                        caller: &caller,
                        operation: "query",
                    },
                    |sub| {
                        std::future::ready(local::recall(
                            node,
                            &sub,
                            node.router.partition().penalty(),
                        ))
                    },
                    |mut peer, sub| async move { peer.recall(sub).await },
                )
            })
            .await
            .map_err(route_status)?;
        let degraded = result.parts.iter().any(|(_, s)| s.degraded);
        let empty_spaces = result
            .parts
            .iter()
            // A holder too old to count says 0: trust what it returned.
            .filter(|(_, s)| s.value.space_memories == 0 && s.value.memories.is_empty())
            .map(|(space, _)| space.clone())
            .collect();
        let memories = result
            .parts
            .into_iter()
            .flat_map(|(space, served)| {
                let answer = recall_answer(served);
                answer.memories.into_iter().map(move |m| v1::SpaceMemory {
                    space: space.clone(),
                    memory: m.memory,
                    score: m.score,
                    served_by: answer.served_by.clone(),
                })
            })
            .collect();
        let failures = result
            .failed
            .into_iter()
            .map(|(space, e)| v1::SpaceFailure {
                space,
                error: exec_status(e).message().to_owned(),
            })
            .collect();
        let mut answer = merge_query(memories, failures, k, degraded);
        answer.empty_spaces = empty_spaces;
        Ok(Response::new(answer))
    }

    async fn locate(
        &self,
        request: Request<v1::LocateRequest>,
    ) -> Result<Response<v1::LocateResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        check(validate::space(&r.space))?;
        caller.may_read(&r.space)?;
        let placement = self.node.placement(&r.space);
        Ok(Response::new(v1::LocateResponse {
            space: r.space,
            primary: placement.primary,
            replicas: placement.replicas,
            epoch: self.node.router.table().topology().epoch(),
        }))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        Caller::of(&request).may_operate("status")?;
        Ok(Response::new(self.node.status()))
    }

    async fn decommission(
        &self,
        request: Request<v1::DecommissionRequest>,
    ) -> Result<Response<v1::DecommissionResponse>, Status> {
        Caller::of(&request).may_operate("decommission")?;
        let node = &self.node;
        tracing::info!(id = %node.id, "decommissioning: handing spaces over before leaving");
        let spaces = crate::antientropy::hand_over_all(node).await.map_err(|e| {
            Status::unavailable(format!(
                "node {} could not hand its spaces over ({}); nothing was removed, retry once \
                 the other holders are reachable",
                node.id,
                e.message()
            ))
        })?;
        // Stopping leaves the cluster once this answer is on its way.
        let _ = node.stop.send(true);
        Ok(Response::new(v1::DecommissionResponse {
            node_id: node.id.clone(),
            spaces,
        }))
    }
}

/// Sorts gathered memories best first (ties: space, then id), keeps `k`.
pub(crate) fn merge_query(
    mut memories: Vec<v1::SpaceMemory>,
    failures: Vec<v1::SpaceFailure>,
    k: usize,
    degraded: bool,
) -> v1::QueryResponse {
    memories.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then_with(|| {
            (&a.space, a.memory.as_ref().map(|m| &m.id))
                .cmp(&(&b.space, b.memory.as_ref().map(|m| &m.id)))
        })
    });
    memories.truncate(k);
    v1::QueryResponse {
        memories,
        partial: !failures.is_empty(),
        failed_spaces: failures.iter().map(|f| f.space.clone()).collect(),
        failures,
        degraded,
        empty_spaces: Vec::new(),
    }
}
